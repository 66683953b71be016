"""Pure tensor functions behind a capture: bounds, every histogram in one pass, moments, unit counts
and duplicate units. No hooks, no event format: a test checks each against numpy on the same tensor.

Why these shapes (docs/telemetry.md has the measurements): a histogram per tensor with ``.item()``
costs 13 ms for 20 layers; here all bounds come back in one ``tolist()``, all counts in one
``bincount``, and norms go through ``torch._foreach_norm``.

Two ways to the same counts. On the CPU, values are binned in float32 and the few near a bin edge are
binned again in float64 (``batched_histograms``). On a GPU, where a host sync stalls the pipeline and
float64 is cheap, bounds stay on the device and every value is binned in float64
(``device_bounds`` and ``device_histograms``): nothing there waits for the host, so a capture syncs
once, when its numbers are read.
"""

from __future__ import annotations

import functools
import math
from typing import Any

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


def device_bounds(flat: list[torch.Tensor]) -> torch.Tensor:
    """``bounds`` of every tensor as a (tensors, 2) float64 tensor on their device, without a sync."""
    mm = torch.stack([torch.stack(torch.aminmax(t)) for t in flat]).double()
    lo, hi = mm[:, 0], mm[:, 1]
    finite = lo.isfinite() & hi.isfinite()
    scale = torch.maximum(torch.maximum(lo.abs(), hi.abs()), torch.ones_like(lo))
    pad = torch.where(hi - lo <= 1e-12 * scale, torch.maximum(lo.abs(), torch.ones_like(lo)) * 1e-3, 0.0)
    zero = torch.zeros_like(lo)
    return torch.stack([torch.where(finite, lo - pad, zero), torch.where(finite, hi + pad, zero)], 1)


def device_histograms(flat: list[torch.Tensor], ranges: torch.Tensor, bins: int,
                      buffers: HistogramBuffers) -> torch.Tensor:
    """The counts of ``batched_histograms``, as a (tensors, bins) tensor, computed without a sync: every
    value is binned in float64 against numpy's edges (``np.linspace(lo, hi, bins + 1)``: i * step + lo,
    the last edge hi), as ``_rebin_near_edges`` does for the few near an edge on the CPU."""
    dev, n = flat[0].device, len(flat)
    which = buffers.owners(tuple(t.numel() for t in flat), dev)
    x = torch.cat([t.reshape(-1) for t in flat]).double()
    lo, hi = ranges[:, 0], ranges[:, 1]
    valid = hi > lo
    span = torch.where(valid, hi - lo, torch.ones_like(lo))
    edges = torch.arange(bins + 1, device=dev, dtype=torch.float64)[None] * (span / bins)[:, None]
    edges = edges + lo[:, None]
    edges[:, -1] = hi
    j = ((x - lo[which]) * (bins / span)[which]).floor_().clamp_(0, bins - 1).nan_to_num_(0.0).long()
    j -= (x < edges[which, j]).long()
    j += ((x >= edges[which, j + 1]) & (j != bins - 1)).long()
    j.clamp_(0, bins - 1).add_(which * bins)
    # scatter_add_, not bincount: CUDA's bincount reads the largest index on the host first (a sync)
    counts = torch.zeros(n * bins, dtype=torch.int64, device=dev).scatter_add_(0, j, torch.ones_like(j)).view(n, bins)
    return counts * valid[:, None]  # a tensor with NaN or inf inside gets zero counts


class HistogramBuffers:
    """Scratch kept between captures: fresh megabytes would cost a page fault per 4 KiB."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None
        self.idx: torch.Tensor | None = None
        self._layouts: dict[Any, torch.Tensor] = {}

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

    def owners(self, sizes: tuple[int, ...], dev: torch.device) -> torch.Tensor:
        """Per value: the index of its tensor (int64), cached per layout (the same few repeat: with and
        without weights, and a smaller last batch)."""
        key = ("owners", sizes, dev)
        if key not in self._layouts:
            if len(self._layouts) >= 8:
                self._layouts.pop(next(iter(self._layouts)))
            # Filled on the device: copying the sizes there from the host would be a sync.
            self._layouts[key] = torch.cat([torch.full((size,), k, dtype=torch.int64, device=dev)
                                            for k, size in enumerate(sizes)])
        return self._layouts[key]

    def lanes(self, n_bins: int, dev: torch.device) -> torch.Tensor:
        """LANES offsets, one per lane: each lane's copy of the counters starts n_bins further on."""
        key = ("lanes", n_bins, dev)
        if key not in self._layouts:
            self._layouts[key] = torch.arange(LANES, dtype=torch.int32, device=dev) * n_bins
        return self._layouts[key]


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
    # Tensor k's block of bins, then the lanes: adds in place, no per-value offset table (a CNN's was
    # 100 MB a layout, and building it made the first two captures cost 150 ms more each).
    pos = 0
    for k, size in enumerate(sizes):
        if k:
            idx[pos:pos + size].add_(k * bins)
        pos += size
    body = pos - pos % LANES
    idx[:body].view(-1, LANES).add_(buffers.lanes(len(flat) * bins, dev))
    counts = torch.bincount(idx, minlength=LANES * len(flat) * bins).view(LANES, len(flat), bins).sum(0)
    if bad:
        counts[bad] = 0
    return counts.tolist()


