"""Security, checked by tests.

* No pickle (nor marshal, shelve, dill, ``yaml.load``), ``eval``, ``exec`` or ``compile`` anywhere
  in ``spine_dagster/``: an AST scan, so comments and docstrings do not count, and aliases do.
* All SQL is parameterized: no f-string, concatenation, ``%`` or ``.format`` flows into
  ``sa.text()``, ``execute()``, ``exec_driver_sql()`` (directly or through a local variable);
  identifiers are quoted by SQLAlchemy (``CreateSchema``, compiled DDL elements).
* Passwords are masked in every error, log line and CLI output, through real failing operations
  with a password-bearing PostgreSQL URL (the local server trusts, so any password connects).
* The GraphQL client talks only to the URL it is given: it follows no redirect.
"""

from __future__ import annotations

import ast
import http.server
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

import seed_workflows as seed
from conftest import PG_URL
from fault_support import ENCODED_PASSWORD, PASSWORD
from seed_workflows import SEED
from spine_dagster import (
    DatabaseUnavailableError,
    InvalidDatabaseUrlError,
    SpineDagsterClient,
    SpineDagsterError,
    WebserverUnavailableError,
    WorkflowRunner,
)
from spine_dagster.cli import main

pytestmark = pytest.mark.timeout(60)
PACKAGE = Path(__file__).resolve().parents[2] / "spine_dagster"
TESTS_DIR = Path(__file__).resolve().parents[1]
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
SQL_SINKS = {"text", "execute", "executemany", "exec_driver_sql", "execute_async"}


def _sources() -> list[tuple[str, ast.Module]]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    return [(str(p.relative_to(PACKAGE.parent)), ast.parse(p.read_text(), str(p))) for p in files]


# -- no code from data -------------------------------------------------------------------------
def unsafe_code(tree: ast.Module, name: str) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{name}:{node.lineno} import {a.name}" for a in node.names
                      if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{name}:{node.lineno} from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in UNSAFE_BUILTINS:
                found.append(f"{name}:{node.lineno} {func.id}()")
            elif isinstance(func, ast.Attribute) and func.attr in ("load", "unsafe_load", "full_load") \
                    and isinstance(func.value, ast.Name) and func.value.id == "yaml":
                found.append(f"{name}:{node.lineno} yaml.{func.attr}()")
            elif isinstance(func, ast.Attribute) and func.attr in UNSAFE_BUILTINS \
                    and isinstance(func.value, ast.Name) and func.value.id == "builtins":
                found.append(f"{name}:{node.lineno} builtins.{func.attr}()")
    return found


def test_no_pickle_eval_or_exec_in_the_package():
    found = [hit for name, tree in _sources() for hit in unsafe_code(tree, name)]
    assert found == []


def test_the_code_scan_finds_what_it_looks_for():
    planted = ast.parse("import pickle as p\nfrom marshal import loads\nimport yaml\n"
                        "eval('1')\nexec('x=1')\nyaml.load(s)\n# eval(x) in a comment\n")
    assert len(unsafe_code(planted, "planted")) == 5


