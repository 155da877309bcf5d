"""Large outputs: everything persisted is JSON, values that cannot be stored fail their step with
the path of the value, special types round-trip, and a checkpoint has a size limit.

The first tests use the serializer and ``run_step`` directly; the others run real Dagster runs on
both backends.
"""

from __future__ import annotations

import json
import re
from datetime import date, timezone
from enum import Enum
from types import MappingProxyType

import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, instance_for_test
from pydantic import BaseModel

import workflows_serialization as wfs
from spine_dagster.errors import CheckpointCorruptError
from spine_dagster import (
    CheckpointSerializationError,
    QualityMetrics,
    SpineCheckpointIOManager,
    Step,
    StepResult,
    WorkflowContext,
    WorkflowRunner,
)
from spine_dagster.execution import run_step
from spine_dagster.io_manager import DEFAULT_MAX_CHECKPOINT_BYTES
from spine_dagster.serialization import (EncodedOutputs, check_json, decode, dumps,
                                         find_unserializable, loads)


@pytest.fixture(scope="module")
def instance():
    """One real, persistent Dagster instance for the module (run ids never collide)."""
    with instance_for_test() as inst:
        yield inst


# -- the serializer ---------------------------------------------------------------------------
def test_special_types_round_trip_in_their_documented_form():
    text = dumps(wfs.TYPED_OUTPUT)
    assert loads(text) == wfs.TYPED_OUTPUT
    back = loads(text)
    assert type(back["tier"]) is wfs.Tier and type(back["quote"]) is wfs.Quote
    assert back["loaded_at"].tzinfo == timezone.utc and back["naive"].tzinfo is None
    raw = json.loads(text)
    assert raw["price"] == {"__spine_type__": "decimal", "value": "10.50"}
    assert raw["as_of"] == {"__spine_type__": "date", "value": "2026-01-10"}
    assert raw["loaded_at"] == {"__spine_type__": "datetime",
                                "value": "2026-01-10T12:00:05.120000+00:00"}
    assert raw["cutoff"] == {"__spine_type__": "time", "value": "17:30:00"}
    assert raw["batch"] == {"__spine_type__": "uuid",
                            "value": "12345678-1234-5678-1234-567812345678"}
    assert raw["tier"] == {"__spine_type__": "enum", "class": "workflows_serialization:Tier",
                           "value": "gold"}
    assert raw["quote"] == {"__spine_type__": "pydantic",
                            "class": "workflows_serialization:Quote",
                            "value": {"symbol": "ACME", "price": "1.10", "as_of": "2026-01-09"}}
    assert loads(dumps({"pair": ("a", 1)})) == {"pair": ["a", 1]}, "tuples come back as lists"
    assert loads(dumps({"none": None, "list": [None]})) == {"none": None, "list": [None]}
    assert loads(dumps({"p": MappingProxyType({"a": 1})})) == {"p": {"a": 1}}, "any mapping"


def test_values_that_cannot_round_trip_are_refused_with_their_path():
    class Local(Enum):
        A = 1

    class LocalModel(BaseModel):
        x: int = 1

    path = "outputs.fetch"
    cases = {
        "set": ({"records": [1, 2, 3, {4}]},
                "outputs.fetch.records[3]: set is not JSON-serializable"),
        "bytes": ({"raw": b"x"}, "outputs.fetch.raw: bytes is not JSON-serializable"),
        "nan": ({"v": float("nan")}, "outputs.fetch.v: nan is not valid JSON"),
        "inf": ({"v": [float("inf")]}, "outputs.fetch.v[0]: inf is not valid JSON"),
        "object": ({"o": object()}, "outputs.fetch.o: object is not JSON-serializable"),
        "int key": ({"by_id": {1: "a"}}, "outputs.fetch.by_id: dict key 1 is not a string (int)"),
        "tuple key": ({"m": {(1, 2): "a"}}, "outputs.fetch.m: dict key (1, 2) is not a string"),
        "reserved": ({"x": {"__spine_type__": "date", "value": "2026-01-10"}},
                     "outputs.fetch.x: the dict key '__spine_type__' is reserved"),
        "local enum": ({"e": Local.A}, "outputs.fetch.e: Local is defined inside a function"),
        "local model": ({"m": LocalModel()}, "outputs.fetch.m: LocalModel is defined inside"),
        "after an enum": ({"t": wfs.Tier.GOLD, "s": [{1}]}, "outputs.fetch.s[0]: set is not"),
    }
    for name, (value, expected) in cases.items():
        problem = find_unserializable(value, path)
        assert problem is not None and problem.startswith(expected), (name, problem)
    with pytest.raises(CheckpointSerializationError, match=r"^params\.when: dict key 1 is not"):
        check_json({"when": {1: "a"}}, "params")


