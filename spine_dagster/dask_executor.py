"""Spine steps on a Dask cluster: ``spine_dask_executor``, dagster-dask's executor made resumable.

Each op of the run becomes a Dask task, which runs the op in whichever worker process the
scheduler picks (``dagster_dask.executor.query_on_dask_worker``: the worker rebuilds the job from
its code pointer and reports to the run's Dagster instance). Ops hand the spine context to each
other through the checkpoint database, so every worker must import the workflow's module and
reach the same checkpoint database (``$SPINE_DAGSTER_DATABASE_URL`` in the worker's environment:
the URL Dagster stores has its password masked, see :mod:`spine_dagster.dburl`).

It differs from ``dagster_dask.dask_executor`` in three ways that spine runs need:

* **Re-execution works.** A resume is a Dagster re-execution of a subset of the ops; the stock
  executor looks up a Dask future for every upstream op, also for those that ran in the parent
  run, and fails with ``KeyError``. Here an op waits only for the upstream ops of the same plan;
  the others' contexts come from their checkpoints.
* **Concurrent runs stay apart.** The stock task key is ``<job>.<op>``, the same for every run of
  a job, and Dask runs one task per key: a second run of the job at the same time would be handed
  the first run's results (dagster-io/dagster#21418). Here the key includes the Dagster run id.
* **An op starts only after its upstream ops succeeded.** The stock executor submits every op at
  once, so the op after a failed one runs anyway, finds no checkpoint to start from, and buries
  the real failure under its own. Here it is skipped, as Dagster's own executors skip it. And as
  each op's result is released once read, a worker that dies loses only the op it was running
  (Dask would otherwise run finished ops again to rebuild results that were on it).

A worker that dies while it runs an op fails the run, with an error that names the op; resume the
run to continue after its last checkpoint. Start the scheduler with
``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0``: with Dask's default (3) the scheduler
quietly runs the op again on another worker, inside the same Dagster run, bypassing the step's
``ErrorPolicy`` (the executor logs a warning when the scheduler allows that). Dagster op retries
are off under Dask (as with dagster-dask): a step with ``ErrorPolicy.RETRY`` fails its run at its
first failure ("RetryRequested but retries are disabled"), and ``resume`` carries on from there.

Config (run config ``execution: {config: ...}``), as dagster-dask's: ``cluster: {existing:
{address: tcp://HOST:8786}}``, or ``local``, ``ssh``, ``yarn``, ``pbs``, ``moab``, ``sge``,
``lsf``, ``slurm``, ``oar``, ``kube`` with that cluster class's arguments. Without ``cluster``,
the scheduler at ``$DASK_SCHEDULER_ADDRESS`` (Dask's own setting ``scheduler-address``), else a
local cluster with one thread per worker. ``WorkflowRunner(executor="dask")`` and
``build_job(workflow, executor="dask")`` use it.

Example:
    >>> from spine_dagster import Step, StepResult, Workflow, build_job, spine_dask_executor
    >>> wf = Workflow("docs.dask", [Step.lambda_("a", lambda ctx, cfg: StepResult.ok())])
    >>> address = spine_dask_executor.configured(
    ...     {"cluster": {"existing": {"address": "tcp://dask-scheduler:8786"}}})
    >>> build_job(wf, executor=address).executor_def.name
    'dask'
    >>> build_job(wf, executor="dask").executor_def is spine_dask_executor
    True
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import threading
from typing import Any, Iterator, Mapping

import dask
import dask.distributed
from dagster import (
    DagsterEventType,
    DagsterExecutionInterruptedError,
    Field,
    Permissive,
    Selector,
    StringSource,
    executor,
    multiple_process_executor_requirements,
)
from dagster_dask.executor import (
    DaskExecutor,
    get_dask_resource_requirements,
    query_on_dask_worker,
)

from .errors import SpineDagsterError

# cluster type -> (module, class); the arguments are the cluster's config (dagster-dask's types)
CLUSTERS: dict[str, tuple[str, str]] = {
    "local": ("dask.distributed", "LocalCluster"), "ssh": ("dask.distributed", "SSHCluster"),
    "yarn": ("dask_yarn", "YarnCluster"), "pbs": ("dask_jobqueue", "PBSCluster"),
    "moab": ("dask_jobqueue", "MoabCluster"), "sge": ("dask_jobqueue", "SGECluster"),
    "lsf": ("dask_jobqueue", "LSFCluster"), "slurm": ("dask_jobqueue", "SLURMCluster"),
    "oar": ("dask_jobqueue", "OARCluster"), "kube": ("dask_kubernetes", "KubeCluster"),
}
ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"


class DaskWorkerError(SpineDagsterError):
    """A Dask worker died while it ran an op, or could not import the op's job."""