EDGE_EPS = 1e-3  # in bins: far wider than float32 rounding of (x - lo) * scale for |local coordinate| < bins


def _rebin_near_edges(flat: list[torch.Tensor], ranges: list[tuple[float, float]], bins: int,
                      buf: torch.Tensor, idx: torch.Tensor) -> None:
    """Values within float32 rounding of a bin edge are binned again in float64 against numpy's own
    edges (``np.linspace(lo, hi, bins + 1)``: i * step + lo, the last edge hi), so every count equals
    ``np.histogram``'s. Few values qualify; finding them is two passes, and binning them is one batch
    for all tensors (per tensor, it was 13 of a 20-layer capture's 22 ms)."""
    # Near an edge; but a value exactly at the lower bound (ReLU's zeros: half a layer) is bin 0 for sure.
    above_lo = buf > 0
    frac = buf.frac_()  # in place (the local coordinates are spent once idx holds the bins): u - floor(u), u >= 0
    near = ((frac < EDGE_EPS).logical_and_(above_lo).logical_or_(frac > 1 - EDGE_EPS)).nonzero().flatten()
    if near.numel() == 0:
        return
    starts = torch.tensor([0] + [t.numel() for t in flat]).cumsum(0)
    which = torch.searchsorted(starts, near, right=True) - 1
    # near is in ascending order, so each tensor's values are one run of it
    x = torch.empty(near.numel(), dtype=torch.float64)
    at = 0
    for k, n in enumerate(torch.bincount(which, minlength=len(flat)).tolist()):
        if n:
            x[at:at + n] = flat[k].reshape(-1)[near[at:at + n] - starts[k]]
            at += n
    bounds = torch.tensor(ranges, dtype=torch.float64)[which]
    lo, hi = bounds[:, 0], bounds[:, 1]
    valid = hi > lo
    span = torch.where(valid, hi - lo, 1.0)
    step = span / bins

    def edge(j: torch.Tensor) -> torch.Tensor:
        return torch.where(j >= bins, hi, j * step + lo)

    j = ((x - lo) * (bins / span)).floor_().clamp_(0, bins - 1)
    j -= (x < edge(j)).double()
    j += ((x >= edge(j + 1)) & (j != bins - 1)).double()
    idx[near[valid]] = j.clamp_(0, bins - 1)[valid].to(idx.dtype)


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

    Each row is hashed with one dot product; rows sorted by hash fall into runs of equal hashes, and each
    row is compared exactly with the first row of its run. No step waits for the host (no ``unique``,
    no ``.item()``), so on a GPU it costs no sync."""
    rows = w.reshape(w.shape[0], -1)
    n = rows.shape[0]
    if n < 2:
        return torch.zeros((), device=w.device)
    probe = _hash_vector(rows.shape[1], w.device, w.dtype)
    # Identical rows give bit-identical hashes: each row is reduced with the same sequence of operations.
    keys, order = (rows * probe).sum(1).sort()
    position = torch.arange(n, device=w.device)
    starts_run = torch.ones(n, dtype=torch.bool, device=w.device)
    starts_run[1:] = keys[1:] != keys[:-1]
    run_start = torch.where(starts_run, position, 0).cummax(0).values
    sorted_rows = rows[order]
    same = (sorted_rows == sorted_rows[run_start]).all(1)
    members = torch.zeros(n, device=w.device).scatter_add_(0, run_start, same.float())
    return (same & (members[run_start] > 1)).float().mean()
