"""Watched runs' events, from outside (``deepscope.watch``; docs/api.md, "Watched runs"): every event is
validated as strictly as the engine's own would be, bounded in size, and re-encoded from its validated
form before it is stored, so nothing a client adds rides along. Layer names are user text: the page
shows them as text.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from deepscope.engine.doctor import FINDING_IDS, SEVERITIES
from deepscope.engine.events import EventType, Status
from deepscope.engine.telemetry.event import HIST_NAMES, STAT_NAMES

MAX_BODY_BYTES = 8 * 2**20     # one append request
MAX_EVENTS = 500               # events in one request
MAX_LAYERS = 1000              # layers in one capture
MAX_BINS = 128                 # the config's own bound on bins
MAX_SUMMARY_BYTES = 64 * 2**10
RATE_WINDOW_S = 10.0
RATE_BYTES = 32 * 2**20        # per client and window: a 100-layer capture every step for a while
RATE_REQUESTS = 200
Text = Annotated[str, Field(max_length=300)]
Name = Annotated[str, Field(max_length=200)]
Number = float | None
Step = Annotated[int, Field(ge=0, le=2**40)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)
    seq: Annotated[int, Field(ge=0, le=2**40)]
    t: float | None = None
    ts: float | None = None


class Hist(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lo: float
    hi: float
    counts: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_BINS)]
    step: Step


Stats = dict[Literal[STAT_NAMES], Number]  # type: ignore[valid-type]


class Layer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    kind: Literal["linear", "conv", "output"]
    stats: Stats
    hist: dict[Literal[HIST_NAMES], Hist | None]  # type: ignore[valid-type]
    weight_step: Step | None = None
    units_step: Step | None = None


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Literal[FINDING_IDS]  # type: ignore[valid-type]
    severity: Literal[SEVERITIES]  # type: ignore[valid-type]
    title: Text
    detail: Annotated[str, Field(max_length=2000)]
    layers: Annotated[list[Name], Field(max_length=MAX_LAYERS)]
    step: Step | None
    evidence: dict[Literal["chart", "stat", "layer", "step", "hist"], str | int | None]
    lesson: Name | None
    try_: dict[str, Any] | None = Field(None, alias="try")


Findings = Annotated[list[Finding], Field(max_length=30)]


class StatusEvent(_Event):
    type: Literal["status"]
    status: Literal[tuple(s.value for s in Status if s != Status.QUEUED)]  # type: ignore[valid-type]
    message: Text = ""
    step: Step | None = None
    summary: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    total_steps: Step | None = None
    n_params: Step | None = None
    device: Annotated[str, Field(max_length=20)] | None = None
    layers: Annotated[list[Name], Field(max_length=MAX_LAYERS)] | None = None


class StepEvent(_Event):
    type: Literal["step"]
    step: Step
    epoch: Step = 0
    loss: Number = None
    acc: Number = None
    progress: Annotated[float, Field(ge=0, le=1)] | None = None


class EvalEvent(_Event):
    type: Literal["eval"]
    step: Step
    epoch: Step = 0
    train_loss: Number = None
    train_acc: Number = None
    val_loss: Number = None
    val_acc: Number = None
    val_acc_batch_stats: Number = None


class LayersEvent(_Event):
    type: Literal["layers"]
    step: Step
    layers: Annotated[list[Layer], Field(min_length=1, max_length=MAX_LAYERS)]
    theory_preact_std: Annotated[list[Number], Field(max_length=MAX_LAYERS)] | None = None


class FindingsEvent(_Event):
    type: Literal["findings"]
    step: Step | None = None
    findings: Findings


# A watched run sends no boundary and no samples: those are drawn by the engine from its own datasets.
AnyEvent = Annotated[StatusEvent | StepEvent | EvalEvent | LayersEvent | FindingsEvent, Field(discriminator="type")]


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: Annotated[list[AnyEvent], Field(max_length=MAX_EVENTS)]


class WatchedModule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    type: Annotated[str, Field(max_length=120)]
    params: Annotated[int, Field(ge=0)]


class WatchedModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Annotated[str, Field(max_length=120)]
    n_params: Annotated[int, Field(ge=0)]
    modules: Annotated[list[WatchedModule], Field(max_length=500)]


class WatchedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    watched: WatchedModel


class WatchedCreate(BaseModel):
    """A watched run: its name and what the model is (``deepscope.watch`` sends both)."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=80)]
    config: WatchedConfig
    group: Annotated[str, Field(max_length=64)] | None = None


BATCH = TypeAdapter(Batch)


def validated(payload: Any) -> list[dict[str, Any]]:
    """The events of one append, each as the plain dict that is stored; ``ValidationError`` names the
    field (``events.3.layers.2.hist.act.counts``)."""
    batch = BATCH.validate_python(payload)
    events = [e.model_dump(by_alias=True, exclude_none=False) for e in batch.events]
    for e in events:
        summary = e.get("summary")
        if summary is not None:
            import orjson

            if len(orjson.dumps(summary)) > MAX_SUMMARY_BYTES:
                raise ValueError(f"events: a status event's summary is over {MAX_SUMMARY_BYTES} bytes")
            if "findings" in summary:
                summary["findings"] = [f.model_dump(by_alias=True) for f in TypeAdapter(Findings).validate_python(
                    summary["findings"])]
    return events


class RateLimiter:
    """Per client, at most RATE_REQUESTS appends and RATE_BYTES of them in any RATE_WINDOW_S."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, list[tuple[float, int]]] = {}

    def allow(self, client: str, size: int) -> float:
        """0 when this append may go ahead, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            window = [(t, n) for t, n in self._seen.get(client, []) if now - t < RATE_WINDOW_S]
            if len(window) >= RATE_REQUESTS or sum(n for _, n in window) + size > RATE_BYTES:
                self._seen[client] = window
                return RATE_WINDOW_S - (now - window[0][0]) if window else RATE_WINDOW_S
            window.append((now, size))
            self._seen[client] = window
            if len(self._seen) > 10_000:  # forget idle clients
                self._seen = {c: w for c, w in self._seen.items() if w and now - w[-1][0] < RATE_WINDOW_S}
            return 0.0


__all__ = ["BATCH", "EventType", "MAX_BODY_BYTES", "RateLimiter", "ValidationError", "WatchedCreate", "validated"]
