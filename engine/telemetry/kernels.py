"""Pure tensor functions behind a capture: bounds, every histogram in one pass, moments, unit counts
and duplicate units. No hooks, no event format: a test checks each against numpy on the same tensor.

Why these shapes (docs/telemetry.md has the measurements): a histogram per tensor with ``.item()``
costs 13 ms for 20 layers; here all bounds come back in one ``tolist()`` (one sync on CUDA), all
counts in one ``bincount``, and norms go through ``torch._foreach_norm``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

LANES = 4  # interleaved copies of the histogram counters; see batched_histograms


def bounds(lo: float, hi: float) -> tuple[float, float]:
    """Histogram range for data in [lo, hi]; a constant tensor gets a narrow range around its value."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 0.0
    if hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
        pad = max(abs(lo), 1.0) * 1e-3
        return lo - pad, hi + pad
    return lo, hi


def all_bounds(flat: list[torch.Tensor]) -> list[tuple[float, float]]:
    """The histogram range of every tensor, brought to Python in one sync."""
    mm = torch.stack([torch.stack(torch.aminmax(t)) for t in flat]).tolist()
    return [bounds(lo, hi) for lo, hi in mm]


class HistogramBuffers:
    """Scratch kept between captures: fresh megabytes would cost a page fault per 4 KiB."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None
        self.idx: torch.Tensor | None = None
        self._offsets: dict[Any, torch.Tensor] = {}

    def get(self, total: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buf is None or self.buf.numel() < total or self.buf.device != dev:
            self.buf = torch.empty(total, device=dev)
            self.idx = torch.empty(total, device=dev, dtype=torch.int32)
        assert self.idx is not None
        return self.buf[:total], self.idx[:total]

    def scratch(self, size: int, dev: torch.device) -> torch.Tensor:
        """A float buffer of ``size`` for moments, reusing the histogram buffer when it is big enough."""
        if self.buf is not None and self.buf.device == dev and self.buf.numel() >= size:
            return self.buf[:size]
        return torch.empty(size, device=dev)

    def offsets(self, sizes: tuple[int, ...], bins: int, dev: torch.device) -> torch.Tensor:
        """Per value: its tensor's block of bins plus its lane; cached, since the same few layouts repeat
        (with and without weights, and a smaller last batch)."""
        key = (sizes, bins, dev)
        if key not in self._offsets:
            if len(self._offsets) >= 4:
                self._offsets.pop(next(iter(self._offsets)))
            block = torch.repeat_interleave(torch.arange(len(sizes), device=dev, dtype=torch.int32) * bins,
                                            torch.tensor(sizes, device=dev))
            lane = torch.arange(sum(sizes), device=dev, dtype=torch.int32) % LANES
            self._offsets[key] = block + lane * (len(sizes) * bins)
        return self._offsets[key]


def batched_histograms(flat: list[torch.Tensor], ranges: list[tuple[float, float]], bins: int,
                       buffers: HistogramBuffers) -> list[list[int]]:
    """Exact equal-width histograms of every tensor in ``flat`` over its range, in one ``bincount``.

    Each value becomes its bin in local coordinates, (x - lo) * scale: small numbers that float32
    bins as exactly as float64 would. One integer add then moves tensor k to its own block of bins
    and spreads neighbouring values over LANES copies of the counters: a run of equal bins (half a
    ReLU layer is 0) would otherwise make every increment wait for the previous one. A tensor with
    NaN or inf inside gets zero counts.
    """
    dev = flat[0].device
    sizes = tuple(t.numel() for t in flat)
    buf, idx = buffers.get(sum(sizes), dev)
    bad, pos = [], 0
    for k, (t, (lo, hi)) in enumerate(zip(flat, ranges, strict=True)):
        part = buf[pos:pos + t.numel()]
        pos += t.numel()
        if hi > lo:
            torch.sub(t, lo, out=part).mul_(bins / (hi - lo)).clamp_max_(bins - 0.5)
        else:
            part.zero_()
            bad.append(k)
    idx.copy_(buf)
    _rebin_near_edges(flat, ranges, bins, buf, idx)
    idx.add_(buffers.offsets(sizes, bins, dev))
    counts = torch.bincount(idx, minlength=LANES * len(flat) * bins).view(LANES, len(flat), bins).sum(0)
    if bad:
        counts[bad] = 0
    return counts.tolist()


EDGE_EPS = 1e-3  # in bins: far wider than float32 rounding of (x - lo) * scale for |local coordinate| < bins


def _rebin_near_edges(flat: list[torch.Tensor], ranges: list[tuple[float, float]], bins: int,
                      buf: torch.Tensor, idx: torch.Tensor) -> None:
    """Values within float32 rounding of a bin edge are binned again in float64 against numpy's own
    edges, so every count equals ``np.histogram``'s. Few values qualify; finding them is two passes."""
    frac = buf.sub_(idx)  # in place: the local coordinates are spent once idx holds the bins
    # Near an edge; but a value exactly at the lower bound (ReLU's zeros: half a layer) is bin 0 for sure.
    near = (((frac < EDGE_EPS) & ((frac > 0) | (idx > 0))) | (frac > 1 - EDGE_EPS)).nonzero().flatten()
    if near.numel() == 0:
        return
    starts = torch.tensor([0] + [t.numel() for t in flat], device=buf.device).cumsum(0)
    which = torch.searchsorted(starts, near, right=True) - 1
    for k in which.unique().tolist():
        lo, hi = ranges[k]
        if not hi > lo:
            continue
        pos = near[which == k]
        x = flat[k].reshape(-1)[pos - starts[k]].double()
        edges = torch.from_numpy(np.linspace(lo, hi, bins + 1)).to(x.device)
        j = ((x - lo) * (bins / (hi - lo))).floor().clamp_(0, bins - 1).long()
        j -= (x < edges[j]).long()
        j += ((x >= edges[j + 1]) & (j != bins - 1)).long()
        idx[pos] = j.clamp_(0, bins - 1).to(idx.dtype)


def moments(t: torch.Tensor, scratch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of a flat tensor, two-pass (mean, then squares about it) in ``scratch``: a deep
    sigmoid net's activations can have std/mean ~ 1e-4, where E[x^2] - E[x]^2 loses every digit."""
    mean = t.sum() / t.numel()
    d = torch.sub(t, mean, out=scratch)
    return mean, (torch.dot(d, d) / t.numel()).sqrt()


@functools.lru_cache(maxsize=64)
def _hash_vector(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(12345)
    return torch.randn(size, generator=gen).to(device, dtype)


def duplicate_fraction(w: torch.Tensor) -> torch.Tensor:
    """Fraction of units (rows of w, flattened per unit) whose incoming weights equal another unit's.

    Each row is hashed with one dot product and only rows whose hashes collide are compared, so a net
    with no symmetric units pays one multiply-add per weight."""
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