def test_nan_and_infinity_are_refused_when_written_and_when_read():
    """JSON has no NaN or infinity: the writer refuses them with the path (it used to write
    infinity as a tagged float that every reader then refused), and the readers refuse the raw
    constants and numbers too large for a float, which Python's json would read as nan and inf."""
    for value in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(CheckpointSerializationError,
                           match=rf"^the output of step 'fetch' cannot be stored as JSON: "
                                 rf"outputs\.fetch\.v\[1\]: {value!r} is not valid JSON .*return "
                                 rf"None or a finite number"):
            EncodedOutputs().text("fetch", {"v": [1.0, value]})
        with pytest.raises(CheckpointSerializationError, match=rf"x: {value!r} is not valid JSON"):
            dumps({"x": value})
    for literal, read_as in (("1e999", "inf"), ("-1e999", "-inf"), ("1.5E+400", "inf"),
                             ("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")):
        text = f'{{"a": [1, {{"b": 2.5, "c": {literal}}}], "d": NaN}}'
        with pytest.raises(CheckpointCorruptError) as info:
            loads(text, where="row 7", fix="Repair row 7.")
        assert str(info.value).startswith(
            f"row 7, at a[1].c: the stored number {literal} (read as {read_as}) is not a finite "
            f"number"), str(info.value)
        assert str(info.value).endswith("the row was edited or damaged. Repair row 7.")
    with pytest.raises(CheckpointCorruptError, match=r"at x\.y: nan is not a finite number"):
        decode({"x": {"y": float("nan")}}, where="the run config")  # already-parsed values too
    with pytest.raises(CheckpointCorruptError, match="'inf' is not a valid float"):
        loads('{"v": {"__spine_type__": "float", "value": "inf"}}')
    assert loads('{"v": 1.7976931348623157e308, "i": 1}') == {"v": 1.7976931348623157e308, "i": 1}
    assert loads(f'{{"big": 1{"0" * 400}}}') == {"big": 10 ** 400}, "an integer stays exact"


def test_every_corrupt_row_error_says_how_to_repair_it():
    with pytest.raises(CheckpointCorruptError, match=r"not valid JSON \(.*\)\. Inspect it "
                                                     r"\(spine-dagster checkpoint RUN STEP --json\)"):
        loads('{"run_id": ')
    with pytest.raises(CheckpointCorruptError, match=r"not UTF-8 .*\. Repair it\.$"):
        loads(b"\xff", fix="Repair it.")


def test_a_stored_class_that_cannot_be_imported_is_a_clear_error():
    text = '{"x": {"__spine_type__": "enum", "class": "no_such_module:Color", "value": 1}}'
    with pytest.raises(CheckpointCorruptError, match="class no_such_module:Color, but module "
                                                     "'no_such_module' is not imported"):
        loads(text)


