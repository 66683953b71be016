"""Per-layer telemetry: what every layer's activations, gradients and weights look like.

``LayerProbe`` owns forward hooks on each block's activation and on the classifier. They cost
one attribute check per layer on an ordinary step; on a capture step (``armed``) they keep
references to the tensors autograd holds anyway, and a tensor hook keeps the gradient of the
activation. After the optimizer step, ``collect`` turns everything into plain numbers.

Why it is cheap (MEASURED.md: a histogram per tensor with ``.item()`` costs 13 ms for 20 layers):
- every tensor is read in two passes, ``aminmax`` then ``histc``, with no Python-side numbers until
  the end: the bounds and counts of all layers come back in one ``tolist()`` each (one sync on CUDA);
- norms go through ``torch._foreach_norm`` for all layers at once;
- per-unit counts (dead, saturated) are exact, from one ``any``/``all`` over the batch;
- duplicate detection hashes each row with one dot product and compares only rows whose hashes
  collide, so a net with no symmetric units pays one multiply-add per weight.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.models import Net

STAT_NAMES = ("preact_mean", "preact_std", "act_mean", "act_std", "grad_norm", "act_grad_std",
              "weight_std", "update_ratio", "dead_frac", "saturated_frac", "duplicate_frac")
HIST_NAMES = ("preact", "act", "grad", "weight")
# Weights move by update_ratio (~1e-3) a step, so their histogram, std and duplicate check are taken on
# every WEIGHT_EVERY-th capture and repeated in between, marked with the step they were taken at.
# That is a quarter of the histogram work and all of the duplicate search on three captures in four.
WEIGHT_EVERY = 4
LANES = 4  # interleaved copies of the histogram counters; see _collect


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


@dataclass
class _Layer:
    name: str
    kind: str
    weight: nn.Parameter
    hook_on: nn.Module


def bounds(lo: float, hi: float) -> tuple[float, float]:
    """Histogram range for data in [lo, hi]; a constant tensor gets a narrow range around its value."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 0.0
    if hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
        pad = max(abs(lo), 1.0) * 1e-3
        return lo - pad, hi + pad
    return lo, hi


@functools.lru_cache(maxsize=64)
def _hash_vector(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(12345)
    return torch.randn(size, generator=gen).to(device, dtype)


def duplicate_fraction(w: torch.Tensor) -> torch.Tensor:
    """Fraction of units (rows of w, flattened per unit) whose incoming weights equal another unit's."""
    rows = w.reshape(w.shape[0], -1)
    n = rows.shape[0]
    if n < 2:
        return torch.zeros((), device=w.device)
    probe = _hash_vector(rows.shape[1], w.device, w.dtype)
    # Identical rows give bit-identical hashes: each row is reduced with the same sequence of operations.
    keys = (rows * probe).sum(1)
    _, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    if int(counts.max()) < 2:
        return torch.zeros((), device=w.device)
    # Confirm collisions exactly against the first row with the same hash.
    first = torch.full((counts.numel(),), n, device=w.device, dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=w.device), reduce="amin")
    same = (rows == rows[first[inverse]]).all(1)
    group_size = torch.bincount(inverse[same], minlength=counts.numel())
    return (same & (group_size[inverse] > 1)).float().mean()


