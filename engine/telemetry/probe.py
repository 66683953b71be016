"""``LayerProbe``: what one training step showed of every watched layer, taken in one context.

    with probe.capturing(step) as taken:     # arms the hooks (and passes the probe set, when due)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(); loss.backward()
        optimizer.step()                     # the probe's step pre-hook keeps the weights it starts from
    taken.capture                            # what the step showed, or None if it never stepped

``arm`` and ``finish`` are the two halves, for a loop the probe does not own (``deepscope.watch`` arms
from the optimizer's step hooks). What a capture holds is never written again by training (the engine
sets gradients to None, and a probe made with ``copy`` clones what it keeps), so the summary may run
on another thread while training goes on; only the update's size needs the live weights, and it is
measured in ``finish``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope.engine.telemetry import compiled
from deepscope.engine.telemetry.hooks import Taps
from deepscope.engine.telemetry.layers import WatchedLayer, joined
from deepscope.engine.telemetry.units import UNITS_EVERY, ProbeSet, Units

# Weights move by update_ratio (~1e-3) a step, so their histogram, std and duplicate check are taken on
# every WEIGHT_EVERY-th capture and repeated in between, marked with the step they were taken at.
WEIGHT_EVERY = 4


@dataclass
class Capture:
    """What one step showed, per watched layer, input to output: contiguous float32 tensors
    (``layers.joined``), read as (samples, units, positions) by ``layers.units_shape``."""

    step: int
    pre: list[torch.Tensor]
    act: list[torch.Tensor]
    act_grad: list[torch.Tensor | None]
    grads: list[torch.Tensor]
    update: torch.Tensor                    # (layers, 2): |dW| of the step and |W| before it
    w_before: list[torch.Tensor] | None     # the weights the step started from, on a weight capture
    units: Units | None = None              # the probe set's pass, on a units capture
    units_fresh: bool = True                # dead units are counted on this capture (probe set, or batch)
    norm_params: torch.Tensor | None = None  # (layers, 2): a normalisation layer's mean gamma and beta, or NaN


@dataclass
class Taken:
    capture: Capture | None = None


class LayerProbe:
    """Watches ``layers`` of ``root``. ``optimizer``: whose step the weights are read around (without one,
    ``finish`` reads them as they are, and the update is 0). ``probe_x``: the fixed probe set dead units
    are counted on (docs/telemetry.md); without one they are counted on the captured batch. Use as a
    context manager, or call ``remove`` (safe twice). ``cost`` adds up the training thread's CPU seconds
    spent here."""

    def __init__(self, root: nn.Module, layers: list[WatchedLayer], optimizer: torch.optim.Optimizer | None = None,
                 probe_x: torch.Tensor | None = None, copy: bool = False) -> None:
        self.root, self.layers, self.optimizer = root, layers, optimizer
        self.probe_set = ProbeSet(root, layers, probe_x) if probe_x is not None else None
        self.taps = Taps(layers, root=root, copy=copy)
        self.weights = [layer.weight.weight for layer in layers]
        self.norms = [layer.norm for layer in layers]
        self.copy = copy
        self.captures = 0
        self.cost = 0.0
        self.step: int | None = None
        self._units: Units | None = None
        self._before: list[torch.Tensor] | None = None
        self._snapshots: list[list[torch.Tensor]] = []  # two sets, alternating: one may be in a summary
        self._update_tables: dict = {}
        self._copy_tables: dict = {}
        self._full = False
        # Registered once and idle unless armed: registering and removing a hook at every capture cost more
        # than the idle call on every step of a run captured every sixth step. It holds the probe weakly, so a
        # probe dropped without ``remove`` is still freed (its hook then does nothing).
        self._step_hook: Any = optimizer.register_step_pre_hook(_step_pre_hook(self)) if optimizer is not None else None

    # -- the context -------------------------------------------------------------------------
    @contextmanager
    def capturing(self, step: int, due: bool = True, full: bool = False) -> Iterator[Taken]:
        """Capture the step run inside (when ``due``): ``taken.capture`` afterwards. ``full``: measure the
        weights and the probe set on this capture whatever the turn (a run's first and last state)."""
        taken = Taken()
        if not due:
            yield taken
            return
        self.arm(step, full)
        try:
            yield taken
        finally:
            taken.capture = self.finish()

    def arm(self, step: int, full: bool = False) -> None:
        """Before the step's forward: passes the probe set when it is due (or ``full``), registers the hooks."""
        t0 = time.thread_time()
        self.step, self._full = step, full
        if self.probe_set is not None and (full or self.captures % UNITS_EVERY == 0):
            self._units = self.probe_set.units()
        self.taps.arm()
        self.cost += time.thread_time() - t0

    def finish(self) -> Capture | None:
        """After the optimizer step: what the armed step showed (None if it showed nothing: no forward,
        no backward, or no step), and the probe disarmed."""
        t0 = time.thread_time()
        try:
            return self._take()
        finally:
            self._disarm()
            self.cost += time.thread_time() - t0

    def adopt(self, step: int, flow: Any, before: list[torch.Tensor | None]) -> Capture | None:
        """The capture of a step that a ``discover.Recorder`` watched whole (a watched model's first step,
        before its layers were known): each tap's tensors taken from that record, the weights the update
        started from given. Call after the optimizer step, as ``finish``."""
        taps = self.taps
        taps.clear()
        for i, layer in enumerate(self.layers):
            for values, sources, (module, side), wanted in ((taps.pre[i], None, layer.pre, layer.pre_call),
                                                            (taps.act[i], taps.act_source[i], layer.act, layer.act_call)):
                calls = [c for c in flow.calls if c.module is module]
                for k, call in enumerate(calls):
                    if wanted is not None and k != wanted:
                        continue
                    values.append(call.values[0] if side == "in" else call.values[1])
                    if sources is not None:
                        sources.append(call.input if side == "in" else call.output)
        taps.recorded = True
        self.step, self._full = step, True
        self._before = [b if b is not None else w.detach().clone() for b, w in zip(before, self.weights, strict=True)]
        return self.finish()

    def remove(self) -> None:
        self._disarm()
        self.taps.remove()
        if self._step_hook is not None:
            self._step_hook.remove()
            self._step_hook = None

    def __enter__(self) -> LayerProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- inside ------------------------------------------------------------------------------
    def _disarm(self) -> None:
        self.taps.disarm()
        self.taps.clear()
        self.step, self._units, self._before = None, None, None

    def _keep_weights(self) -> None:
        """The optimizer's step pre-hook while armed: the weights the update starts from, into one of two
        buffers (on the CPU by one compiled copy, its table of addresses kept as ``_update_norms`` keeps
        its own)."""
        t0 = time.thread_time()
        if len(self._snapshots) < 2:
            self._snapshots.append([w.detach().clone() for w in self.weights])
            self._before = self._snapshots[-1]
        else:
            self._before = self._snapshots[self.captures % 2]
            if not _copy_weights(self.weights, self._before, self._copy_tables):
                # a weight was replaced by one of another size, dtype or device: new buffers, new tables
                self._snapshots = [[w.detach().clone() for w in self.weights]]
                self._before = self._snapshots[0]
                self._copy_tables.clear()
                self._update_tables.clear()
        self.cost += time.thread_time() - t0

    def _take(self) -> Capture | None:
        taps, step = self.taps, self.step
        if step is None or not taps.complete:
            return None
        live = self.weights
        if self.optimizer is not None and self._before is None:
            return None  # a forward, but no step (divergence ends the run before it)
        before = self._before if self._before is not None else [w.detach().clone() for w in live]
        # the addresses of the weights' buffers are kept only for the probe's own two (an id can be reused)
        kept = any(before is snapshot for snapshot in self._snapshots)
        update = _update_norms(live, before, self._update_tables if kept else None)
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
        if self.copy:
            grads = [g.detach().clone() for g in grads]
        layers = self.layers
        capture = Capture(
            step, [joined(taps.pre[i], layer.unit_axis) for i, layer in enumerate(layers)],
            [joined(taps.act[i], layer.unit_axis) for i, layer in enumerate(layers)],
            [_grads_of(taps.act_source[i], layer.unit_axis) for i, layer in enumerate(layers)],
            grads, update, before if self._full or self.captures % WEIGHT_EVERY == 0 else None, self._units,
            self.probe_set is None or self._units is not None, self._norm_params())
        self.captures += 1
        return capture

    def _norm_params(self) -> torch.Tensor | None:
        """Mean gamma and beta of each layer's normalisation, after the step (NaN for a layer without)."""
        if not any(n is not None and getattr(n, "weight", None) is not None for n in self.norms):
            return None
        nan = torch.full((2,), float("nan"), device=self.weights[0].device)
        with torch.no_grad():
            rows = [torch.stack([n.weight.mean(), n.bias.mean()]).float()
                    if n is not None and getattr(n, "weight", None) is not None and n.bias is not None else nan
                    for n in self.norms]
        return torch.stack(rows)


def _grads_of(sources: list[torch.Tensor], unit_axis: int) -> torch.Tensor | None:
    """The loss's gradient with respect to a layer's activations (retained by the taps), or None where the
    backward pass did not reach them."""
    grads = [t.grad for t in sources]
    if not grads or any(g is None for g in grads):
        return None
    return joined(grads, unit_axis)


def _step_pre_hook(probe: LayerProbe) -> Any:
    """The optimizer's step pre-hook of ``probe``: keeps the weights the update starts from while armed."""
    ref = weakref.ref(probe)

    def hook(*_: Any) -> None:
        live = ref()
        if live is not None and live.step is not None:
            live._keep_weights()

    return hook


def _same_layout(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(x.shape == y.shape and x.dtype == y.dtype and x.device == y.device for x, y in zip(a, b, strict=True))


def _host_floats(t: torch.Tensor) -> bool:
    return t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu"


def _address_table(tables: dict | None, after: list[torch.Tensor], before: list[torch.Tensor]) -> np.ndarray | None:
    """The compiled passes' table (address of each weight, its values, the address of its copy in
    ``before``), kept in ``tables`` by the addresses: None where a weight or its copy is not contiguous
    float32 on the CPU, or they differ in size (then torch does it: the kernels trust the table)."""
    key = (id(before), *[w.data_ptr() for w in after])
    table = tables.get(key) if tables is not None else None
    if table is None and all(_host_floats(w) and _host_floats(b) and w.numel() == b.numel()
                             for w, b in zip(after, before, strict=True)):
        table = compiled.tensor_table(after, [b.data_ptr() for b in before])
        if tables is not None:
            if len(tables) >= 4:  # the weights moved (a new optimizer, a model moved and back)
                tables.clear()
            tables[key] = table
    return table


def _copy_weights(weights: list[torch.Tensor], into: list[torch.Tensor], tables: dict) -> bool:
    """``into`` becomes a copy of ``weights``: one compiled copy on the CPU. False (nothing copied) where
    they no longer have the same shapes, dtypes and devices."""
    key = (id(into), *[w.data_ptr() for w in weights])
    table = tables.get(key)
    if table is None:  # (checked only when the weights' addresses are new)
        if not _same_layout(weights, into):
            return False
        table = _address_table(tables, weights, into)
    if table is not None:
        compiled.copy_values(table)
    else:
        with torch.no_grad():
            torch._foreach_copy_(into, [w.detach() for w in weights])
    return True


def _update_norms(after: list[torch.Tensor], before: list[torch.Tensor], tables: dict | None = None) -> torch.Tensor:
    """(layers, 2): the size of each layer's update, |after - before|, and |before|. On the CPU one
    compiled pass over both; elsewhere on the device, without a sync. ``tables`` keeps the compiled
    pass's table of addresses for the weights where they are and a buffer of ``before`` (the two the
    probe alternates): a step writes the weights in place, so it is looked up by their addresses."""
    if after[0].device.type == "cpu":
        table = _address_table(tables, after, before)
        if table is not None:
            out = np.empty((len(after), 2))
            compiled.update_norms(table, out)
            return torch.from_numpy(out)
    with torch.no_grad():
        after = [w.detach() for w in after]
        return torch.stack([torch.stack(torch._foreach_norm(torch._foreach_sub(after, before))),
                            torch.stack(torch._foreach_norm(before))], 1)
