"""``Telemetry``: watching one model through a run. It decides when a step is captured (``schedule``),
takes what the step showed (``probe``), turns it into a ``layers`` event (``summary``), on a second
thread while training goes on, and counts what all of it cost for the budget.

    with Telemetry(model, layers, settings, total_steps, emit, optimizer=optimizer) as telemetry:
        for step, (x, y) in enumerate(batches):
            with telemetry.step(step):
                loss = loss_fn(model(x), y)
                optimizer.zero_grad(); loss.backward(); optimizer.step()
    telemetry.report()   # for the run's summary

The engine's loop, ``deepscope.watch``, the tests and the benchmarks all capture this way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepscope.engine.storage import Lane
from deepscope.engine.telemetry.layers import WatchedLayer
from deepscope.engine.telemetry.probe import Capture, LayerProbe
from deepscope.engine.telemetry.schedule import CaptureSchedule
from deepscope.engine.telemetry.summary import Summariser


@dataclass(frozen=True)
class Settings:
    """The telemetry part of a run's config (engine/config.py, ``TelemetryConfig``)."""

    every_steps: int = 10
    bins: int = 32
    max_per_second: float = 10.0
    budget: float = 0.03
    captures: int = 50

    @classmethod
    def of(cls, config: Any) -> Settings:
        return cls(**{k: getattr(config, k) for k in cls.__dataclass_fields__})


def on_accelerator(model: nn.Module) -> bool:
    """Whether a model's parameters live on a device other than the CPU (its first one decides)."""
    first = next(model.parameters(), None)
    return first is not None and first.device.type != "cpu"


class Telemetry:
    """``emit`` receives each layers event, in step order. ``background``: summarise on a second thread
    (one capture in flight at a time: the next waits, which bounds memory and keeps events in order);
    None (the default) does so only for a model on an accelerator, where the summary's one host sync
    would otherwise stall the step. On the CPU the second thread cost more than the summary itself:
    the two threads handed the GIL back and forth at every torch call (a 6-layer MLP's capture, 1.8
    CPU-ms with it, 1.2 ms without; docs/telemetry.md, "What it costs").
    ``lane``: the run's storage cap for captures (engine/storage.py), which may thin the schedule's."""

    def __init__(self, root: nn.Module, layers: list[WatchedLayer], settings: Settings, total_steps: int | None,
                 emit: Callable[[dict[str, Any]], None], optimizer: torch.optim.Optimizer | None = None,
                 probe_x: torch.Tensor | None = None, background: bool | None = None, copy: bool = False,
                 lane: Lane | None = None) -> None:
        self.schedule = CaptureSchedule(total_steps, settings.every_steps, settings.max_per_second,
                                        settings.budget, settings.captures, lane)
        self.probe = LayerProbe(root, layers, optimizer, probe_x, copy=copy)
        self.summariser = Summariser(layers, settings.bins)
        self.emit = emit
        if background is None:
            background = on_accelerator(root)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="deepscope-telemetry") if background else None
        self._pending: Future | None = None

    def step(self, step: int, due: bool | None = None) -> _Step:
        """Run one training step inside: it is captured when the schedule says so (or ``due``)."""
        return _Step(self, step, self.schedule.due(step) if due is None else due)

    def submit(self, capture: Capture) -> None:
        """Summarise a capture and emit its event: on the second thread, or here without one."""
        t0 = time.thread_time()
        if self._pool is None:
            self.emit(self.summariser.summarise(capture))
            self.schedule.add_training_cost(time.thread_time() - t0)
            return
        self.wait()
        self._pending = self._pool.submit(self._summarise, capture)
        self.schedule.add_training_cost(time.thread_time() - t0)

    def _summarise(self, capture: Capture) -> None:
        t0 = time.thread_time()
        event = self.summariser.summarise(capture)
        self.schedule.add_summary_cost(time.thread_time() - t0)
        self.emit(event)

    def _count_probe_cost(self) -> None:
        if self.probe.cost:
            self.schedule.add_training_cost(self.probe.cost)
            self.probe.cost = 0.0

    def wait(self) -> None:
        """Returns once the capture in flight is summarised and emitted (its error, if any, is raised)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def report(self) -> dict[str, Any]:
        return self.schedule.report()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.probe.remove()
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Step:
    """``Telemetry.step``'s context, entered on every training step: a class, since a generator's context
    manager (two of them, the probe's inside) cost 10 us a step, 1% of a small MLP's. The probe is armed
    on the way in and what the step showed is summarised on the way out (``LayerProbe.capturing``'s
    halves); a step that raises is disarmed and not summarised."""

    __slots__ = ("telemetry", "step", "due")

    def __init__(self, telemetry: Telemetry, step: int, due: bool) -> None:
        self.telemetry, self.step, self.due = telemetry, step, due

    def __enter__(self) -> None:
        if self.due:
            telemetry = self.telemetry
            telemetry.probe.arm(self.step, telemetry.schedule.is_end(self.step))

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        telemetry = self.telemetry
        capture = telemetry.probe.finish() if self.due else None
        if exc_type is None:
            if capture is not None:
                telemetry.submit(capture)
            telemetry._count_probe_cost()
