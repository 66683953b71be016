"""The run doctor: DeepScope says in words what is wrong with a run, and points at the evidence.

While a run trains it reads every capture and evaluation (``observe_capture``, ``observe_eval``) and,
when what it finds changes, emits a ``findings`` event; at the end ``final`` gives the list for the
run's summary (``summary.findings``). A run with nothing wrong gets one ``info`` finding, ``healthy``.
The rules are in ``rules.py``, their thresholds with the reasons in ``thresholds.py`` (docs/doctor.md).
It reads only events, so it reads the engine's runs and watched models alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from deepscope.engine.doctor.rules import INFO, RULES, Record, healthy
from deepscope.engine.events import EventType

FINDING_IDS = ("vanishing_gradients", "exploding_gradients", "dead_units", "saturation", "symmetry",
               "signal_shrinks", "signal_grows", "diverged", "overfitting", "bn_eval_gap", "stalled", "lr_too_high",
               "healthy")
SEVERITIES = ("problem", "warning", "info")


def diagnose(record: Record) -> list[dict[str, Any]]:
    """Every finding the rules make of a record, worst first; ``healthy`` when there is none."""
    found = [f for rule in RULES for f in rule(record)]
    order = {s: i for i, s in enumerate(SEVERITIES)}
    found.sort(key=lambda f: order[f["severity"]])
    return found or [healthy(record)]


class Doctor:
    """Reads one run as it trains. ``emit`` receives a ``findings`` event whenever the ids found change
    (called from the training thread or the summary thread; the doctor serialises itself)."""

    def __init__(self, classes: int, emit: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.record = Record(classes=classes)
        self.emit = emit
        self._lock = threading.Lock()
        self._said: tuple[str, ...] = ()

    def observe_capture(self, event: dict[str, Any]) -> None:
        # what the rules read, without the histograms: the record lives as long as the run, and keeping
        # each event whole made it the run's largest set of long-lived objects (each full garbage
        # collection walks them)
        kept = {"step": event["step"], "layers": [{"name": layer["name"], "kind": layer["kind"], "stats": layer["stats"]}
                                                  for layer in event["layers"]]}
        if "theory_preact_std" in event:
            kept["theory_preact_std"] = event["theory_preact_std"]
        with self._lock:
            self.record.captures.append(kept)
            if event["step"] == 0:
                self._update(event["step"])

    def observe_eval(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.record.evals.append(event)
            self._update(event.get("step"))

    def final(self, status: str, diverged_step: int | None = None, nonfinite_layer: str | None = None) -> list[dict]:
        with self._lock:
            self.record.status, self.record.diverged_step = status, diverged_step
            self.record.nonfinite_layer = nonfinite_layer
            return diagnose(self.record)

    def _update(self, step: int | None) -> None:
        found = diagnose(self.record)
        ids = tuple(f["id"] for f in found if f["severity"] != INFO)
        if ids != self._said and self.emit is not None:
            self._said = ids
            self.emit({"type": EventType.FINDINGS.value, "step": step, "findings": found})


__all__ = ["FINDING_IDS", "Doctor", "Record", "diagnose"]
