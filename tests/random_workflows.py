"""Random workflows of data steps, every option drawn at random: for round-trip properties."""

from __future__ import annotations

import random

from spine_dagster import (
    AutoResume,
    ErrorPolicy,
    QualityThresholds,
    RetryPolicy,
    Step,
    Workflow,
)


def random_workflow(rng: random.Random, name: str, depth: int = 0) -> Workflow:
    """A random workflow of data steps, every option drawn at random."""
    steps: list[Step] = []
    count = rng.randint(1, 5)
    names = [f"s{i}" for i in range(count)]
    for index, step_name in enumerate(names):
        options = {
            "on_error": rng.choice(list(ErrorPolicy)),
            "retry_policy": rng.choice([None, RetryPolicy(max_attempts=rng.randint(1, 9),
                                                          initial_delay_seconds=rng.random())]),
            "checkpoint": rng.choice([None, True, False]),
            "quality_thresholds": rng.choice([None, QualityThresholds(
                min_valid_rate=round(rng.random(), 3), max_record_count=rng.randint(0, 99))]),
            "pool": rng.choice([None, "db", "api"]),
            "fuse": rng.choice([None, True, False]),
            "produces": rng.choice([None, "a/b", f"t_{index}"]),
            "description": rng.choice([None, "", "some text"]),
        }
        later = names[index + 1:]
        kinds = ["pipeline", "wait", *(["choice"] if later else []),
                 *(["map"] if depth < 2 else [])]
        kind = rng.choice(kinds)
        if kind == "pipeline":
            config = rng.choice([None, {"k": rng.randint(0, 9)}, {"n": {"deep": [1, "x"]}}])
            steps.append(Step.pipeline(step_name, f"p.{step_name}", config, **options))
        elif kind == "wait":
            steps.append(Step.wait(step_name, rng.choice([0, 1.5, 60]), **options))
        elif kind == "choice":
            condition = rng.choice([{"param": "x", "gt": 3}, {"all": [{"param": "y", "in": [1, 2]},
                                                                      {"not": {"param": "z",
                                                                               "truthy": True}}]},
                                    {"output": names[0], "exists": False}])
            steps.append(Step.choice(step_name, condition, rng.choice(later),
                                     rng.choice([None, *later]), **options))
        else:
            inner = random_workflow(rng, f"{name}.inner{index}", depth + 1)
            steps.append(Step.map(step_name, "items", inner, rng.randint(1, 8),
                                  rng.choice(["item", "file"]), **options))
    return Workflow(name, steps, domain=rng.choice(["", "d"]), version=rng.randint(1, 4),
                    defaults=rng.choice([None, {"x": 1}]), tags=rng.choice([None, ["t"]]),
                    checkpoint_strategy=rng.choice([None, "every_step", "key_steps"]),
                    auto_resume=rng.choice([None, True, 2, AutoResume(3, ("TIMEOUT",))]),
                    fuse=rng.choice([True, False]), owners=rng.choice([None, ["me"]]))
