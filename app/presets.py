"""Lessons: one idea of the theory each, with the runs that show it and an outcome the page can check.

An expectation compares a metric of one run's final ``summary`` with another run's or with a
number: ``left op right + plus``. Metric paths are dotted into the summary, e.g. ``val_acc`` or
``probe_start.grad_ratio`` (see ``deepscope.engine.telemetry.probe_summary``).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

LESSONS = Path(__file__).with_name("lessons.json")
# Each lesson: id, title, explanation, look_at, target (the chart, step, depth-strip statistic or histogram
# the page opens on), links [{phrase, chart, stat, hist, shared, layer, step | steps}] (phrases of look_at
# that set the exact view: the chart, its statistic or histogram kind, the layer annotated, and the step
# shown or the steps played), predict
# {question, choices, answer} (asked before the run, set beside the result after it), runs [{label,
# config}], expect [checks], counters [{check, run, override}]: for every check, a change to one run
# under which its claim is false (tests/test_presets.py runs them).
PRESETS: list[dict[str, Any]] = json.loads(LESSONS.read_text())
BY_ID = {p["id"]: p for p in PRESETS}
EVIDENCE = Path(__file__).with_name("lesson_evidence.json")


@functools.cache
def lesson_evidence() -> dict[str, Any]:
    """Per lesson, from the last sweep (``deepscope lessons --write``): per check, held n/N over seeds
    and thread counts, and the margin's median and minimum. Empty before a sweep has run."""
    return json.loads(EVIDENCE.read_text()) if EVIDENCE.exists() else {}


def metric(summary: dict[str, Any], path: str) -> float | None:
    value: Any = summary
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, int | float) else None


OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def check(expectation: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether one expectation held, given each run's summary by label. An expectation with ``finding``
    ({run, id}) holds when the doctor reported that finding for that run (``summary.findings``).
    Otherwise it compares two values: the two values compared
    (``left`` and the other run's value or the number as ``right``, with the runs' labels as
    ``left_run`` and ``right_run``), the threshold ``bound`` (right + ``plus``), and the ``margin``: how far past the threshold, in the direction the check wants (in decades,
    log10, for checks with ``"log": true``, whose values span orders of magnitude); below 0 it failed."""
    if "finding" in expectation:
        return doctor_check(expectation, summaries)
    left = metric(summaries.get(expectation["left"]["run"], {}), expectation["left"]["metric"])
    right_spec = expectation["right"]
    right = right_spec["value"] if "value" in right_spec else \
        metric(summaries.get(right_spec["run"], {}), right_spec["metric"])
    unit = "log10" if expectation.get("log") else "value"
    out = {"text": expectation["text"], "held": None, "left": left, "right": right, "bound": None,
           "margin": None, "margin_unit": unit, "op": expectation["op"], "plus": expectation.get("plus", 0.0),
           "left_run": expectation["left"]["run"], "right_run": right_spec.get("run"),
           "left_metric": expectation["left"]["metric"], "right_metric": right_spec.get("metric")}
    if left is None or right is None:
        return out
    bound = right + expectation.get("plus", 0.0)
    held = OPS[expectation["op"]](left, bound)
    if unit == "log10":
        margin = math.log10(max(left, 1e-300) / max(bound, 1e-300)) if left > 0 and bound > 0 else None
    else:
        margin = left - bound
    if margin is not None and expectation["op"] in ("<", "<="):
        margin = -margin + 0.0  # + 0.0: an exact tie reads 0, not -0
    return {**out, "held": held, "bound": bound, "margin": margin}


def doctor_check(expectation: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    want = expectation["finding"]
    summary = summaries.get(want["run"])
    found = [f["id"] for f in (summary or {}).get("findings", [])]
    return {"text": expectation["text"], "held": None if summary is None else want["id"] in found, "left": None,
            "right": None, "bound": None, "margin": None, "margin_unit": "finding", "finding": want["id"],
            "found": found}
