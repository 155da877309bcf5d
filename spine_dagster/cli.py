"""``spine-dagster``: inspect and repair spine runs from a terminal.

Commands::

    spine-dagster runs [--status failed] [--workflow NAME] [--limit N]
    spine-dagster checkpoints RUN_ID
    spine-dagster checkpoint RUN_ID STEP [--json]
    spine-dagster resume RUN_ID [--param key=value ...] [--verbose] [--webserver URL]
    spine-dagster delete RUN_ID [--yes]
    spine-dagster cleanup [--retention-days N] [--dry-run] [--batch-size N]
    spine-dagster db upgrade

Every command takes ``--database-url`` (default: the runner's, ``$SPINE_DAGSTER_DATABASE_URL`` or
SQLite at ``~/.spine_dagster/checkpoints.db``) and ``--help``. ``resume`` runs locally, on the
default Dagster instance (``$DAGSTER_HOME``, else ``~/.spine_dagster/dagster_home``), or with
``--webserver URL`` through a Dagster deployment (see ``SpineDagsterClient``).

Exit status: 0 on success; 1 when the command fails (one line, ``error: ...``), when a resumed run
fails again, or when a delete is declined; 2 on a usage error.

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
import threading
from typing import Any, Callable, Sequence

from . import cli_output as fmt
from . import db
from .errors import RunInProgressError, SpineDagsterError
from .results import WorkflowStatus
from .retention import DEFAULT_BATCH_SIZE, DEFAULT_RETENTION_DAYS, cleanup_checkpoints, cutoff_for
from .runner import WorkflowRunner
from .store import CheckpointStore, StepRow

PROG = "spine-dagster"
STATUSES = [s.value for s in WorkflowStatus]
POLL_SECONDS = 0.2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``error: ... (see: spine-dagster X --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {fmt.one_line(message)} (see: {self.prog} --help)\n")


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


# -- commands ------------------------------------------------------------------------------------
def _runner(args: argparse.Namespace, **options: Any) -> WorkflowRunner:
    return WorkflowRunner(database_url=args.database_url, **options)


def cmd_runs(args: argparse.Namespace) -> int:
    runner = _runner(args)
    records = runner.store.list_runs(status=args.status, workflow_name=args.workflow,
                                     limit=args.limit)
    # A run whose process died still says "running"; get_run asks Dagster how it really ended.
    records = [runner.get_run(r.run_id) if r.status is WorkflowStatus.RUNNING else r
               for r in records]
    records = [r for r in records if not args.status or r.status.value == args.status]
    if not records:
        print("no runs" + _filters(args))
        return 0
    print(fmt.runs_table(records))
    return 0


def _filters(args: argparse.Namespace) -> str:
    parts = [f"status {args.status}" if args.status else "",
             f"workflow {args.workflow}" if args.workflow else ""]
    parts = [p for p in parts if p]
    return f" with {' and '.join(parts)}" if parts else ""


def cmd_checkpoints(args: argparse.Namespace) -> int:
    runner = _runner(args)
    record = runner.store.get_run(args.run_id)
    checkpoints = runner.list_checkpoints(args.run_id)  # UnknownRunError for a bad id
    print(fmt.run_line(record))
    if not checkpoints:
        print("no checkpoints")
        return 0
    print(fmt.checkpoints_table(checkpoints))
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    checkpoint = _runner(args).get_checkpoint(args.run_id, args.step)
    print(fmt.checkpoint_json(checkpoint) if args.json else fmt.checkpoint_text(checkpoint))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    params = dict(args.param or [])
    if args.webserver:  # through the deployment's GraphQL API; the local instance is not used
        return _resume_remotely(args, params)
    return _resume_locally(args, params)


def _resume_remotely(args: argparse.Namespace, params: dict[str, Any]) -> int:
    from .client import SpineDagsterClient  # noqa: PLC0415 - only this path needs it

    client = SpineDagsterClient(args.webserver, database_url=args.database_url)
    record = client.store.get_run(args.run_id)
    if record is None or record.status is WorkflowStatus.COMPLETED:
        client.resume(args.run_id)  # raises UnknownRunError / NothingToResumeError, which explain
    result = _with_progress(
        client.store, record, params, f" through {client.base_url}",
        lambda: client.resume_and_wait(record.run_id, params_override=params or None))
    return _report_resume(result, f" ({client.base_url}/runs/{result.dagster_run_id})",
                          f"--webserver {args.webserver}")


def _resume_locally(args: argparse.Namespace, params: dict[str, Any]) -> int:
    if os.getcwd() not in sys.path:  # `module:attr` workflow refs resolve from the project dir
        sys.path.insert(0, os.getcwd())
    runner = _runner(args, log_level=None if args.verbose else "CRITICAL")
    record = runner.get_run(args.run_id)
    if record.status is WorkflowStatus.COMPLETED:
        runner.resume(record.run_id)  # raises NothingToResumeError, which says what to do instead
    result = _with_progress(runner.store, record, params, "",
                            lambda: runner.resume(record.run_id, params_override=params or None))
    dagster_run = f" (Dagster run {result.dagster_run_id})" if result.dagster_run_id else ""
    return _report_resume(result, dagster_run)


def _with_progress(store: CheckpointStore, record: Any, params: dict[str, Any], where: str,
                   resume: Callable[[], Any]) -> Any:
    """Run ``resume()`` while printing each step of the run as it starts and ends."""
    print(f"resuming {fmt.run_line(record)}{where}")
    if params:
        print(f"params override: {fmt.params_text(params)}")
    progress = _Progress(store, record.run_id, print)
    progress.start()
    try:
        return resume()
    finally:
        progress.finish()


def _report_resume(result: Any, dagster_run: str, options: str = "") -> int:
    if result.status is WorkflowStatus.FAILED:
        print(f"run {result.run_id} failed again at step {result.error_step}: "
              f"{fmt.one_line(result.error, 300)}{dagster_run}")
        print(f"fix the cause, then: {PROG} resume {result.run_id} {options}".rstrip())
        return 1
    steps = ", ".join(result.completed_steps) or "none"
    print(f"run {result.run_id} {result.status.value}{dagster_run}; steps run: {steps}")
    return 0


class _Progress:
    """Prints each step of a run as its row in ``core_workflow_steps`` changes (polls the store).

    Polling the store works the same for both executors and for runs that another process (the
    Dagster run worker) executes.
    """

    def __init__(self, store: CheckpointStore, run_id: str, emit: Callable[[str], None],
                 interval: float = POLL_SECONDS) -> None:
        self.store, self.run_id, self.emit, self.interval = store, run_id, emit, interval
        self._seen = {name: self._key(row) for name, row in store.step_rows(run_id).items()}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="spine-progress", daemon=True)

    @staticmethod
    def _key(row: StepRow) -> tuple[Any, ...]:
        return row.status, row.attempts, row.updated_at

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress is cosmetic; the resume reports errors
                pass

    def poll(self) -> None:
        with self._lock:
            rows = self.store.step_rows(self.run_id).values()
            changed = [r for r in rows if self._key(r) != self._seen.get(r.step_name)]
            for row in sorted(changed, key=lambda r: (r.updated_at is None, r.updated_at)):
                self._seen[row.step_name] = self._key(row)
                self.emit(fmt.step_progress(row))

    def finish(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.poll()
        except Exception:  # noqa: BLE001
            pass


def cmd_delete(args: argparse.Namespace) -> int:
    runner = _runner(args)
    record = runner.get_run(args.run_id)
    if record.status is WorkflowStatus.RUNNING:
        raise RunInProgressError(
            f"run {record.run_id} is running; deleting its checkpoints now would break it. Wait "
            f"until it ends (check with: {PROG} runs --status running).")
    count = len(runner.store.list_checkpoint_steps(record.run_id))
    if count == 0:
        print(f"run {record.run_id} has no checkpoints; nothing to delete")
        return 0
    if not args.yes:
        warning = (" It failed: without checkpoints a resume starts again from the first step."
                   if record.status is WorkflowStatus.FAILED else "")
        answer = _ask(f"Delete {count} checkpoint(s) of {fmt.run_line(record)}?{warning} [y/N] ")
        if answer not in ("y", "yes"):
            print("nothing deleted")
            return 1
    deleted = runner.delete_checkpoints(record.run_id)
    print(f"deleted {deleted} checkpoint(s) of run {record.run_id}")
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
    days = args.retention_days if args.retention_days is not None else DEFAULT_RETENTION_DAYS
    now = fmt.now_utc()
    cutoff = cutoff_for(days, now)
    count = cleanup_checkpoints(args.database_url, days, dry_run=args.dry_run,
                                batch_size=args.batch_size, now=now)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {count} checkpoint(s) written before {cutoff:%Y-%m-%d %H:%M:%S} UTC "
          f"({days:g} days); kept: those of running runs and of runs that failed since then")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
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
             f"${db.ENV_DATABASE_URL}, else sqlite:///<${db.ENV_HOME} or "
             f"~/.spine_dagster>/checkpoints.db)")
    parser = _Parser(prog=PROG, description="Inspect and repair spine runs: list runs and their "
                     "checkpoints, resume failed runs, delete and clean up checkpoints.")
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

    checkpoints = command("checkpoints", cmd_checkpoints, "List the checkpoints of a run.")
    checkpoints.add_argument("run_id", metavar="RUN_ID", help="spine run id (or a Dagster run id)")

    checkpoint = command("checkpoint", cmd_checkpoint, "Show the context saved by one step's "
                         "checkpoint: params, outputs, quality metrics, partition.")
    checkpoint.add_argument("run_id", metavar="RUN_ID")
    checkpoint.add_argument("step", metavar="STEP", help="the step's name")
    checkpoint.add_argument("--json", action="store_true",
                            help="print the stored checkpoint as JSON")

    resume = command("resume", cmd_resume, "Resume a failed run from its newest checkpoint, "
                     "here, as a Dagster re-execution; prints each step as it runs.")
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument("--param", action="append", type=parse_param, metavar="KEY=VALUE",
                        help="override a param (repeatable); the value is read as JSON when it "
                             "parses (120, true, [1,2]), else as text")
    resume.add_argument("--verbose", action="store_true", help="also print Dagster's event log")
    resume.add_argument("--webserver", metavar="URL",
                        help="resume through this Dagster deployment (e.g. http://HOST:3000): "
                             "its run launcher runs the re-execution, which joins the run's run "
                             "group in the UI; --database-url must be the deployment's")

    delete = command("delete", cmd_delete, "Delete the checkpoints of a run (asks first).")
    delete.add_argument("run_id", metavar="RUN_ID")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask")

    cleanup = command("cleanup", cmd_cleanup, "Delete checkpoints past the retention period, "
                      "except those of runs that failed within it; never those of running runs.")
    cleanup.add_argument("--retention-days", type=float, metavar="N",
                         help=f"keep checkpoints this many days (default {DEFAULT_RETENTION_DAYS})")
    cleanup.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
    cleanup.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                         help=f"rows per transaction (default {DEFAULT_BATCH_SIZE})")

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
    try:
        return args.handler(args)
    except SpineDagsterError as exc:
        sys.stdout.flush()
        print(f"error: {fmt.one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `spine-dagster runs | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the interpreter's flush quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
