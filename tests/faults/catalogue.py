"""The bad-input catalogue: each case is an input, the exact error it must raise, and what the
message must say. ``tests/faults/test_bad_input.py`` runs every case (on each backend it names)
and checks that the store is unchanged; ``docs/faults.md`` is this table, checked by a test.

``setup`` prepares the store: ``none`` (empty tables), ``failed`` (the seed workflow failed at
step3: step1 and step2 have checkpoints), ``completed``. ``tamper`` edits rows after the setup,
before the store's snapshot. ``act`` makes the call that must fail; ``cli`` gives the arguments of
a ``spine-dagster`` command instead, which must fail with the same error (and print it as one
``error: ...`` line).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Callable

from seed_workflows import OTHER, SEED
from spine_dagster import (
    CheckpointCorruptError,
    CheckpointNotFoundError,
    CheckpointSerializationError,
    CheckpointStore,
    InvalidDatabaseUrlError,
    InvalidParamsError,
    InvalidRetentionError,
    InvalidRunIdError,
    InvalidSettingError,
    NothingToResumeError,
    UnknownRunError,
    UnknownStepError,
    WorkflowMismatchError,
    WorkflowNotFoundError,
    WorkflowRunner,
)

from fault_support import (PASSWORD, Env, deep, edit_snapshot, get_snapshot, set_column,
                           set_snapshot)

BOTH = ("sqlite", "postgres")
ONE = ("sqlite",)  # the input never reaches a database: one backend says it all
MARKER = "/tmp/spine_dagster_tampered_marker"


@dataclass(frozen=True)
class Case:
    id: str
    input: str
    error: type
    says: tuple[str, ...]
    act: Callable[[Env], Any] | None = None
    cli: Callable[[Env], list[str]] | None = None
    setup: str = "none"
    tamper: Callable[[Env], None] | None = None
    backends: tuple[str, ...] = BOTH


def _runner(**options: Any) -> Callable[[Env], Any]:
    return lambda env: WorkflowRunner(database_url=env.url, **options)


def _tag(kind: str, cls: str, value: Any) -> Callable[[Env], None]:
    """Put a tagged value, naming ``cls``, into step2's output."""
    def tamper(env: Env) -> None:
        edit_snapshot(env.url, env.run_id, "step2", lambda s: s["outputs"]["step2"].update(
            evil={"__spine_type__": kind, "class": cls, "value": value}))
    return tamper


def _snapshot(text: str) -> Callable[[Env], None]:
    return lambda env: set_snapshot(env.url, env.run_id, "step2", text)


def _edit(edit: Callable[[dict], Any]) -> Callable[[Env], None]:
    return lambda env: edit_snapshot(env.url, env.run_id, "step2", edit)


def _number(literal: str) -> Callable[[Env], None]:
    """Put the raw JSON number ``literal`` into step2's output, as it is (1e999, NaN, ...)."""
    def tamper(env: Env) -> None:
        text = get_snapshot(env.url, env.run_id, "step2")
        edited = text.replace('"processed":950', f'"processed":{literal}')
        assert edited != text, text
        set_snapshot(env.url, env.run_id, "step2", edited)
    return tamper


def _without(env: Env, step: str) -> Any:
    """Step2's checkpointed context without ``step``'s output."""
    context = env.runner.get_checkpoint(env.run_id, "step2").context
    return replace(context, outputs={k: v for k, v in context.outputs.items() if k != step})


def _run_column(column: str, value: str) -> Callable[[Env], None]:
    return lambda env: set_column(env.url, "core_workflow_runs", column, value, run_id=env.run_id)