class SpineDaskExecutor(DaskExecutor):
    """Runs each op of a spine run as a Dask task; see the module docs."""

    def _cluster(self, job_name: str) -> Any:
        """What ``dask.distributed.Client`` connects to: an address, or a cluster object."""
        if self.cluster_type == "existing":
            return self.cluster_configuration["address"]
        module, name = CLUSTERS[self.cluster_type]
        return getattr(importlib.import_module(module), name)(**self.build_dict(job_name))

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
        """Submit each op of ``execution_plan`` to Dask once its upstream ops succeeded; yield
        the ops' events as they finish."""
        if not plan_context.instance.is_persistent:
            raise SpineDagsterError(
                "the Dask executor needs a persistent Dagster instance (the workers report to "
                "it); set DAGSTER_HOME to a directory with a dagster.yaml.")
        run_id = plan_context.dagster_run.run_id
        instance_ref = plan_context.instance.get_ref()
        with dask.distributed.Client(self._cluster(plan_context.job_name)) as client:
            _warn_if_rescheduling(client, plan_context.log)
            plan = _Plan(execution_plan)
            completed = dask.distributed.as_completed()
            step_of: dict[str, str] = {}  # Dask key -> step key

            def submit_ready() -> None:
                for step in plan.ready():
                    # The run id in the key: Dask runs one task per key, across runs.
                    key = f"{plan_context.job_name}.{run_id}.{step.key}"
                    step_of[key] = step.key
                    completed.add(client.submit(
                        query_on_dask_worker, [], plan_context.reconstructable_job,
                        plan_context.dagster_run, plan_context.run_config, [step.key],
                        instance_ref, execution_plan.known_state, key=key, pure=False,
                        resources=get_dask_resource_requirements(step.tags)))

            submit_ready()
            for future in _interruptibly(completed):
                step_key = step_of[future.key]
                events = _events(future, step_key, run_id)
                future.release()  # no worker keeps a result that a later op would need
                yield from events
                plan.finished(step_key, any(
                    event.event_type == DagsterEventType.STEP_SUCCESS for event in events))
                submit_ready()


class _Plan:
    """Which ops of the plan may start: those whose upstream ops *in this plan* succeeded.

    An op is submitted only then, so it never starts without its input (Dagster's own executors
    skip it too), and a worker keeps no result that a later op needs: a worker that dies loses
    only the op it was running. Upstream ops outside the plan (a re-execution) ran in the parent
    run; their contexts come from their checkpoints.
    """

    def __init__(self, execution_plan: Any) -> None:
        self.steps = [step for level in execution_plan.get_steps_to_execute_by_level()
                      for step in level]
        keys = {step.key for step in self.steps}
        self.upstream = {step.key: {key for step_input in step.step_inputs
                                    for key in step_input.dependency_keys if key in keys}
                         for step in self.steps}
        self.succeeded: set[str] = set()
        self.finished_steps: set[str] = set()  # succeeded, failed, or skipped
        self.started: set[str] = set()  # submitted, or skipped

    def ready(self) -> list[Any]:
        """The ops to submit now; skips (for good) those with an upstream op that failed."""
        ready = []
        for step in self.steps:  # in plan order: a skip reaches every op downstream at once
            upstream = self.upstream[step.key]
            if step.key in self.started or not upstream <= self.finished_steps:
                continue
            self.started.add(step.key)
            if upstream <= self.succeeded:
                ready.append(step)
            else:
                self.finished_steps.add(step.key)
        return ready

    def finished(self, step_key: str, success: bool) -> None:
        self.finished_steps.add(step_key)
        if success:
            self.succeeded.add(step_key)