def test_run_step_fails_a_step_whose_values_cannot_be_stored():
    ctx = WorkflowContext.create("serialization.unit")
    results = {
        "outputs.fetch.records[3]: set is not JSON-serializable":
            StepResult.ok(output={"records": [1, 2, 3, {4}]}),
        "params.when: dict key 1 is not a string":
            StepResult.ok(context_updates={"when": {1: "a"}}),
        "quality_metrics.fetch.custom_metrics.ids: set is not JSON-serializable":
            StepResult.ok(quality=QualityMetrics(custom_metrics={"ids": {1}})),
    }
    for expected, result in results.items():
        outcome = run_step(Step.lambda_("fetch", lambda c, cfg, r=result: r), ctx)
        assert outcome.failed and isinstance(outcome.exception, CheckpointSerializationError)
        assert "step 'fetch' returned a value that cannot be stored as JSON" in outcome.error
        assert expected in outcome.error, outcome.error


# -- through real runs, on both backends ------------------------------------------------------
def test_unserializable_output_fails_the_step_and_writes_nothing(database_url, instance):
    runner = WorkflowRunner(database_url=database_url, instance=instance)
    failed = runner.execute(wfs.UNSERIALIZABLE)
    assert (failed.status, failed.error_step) == ("failed", "fetch")
    assert "step 'fetch'" in failed.error
    assert "outputs.fetch.records[3]: set is not JSON-serializable" in failed.error
    assert failed.error_category == "INTERNAL"
    before = runner.list_checkpoints(failed.run_id)
    assert [c.step_name for c in before] == ["first"]
    assert runner.store.step_rows(failed.run_id)["fetch"].status == "failed"
    events = instance.get_records_for_run(failed.dagster_run_id,
                                          of_type=DagsterEventType.STEP_FAILURE).records
    assert "outputs.fetch.records[3]" in str(events[0].event_log_entry.dagster_event.
                                             event_specific_data.error.to_string())

    resumed = runner.resume(failed.run_id, params_override={"good": True})
    assert resumed.status == "completed" and resumed.completed_steps == ["fetch", "after"]
    after = {c.step_name: c for c in runner.list_checkpoints(failed.run_id)}
    assert (after["first"].created_at, after["first"].context_snapshot) == (
        before[0].created_at, before[0].context_snapshot), "the earlier checkpoint is untouched"
    assert after["fetch"].step_outputs["fetch"] == {"records": [1, 2, 3, [4]]}


def test_special_types_round_trip_through_checkpoints_and_resume(database_url, instance):
    runner = WorkflowRunner(database_url=database_url, instance=instance)
    failed = runner.execute(wfs.TYPED, params={"fail_check": True, "since": date(2026, 1, 1)},
                            partition={"day": date(2026, 1, 10)})
    assert failed.error_step == "check"
    checkpoint = runner.get_checkpoint(failed.run_id, "produce")
    # the first step got the run's own params and partition back as a date, too
    assert (checkpoint.context.params["since_type"], checkpoint.context.params["day_type"]) == (
        "date", "date")
    assert runner.get_run(failed.run_id).params["since"] == date(2026, 1, 1)
    assert checkpoint.step_outputs["produce"] == wfs.TYPED_OUTPUT
    assert checkpoint.context.params["as_of"] == date(2026, 1, 10)
    assert checkpoint.context.partition == {"day": date(2026, 1, 10)}

    # the resumed step gets its context from the checkpoint (JSON), not from memory
    resumed = runner.resume(failed.run_id, params_override={"fail_check": False})
    assert resumed.status == "completed", resumed.error
    seen = resumed.context.get_output("check")
    assert seen["types"] == {"as_of": "date", "loaded_at": "datetime", "naive": "datetime",
                             "cutoff": "time", "price": "Decimal", "batch": "UUID",
                             "tier": "Tier", "quote": "Quote", "nested": "list"}
    assert all(seen["equal"].values()), seen["equal"]
    assert (seen["as_of_param"], seen["partition_day"], seen["quality"]) == ("date", "date", True)

    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT context_snapshot FROM core_workflow_checkpoints "
                                   "WHERE step_name = 'produce'")).scalar_one()
    engine.dispose()
    raw = json.loads(raw) if isinstance(raw, str) else raw
    assert raw["outputs"]["produce"]["price"] == {"__spine_type__": "decimal", "value": "10.50"}


