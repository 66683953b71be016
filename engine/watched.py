"""A run of any PyTorch model, watched from inside its own training loop (``deepscope.watch``; docs/watch.md).

It hooks the optimizer, not the loop: every ``optimizer.step()`` is a training step. The first step's
forward shows how data flows through the model (``discover.py``) and is captured from that record; after
that the engine's own telemetry takes over, on the same density and budget rules (``Telemetry``): hooks
exist only on captured steps, armed after the step before. It reports the engine's event types, without
``seq`` (the sink numbers what it sends), and the doctor reads it as it reads the engine's runs.

Sensible with loops that are not the engine's: a validation pass under ``torch.no_grad`` is never
recorded; with gradient accumulation the captured forward is the last micro-batch before the step; a
module called twice in one forward has both calls joined; a model left in ``eval()`` between steps is
recorded as it runs (its batchnorm uses the running averages then).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import torch
from torch import nn

from deepscope.engine.doctor import Doctor
from deepscope.engine.events import EventType, Status, status_event
from deepscope.engine.storage import StorageCap
from deepscope.engine.telemetry import Settings, Telemetry, probe_summary
from deepscope.engine.telemetry.discover import WEIGHTS, Recorder, leaf_modules, resolve

Emit = Callable[[dict[str, Any]], None]
STEP_EVENT_INTERVAL_S = 0.05  # at most 20 loss points a second, as the engine sends


def describe(model: nn.Module) -> dict[str, Any]:
    """A watched run's "config": what the model is (its module tree, parameters, layers by name and kind)."""
    return {"watched": {
        "model": type(model).__name__,
        "n_params": sum(p.numel() for p in model.parameters()),
        "modules": [{"name": name or "(root)", "type": type(m).__name__,
                     "params": sum(p.numel() for p in m.parameters(recurse=False))}
                    for name, m in list(model.named_modules())[:500]]}}