def _interruptibly(items: Iterator[Any]) -> Iterator[Any]:
    """``items``, with SIGINT/SIGTERM raised as Dagster's execution interrupt while waiting for
    the next one (as dagster-dask does), so that a run can be terminated while it waits for Dask;
    not while the caller handles an item."""
    while True:
        with _interrupts_raised():
            item = next(items, _END)
        if item is _END:
            return
        yield item


_END = object()


@contextlib.contextmanager
def _interrupts_raised() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can handle signals
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise DagsterExecutionInterruptedError()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def _events(future: Any, step_key: str, run_id: str) -> list[Any]:
    """The op's Dagster events; a clear error when its worker died or could not import it."""
    if future.status != "error":
        return future.result()
    error = future.exception()
    if isinstance(error, dask.distributed.KilledWorker):
        raise DaskWorkerError(
            f"op {step_key!r} of Dagster run {run_id}: the Dask worker running it died "
            f"({error}). The steps before it kept their checkpoints.",
            hint="Resume the run (WorkflowRunner.resume, SpineDagsterClient.resume or "
                 "spine-dagster resume) to run it again from its last checkpoint.") from error
    if isinstance(error, ImportError):
        raise DaskWorkerError(
            f"op {step_key!r} of Dagster run {run_id}: a Dask worker could not import the job "
            f"({type(error).__name__}: {error}).",
            hint="Start the workers where they can import the workflow's module (its directory "
                 "on PYTHONPATH, or the same image as the code location).") from error
    return future.result()  # raises the op's own error


def _warn_if_rescheduling(client: Any, log: Any) -> None:
    try:
        allowed = client.run_on_scheduler(_allowed_failures)
    except Exception:  # noqa: BLE001 - a warning only; the run goes on
        return
    if allowed:
        log.warning(
            f"spine_dagster: the Dask scheduler reschedules a task whose worker died "
            f"(distributed.scheduler.allowed-failures={allowed}), so an op on a worker that dies "
            f"runs again inside this run. Start the scheduler with "
            f"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 to fail the run instead and "
            f"resume it from its checkpoints.")


def _allowed_failures(dask_scheduler: Any) -> int:
    return int(dask_scheduler.allowed_failures)


_CLUSTER_CONFIG = Selector({
    "existing": Field({"address": StringSource}, description="Connect to a running scheduler."),
    **{name: Field(Permissive(), is_required=False,
                   description=f"Start a {cls} with these arguments.")
       for name, (_, cls) in CLUSTERS.items()},
})


@executor(
    name="dask",
    requirements=multiple_process_executor_requirements(),
    config_schema={"cluster": Field(
        _CLUSTER_CONFIG, is_required=False,
        description="The Dask cluster. Default: the scheduler at $DASK_SCHEDULER_ADDRESS, else a "
                    "local cluster with one thread per worker.")},
)
def spine_dask_executor(init_context: Any) -> SpineDaskExecutor:
    """Each op of the run as a Dask task (see :mod:`spine_dagster.dask_executor`)."""
    return SpineDaskExecutor(*_cluster_choice(init_context.executor_config.get("cluster")))


def _cluster_choice(config: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    if config:
        ((kind, settings),) = config.items()
        return kind, dict(settings or {})
    address = os.environ.get(ADDRESS_ENV) or dask.config.get("scheduler-address", None)
    if address:
        return "existing", {"address": address}
    return "local", {}
