"""Bad input, case by case (issue 8): the catalogue in ``catalogue.py``, on both backends.

Each case must raise exactly the ``SpineDagsterError`` subclass it names, with a message that
names the problem and the fix, leave every spine_dagster table as it was (compared row by row in
plain SQL), run nothing a stored row names, and return within the per-test timeout. ``docs/faults.md``
is the same catalogue, checked below. The cases that change the store on purpose (a step that
raises ``KeyboardInterrupt``, a full disk, an edited Dagster run tag...) are in
``test_bad_input_stored.py``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import instance_for_test

import seed_workflows as seed
from catalogue import CASES, MARKER, Case
from fault_support import PASSWORD, Env, dump_tables
from seed_workflows import SEED
from conftest import pg_schema
from spine_dagster import CheckpointStore, SpineDagsterError, WorkflowRunner
from spine_dagster import db as spine_db
from spine_dagster.schema import metadata
from spine_dagster.cli import build_parser, main

pytestmark = pytest.mark.timeout(60)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "faults.md"


@pytest.fixture(scope="module")
def shared_instance():
    """One Dagster instance for the module (its runs are all distinct): a new one per test
    would cost more than most cases."""
    with instance_for_test() as instance:
        yield instance


@pytest.fixture(autouse=True)
def _clean():
    seed.reset()
    if os.path.exists(MARKER):
        os.remove(MARKER)
    yield
    seed.reset()


def _params() -> list:
    return [pytest.param(case, backend, id=f"{case.id}-{backend}",
                         marks=[pytest.mark.postgres] if backend == "postgres" else [])
            for case in CASES for backend in case.backends]


@pytest.fixture(scope="module")
def templates(shared_instance, tmp_path_factory):
    """(backend, setup) -> (a database holding one real run in that state, its run id).

    Each setup is made once per backend by a real run, and copied into each test's own
    database (SQLite's backup API; PostgreSQL ``INSERT ... SELECT`` from the template schema):
    the same rows as a run per test, without a Dagster run per test."""
    made: dict[tuple[str, str], tuple[str, str]] = {}
    schemas: list = []
    yield made, schemas, tmp_path_factory
    for schema in schemas:
        schema.__exit__(None, None, None)


def _template(templates, backend: str, setup: str, instance) -> tuple[str, str]:
    made, schemas, factory = templates
    if (backend, setup) not in made:
        if backend == "sqlite":
            url = f"sqlite:///{factory.mktemp('template')}/template.db"
        else:
            schemas.append(pg_schema("spine_tmpl"))
            url = schemas[-1].__enter__()
        seed.STATE["api_down"] = setup == "failed"
        result = WorkflowRunner(database_url=url, instance=instance, progress=False).execute(
            SEED, params={"timeout": 30})
        assert result.status.value == setup, result
        seed.reset()
        made[(backend, setup)] = (url, result.run_id)
    return made[(backend, setup)]


def _copy(source: str, target: str) -> None:
    spine_db.dispose_all()
    if target.startswith("sqlite"):
        src = sqlite3.connect(sa.make_url(source).database)
        dst = sqlite3.connect(sa.make_url(target).database)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        return
    CheckpointStore.for_url(target).check()  # the tables, and the schema version row
    schema = sa.make_url(source).query["options"].split("%3D")[-1].split("=")[-1]
    engine = sa.create_engine(target, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if table.name != "spine_dagster_schema":
                conn.execute(sa.text(f'INSERT INTO "{table.name}" SELECT * FROM '
                                     f'"{schema}"."{table.name}"'))
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('core_workflow_checkpoints', "
                             "'id'), (SELECT max(id) FROM core_workflow_checkpoints))"))
    engine.dispose()


def _prepare(case: Case, env: Env, backend: str, templates, instance) -> None:
    if case.setup == "none":
        env.runner.store.check()  # the tables exist, so that "unchanged" compares real rows
        return
    source, env.run_id = _template(templates, backend, case.setup, instance)
    _copy(source, env.url)


def _check_message(case: Case, text: str) -> None:
    for part in case.says:
        assert part in text, f"{case.id}: {part!r} not in {text!r}"
    assert PASSWORD not in text
    assert "Traceback" not in text


@pytest.mark.parametrize("case,database_url", _params(), indirect=["database_url"])
def test_bad_input_is_refused_clearly_and_changes_nothing(case: Case, database_url,
                                                           shared_instance, templates, tmp_path,
                                                           capsys):
    env = Env(url=database_url, tmp=tmp_path,
              runner=WorkflowRunner(database_url=database_url, instance=shared_instance,
                                     progress=False))
    _prepare(case, env, "postgres" if database_url.startswith("postgresql") else "sqlite",
             templates, shared_instance)
    if case.tamper is not None:
        case.tamper(env)
    before = dump_tables(database_url)
    calls_before = list(seed.CALLS)

    if case.act is not None:
        with pytest.raises(SpineDagsterError) as info:
            case.act(env)
    else:
        argv = [*case.cli(env), "--database-url", database_url]
        args = build_parser().parse_args(argv)
        with pytest.raises(SpineDagsterError) as info:
            args.handler(args)
        capsys.readouterr()
        assert main(argv) == 1
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        _check_message(case, lines[0])
        assert PASSWORD not in out

    assert type(info.value) is case.error, f"{type(info.value).__name__}: {info.value}"
    _check_message(case, info.value.cli_message if case.cli else str(info.value))
    assert dump_tables(database_url) == before
    assert seed.CALLS == calls_before  # no step ran
    assert not os.path.exists(MARKER)  # nothing a stored row named was executed


def test_the_catalogue_has_thirty_cases_and_both_backends():
    assert len(CASES) >= 30
    assert sum(len(c.backends) for c in CASES) >= 60
    assert "antigravity" not in sys.modules  # a stored class name never imported its module


def test_docs_faults_lists_every_case_with_its_error():
    text = DOCS.read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r"^\| `([a-z0-9-]+)` \|[^|\n]*\| `(\w+)` \|", text, flags=re.M)}
    for case in CASES:
        assert rows.get(case.id) == case.error.__name__, case.id


def test_bad_param_syntax_on_the_command_line(database_url, capsys):
    for bad in ("timeout", "=120"):
        with pytest.raises(SystemExit) as info:
            main(["resume", "some-run", "--param", bad, "--database-url", database_url])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"{bad!r} is not key=value" in err and "--param timeout=120" in err