class WatchedRun:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, emit: Emit, *, name: str,
                 layers: list[Any] | None = None, total_steps: int | None = None, settings: Settings | None = None,
                 classes: int | None = None, background: bool | None = None, max_stored_bytes: int | None = None) -> None:
        self.model, self.optimizer, self.emit, self.name = model, optimizer, emit, name
        # the server's cap on what a run's captures store (its create answer says it): thinned to fit
        self.cap = StorageCap(max_stored_bytes, total_steps)
        self.only, self.total_steps = layers, total_steps
        self.settings = settings or Settings()
        self.background = background
        self.step = 0
        self.telemetry: Telemetry | None = None
        self.classes = classes
        self.doctor = Doctor(classes or 2, emit)
        self.summary: dict[str, Any] = {}
        self._last_layers: list[dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._last_step_event = -1.0
        self._weights_before: dict[int, torch.Tensor] = {}
        self._recorder: Recorder | None = Recorder(model)
        self._restart = model.register_forward_pre_hook(lambda m, i: self._recorder and torch.is_grad_enabled()
                                                        and self._recorder.restart())
        self._hooks = [optimizer.register_step_pre_hook(lambda *_: self._before_step()),
                       optimizer.register_step_post_hook(lambda *_: self._after_step())]
        self.finished = False
        emit(status_event(Status.RUNNING, f"watching {type(model).__name__}", config=describe(model),
                          total_steps=total_steps, n_params=sum(p.numel() for p in model.parameters()),
                          device=next(model.parameters()).device.type,
                          layers=[name for name, m in leaf_modules(model) if isinstance(m, WEIGHTS)]))

    # -- the optimizer's hooks -------------------------------------------------------------------
    def _before_step(self) -> None:
        if self._recorder is not None:  # step 0: the weights the first update starts from
            with torch.no_grad():
                self._weights_before = {id(m): m.weight.detach().clone() for _, m in leaf_modules(self.model)
                                        if isinstance(m, WEIGHTS)}

    def _after_step(self) -> None:
        with self._lock:
            if self._recorder is not None:
                self._start()
            elif self.telemetry is not None and self.telemetry.probe.step is not None:
                taken = self.telemetry.probe.finish()
                if taken is not None:
                    self.telemetry.submit(taken)
            self.step += 1
            if self.telemetry is not None and self.telemetry.schedule.due(self.step):
                self.telemetry.probe.arm(self.step, full=self.telemetry.schedule.is_end(self.step))

    def _start(self) -> None:
        """After the first step: which layers to watch, from how data flowed, and that step's capture."""
        recorder, self._recorder = self._recorder, None
        recorder.remove()
        self._restart.remove()
        layers = resolve(recorder.flow, self.only)
        if not layers:
            self.summary["telemetry_note"] = "no nn.Linear or nn.Conv layer was called in the first step: nothing to watch"
            return
        out = getattr(layers[-1].weight, "out_features", 0)
        if self.classes is None and out > 1:  # a classifier's outputs: its classes (the doctor's "stalled")
            self.doctor.record.classes = out
        self.telemetry = Telemetry(self.model, layers, self.settings, self.total_steps, self._on_layers,
                                   self.optimizer, background=self.background, copy=True, lane=self.cap["layers"])
        self.telemetry.schedule.due(0)
        capture = self.telemetry.probe.adopt(0, recorder.flow, [self._weights_before.get(id(layer.weight))
                                                                 for layer in layers])
        if capture is not None:
            self.telemetry.submit(capture)

    def _on_layers(self, event: dict[str, Any]) -> None:
        self.emit(event)
        if self.cap.max_bytes is not None:
            self.cap["layers"].stored(len(orjson.dumps(event)))
        self.doctor.observe_capture(event)
        if event["step"] == 0:
            self.summary["probe_start"] = probe_summary(event["layers"])
        self._last_layers = event["layers"]  # summarised once, at the end

    # -- what the loop tells -------------------------------------------------------------------------
    def log(self, **metrics: Any) -> None:
        """Metrics of the current step: ``loss`` and ``acc`` make a loss point (a step event); validation
        or training metrics (``val_loss``, ``val_acc``, ``train_loss``, ``train_acc``, with ``epoch``) make
        an eval event, which the doctor reads."""
        values = {k: _number(v) for k, v in metrics.items()}
        step = max(0, self.step - 1)  # the step just taken
        now = time.monotonic()
        if values.get("loss") is not None and now - self._last_step_event >= STEP_EVENT_INTERVAL_S:
            self._last_step_event = now
            progress = min(1.0, self.step / self.total_steps) if self.total_steps else None
            self.emit({"type": EventType.STEP.value, "step": step, "epoch": int(metrics.get("epoch") or 0),
                       "loss": values["loss"], "acc": values.get("acc"), "progress": progress})
            self.summary["train_loss_batch"] = values["loss"]
        evals = {k: values.get(k) for k in ("train_loss", "train_acc", "val_loss", "val_acc") if k in values}
        if evals:
            event = {"type": EventType.EVAL.value, "epoch": int(metrics.get("epoch") or 0), "step": step,
                     **{k: evals.get(k) for k in ("train_loss", "train_acc", "val_loss", "val_acc")}}
            self.emit(event)
            self.doctor.observe_eval(event)
            self.summary.update({k: v for k, v in evals.items() if v is not None}, step=step)

    def finish(self, status: str = Status.COMPLETED.value, message: str | None = None) -> dict[str, Any]:
        """End the run: the captures in flight summarised, the doctor's findings, the terminal status."""
        if self.finished:
            return self.summary
        self.finished = True
        for h in self._hooks:
            h.remove()
        if self._recorder is not None:
            self._recorder.remove()
            self._restart.remove()
        if self.telemetry is not None:
            self.telemetry.probe.remove()
            self.telemetry.close()
            self.summary.update(self.telemetry.report(), **self.cap.report())
        if self._last_layers is not None:
            self.summary["probe_end"] = probe_summary(self._last_layers)
        self.summary["step"] = self.step
        self.summary["findings"] = self.doctor.final(status)
        self.emit(status_event(status, message or f"{status} after {self.step} steps", summary=self.summary))
        return self.summary


def _number(v: Any) -> float | None:
    if isinstance(v, torch.Tensor):
        v = v.detach().float().mean().item() if v.numel() else None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
