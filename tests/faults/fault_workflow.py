"""The fault suite's workflow: 20 steps, each recording every execution, some killing their process.

``FAULTS`` is a module-level workflow, so that a resume from another process imports it. Each step

* appends ``"<pid> <spine run id> <step> <attempt> <time>"`` to the file ``$FAULT_LOG`` when its
  body starts (``O_APPEND``: one ``write`` per line), so that the test counts executions;
* computes a deterministic output chained on the previous step's (``acc``): a resume that loaded a
  wrong or stale context ends with another final context;
* sleeps ``STEP_SECONDS`` (time for a random kill to land inside a step body).

Step ``BIG_STEP`` returns ``BIG_BYTES`` of text, so the checkpoints from there on are large and
slow to write (kills land inside long writes).

``PLAN`` (set by the zygote in a child before it runs the workflow) makes the child kill itself
with ``SIGKILL`` at a chosen point of step ``PLAN["step"]``:

* ``in_step``: in the middle of the step body (after its execution was recorded);
* ``after_body``: ``PLAN["delay"]`` seconds after the body returned (a timer thread: anywhere in
  Dagster's and spine_dagster's handling of the output, the checkpoint write included);
* ``write_stmt``: when the checkpoint write of the step runs its ``PLAN["nth"]``-th statement
  (SQLite: the statement trace of the store's connections; the kill happens before that statement
  runs: between the ``INSERT`` and the ``COMMIT``, or right before the ``COMMIT``);
* ``write_timer``: ``PLAN["delay"]`` seconds (sub-millisecond offsets) after the checkpoint write
  of the step started: on PostgreSQL, while the one-message write travels, runs and commits.

Every self-kill first appends ``"KILL <time> <how>"`` to ``$FAULT_LOG``, so the test knows when it
happened.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from typing import Any

from spine_dagster import Step, Workflow

STEPS = 20
STEP_SECONDS = 0.01
BIG_STEP = 10
BIG_BYTES = 512 * 1024
PLAN: dict[str, Any] | None = None
_ARMED: dict[str, Any] = {}  # the write trigger, armed when the planned step's body returns
_CHECKPOINT_TABLE = "core_workflow_checkpoints"
WRITING: list[bool] = [False]  # a checkpoint write is on its way (PostgreSQL: set by the cursor)


def _append(line: str) -> None:
    fd = os.open(os.environ["FAULT_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def kill_now(how: str) -> None:
    """SIGKILL this process, after noting the time."""
    _append(f"KILL {time.time():.6f} {how}{' in-write' if WRITING[0] else ''}")
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # never reached: SIGKILL cannot be caught


def kill_after(delay: float, how: str) -> None:
    """SIGKILL this process ``delay`` seconds from now, from a timer thread."""
    threading.Thread(target=lambda: (time.sleep(delay), kill_now(how)), daemon=True).start()


def is_checkpoint_write(sql: str | bytes) -> bool:
    return (_CHECKPOINT_TABLE.encode() if isinstance(sql, bytes) else _CHECKPOINT_TABLE) in sql


def statement_started(sql: str | bytes) -> None:
    """Called before each statement the store's connections run (see ``zygote.instrument``)."""
    armed = _ARMED.get("write")
    if armed is None:
        return
    if armed["seen"] is None:
        if not is_checkpoint_write(sql):
            return
        armed["seen"] = 0
    if armed["mode"] == "write_timer":
        _ARMED.clear()
        kill_after(armed["delay"], f"write_timer {armed['step']} +{armed['delay'] * 1e6:.0f}us")
        return
    if armed["seen"] == armed["nth"] or str(sql).strip().upper().startswith("COMMIT"):
        kill_now(f"write_stmt {armed['step']} #{armed['seen']} {sql.split()[0]}")
    armed["seen"] += 1


def _output(index: int, previous: str) -> dict[str, Any]:
    acc = hashlib.sha256(f"{previous}:{index}".encode()).hexdigest()[:16]
    output: dict[str, Any] = {"i": index, "acc": acc}
    if index == BIG_STEP:
        output["blob"] = (acc * (BIG_BYTES // len(acc) + 1))[:BIG_BYTES]
    return output


def _make_step(index: int):
    name = f"s{index:02d}"

    def body(ctx, config):
        _append(f"{os.getpid()} {ctx.run_id} {name} {ctx.attempt} {time.time():.6f}")
        plan = PLAN if PLAN and PLAN.get("step") == name else None
        time.sleep(STEP_SECONDS / 2)
        if plan and plan["mode"] == "in_step":
            kill_now(f"in_step {name}")
        previous = ctx.get_output(f"s{index - 1:02d}", "acc") if index > 1 else ctx.params["seed"]
        output = _output(index, previous)
        time.sleep(STEP_SECONDS / 2)
        if plan and plan["mode"] == "after_body":
            kill_after(plan["delay"], f"after_body {name} +{plan['delay'] * 1e3:.2f}ms")
        elif plan and plan["mode"] in ("write_stmt", "write_timer"):
            _ARMED["write"] = {**plan, "seen": None}
        return output

    body.__name__ = f"step_{name}"
    return body


FAULTS = Workflow("faults.twenty", [Step.lambda_(f"s{i:02d}", _make_step(i))
                                    for i in range(1, STEPS + 1)],
                  defaults={"seed": "spine"})


def expected_outputs(seed: str = "spine") -> dict[str, dict[str, Any]]:
    """The outputs of an uninterrupted run, computed without running anything."""
    outputs, previous = {}, seed
    for index in range(1, STEPS + 1):
        outputs[f"s{index:02d}"] = _output(index, previous)
        previous = outputs[f"s{index:02d}"]["acc"]
    return outputs