# -- parameterized SQL ---------------------------------------------------------------------------
def _built_text(node: ast.AST) -> bool:
    """An f-string, a concatenation, ``%`` formatting or ``.format()`` of text."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return any(isinstance(side, (ast.Constant, ast.JoinedStr)) and not isinstance(
            getattr(side, "value", ""), (int, float)) or _built_text(side)
            for side in (node.left, node.right))
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
        and node.func.attr == "format" and isinstance(node.func.value, (ast.Constant, ast.Name))


def unsafe_sql(tree: ast.Module, name: str) -> list[str]:
    found = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for scope in [tree, *scopes]:
        built = {t.id for n in ast.walk(scope) if isinstance(n, (ast.Assign, ast.AugAssign))
                 and (_built_text(n.value) or isinstance(n, ast.AugAssign))
                 for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                 if isinstance(t, ast.Name)}
        for node in ast.walk(scope):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            sink = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if sink not in SQL_SINKS:
                continue
            arg = node.args[0]
            if _built_text(arg) or (isinstance(arg, ast.Name) and arg.id in built):
                found.append(f"{name}:{node.lineno} {sink}({ast.unparse(arg)[:60]})")
    return sorted(set(found))


def test_all_sql_is_parameterized():
    found = [hit for name, tree in _sources() for hit in unsafe_sql(tree, name)]
    assert found == []


def test_the_sql_scan_finds_what_it_looks_for():
    planted = ast.parse(
        "def f(conn, t, x):\n"
        "    conn.execute(sa.text(f'SELECT * FROM {t}'))\n"
        "    conn.exec_driver_sql('DELETE FROM x WHERE id = ' + x)\n"
        "    q = 'SELECT %s' % x\n"
        "    cursor.execute(q)\n"
        "    conn.execute(sa.text('SELECT {}'.format(x)))\n"
        "    conn.execute(sa.text('SELECT 1 WHERE a = :a'), {'a': x})\n")
    assert len(unsafe_sql(planted, "planted")) == 4


# -- passwords never shown -------------------------------------------------------------------------
def with_password(url: str, database: str | None = None) -> str:
    parsed = sa.make_url(url).set(password=PASSWORD)
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def assert_no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and ENCODED_PASSWORD not in text, text[-2000:]


@pytest.fixture
def everything_logged(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.mark.postgres
def test_no_password_in_errors_logs_or_output_of_failing_operations(
        pg_schema_url, instance, everything_logged, capfd):
    seed.reset()
    good = with_password(pg_schema_url)
    errors: list[str] = []
    failures = {
        "unsupported scheme": lambda: WorkflowRunner(
            database_url=f"mysql+pymysql://spine:{PASSWORD}@127.0.0.1/db"),
        "no such database": lambda: WorkflowRunner(
            database_url=with_password(PG_URL, "no_such_db_spine"), instance=instance).get_run("x"),
        "nothing listening": lambda: WorkflowRunner(
            database_url=with_password("postgresql+psycopg2://spine@127.0.0.1:1/x"),
            instance=instance).execute(SEED),
        "read-only": lambda: WorkflowRunner(
            database_url=good + "%20-cdefault_transaction_read_only%3Don", instance=instance,
            log_level="DEBUG").execute(SEED),
    }
    for what, call in failures.items():
        try:
            result = call()
        except SpineDagsterError as exc:
            errors += [str(exc), exc.cli_message, repr(exc), str(exc.__cause__ or "")]
        else:
            assert result.status.value == "failed", what
            errors += [result.error or "", repr(result)]
    assert any(isinstance(e, str) and "***" in e for e in errors)
    # a real run that fails at a step, and its resume, with the password in the URL
    runner = WorkflowRunner(database_url=good, instance=instance, log_level="DEBUG")
    failed = runner.execute(SEED, params={"timeout": 30})
    assert failed.status.value == "failed"
    errors += [failed.error, repr(failed), repr(runner.get_run(failed.run_id)),
               repr(runner.store.engine.url), runner.store.display_url]
    resumed = runner.resume(failed.run_id)
    errors += [resumed.error or "", repr(resumed)]
    out, err = capfd.readouterr()
    assert_no_password(*errors, out, err, everything_logged.text,
                       *(r.getMessage() for r in everything_logged.records))
    seed.reset()


@pytest.mark.postgres
def test_no_password_in_cli_output(pg_schema_url, tmp_path, capfd, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    good, bad = with_password(pg_schema_url), with_password(PG_URL, "no_such_db_spine")
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(TESTS_DIR),
           "SEED_API_DOWN": "1"}
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    script = Path(sys.executable).parent / "spine-dagster"
    code = ("import sys\nfrom seed_workflows import SEED\nfrom spine_dagster import WorkflowRunner\n"
            "print(WorkflowRunner(database_url=sys.argv[1]).execute(SEED).run_id)\n")
    made = subprocess.run([sys.executable, "-c", code, good], env=env, capture_output=True,
                          text=True, timeout=50)
    run_id = made.stdout.strip().splitlines()[-1]
    outputs = [made.stdout, made.stderr]
    # in this process: every command, with the good URL and with one that cannot connect
    for args in (["runs"], ["checkpoints", run_id], ["checkpoint", run_id, "step2", "--json"],
                 ["resume", run_id, "--plan"], ["resume", "nope"], ["cleanup"], ["db", "upgrade"]):
        for url in (good, bad):
            code = main([*args, "--database-url", url])
            out, err = capfd.readouterr()
            outputs += [out, err]
            if url == bad:
                assert code == 1 and "***" in err, (args, err)
    # through the console script: a real resume (Dagster's own output included), and a failure
    for args, url in ((["resume", run_id, "--verbose"], good), (["runs"], bad)):
        done = subprocess.run([str(script), *args, "--database-url", url], env=env,
                              capture_output=True, text=True, timeout=50)
        outputs += [done.stdout, done.stderr]
    assert "step3" in outputs[-4] + outputs[-3]  # the resume ran, and said so
    assert_no_password(*outputs)


def test_an_invalid_url_never_shows_its_password():
    for url in (f"mysql://u:{PASSWORD}@h/db", f"postgresql+psycopg2://u:{PASSWORD}@h:notaport/db",
                f"nonsense://u:{PASSWORD}@"):
        with pytest.raises(InvalidDatabaseUrlError) as info:
            WorkflowRunner(database_url=url)
        assert_no_password(str(info.value), info.value.cli_message)


# -- the GraphQL client follows no redirect --------------------------------------------------------
class _Server:
    def __init__(self, handler_factory):
        self.hits: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_factory(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _recorder(server: _Server):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            server.hits.append(f"{self.command} {self.path} {self.headers.get('Dagster-Cloud-Api-Token')}")
            body = b'{"data": {"version": "1.0"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):  # quiet
            pass
    return Handler


def _redirector(target: str, code: int):
    def factory(server: _Server):
        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                server.hits.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(code)
                self.send_header("Location", f"{target}/graphql")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass
        return Handler
    return factory


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_the_graphql_client_follows_no_redirect(code):
    other = _Server(_recorder)
    first = _Server(_redirector(other.url, code))
    try:
        client = SpineDagsterClient(first.url, api_token="tok-secret", timeout=10)
        with pytest.raises(WebserverUnavailableError) as info:
            client.graphql("{ version }")
        assert f"HTTP {code}" in str(info.value) and "redirect" in str(info.value)
        assert first.hits == ["/graphql"]
        assert other.hits == []  # never contacted: the token did not travel
        # the recorder does answer when asked directly (so the assertion above could fail)
        assert SpineDagsterClient(other.url, timeout=10).graphql("{ version }") == {"version": "1.0"}
        assert len(other.hits) == 1
    finally:
        first.close()
        other.close()