class LayerProbe:
    """Watches every hidden block and the classifier of a ``Net``. Use as a context manager, or call
    ``remove`` (safe to call twice)."""

    def __init__(self, model: Net, bins: int, saturates: tuple[float, float] | None = None) -> None:
        self.model = model
        self.bins = bins
        self.saturates = saturates
        names = model.layer_names()
        self.layers = [_Layer(names[i], b.kind, b.weights.weight, b.act) for i, b in enumerate(model.blocks)]
        self.layers.append(_Layer("output", "output", model.head.weight, model.head))
        self.armed = False
        self.weight_every = WEIGHT_EVERY
        self._captures = 0
        self._weights: dict[str, Any] | None = None  # the last weight summary: step, hists, std, duplicates
        self._buf: torch.Tensor | None = None
        self._idx: torch.Tensor | None = None
        self._offsets_cache: dict[Any, torch.Tensor] = {}
        self._handles: list[Any] = []
        self._reset()

    # -- hooks ------------------------------------------------------------------------------
    def _reset(self) -> None:
        n = len(self.layers)
        self._pre: list[torch.Tensor | None] = [None] * n
        self._act: list[torch.Tensor | None] = [None] * n
        self._act_grad: list[torch.Tensor | None] = [None] * n
        self._w_before: list[torch.Tensor] | None = None

    def attach(self) -> LayerProbe:
        if self._handles:
            return self
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.hook_on.register_forward_hook(self._make_hook(i)))
        return self

    def _make_hook(self, i: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if not self.armed:
                return
            # The classifier has no activation: its logits stand for both.
            self._pre[i] = (output if i == len(self.layers) - 1 else inputs[0]).detach()
            self._act[i] = output.detach()
            if output.requires_grad:
                output.register_hook(lambda g: self._act_grad.__setitem__(i, g.detach()))

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._reset()

    def __enter__(self) -> LayerProbe:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _buffers(self, total: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Bin-index buffers kept between captures: fresh megabytes would cost a page fault per 4 KiB."""
        if self._buf is None or self._buf.numel() < total or self._buf.device != dev:
            self._buf = torch.empty(total, device=dev)
            self._idx = torch.empty(total, device=dev, dtype=torch.int32)
        return self._buf[:total], self._idx[:total]

    def _offsets(self, sizes: tuple[int, ...], bins: int, dev: torch.device) -> torch.Tensor:
        """Per value: its tensor's block of bins plus its lane; cached, since the same few layouts repeat
        (with and without weights, and a smaller last batch)."""
        key = (sizes, bins, dev)
        if key not in self._offsets_cache:
            if len(self._offsets_cache) >= 4:
                self._offsets_cache.pop(next(iter(self._offsets_cache)))
            block = torch.repeat_interleave(torch.arange(len(sizes), device=dev, dtype=torch.int32) * bins,
                                            torch.tensor(sizes, device=dev))
            lane = torch.arange(sum(sizes), device=dev, dtype=torch.int32) % LANES
            self._offsets_cache[key] = block + lane * (len(sizes) * bins)
        return self._offsets_cache[key]

    # -- a capture --------------------------------------------------------------------------
    def before_step(self) -> None:
        """Call between backward and the optimizer step: remembers the weights the update starts from."""
        with torch.no_grad():
            self._w_before = torch._foreach_mul([layer.weight for layer in self.layers], 1.0)

    def take(self, step: int) -> Capture:
        """Call after the optimizer step: hands over what the armed step saw and disarms the probe.

        Only the update's size needs the live weights, so it is measured here; everything else in
        the capture is a tensor no later step writes to, and ``summarise`` may run on another thread.
        """
        self.armed = False
        if any(t is None for t in self._act) or self._w_before is None:
            raise RuntimeError("take() needs an armed forward, a backward and before_step() first")
        with torch.no_grad():
            w_after = [layer.weight.detach() for layer in self.layers]
            update_norm = torch._foreach_norm(torch._foreach_sub(w_after, self._w_before))
            grads = [layer.weight.grad if layer.weight.grad is not None else torch.zeros_like(layer.weight)
                     for layer in self.layers]
        capture = Capture(step, list(self._pre), list(self._act),  # type: ignore[arg-type]
                          [g if g is not None else torch.zeros_like(a)
                           for g, a in zip(self._act_grad, self._act, strict=True)],  # type: ignore[misc]
                          grads, self._w_before, update_norm,
                          fresh_weights=self._captures % self.weight_every == 0)
        self._captures += 1
        self._reset()
        return capture

    def collect(self, step: int) -> dict[str, Any]:
        """``take`` and ``summarise`` in one call, on this thread: returns the ``layers`` event."""
        return self.summarise(self.take(step))

    def summarise(self, cap: Capture) -> dict[str, Any]:
        with torch.no_grad():
            return self._summarise(cap)

    def _summarise(self, cap: Capture) -> dict[str, Any]:
        layers = self.layers
        n = len(layers)
        step = cap.step
        pre = [t.float() for t in cap.pre]
        act = [t.float() for t in cap.act]
        act_grad, grads, w_before = cap.act_grad, cap.grads, cap.w_before
        dev = w_before[0].device

        # 1) bounds of every tensor, brought to Python in one sync
        fresh = cap.fresh_weights or self._weights is None
        kinds = HIST_NAMES if fresh else HIST_NAMES[:3]
        per = len(kinds)
        tensors = [t for i in range(n) for t in (pre[i], act[i], grads[i], w_before[i])[:per]]
        flat = [t.reshape(-1) for t in tensors]
        mm = torch.stack([torch.stack(torch.aminmax(t)) for t in flat]).tolist()
        ranges = [bounds(lo, hi) for lo, hi in mm]

        # 2) every histogram at once. Each value becomes its bin in local coordinates, (x - lo) * scale,
        #    small numbers that float32 bins as exactly as float64 would; then one integer add moves tensor k
        #    to its own block of bins and one bincount counts them all. The add also spreads neighbouring
        #    values over LANES copies of the counters: a run of equal bins (half a ReLU layer is 0) would
        #    otherwise make every increment wait for the previous one.
        bins = self.bins
        sizes = tuple(t.numel() for t in flat)
        buf, idx = self._buffers(sum(sizes), dev)
        bad = []
        pos = 0
        for k, (t, (lo, hi)) in enumerate(zip(flat, ranges, strict=True)):
            part = buf[pos:pos + t.numel()]
            pos += t.numel()
            if hi > lo:
                torch.sub(t, lo, out=part).mul_(bins / (hi - lo)).clamp_max_(bins - 0.5)
            else:  # NaN or inf inside: its counts are reported as zeros
                part.zero_()
                bad.append(k)
        idx.copy_(buf)
        idx.add_(self._offsets(sizes, bins, dev))
        counts_t = torch.bincount(idx, minlength=LANES * len(flat) * bins).view(LANES, len(flat), bins).sum(0)
        if bad:
            counts_t[bad] = 0
        counts = counts_t.tolist()

        # 3) moments, two-pass (mean, then squares about it) in the now free float buffer: a deep
        #    sigmoid net's activations can have std/mean ~ 1e-4, where E[x^2] - E[x]^2 loses every digit
        def moments(t: torch.Tensor, scratch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mean = t.sum() / t.numel()
            d = torch.sub(t, mean, out=scratch)
            return mean, (torch.dot(d, d) / t.numel()).sqrt()

        largest = max(max(sizes), max(g.numel() for g in act_grad))
        scratch = buf[:largest] if buf.numel() >= largest else torch.empty(largest, device=dev)
        pre_m = [moments(flat[per * i], scratch[:flat[per * i].numel()]) for i in range(n)]
        act_m = [moments(flat[per * i + 1], scratch[:flat[per * i + 1].numel()]) for i in range(n)]
        if fresh:
            w_std = [moments(flat[per * i + 3], scratch[:flat[per * i + 3].numel()])[1] for i in range(n)]
            duplicate = [duplicate_fraction(w) for w in w_before]
        else:
            w_std = [torch.tensor(v, device=dev) for v in self._weights["std"]]
            duplicate = [torch.tensor(v, device=dev) for v in self._weights["duplicate"]]
        act_grad_std = [moments(g.reshape(-1).float(), scratch[:g.numel()])[1] for g in act_grad]
        grad_norm = torch._foreach_norm(grads)
        before_norm = torch._foreach_norm(w_before)
        update_norm = cap.update_norm
        zero = torch.zeros((), device=dev)

        # 4) per-unit counts, exact: a unit is a feature (linear) or a channel (conv), and it is dead
        #    (or saturated) when every sample of the batch leaves it at 0 (or in one flat tail)
        dead, saturated = [], []
        for i in range(n):
            if layers[i].kind == "output":
                dead.append(zero)
                saturated.append(zero)
            else:
                a = act[i]
                over = (0, 2, 3) if a.ndim == 4 else 0
                top, bottom = a.amax(over), a.amin(over)
                dead.append(((top == 0) & (bottom == 0)).float().mean())
                if self.saturates:
                    lo, hi = self.saturates
                    saturated.append(((bottom >= hi) | (top <= lo)).float().mean())
                else:
                    saturated.append(zero)

        columns = [
            [m[0] for m in pre_m], [m[1] for m in pre_m], [m[0] for m in act_m], [m[1] for m in act_m],
            grad_norm, act_grad_std, w_std,
            [u / b.clamp_min(1e-30) for u, b in zip(update_norm, before_norm, strict=True)],
            dead, saturated, duplicate,
        ]
        table = torch.stack([torch.stack([c.reshape(()).float() for c in col]) for col in columns]).T.tolist()

        # 5) plain numbers out; NaN/inf become None so the JSON stays valid
        if fresh:
            w_col, d_col = STAT_NAMES.index("weight_std"), STAT_NAMES.index("duplicate_frac")
            self._weights = {"step": step, "std": [row[w_col] for row in table],
                             "duplicate": [row[d_col] for row in table],
                             "hist": [{"lo": ranges[per * i + 3][0], "hi": ranges[per * i + 3][1],
                                       "counts": counts[per * i + 3], "step": step} for i in range(n)]}
        assert self._weights is not None
        out = []
        for i, layer in enumerate(layers):
            stats = {k: (v if math.isfinite(v) else None) for k, v in zip(STAT_NAMES, table[i], strict=True)}
            hist = {}
            for j, name in enumerate(kinds):
                lo, hi = ranges[per * i + j]
                hist[name] = {"lo": lo, "hi": hi, "counts": counts[per * i + j], "step": step}
            hist["weight"] = self._weights["hist"][i]
            out.append({"name": layer.name, "kind": layer.kind, "stats": stats, "hist": hist,
                        "weight_step": self._weights["step"]})
        return {"type": "layers", "step": step, "layers": out}
