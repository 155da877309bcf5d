"""``spine-dagster``: inspect and repair spine runs from a terminal.

Commands::

    spine-dagster runs [--status failed] [--workflow NAME] [--limit N]
    spine-dagster checkpoints RUN_ID
    spine-dagster checkpoint RUN_ID STEP [--json]
    spine-dagster resume RUN_ID [--param key=value ...] [--start-from STEP] [--rerun-stale]
                         [--config FILE.yaml] [--plan [--json]] [--verbose]
                         [--webserver URL [--header K:V ...] [--api-token TOKEN]]
    spine-dagster delete RUN_ID [--yes]
    spine-dagster cleanup [--retention-days N] [--dry-run] [--batch-size N]
    spine-dagster db upgrade

Every command takes ``--database-url`` (default: the runner's, ``$SPINE_DAGSTER_DATABASE_URL`` or
SQLite at ``~/.spine_dagster/checkpoints.db``) and ``--help``. ``resume`` runs locally, on the
default Dagster instance (``$DAGSTER_HOME``, else ``~/.spine_dagster/dagster_home``), or with
``--webserver URL`` through a Dagster deployment (see ``SpineDagsterClient``). Only ``argparse`` is
imported until a command runs, so ``--help`` answers at once.

Exit status: 0 on success; 1 when the command fails (one line, ``error: ...``, with the
command-line fix), when a resumed run fails again, or when a delete is declined; 2 on a usage
error. ``runs`` and ``checkpoints`` list every row they can read, then print one ``error: ...``
line (on stderr) per damaged row, naming it, the problem and the fix, and exit with 1.

Example:
    >>> import tempfile
    >>> main(["runs", "--database-url", f"sqlite:///{tempfile.mkdtemp()}/c.db"])
    no runs
    0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

PROG = "spine-dagster"
STATUSES = ["running", "completed", "failed", "partial"]
ENV_DATABASE_URL = "SPINE_DAGSTER_DATABASE_URL"
ENV_HOME = "SPINE_DAGSTER_HOME"


def _one_line(text: Any) -> str:
    return " ".join(str(text if text is not None else "").split())


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``error: ... (see: spine-dagster X --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {_one_line(message)} (see: {self.prog} --help)\n")


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value``: the value as JSON when it parses (``120``, ``true``, ``[1, 2]``), else text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not key=value (e.g. --param timeout=120 or --param mode=full)")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:VALUE (e.g. --header "
                                         f"'Authorization: Bearer abc')")
    return name.strip(), value.strip()


# -- commands ------------------------------------------------------------------------------------
def _runner(args: argparse.Namespace, **options: Any):
    from .runner import WorkflowRunner  # noqa: PLC0415 - imports Dagster: only when needed

    return WorkflowRunner(database_url=args.database_url, **options)


def _store(args: argparse.Namespace):
    from .store import CheckpointStore  # noqa: PLC0415

    return CheckpointStore.for_url(args.database_url)


def _import_workflow_of(record: Any) -> None:
    """Best effort: import the run's workflow module (and so the classes of its stored values),
    so that checkpoints holding enums or models can be shown. Only a ``module:attr`` ref, as
    ``import`` would: a ``file:`` ref names a script path, which the run record (untrusted
    stored data) could point anywhere, and a command that only shows data never runs one."""
    if os.getcwd() not in sys.path:  # `module:attr` workflow refs resolve from the project dir
        sys.path.insert(0, os.getcwd())
    if record is None or not record.workflow_ref or record.workflow_ref.startswith("file:"):
        return
    from .locate import load_workflow  # noqa: PLC0415

    try:
        load_workflow(record.workflow_ref, workflow_name=record.workflow_name)
    except Exception:  # noqa: BLE001 - display works without it, unless classes are needed
        pass


def cmd_runs(args: argparse.Namespace) -> int:
    from . import cli_output as fmt  # noqa: PLC0415
    from .errors import CheckpointCorruptError, InstanceConfigError  # noqa: PLC0415

    store = _store(args)
    listing = store.list_runs(status=args.status, workflow_name=args.workflow, limit=args.limit,
                              skip_damaged=True)
    problems = [row.error.cli_message for row in listing.damaged]
    records = list(listing)
    if any(r.status.value == "running" for r in records):
        # A run whose process died still says "running"; get_run asks Dagster how it ended.
        runner = _runner(args)
        for i, record in enumerate(records):
            if record.status.value != "running":
                continue
            try:
                records[i] = runner.get_run(record.run_id)
            except (CheckpointCorruptError, InstanceConfigError) as exc:  # shown as recorded
                problems.append(f"run {record.run_id} is shown as recorded, not as Dagster sees "
                                f"it: {exc.cli_message}")
    records = [r for r in records if not args.status or r.status.value == args.status]
    if records:
        print(fmt.runs_table(records))
    else:
        print("no runs" + _filters(args) + (" that can be read" if problems else ""))
    return _report(problems)


def _report(problems: list[str]) -> int:
    """Each damaged row the listing left out, as an ``error: ...`` line; 1 if there was any."""
    sys.stdout.flush()
    for problem in dict.fromkeys(problems):
        print(f"error: {_one_line(problem)}", file=sys.stderr)
    return 1 if problems else 0


def _filters(args: argparse.Namespace) -> str:
    parts = [f"status {args.status}" if args.status else "",
             f"workflow {args.workflow}" if args.workflow else ""]
    parts = [p for p in parts if p]
    return f" with {' and '.join(parts)}" if parts else ""


def _record(store: Any, run_id: str) -> Any:
    from .errors import UnknownRunError  # noqa: PLC0415

    record = store.get_run(run_id)
    if record is None:
        raise UnknownRunError(
            f"no spine run or Dagster run with id {run_id!r} in the checkpoint database at "
            f"{store.display_url}.", hint="List runs with: spine-dagster runs")
    return record


def cmd_checkpoints(args: argparse.Namespace) -> int:
    from . import cli_output as fmt  # noqa: PLC0415
    from .errors import CheckpointCorruptError  # noqa: PLC0415

    store = _store(args)
    run_id = store.resolve_run_id(args.run_id)
    if run_id is None:
        _record(store, args.run_id)  # raises UnknownRunError
    problems: list[str] = []
    try:
        record = store.get_run(run_id)
    except CheckpointCorruptError as exc:  # its record (or newest checkpoint) is damaged
        record = None
        problems.append(exc.cli_message)
    _import_workflow_of(record)
    checkpoints = store.list_checkpoints(run_id, skip_damaged=True)
    problems += [row.error.cli_message + ("" if "--json" in row.error.cli_message else
                 f" See the row with: {PROG} checkpoint {run_id} {row.step_name} --json")
                 for row in checkpoints.damaged]
    print(fmt.run_line(record) if record is not None else f"run {run_id}")
    if checkpoints:
        print(fmt.checkpoints_table(checkpoints))
    else:
        print("no checkpoints" + (" that can be read" if checkpoints.damaged else ""))
    return _report(problems)


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from . import cli_output as fmt  # noqa: PLC0415
    from .errors import CheckpointNotFoundError  # noqa: PLC0415

    store = _store(args)
    if args.json:  # the stored row as it is, even when damaged, so that it can be repaired
        run_id = store.resolve_run_id(args.run_id)
        if run_id is None:
            _record(store, args.run_id)  # raises UnknownRunError
        raw = store.raw_checkpoint(run_id, args.step)
        if raw is None:
            raise CheckpointNotFoundError(
                f"run {run_id!r} has no checkpoint for step {args.step!r}.",
                hint=f"List them with: spine-dagster checkpoints {run_id}")
        try:
            # allow_nan=False: a NaN or 1e999 in the row is printed as stored, not as Infinity
            print(json.dumps(json.loads(raw), indent=2, ensure_ascii=False, allow_nan=False))
        except (ValueError, RecursionError):
            print(raw)
        return 0
    record = _record(store, args.run_id)
    _import_workflow_of(record)
    checkpoint = store.get_checkpoint(record.run_id, args.step)
    if checkpoint is None:
        raise CheckpointNotFoundError(
            f"run {record.run_id!r} has no checkpoint for step {args.step!r}.",
            hint=f"List them with: spine-dagster checkpoints {record.run_id}")
    print(fmt.checkpoint_text(checkpoint))
    return 0


def _read_config(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    import yaml  # noqa: PLC0415 - PyYAML comes with Dagster

    from .errors import InvalidParamsError  # noqa: PLC0415

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidParamsError(f"--config {path}: cannot read it as YAML ({exc}).") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise InvalidParamsError(f"--config {path}: expected a mapping of run config (ops:, "
                                 f"resources:, execution:), got {type(data).__name__}.")
    return data


def cmd_resume(args: argparse.Namespace) -> int:
    params = dict(args.param or [])
    config = _read_config(args.config)
    on_stale = "rerun" if args.rerun_stale else args.on_stale
    options = dict(params_override=params or None, start_from=args.start_from, on_stale=on_stale)
    if args.webserver:  # through the deployment's GraphQL API; the local instance is not used
        from .client import SpineDagsterClient  # noqa: PLC0415

        client = SpineDagsterClient(args.webserver, database_url=args.database_url,
                                    headers=dict(args.header or []), api_token=args.api_token)
        _import_workflow_of(client.store.get_run(args.run_id))
        plan = client.plan_resume(args.run_id, **options)
        if args.plan:
            return _print_plan(plan, args.json)
        return _resume(client.store, plan, f" through {client.base_url}", lambda: client
                       .resume_and_wait(args.run_id, run_config_override=config, **options),
                       lambda r: f" ({client.base_url}/runs/{r.dagster_run_id})",
                       f"--webserver {args.webserver}")
    store = _store(args)
    record = store.get_run(args.run_id)
    _import_workflow_of(record)
    if args.plan and record is not None and record.status.value != "running":
        # Planning reads the store and the workflow only: no need to import Dagster.
        from .locate import load_workflow  # noqa: PLC0415
        from .resume import plan_resume  # noqa: PLC0415

        if record.workflow_ref:
            workflow = load_workflow(record.workflow_ref, workflow_name=record.workflow_name)
            return _print_plan(plan_resume(store, record, workflow.signature(), **options),
                               args.json)
    runner = _runner(args, log_level="INFO" if args.verbose else None, progress=False)
    plan = runner.plan_resume(args.run_id, **options)
    if args.plan:
        return _print_plan(plan, args.json)
    return _resume(runner.store, plan, "", lambda: runner.resume(
        args.run_id, run_config_override=config, **options),
        lambda r: f" (Dagster run {r.dagster_run_id})" if r.dagster_run_id else "", "")


def _print_plan(plan: Any, as_json: bool) -> int:
    print(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False) if as_json else plan)
    return 0


def _resume(store: Any, plan: Any, where: str, resume: Callable[[], Any],
            link: Callable[[Any], str], options: str) -> int:
    from .progress import StepProgress  # noqa: PLC0415
    from .resume import param_lines  # noqa: PLC0415

    print(f"resuming run {plan.run_id} (workflow {plan.workflow_name}) at step "
          f"{plan.start_step}{where}: {plan.start_reason}")
    for line in param_lines(plan):  # the plan's own lines: JSON values, as --param takes them
        print(line)
    for warning in plan.warnings:
        print(f"warning: {warning}")
    progress = StepProgress(store, plan.run_id, print).start()
    try:
        result = resume()
    finally:
        progress.finish()
    if result.status.value == "failed":
        print(f"run {result.run_id} failed again at step {result.error_step}: "
              f"{_one_line(result.error)[:300]}{link(result)}")
        print(f"fix the cause, then: {PROG} resume {result.run_id} {options}".rstrip())
        return 1
    steps = ", ".join(result.completed_steps) or "none"
    print(f"run {result.run_id} {result.status.value}{link(result)}; steps run: {steps}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from . import cli_output as fmt  # noqa: PLC0415
    from .errors import CheckpointCorruptError, RunInProgressError  # noqa: PLC0415

    runner = _runner(args)
    try:
        record = runner.get_run(args.run_id)
        run_id, status, line = record.run_id, record.status.value, fmt.run_line(record)
    except CheckpointCorruptError as exc:
        # Damaged rows are what a delete is for (the corruption errors advise it): read only the
        # run's id and stored status, and delete without decoding anything.
        found = runner.store.stored_status(args.run_id)
        if found is None:
            raise
        run_id, status = found
        line = f"run {run_id} ({status}), whose stored rows are damaged: {exc}"
    if status == "running":
        raise RunInProgressError(
            f"run {run_id} is running; deleting its checkpoints now would break it. Wait "
            f"until it ends (check with: {PROG} runs --status running).")
    count = runner.store.count_checkpoints(run_id)
    if count == 0:
        print(f"run {run_id} has no checkpoints; nothing to delete")
        return 0
    if not args.yes:
        warning = (" It failed: without checkpoints a resume starts again from the first step."
                   if status == "failed" else "")
        answer = _ask(f"Delete {count} checkpoint(s) of {line}?{warning} [y/N] ")
        if answer not in ("y", "yes"):
            print("nothing deleted")
            return 1
    deleted = runner.store.delete_checkpoints(run_id)
    print(f"deleted {deleted} checkpoint(s) of run {run_id}")
    return 0


def _ask(question: str) -> str:
    print(question, end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except (EOFError, OSError):
        answer = ""
    if not answer.endswith("\n"):
        print()
    return answer.strip().lower()


def cmd_cleanup(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone  # noqa: PLC0415

    from .errors import InvalidRetentionError  # noqa: PLC0415
    from .retention import DEFAULT_RETENTION_DAYS, cleanup_checkpoints, cutoff_for  # noqa: PLC0415

    days = args.retention_days if args.retention_days is not None else DEFAULT_RETENTION_DAYS
    if not days > 0:  # NaN too; the Python error names the Python argument
        raise InvalidRetentionError(
            f"--retention-days must be a positive number of days, got {days:g}; e.g. "
            f"--retention-days 7 keeps a week of checkpoints.")
    now = datetime.now(timezone.utc)
    cutoff = cutoff_for(days, now)
    count = cleanup_checkpoints(args.database_url, days, dry_run=args.dry_run,
                                batch_size=args.batch_size, now=now)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {count} checkpoint(s) written before {cutoff:%Y-%m-%d %H:%M:%S} UTC "
          f"({days:g} days); kept: those of running runs and of runs that failed since then")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from . import db  # noqa: PLC0415

    url = db.resolve_url(args.database_url)
    before, after, changes = db.upgrade(url)
    where = db.mask_url(url)
    if before is None:
        print(f"created the spine_dagster tables (schema version {after}) in {where}")
    elif before < after or changes:
        print(f"upgraded {where} from schema version {before} to {after}")
        for change in changes:
            print(f"  {change}")
    else:
        print(f"{where} is at schema version {after}; nothing to do")
    return 0


# -- the parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url", metavar="URL", default=None,
        help=f"checkpoint database, e.g. postgresql+psycopg2://user@host:5432/db (default: "
             f"${ENV_DATABASE_URL}, else sqlite:///<${ENV_HOME} or ~/.spine_dagster>/checkpoints.db)")
    parser = _Parser(prog=PROG, description="Inspect and repair spine runs: list runs and their "
                     "checkpoints, plan and resume failed runs, delete and clean up checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str,
                group: Any = commands) -> argparse.ArgumentParser:
        sub = group.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    runs = command("runs", cmd_runs, "List runs with their status, failed step and age, "
                   "newest first.")
    runs.add_argument("--status", choices=STATUSES, help="only runs with this status")
    runs.add_argument("--workflow", metavar="NAME", help="only runs of this workflow")
    runs.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")

    checkpoints = command("checkpoints", cmd_checkpoints, "List the checkpoints of a run, with "
                          "their state (valid, superseded, rejected).")
    checkpoints.add_argument("run_id", metavar="RUN_ID", help="spine run id (or a Dagster run id)")

    checkpoint = command("checkpoint", cmd_checkpoint, "Show the context saved by one step's "
                         "checkpoint: params, outputs, quality metrics, partition.")
    checkpoint.add_argument("run_id", metavar="RUN_ID")
    checkpoint.add_argument("step", metavar="STEP", help="the step's name")
    checkpoint.add_argument("--json", action="store_true",
                            help="print the stored row as it is (also when it is damaged)")

    resume = command("resume", cmd_resume, "Resume a failed run from its newest usable "
                     "checkpoint, as a Dagster re-execution; prints each step as it runs.")
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument("--param", action="append", type=parse_param, metavar="KEY=VALUE",
                        help="override a param (repeatable); the value is read as JSON when it "
                             "parses (120, true, [1,2]), else as text")
    resume.add_argument("--start-from", metavar="STEP",
                        help="run again from this step (its checkpoint and the later ones are "
                             "superseded); also works on a completed run")
    resume.add_argument("--rerun-stale", action="store_true",
                        help="start at the first reused step that read a changed param")
    resume.add_argument("--on-stale", choices=["warn", "rerun", "error"], default="warn",
                        help="when a changed param was read by a reused step (default: warn)")
    resume.add_argument("--config", metavar="FILE.yaml",
                        help="run config deep-merged over the failed run's (ops:, resources:, "
                             "execution:), e.g. a lower max_concurrent")
    resume.add_argument("--plan", action="store_true",
                        help="print the resume plan (each step's fate, the start step and why, "
                             "the param diff, stale steps) and launch nothing")
    resume.add_argument("--json", action="store_true", help="with --plan: print it as JSON")
    resume.add_argument("--verbose", action="store_true", help="also print Dagster's event log")
    resume.add_argument("--webserver", metavar="URL",
                        help="resume through this Dagster deployment (e.g. http://HOST:3000): "
                             "its run launcher runs the re-execution, which joins the run's run "
                             "group in the UI; --database-url must be the deployment's")
    resume.add_argument("--header", action="append", type=parse_header, metavar="NAME:VALUE",
                        help="with --webserver: an extra HTTP header (repeatable)")
    resume.add_argument("--api-token", metavar="TOKEN",
                        help="with --webserver: the deployment's API token (default "
                             "$SPINE_DAGSTER_API_TOKEN)")

    delete = command("delete", cmd_delete, "Delete the checkpoints of a run (asks first).")
    delete.add_argument("run_id", metavar="RUN_ID")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask")

    cleanup = command("cleanup", cmd_cleanup, "Delete checkpoints past the retention period, "
                      "except those of runs that failed within it; never those of running runs.")
    cleanup.add_argument("--retention-days", type=float, metavar="N",
                         help="keep checkpoints this many days (default 7)")
    cleanup.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
    cleanup.add_argument("--batch-size", type=int, default=1000, metavar="N",
                         help="rows per transaction (default 1000)")

    database = commands.add_parser("db", help="Manage the checkpoint database schema.",
                                   description="Manage the checkpoint database schema.")
    database_commands = database.add_subparsers(dest="db_command", required=True,
                                                metavar="COMMAND")
    command("upgrade", cmd_db_upgrade, "Create the spine_dagster tables, or migrate them to "
            "this version's schema.", group=database_commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``spine-dagster`` entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from .errors import SpineDagsterError  # noqa: PLC0415

    try:
        return args.handler(args)
    except SpineDagsterError as exc:
        sys.stdout.flush()
        print(f"error: {_one_line(exc.cli_message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `spine-dagster runs | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the interpreter's flush quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
