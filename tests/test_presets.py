"""Every lesson's expected outcome holds when its runs are trained: the lessons teach what is true."""

import pytest

from deepscope.app.presets import PRESETS, check
from deepscope.engine import RunConfig, train


@pytest.mark.parametrize("preset", PRESETS, ids=[p["id"] for p in PRESETS])
def test_lesson_outcome_holds(preset, tmp_path):
    summaries = {}
    for run in preset["runs"]:
        RunConfig.model_validate(run["config"])
        result = train(run["config"], lambda e: None, data_dir=tmp_path, background_telemetry=False)
        assert result["status"] == "completed", result
        summaries[run["label"]] = result["summary"]
    for expectation in preset["expect"]:
        outcome = check(expectation, summaries)
        assert outcome["held"] is True, (preset["id"], outcome)


def test_check_reports_numbers_and_missing_metrics():
    exp = {"text": "a beats b", "left": {"run": "a", "metric": "val_acc"}, "op": ">",
           "right": {"run": "b", "metric": "val_acc"}, "plus": 0.1}
    assert check(exp, {"a": {"val_acc": 0.9}, "b": {"val_acc": 0.7}}) == {
        "text": "a beats b", "held": True, "left": 0.9, "right": pytest.approx(0.8)}
    assert check(exp, {"a": {"val_acc": 0.75}, "b": {"val_acc": 0.7}})["held"] is False
    assert check(exp, {"a": {}, "b": {"val_acc": 0.7}})["held"] is None
