"""``LayerProbe``: arms the hooks on a capture step, takes what the step saw, and summarises it.

A capture is taken in three calls around the optimizer step (``engine/loop.py``): arm before the
forward, ``before_step`` between backward and the update (the weights the update starts from), and
``take`` after it. ``summarise`` may then run on another thread while training goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deepscope.engine.models import Net
from deepscope.engine.telemetry.event import HIST_NAMES, STAT_NAMES, histogram, layers_event
from deepscope.engine.telemetry.hooks import ActivationHooks
from deepscope.engine.telemetry.kernels import (
    HistogramBuffers,
    all_bounds,
    batched_histograms,
    device_bounds,
    device_histograms,
    duplicate_fractions,
    moments_of,
    stacked_runs,
)
from deepscope.engine.telemetry.units import capture_preacts, max_slope, same_activation, unit_stats

# Weights move by update_ratio (~1e-3) a step, so their histogram, std and duplicate check are taken on
# every WEIGHT_EVERY-th capture and repeated in between, marked with the step they were taken at.
# That is a quarter of the histogram work and all of the duplicate search on three captures in four.
WEIGHT_EVERY = 4
_W_STD, _DUP = STAT_NAMES.index("weight_std"), STAT_NAMES.index("duplicate_frac")


@dataclass
class Capture:
    """What one armed step saw, per layer, input to output."""

    step: int
    pre: list[torch.Tensor]
    act: list[torch.Tensor]
    act_grad: list[torch.Tensor]
    grads: list[torch.Tensor]
    w_before: list[torch.Tensor]
    update_norm: list[torch.Tensor]
    fresh_weights: bool = True
    unit_z: list[torch.Tensor] | None = None  # hidden pre-activations of the probe set (else of the batch)
    norm_params: torch.Tensor | None = None   # per layer: batchnorm's mean gamma and beta (NaN without)


@dataclass
class _WeightSnapshot:
    step: int
    std: list[float] = field(default_factory=list)
    duplicate: list[float] = field(default_factory=list)
    hist: list[dict[str, Any]] = field(default_factory=list)


class LayerProbe:
    """Watches every hidden block and the classifier of a ``Net``. Use as a context manager, or call
    ``remove`` (safe to call twice)."""

    def __init__(self, model: Net, bins: int, saturating: bool = False, probe_x: torch.Tensor | None = None) -> None:
        """``probe_x``: the fixed probe set dead and saturated units are counted on (docs/telemetry.md);
        without one they are counted on the captured batch."""
        self.bins = bins
        self.saturating = saturating
        self.model, self.blocks, self.probe_x = model, list(model.blocks), probe_x
        self.acts = [b.act for b in model.blocks]
        self.norms = [b.norm if isinstance(b.norm, nn.modules.batchnorm._BatchNorm) else None for b in model.blocks]
        self.peaks = [max_slope(a) for a in self.acts]
        # per layer, the first layer whose activation computes the same function: their units are counted together
        self._act_kind = [next(j for j in range(i + 1) if same_activation(self.acts[j], a))
                          for i, a in enumerate(self.acts)]
        self._unit_z: list[torch.Tensor] | None = None
        self.names = model.layer_names()
        self.kinds = [b.kind for b in model.blocks] + ["output"]
        self.weights = [b.weights.weight for b in model.blocks] + [model.head.weight]
        self.hooks = ActivationHooks([b.act for b in model.blocks] + [model.head],
                                     output_is_preact={len(model.blocks)})
        self.weight_every = WEIGHT_EVERY
        self._captures = 0
        self._weights: _WeightSnapshot | None = None
        self._w_before: list[torch.Tensor] | None = None
        self._buffers = HistogramBuffers()
        # One host sync per capture (the device path) or the float32 path: None picks by device, the GPU's
        # way on a GPU. Tests set it to check that both give the same event.
        self.one_sync: bool | None = None

    # -- arming -----------------------------------------------------------------------------
    @property
    def armed(self) -> bool:
        return self.hooks.armed

    @armed.setter
    def armed(self, value: bool) -> None:
        self.hooks.armed = value

    def attach(self) -> LayerProbe:
        self.hooks.attach()
        return self

    def remove(self) -> None:
        self.hooks.remove()
        self._w_before = None

    def __enter__(self) -> LayerProbe:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- a capture --------------------------------------------------------------------------
    def measure_units(self) -> None:
        """Call before an armed step's forward: passes the probe set through the weights that step starts
        from (its pre-activations are summarised with the capture)."""
        if self.probe_x is not None:
            self._unit_z = capture_preacts(self.model, self.blocks, self.probe_x)

    def before_step(self) -> None:
        """Call between backward and the optimizer step: remembers the weights the update starts from."""
        with torch.no_grad():
            self._w_before = torch._foreach_mul(self.weights, 1.0)

    def take(self, step: int) -> Capture:
        """Call after the optimizer step: hands over what the armed step saw and disarms the probe.

        Only the update's size needs the live weights, so it is measured here; everything else in
        the capture is a tensor no later step writes to, and ``summarise`` may run on another thread.
        """
        hooks = self.hooks
        hooks.armed = False
        if not hooks.complete or self._w_before is None:
            raise RuntimeError("take() needs an armed forward, a backward and before_step() first")
        with torch.no_grad():
            w_after = [w.detach() for w in self.weights]
            update_norm = torch._foreach_norm(torch._foreach_sub(w_after, self._w_before))
            grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
        capture = Capture(step, list(hooks.pre), list(hooks.act),  # type: ignore[arg-type]
                          [g if g is not None else torch.zeros_like(a)
                           for g, a in zip(hooks.act_grad, hooks.act, strict=True)],  # type: ignore[misc]
                          grads, self._w_before, update_norm,
                          fresh_weights=self._captures % self.weight_every == 0, unit_z=self._unit_z,
                          norm_params=self._norm_params())
        self._unit_z = None
        self._captures += 1
        hooks.clear()
        self._w_before = None
        return capture

    def _norm_params(self) -> torch.Tensor | None:
        """Mean gamma and beta of each layer's batchnorm, after the step (NaN for a layer without one)."""
        if not any(self.norms):
            return None
        nan = torch.full((2,), float("nan"), device=self.weights[0].device)
        with torch.no_grad():
            rows = [torch.stack([n.weight.mean(), n.bias.mean()]) if n is not None else nan for n in self.norms]
        return torch.stack([*rows, nan])

    def collect(self, step: int) -> dict[str, Any]:
        """``take`` and ``summarise`` in one call, on this thread: returns the ``layers`` event."""
        return self.summarise(self.take(step))

    def summarise(self, cap: Capture) -> dict[str, Any]:
        with torch.no_grad():
            n = len(self.names)
            fresh = cap.fresh_weights or self._weights is None
            kinds = HIST_NAMES if fresh else HIST_NAMES[:3]
            per = len(kinds)
            # 1) bounds and every histogram, each in one pass over all layers
            flat = [t.reshape(-1) for i in range(n)
                    for t in (cap.pre[i].float(), cap.act[i].float(), cap.grads[i], cap.w_before[i])[:per]]
            one_sync = flat[0].device.type != "cpu" if self.one_sync is None else self.one_sync
            ranges, counts, table = (self._on_device if one_sync else self._on_host)(cap, flat, per, fresh)
            hists = [{name: histogram(*ranges[per * i + j], counts[per * i + j], cap.step)
                      for j, name in enumerate(kinds)} for i in range(n)]
            # 3) weights: a fresh snapshot, or the last one repeated with the step it was taken at
            if fresh:
                self._weights = _WeightSnapshot(cap.step, [row[_W_STD] for row in table],
                                                [row[_DUP] for row in table], [h["weight"] for h in hists])
            snap = self._weights
            assert snap is not None
            for i in range(n):
                table[i][_W_STD], table[i][_DUP] = snap.std[i], snap.duplicate[i]
                hists[i]["weight"] = snap.hist[i]
            return layers_event(cap.step, self.names, self.kinds, table, hists, snap.step)

    def _on_host(self, cap: Capture, flat: list[torch.Tensor], per: int, fresh: bool) -> tuple[list, list, list]:
        """Bounds, counts and the stat table, binning in float32 with a float64 pass near the edges."""
        ranges = all_bounds(flat)
        counts = batched_histograms(flat, ranges, self.bins, self._buffers)
        return ranges, counts, self._stat_table(cap, flat, per, fresh).tolist()

    def _on_device(self, cap: Capture, flat: list[torch.Tensor], per: int, fresh: bool) -> tuple[list, list, list]:
        """The same numbers, computed where the tensors are and brought to the host together: on a GPU,
        the capture's one sync."""
        bounds = device_bounds(flat)
        counts = device_histograms(flat, bounds, self.bins, self._buffers)
        table = self._stat_table(cap, flat, per, fresh)
        host = torch.cat([bounds.flatten(), counts.flatten().double(), table.double().flatten()]).tolist()
        k, b, s = len(flat), self.bins, table.shape[1]
        ranges = [(host[2 * i], host[2 * i + 1]) for i in range(k)]
        at = 2 * k
        counts_list = [[int(c) for c in host[at + i * b:at + (i + 1) * b]] for i in range(k)]
        at += k * b
        return ranges, counts_list, [host[at + r * s:at + (r + 1) * s] for r in range(table.shape[0])]

    def _stat_table(self, cap: Capture, flat: list[torch.Tensor], per: int, fresh: bool) -> torch.Tensor:
        """Rows of STAT_NAMES per layer, as a tensor. Without fresh weights, weight_std and duplicate_frac
        are left at 0 for the caller to fill from the last snapshot. Each statistic is taken once per
        run of equal-shape layers (``stacked_runs``), not once per layer."""
        n, dev = len(self.names), flat[0].device
        zero = torch.zeros(n, device=dev)
        pre_mean, pre_std = moments_of([flat[per * i] for i in range(n)])
        act_mean, act_std = moments_of([flat[per * i + 1] for i in range(n)])
        w_std = moments_of([flat[per * i + 3] for i in range(n)])[1] if fresh else zero
        duplicate = torch.cat([duplicate_fractions(w.reshape(w.shape[0], w.shape[1], -1))
                               for _, w in stacked_runs(cap.w_before)]) if fresh else zero
        act_grad_std = moments_of(cap.act_grad)[1]
        grad_norm = torch.stack(torch._foreach_norm(cap.grads))
        update_ratio = torch.stack(cap.update_norm) / torch.stack(torch._foreach_norm(cap.w_before)).clamp_min(1e-30)
        units = self._unit_table(cap.unit_z if cap.unit_z is not None else cap.pre[:-1])
        norm = cap.norm_params if cap.norm_params is not None else torch.full((n, 2), float("nan"), device=dev)
        return torch.stack([pre_mean, pre_std, act_mean, act_std, grad_norm, act_grad_std, w_std, update_ratio,
                            units[:, 0], units[:, 1], duplicate, units[:, 2], norm[:, 0], norm[:, 1]], 1)

    def _unit_table(self, unit_z: list[torch.Tensor]) -> torch.Tensor:
        """(dead, saturated, slope) per layer, (n, 3): hidden layers grouped by activation and shape, and
        a NaN row for the output, which has no activation (None in the event)."""
        kinds = self._act_kind
        rows = [unit_stats(self.acts[kinds[first]], z.float(), self.saturating, self.peaks[kinds[first]])
                for first, z in stacked_runs(unit_z, kinds)]
        return torch.cat([*rows, torch.full((1, 3), float("nan"), device=unit_z[0].device)])