CASES: list[Case] = [
    # -- arguments ----------------------------------------------------------------------------
    Case("params-not-a-mapping", "execute(wf, params=['timeout', 120])", InvalidParamsError,
         ("params must be a mapping", "got list", "params={'timeout': 120}"),
         act=lambda env: env.runner.execute(SEED, params=["timeout", 120])),
    Case("params-override-not-a-mapping", "resume(run, params_override='timeout=120')",
         InvalidParamsError, ("params_override must be a mapping", "got str"),
         act=lambda env: env.runner.resume(env.run_id, params_override="timeout=120"),
         setup="failed"),
    Case("run-config-override-not-a-mapping", "resume(run, run_config_override=[1])",
         InvalidParamsError, ("run_config_override must be a mapping", "got list"),
         act=lambda env: env.runner.resume(env.run_id, run_config_override=[1]), setup="failed"),
    Case("context-not-a-context", "execute(wf, context={'params': {}})", InvalidParamsError,
         ("context must be a WorkflowContext", "got dict"),
         act=lambda env: env.runner.execute(SEED, context={"params": {}})),
    Case("param-not-json", "execute(wf, params={'ids': {1, 2}})", CheckpointSerializationError,
         ("params.ids", "set"), act=lambda env: env.runner.execute(SEED, params={"ids": {1, 2}})),
    Case("run-id-number", "get_run(12345)", InvalidRunIdError,
         ("run id 12345 is a int", "spine-dagster runs"), act=lambda env: env.runner.get_run(12345)),
    Case("run-id-nul", "resume('ab\\x00cd')", InvalidRunIdError,
         ("contains a NUL character", "spine-dagster runs"),
         act=lambda env: env.runner.resume("ab\x00cd")),
    Case("run-id-nul-execute", "execute(wf, run_id='r\\x00', start_from='step2')",
         InvalidRunIdError, ("contains a NUL character",),
         act=lambda env: env.runner.execute(SEED, run_id="r\x00", start_from="step2")),
    Case("run-id-too-long", "get_checkpoint('x' * 65, 'step1')", InvalidRunIdError,
         ("65 characters long", "at most 64"),
         act=lambda env: env.runner.get_checkpoint("x" * 65, "step1")),
    Case("run-id-nul-cli", "spine-dagster checkpoints $'a\\x01b'", InvalidRunIdError,
         ("control character",), cli=lambda env: ["checkpoints", "a\x01b"]),
    Case("unknown-run", "resume('no-such-run')", UnknownRunError,
         ("'no-such-run'", "spine-dagster runs"), act=lambda env: env.runner.resume("no-such-run")),
    Case("unknown-run-cli", "spine-dagster checkpoints no-such-run", UnknownRunError,
         ("'no-such-run'", "spine-dagster runs"), cli=lambda env: ["checkpoints", "no-such-run"]),
    Case("resume-completed-run", "resume(completed run)", NothingToResumeError,
         ("nothing to resume", "start_from="), act=lambda env: env.runner.resume(env.run_id),
         setup="completed"),
    Case("resume-completed-run-cli", "spine-dagster resume COMPLETED_RUN", NothingToResumeError,
         ("nothing to resume", "--start-from"), cli=lambda env: ["resume", env.run_id],
         setup="completed"),
    Case("start-from-unknown-step", "execute(wf, start_from='nope')", UnknownStepError,
         ("start_from='nope'", "'step1', 'step2', 'step3', 'step4'", "start_from="),
         act=lambda env: env.runner.execute(SEED, start_from="nope")),
    Case("resume-start-from-unknown-step", "resume(run, start_from='step9')", UnknownStepError,
         ("'step9'", "'step4'"), act=lambda env: env.runner.resume(env.run_id, start_from="step9"),
         setup="failed"),
    Case("resume-start-from-unknown-step-cli", "spine-dagster resume RUN --start-from step9",
         UnknownStepError, ("'step9'", "--start-from STEP"),
         cli=lambda env: ["resume", env.run_id, "--start-from", "step9"], setup="failed"),
    Case("workflow-mismatch", "resume(run, workflow=<another workflow>)", WorkflowMismatchError,
         ("'my.workflow', not 'other.workflow'",),
         act=lambda env: env.runner.resume(env.run_id, workflow=OTHER), setup="failed"),
    Case("no-checkpoint-for-step", "get_checkpoint(run, 'step3') (the step that failed)",
         CheckpointNotFoundError, ("'step3'", "['step1', 'step2']"),
         act=lambda env: env.runner.get_checkpoint(env.run_id, "step3"), setup="failed"),
    Case("config-not-a-mapping-cli", "spine-dagster resume RUN --config list.yaml",
         InvalidParamsError, ("--config", "expected a mapping"),
         cli=lambda env: ["resume", env.run_id, "--config", _write(env, "list.yaml", "[1, 2]\n")],
         setup="failed"),
    # -- limits -------------------------------------------------------------------------------
    Case("params-too-deep", "execute(wf, params={'a': <101 levels>})", CheckpointSerializationError,
         ("params.a.d.d", "nested more than 100 levels"),
         act=lambda env: env.runner.execute(SEED, params={"a": deep(101)})),
    Case("params-override-too-deep", "resume(run, params_override={'a': <101 levels>})",
         CheckpointSerializationError, ("params_override.a.d.d", "nested more than 100 levels"),
         act=lambda env: env.runner.resume(env.run_id, params_override={"a": deep(101)}),
         setup="failed"),
    # -- settings -----------------------------------------------------------------------------
    Case("url-unknown-scheme-runner", f"WorkflowRunner(database_url='mysql://u:{PASSWORD}@h/db')",
         InvalidDatabaseUrlError, ("unsupported database 'mysql'", "sqlite:///", "postgresql+psycopg2://"),
         act=lambda env: WorkflowRunner(database_url=f"mysql+pymysql://u:{PASSWORD}@h/db"),
         backends=ONE),
    Case("url-unknown-scheme-store", "CheckpointStore.for_url('oracle://u@h/db')",
         InvalidDatabaseUrlError, ("unsupported database 'oracle'", "sqlite:///"),
         act=lambda env: CheckpointStore.for_url("oracle://u@h/db"), backends=ONE),
    Case("url-malformed", "WorkflowRunner(database_url='::not a url::')", InvalidDatabaseUrlError,
         ("not a valid database URL", "sqlite:///"),
         act=lambda env: WorkflowRunner(database_url="::not a url::"), backends=ONE),
    Case("url-not-text", "CheckpointStore.for_url(b'sqlite:///x.db')", InvalidDatabaseUrlError,
         ("must be text", "got bytes"), act=lambda env: CheckpointStore.for_url(b"sqlite:///x.db"),
         backends=ONE),
    Case("max-checkpoint-bytes-zero", "WorkflowRunner(max_checkpoint_bytes=0)", InvalidSettingError,
         ("positive number of bytes", "got 0", "16 MiB"), act=_runner(max_checkpoint_bytes=0),
         backends=ONE),
    Case("max-checkpoint-bytes-negative", "WorkflowRunner(max_checkpoint_bytes=-1)",
         InvalidSettingError, ("positive number of bytes", "got -1"),
         act=_runner(max_checkpoint_bytes=-1), backends=ONE),
    Case("max-checkpoint-bytes-text", "WorkflowRunner(max_checkpoint_bytes='1024')",
         InvalidSettingError, ("positive number of bytes", "got '1024'"),
         act=_runner(max_checkpoint_bytes="1024"), backends=ONE),
    Case("unknown-executor", "WorkflowRunner(executor='threads')", InvalidSettingError,
         ("unknown executor 'threads'", "in_process"), act=_runner(executor="threads"),
         backends=ONE),
    Case("retention-negative", "WorkflowRunner(checkpoint_retention_days=-1)",
         InvalidRetentionError, ("positive number of days", "got -1"),
         act=_runner(checkpoint_retention_days=-1), backends=ONE),
    Case("on-stale-unknown", "resume(run, on_stale='maybe')", InvalidSettingError,
         ("on_stale must be one of", "'maybe'"),
         act=lambda env: env.runner.resume(env.run_id, on_stale="maybe"), setup="failed"),
    # -- stored rows, edited ------------------------------------------------------------------
    Case("snapshot-empty-object", "context_snapshot = {} -> get_checkpoint", CheckpointCorruptError,
         ("step 'step2'", "lacks 'params', 'outputs'", "--json"), setup="failed", tamper=_snapshot("{}"),
         act=lambda env: env.runner.get_checkpoint(env.run_id, "step2")),
    Case("snapshot-invalid-json", "context_snapshot = '{\"run_id\": ' -> list_checkpoints",
         CheckpointCorruptError, ("step 'step2'", "not valid JSON",
                                  "Inspect the stored row with: spine-dagster checkpoint",
                                  "step2 --json"), setup="failed",
         tamper=_snapshot('{"run_id": '), act=lambda env: env.runner.list_checkpoints(env.run_id),
         backends=ONE),  # a JSONB column cannot hold invalid JSON
    # (`spine-dagster checkpoints` lists the other rows and flags this one: tests/test_cli.py)
    Case("snapshot-array", "context_snapshot = [] -> list_checkpoints", CheckpointCorruptError,
         ("step 'step2'", "is list, not a JSON object", "skip_damaged=True"), setup="failed",
         tamper=_snapshot("[]"), act=lambda env: env.runner.list_checkpoints(env.run_id)),
    # SQLite only: PostgreSQL's JSONB refuses NaN and Infinity, and stores 1e999 as the exact
    # integer 10**999 (read back as that int: see tests/test_store.py)
    Case("snapshot-number-overflow", "an output 1e999 (json reads inf) -> resume",
         CheckpointCorruptError, ("step 'step2'", "at outputs.step2.processed", "number 1e999",
                                  "not a finite number", "step2 --json"),
         setup="failed", tamper=_number("1e999"), act=lambda env: env.runner.resume(env.run_id),
         backends=ONE),
    Case("snapshot-nan", "an output NaN (a raw JSON constant) -> get_run", CheckpointCorruptError,
         ("step 'step2'", "at outputs.step2.processed", "number NaN", "not a finite number"),
         setup="failed", tamper=_number("NaN"), act=lambda env: env.runner.get_run(env.run_id),
         backends=ONE),
    Case("snapshot-infinity-cli", "an output -Infinity -> spine-dagster resume RUN --plan",
         CheckpointCorruptError, ("step 'step2'", "number -Infinity", "not a finite number"),
         setup="failed", tamper=_number("-Infinity"),
         cli=lambda env: ["resume", env.run_id, "--plan"], backends=ONE),
    Case("checkpoint-state-unknown", "core_workflow_checkpoints.state = 'bogus' -> get_run",
         CheckpointCorruptError, ("step 'step2'", "state 'bogus'",
                                  "['valid', 'superseded', 'rejected']", "edited"),
         setup="failed", tamper=lambda env: set_column(
             env.url, "core_workflow_checkpoints", "state", "bogus", run_id=env.run_id,
             step_name="step2"), act=lambda env: env.runner.get_run(env.run_id)),
    Case("checkpoint-state-unknown-cli", "core_workflow_checkpoints.state = 'bogus' -> "
         "spine-dagster checkpoint RUN step2", CheckpointCorruptError,
         ("state 'bogus'", "'superseded'"),
         setup="failed", tamper=lambda env: set_column(
             env.url, "core_workflow_checkpoints", "state", "bogus", run_id=env.run_id,
             step_name="step2"), cli=lambda env: ["checkpoint", env.run_id, "step2"]),
    Case("snapshot-wrong-type", "outputs = [] -> get_run(run).context", CheckpointCorruptError,
         ("step 'step2'", "'outputs' is list, expected an object"), setup="failed",
         tamper=_edit(lambda s: s.update(outputs=[])),
         act=lambda env: env.runner.get_run(env.run_id).context),
    Case("snapshot-missing-key", "no 'outputs' key -> resume", CheckpointCorruptError,
         ("step 'step2'", "lacks 'outputs'", "would lose data"), setup="failed",
         tamper=_edit(lambda s: s.pop("outputs")), act=lambda env: env.runner.resume(env.run_id)),
    Case("snapshot-truncated-outputs", "outputs without step2's own -> spine-dagster checkpoint",
         CheckpointCorruptError, ("no output of step 'step2'", "truncated"), setup="failed",
         tamper=_edit(lambda s: s["outputs"].pop("step2")),
         cli=lambda env: ["checkpoint", env.run_id, "step2"]),
    Case("snapshot-lost-earlier-output", "outputs of step2 without step1's -> resume",
         CheckpointCorruptError, ("step 'step2'", "lacks the output of step 'step1'", "truncated",
                                  "--json"), setup="failed",
         tamper=_edit(lambda s: s["outputs"].pop("step1")),
         act=lambda env: env.runner.resume(env.run_id)),
    Case("context-lacks-earlier-output",
         "execute(wf, run_id=run, context=<step2's without step1's output>, start_from='step3')",
         InvalidParamsError, ("lacks the output of 'step1'", "partial context", "get_checkpoint("),
         setup="failed", act=lambda env: env.runner.execute(
             SEED, run_id=env.run_id, start_from="step3", context=_without(env, "step1"))),
    Case("snapshot-of-another-run", "run_id inside the snapshot changed -> get_checkpoint",
         CheckpointCorruptError, ("copied or edited",), setup="failed",
         tamper=_edit(lambda s: s.update(run_id="someone-else")),
         act=lambda env: env.runner.get_checkpoint(env.run_id, "step2")),
    Case("snapshot-too-deep", "an output nested 200 levels -> get_checkpoint",
         CheckpointCorruptError, ("nested more than 116 levels", "edited"), setup="failed",
         tamper=_edit(lambda s: s["outputs"]["step2"].update(x=deep(200))),
         act=lambda env: env.runner.get_checkpoint(env.run_id, "step2")),
    Case("tampered-enum-os-system",
         f"{{'__spine_type__': 'enum', 'class': 'os:system', 'value': 'touch {MARKER}'}} -> resume",
         CheckpointCorruptError, ("os:system", "not an Enum class", "step2"), setup="failed",
         tamper=_tag("enum", "os:system", f"touch {MARKER}"),
         act=lambda env: env.runner.resume(env.run_id)),
    Case("tampered-pydantic-popen", "{'__spine_type__': 'pydantic', 'class': 'subprocess:Popen', "
         "...} -> get_checkpoint", CheckpointCorruptError,
         ("subprocess:Popen", "not a pydantic BaseModel"), setup="failed",
         tamper=_tag("pydantic", "subprocess:Popen", ["touch", MARKER]),
         act=lambda env: env.runner.get_checkpoint(env.run_id, "step2")),
    Case("tampered-enum-unimported-module", "an enum of class 'antigravity:Fly' -> get_run",
         CheckpointCorruptError, ("'antigravity' is not imported", "never imports"),
         setup="failed", tamper=_tag("enum", "antigravity:Fly", 1),
         act=lambda env: env.runner.get_run(env.run_id).context),
    Case("tampered-unknown-tag", "{'__spine_type__': 'pickle', ...} -> list_checkpoints",
         CheckpointCorruptError, ("unknown stored type 'pickle'",), setup="failed",
         tamper=lambda env: edit_snapshot(env.url, env.run_id, "step2", lambda s: s["outputs"][
             "step2"].update(p={"__spine_type__": "pickle", "value": "gASVAAAA"})),
         act=lambda env: env.runner.list_checkpoints(env.run_id)),
    Case("run-record-status", "core_workflow_runs.status = 'hacked' -> get_run",
         CheckpointCorruptError, ("status 'hacked'", "'failed'", "edited"), setup="failed",
         tamper=_run_column("status", "hacked"), act=lambda env: env.runner.get_run(env.run_id)),
    Case("run-record-params", "core_workflow_runs.params = [1, 2] -> resume", CheckpointCorruptError,
         ("params is list, expected a JSON object",), setup="failed",
         tamper=_run_column("params", "[1, 2]"), act=lambda env: env.runner.resume(env.run_id)),
    Case("run-record-params-get-run", "core_workflow_runs.params = [1, 2] -> get_run",
         CheckpointCorruptError, ("params is list, expected a JSON object", "Repair that column"),
         setup="failed", tamper=_run_column("params", "[1, 2]"),
         act=lambda env: env.runner.get_run(env.run_id)),
    Case("run-record-params-cli", "core_workflow_runs.params = [1, 2] -> spine-dagster "
         "checkpoint RUN step2", CheckpointCorruptError,
         ("params is list, expected a JSON object",),
         setup="failed", tamper=_run_column("params", "[1, 2]"),
         cli=lambda env: ["checkpoint", env.run_id, "step2"]),
    Case("run-record-workflow-ref-unknown", "core_workflow_runs.workflow_ref = "
         "'no_such_module:WF' -> resume", WorkflowNotFoundError,
         ("'no_such_module'", "could not be imported", "workflow="), setup="failed",
         tamper=_run_column("workflow_ref", "no_such_module:WF"),
         act=lambda env: env.runner.resume(env.run_id)),
    Case("run-record-workflow-ref-not-a-workflow", "core_workflow_runs.workflow_ref = 'os:system'"
         " -> resume", WorkflowNotFoundError, ("'system' there is builtin_function_or_method",
                                               "workflow="), setup="failed",
         tamper=_run_column("workflow_ref", "os:system"),
         act=lambda env: env.runner.resume(env.run_id)),
    Case("run-record-signature", "core_workflow_runs.workflow_signature = {} -> resume",
         CheckpointCorruptError, ("workflow_signature is dict, expected a JSON array",),
         setup="failed", tamper=_run_column("workflow_signature", '{"a": 1}'),
         act=lambda env: env.runner.resume(env.run_id)),
]


def _write(env: Env, name: str, text: str) -> str:
    path = env.tmp / name
    path.write_text(text)
    return str(path)


assert len({c.id for c in CASES}) == len(CASES)
assert "antigravity" not in sys.modules