def test_params_that_cannot_round_trip_are_refused_before_anything_is_stored(database_url,
                                                                              instance):
    runner = WorkflowRunner(database_url=database_url, instance=instance)
    with pytest.raises(CheckpointSerializationError, match=r"params\.by_id: dict key 1 is not"):
        runner.execute(wfs.UNSERIALIZABLE, params={"by_id": {1: "a"}})
    with pytest.raises(CheckpointSerializationError, match=r"partition\.regions: set is not"):
        runner.execute(wfs.UNSERIALIZABLE, partition={"regions": {"eu"}})
    assert runner.store.list_runs() == []
    none = runner.execute(wfs.UNSERIALIZABLE, params={"good": True, "cursor": None})
    assert none.status == "completed" and none.context.params["cursor"] is None
    # special values in params also go into a continued run's config (was: Dagster crashed)
    again = runner.execute(wfs.UNSERIALIZABLE, run_id=none.run_id, start_from="after",
                           params={"since": date(2026, 1, 1)})
    assert again.status == "completed" and again.completed_steps == ["after"]


def test_checkpoint_size_limit_and_size_metadata(database_url, instance):
    assert SpineCheckpointIOManager().max_checkpoint_bytes == DEFAULT_MAX_CHECKPOINT_BYTES
    assert DEFAULT_MAX_CHECKPOINT_BYTES == 16 * 1024 * 1024
    runner = WorkflowRunner(database_url=database_url, instance=instance,
                            max_checkpoint_bytes=4000)
    failed = runner.execute(wfs.BIG, params={"size": 10_000})
    assert (failed.status, failed.error_step) == ("failed", "big")
    size = int(re.search(r"is ([\d,]+) bytes", failed.error).group(1).replace(",", ""))
    assert size > 10_000
    for part in ("the checkpoint of step 'big'", "over the limit of 4,000 bytes",
                 "max_checkpoint_bytes", "return a reference to it"):
        assert part in failed.error
    assert [c.step_name for c in runner.list_checkpoints(failed.run_id)] == ["small"]

    resumed = runner.resume(failed.run_id, params_override={"size": 100})
    assert resumed.status == "completed"
    stored = {c.step_name: c.size_bytes for c in runner.list_checkpoints(failed.run_id)}
    shown = {}
    for dagster_run_id in resumed.dagster_run_ids:
        for record in instance.get_records_for_run(
                dagster_run_id, of_type=DagsterEventType.HANDLED_OUTPUT).records:
            metadata = record.event_log_entry.dagster_event.event_specific_data.metadata
            shown[metadata["spine/checkpoint"].value] = metadata["spine/checkpoint_bytes"].value
    assert shown == stored and set(stored) == {"small", "big", "after"}
    assert all(0 < size < 4000 for size in stored.values())


def test_snapshots_encode_each_output_once_and_match_a_plain_encoding():
    from datetime import date

    from spine_dagster.serialization import EncodedOutputs, dumps_snapshot, loads

    first = {"records": [{"id": i, "day": date(2026, 1, 10)} for i in range(3)]}
    cache = EncodedOutputs()
    one = {"run_id": "r", "params": {"a": 1}, "outputs": {"s1": first}, "metadata": {}}
    two = {**one, "outputs": {"s1": first, "s2": {"n": 2}}}

    assert loads(dumps_snapshot(one, cache)) == loads(dumps(one))
    encoded_first = cache.text("s1", first)
    assert loads(dumps_snapshot(two, cache)) == loads(dumps(two))
    assert cache.text("s1", first) is encoded_first  # not encoded again
    replaced = {"records": []}  # a new object under the same step (a re-run): encoded anew
    assert loads(dumps_snapshot({**one, "outputs": {"s1": replaced}}, cache))["outputs"] == {
        "s1": {"records": []}}
    assert loads(dumps_snapshot({"outputs": {}}, cache)) == {"outputs": {}}
