"""A time axis for every run: at the defaults, at least min(50, steps) captures spread evenly over the
run (no gap over three times the even spacing), step 0 and the last step included, and a bounded number
however long the run (engine/telemetry/schedule.py)."""

import pytest

from deepscope.app.presets import PRESETS
from deepscope.engine.config import RunConfig
from deepscope.engine.datasets import load_dataset
from deepscope.engine.loop import steps_per_epoch
from deepscope.engine.telemetry.schedule import KEEP, CaptureSchedule
from tests.conftest import layers_events

LESSON_RUNS = [(p["id"], r["label"], r["config"]) for p in PRESETS for r in p["runs"]]


def captured(total: int, **telemetry) -> list[int]:
    t = {"every": 10, "max_per_second": 10.0, "budget": 0.03, **telemetry}
    schedule = CaptureSchedule(total, t["every"], t["max_per_second"], t["budget"])
    return [step for step in range(total) if schedule.due(step)]


def assert_dense(steps: list[int], total: int) -> None:
    assert steps[0] == 0 and steps[-1] == total - 1
    assert len(steps) >= min(50, total)
    even = (total - 1) / (min(50, total) - 1) if total > 1 else 1
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(gaps, default=0) <= 3 * even, (max(gaps), even)


@pytest.mark.parametrize("lesson, label, config", LESSON_RUNS, ids=[f"{lesson}:{label}" for lesson, label, _ in LESSON_RUNS])
def test_every_lesson_run_at_the_defaults_is_captured_densely(lesson, label, config, tmp_path):
    cfg = RunConfig.model_validate(config)
    n_train = len(load_dataset(cfg.data, cfg.train.seed, tmp_path).y_train)
    total = steps_per_epoch(n_train, cfg.train.batch_size) * cfg.train.epochs
    assert_dense(captured(total), total)


@pytest.mark.parametrize("lesson", ["batchnorm-test-time", "dying-relu"])
def test_a_lesson_run_trained_at_the_defaults_carries_its_captures(lesson, run_engine):
    config = next(c for i, _, c in LESSON_RUNS if i == lesson)
    result, events = run_engine(config)
    total = events[0]["total_steps"]
    steps = [e["step"] for e in layers_events(events)]
    assert_dense(steps, total)
    assert result["summary"]["captures"] == len(steps)


@pytest.mark.parametrize("total", [1, 2, 49, 95, 1520, 20_000, 1_000_000])
def test_runs_of_any_length_keep_a_bounded_evenly_spread_set(total):
    steps = captured(total, budget=0, max_per_second=0)  # no budget: as many extras as the bound allows
    assert_dense(steps, total)
    assert len(steps) <= KEEP + 50
    if total >= 20_000:  # the extras are a regular grid too: no stretch of the run is left bare
        gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
        assert max(gaps) <= 2 * total / KEEP


def test_a_run_of_unknown_length_stays_spread_and_grows_with_the_log_of_its_length():
    schedule = CaptureSchedule(None, 1, 0.0, 0.0)
    steps = [s for s in range(200_000) if schedule.due(s)]
    assert steps[0] == 0 and len(steps) < KEEP * 5
    assert steps[-1] > 150_000  # still watched late in the run
    early, late = [s for s in steps if s < 1000], [s for s in steps if s > 100_000]
    assert early and late


def test_telemetry_off_takes_no_capture():
    assert captured(500, every=0) == []
