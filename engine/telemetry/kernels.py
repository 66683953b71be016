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
        self.raw: torch.Tensor = torch.empty(0)
        self.buf: torch.Tensor | None = None
        self.idx: torch.Tensor | None = None
        self._layouts: dict[Any, torch.Tensor] = {}

    def get(self, total: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw values, local coordinates and bins of ``total`` values (a chunk of ``batched_histograms``)."""
        if self.buf is None or self.buf.numel() < total or self.buf.device != dev:
            self.raw = torch.empty(total, device=dev)
            self.buf = torch.empty(total, device=dev)
            self.idx = torch.empty(total, device=dev, dtype=torch.int32)
        assert self.idx is not None
        return self.raw[:total], self.buf[:total], self.idx[:total]

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


# Values binned at a time: 2 MB of float32 local coordinates and 2 MB of int32 bins stay in cache through
# the dozen passes of a chunk. One buffer for a whole capture streamed every pass through memory, and a
# CNN's was 200 MB of fresh pages to fault in on the first capture.
HIST_CHUNK = 1 << 19


def batched_histograms(flat: list[torch.Tensor], ranges: list[tuple[float, float]], bins: int,
                       buffers: HistogramBuffers) -> list[list[int]]:
    """Exact equal-width histograms of every tensor in ``flat`` over its range, a ``bincount`` per
    HIST_CHUNK values.

    Each value becomes its bin in local coordinates, (x - lo) * scale: small numbers that float32
    bins as exactly as float64 would. One integer add then moves tensor k to its own block of bins
    and spreads neighbouring values over LANES copies of the counters: a run of equal bins (half a
    ReLU layer is 0) would otherwise make every increment wait for the previous one. A tensor with
    NaN or inf inside gets zero counts.
    """
    dev, n = flat[0].device, len(flat)
    counts = torch.zeros(LANES * n * bins, dtype=torch.int64, device=dev)
    chunk: list[tuple[int, torch.Tensor]] = []  # (tensor index, a slice of its values)
    size = 0
    for k, t in enumerate(flat):
        for at in range(0, t.numel(), HIST_CHUNK):
            piece = t[at:at + HIST_CHUNK]
            chunk.append((k, piece))
            size += piece.numel()
            if size >= HIST_CHUNK:
                counts += _count_chunk(chunk, size, ranges, bins, n, buffers)
                chunk, size = [], 0
    if chunk:
        counts += _count_chunk(chunk, size, ranges, bins, n, buffers)
    counts = counts.view(LANES, n, bins).sum(0)
    bad = [k for k, (lo, hi) in enumerate(ranges) if not hi > lo]
    if bad:
        counts[bad] = 0
    return counts.tolist()


def _equal_size_runs(chunk: list[tuple[int, torch.Tensor]]) -> list[tuple[slice, slice, int, int]]:
    """For each run of consecutive pieces of one size: its pieces, its values in the chunk, how many
    pieces and the values in each."""
    sizes: list[list[int]] = []  # [first piece, pieces, values each, first value]
    pos = 0
    for p, (_, x) in enumerate(chunk):
        if sizes and sizes[-1][2] == x.numel():
            sizes[-1][1] += 1
        else:
            sizes.append([p, 1, x.numel(), pos])
        pos += x.numel()
    return [(slice(first, first + count), slice(at, at + count * each), count, each)
            for first, count, each, at in sizes]


def _count_chunk(chunk: list[tuple[int, torch.Tensor]], size: int, ranges: list[tuple[float, float]], bins: int,
                 n: int, buffers: HistogramBuffers) -> torch.Tensor:
    """The lanes' counts (LANES * n * bins) of the values in ``chunk``. Pieces of one size (a deep MLP's
    layers) are handled as the rows of one matrix: a few operations per chunk, not a few per layer."""
    dev = chunk[0][1].device
    raw, buf, idx = buffers.get(size, dev)
    if len(chunk) == 1:
        raw = chunk[0][1].reshape(-1)
    else:
        torch.cat([x for _, x in chunk], out=raw)
    lo_hi = torch.tensor([ranges[k] for k, _ in chunk], dtype=torch.float64, device=dev)
    valid = [ranges[k][1] > ranges[k][0] for k, _ in chunk]
    # An invalid range (NaN or inf inside): its values are set to bin 0 below, and its counts zeroed after.
    lo32 = torch.tensor([ranges[k][0] if ok else 0.0 for (k, _), ok in zip(chunk, valid, strict=True)],
                        dtype=raw.dtype, device=dev)
    scale32 = torch.tensor([bins / (ranges[k][1] - ranges[k][0]) if ok else 0.0
                            for (k, _), ok in zip(chunk, valid, strict=True)], dtype=raw.dtype, device=dev)
    offset = torch.tensor([k * bins for k, _ in chunk], dtype=idx.dtype, device=dev)
    runs = _equal_size_runs(chunk)
    for rows, values, count, each in runs:
        view = buf[values].view(count, each)
        torch.sub(raw[values].view(count, each), lo32[rows, None], out=view)
        # Clamped to EDGE_EPS from below: a value at the lower bound (ReLU's zeros: half a layer) is bin 0
        # for sure, and stays off the near-edge list without a test of its own.
        view.mul_(scale32[rows, None]).clamp_(EDGE_EPS, bins - 0.5)
    pos = 0
    for (_, x), ok in zip(chunk, valid, strict=True):
        if not ok:
            buf[pos:pos + x.numel()].fill_(EDGE_EPS)  # NaN stays NaN through the clamp
        pos += x.numel()
    idx.copy_(buf)
    _rebin_near_edges(raw, lo_hi, [x.numel() for _, x in chunk], bins, buf, idx)
    # Tensor k's block of bins plus the lane, in one add in place: no per-value offset table.
    lanes = buffers.lanes(n * bins, dev)
    for rows, values, count, each in runs:
        if each % LANES == 0:
            idx[values].view(count, each // LANES, LANES).add_(offset[rows, None, None] + lanes)
        else:
            region = idx[values]
            region.view(count, each).add_(offset[rows, None])
            body = region.numel() - region.numel() % LANES
            region[:body].view(-1, LANES).add_(lanes)
    return torch.bincount(idx, minlength=LANES * n * bins)


EDGE_EPS = 1e-3  # in bins: far wider than float32 rounding of (x - lo) * scale for |local coordinate| < bins


def _rebin_near_edges(raw: torch.Tensor, lo_hi: torch.Tensor, sizes: list[int], bins: int, buf: torch.Tensor,
                      idx: torch.Tensor) -> None:
    """Values within float32 rounding of a bin edge are binned again in float64 against numpy's own
    edges (``np.linspace(lo, hi, bins + 1)``: i * step + lo, the last edge hi), so every count equals
    ``np.histogram``'s. Few values qualify; finding them is two comparisons and a ``nonzero``, and
    binning them one batch for the chunk (per tensor, it was 13 of a 20-layer capture's 22 ms)."""
    frac = buf.frac_()  # in place (the local coordinates are spent once idx holds the bins)
    near = (frac < EDGE_EPS).logical_or_(frac > 1 - EDGE_EPS).nonzero().flatten()
    if near.numel() == 0:
        return
    starts = torch.tensor([0, *sizes], device=raw.device).cumsum(0)
    bounds = lo_hi[torch.searchsorted(starts, near, right=True) - 1]
    x = raw[near].double()
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


# Values per stacked group: 512 KB of float32 stays in a core's L2 cache for the few operations that follow.
# One stack of all 100 layers streamed each operation through memory and was slower than a loop per layer.
CHUNK_VALUES = 1 << 17


def stacked_runs(tensors: list[torch.Tensor], kinds: list[Any] | None = None) -> list[tuple[int, torch.Tensor]]:
    """Runs of consecutive tensors of equal shape (and equal ``kinds``, where given), stacked on a new first
    dimension in chunks of at most CHUNK_VALUES values, each with the position of its first tensor. A
    statistic then costs a few operations per chunk instead of a few per layer (per layer, the stat table
    was 25 of a 100-layer capture's 70 ms: mostly Python). The chunks are in order, so their results
    concatenate into one value per tensor with no index tensor: on a GPU, building one from the host would
    be a sync."""
    runs: list[list[int]] = []
    for i, t in enumerate(tensors):
        prev = runs[-1] if runs else None
        if (prev is None or tensors[prev[0]].shape != t.shape or (kinds is not None and kinds[prev[0]] != kinds[i])
                or (len(prev) + 1) * t.numel() > CHUNK_VALUES):
            runs.append([i])
        else:
            prev.append(i)
    return [(run[0], torch.stack([tensors[i] for i in run])) for run in runs]


def row_moments(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of each row of a (G, N) tensor, overwriting it (the caller's stacked copy). Two-pass
    (mean, then squares about it): a deep sigmoid net's activations can have std/mean ~ 1e-4, where
    E[x^2] - E[x]^2 loses every digit."""
    mean = rows.sum(1) / rows.shape[1]
    d = rows.sub_(mean[:, None])
    return mean, (d.mul_(d).sum(1) / rows.shape[1]).sqrt_()


def moments_of(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``row_moments`` of every tensor (flattened, in float32), as two tensors of len(tensors)."""
    parts = [row_moments(rows) for _, rows in stacked_runs([t.reshape(-1).float() for t in tensors])]
    return torch.cat([m for m, _ in parts]), torch.cat([s for _, s in parts])


@functools.lru_cache(maxsize=64)
def _hash_vector(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(12345)
    return torch.randn(size, generator=gen).to(device, dtype)


def duplicate_fraction(w: torch.Tensor) -> torch.Tensor:
    """Fraction of units (rows of w, flattened per unit) whose incoming weights equal another unit's."""
    return duplicate_fractions(w.reshape(1, w.shape[0], -1))[0]


def duplicate_fractions(w: torch.Tensor) -> torch.Tensor:
    """``duplicate_fraction`` of each of G layers' weights, stacked as (G, units, fan-in).

    Each row is hashed with one dot product; rows sorted by hash fall into runs of equal hashes, and each
    row is compared exactly with the first row of its run. No step waits for the host (no ``unique``,
    no ``.item()``), so on a GPU it costs no sync."""
    g, n, k = w.shape
    if n < 2:
        return torch.zeros(g, device=w.device)
    probe = _hash_vector(k, w.device, w.dtype)
    # Identical rows give bit-identical hashes: each row is reduced with the same sequence of operations.
    keys, order = (w * probe).sum(2).sort(1)
    position = torch.arange(n, device=w.device).expand(g, n)
    starts_run = torch.ones(g, n, dtype=torch.bool, device=w.device)
    starts_run[:, 1:] = keys[:, 1:] != keys[:, :-1]
    run_start = torch.where(starts_run, position, 0).cummax(1).values
    # rows picked with flat row numbers: take_along_dim's broadcasting made it 5x slower
    offset = (torch.arange(g, device=w.device) * n)[:, None]
    sorted_rows = w.reshape(g * n, k).index_select(0, (order + offset).flatten())
    same = (sorted_rows == sorted_rows.index_select(0, (run_start + offset).flatten())).all(1).view(g, n)
    members = torch.zeros(g, n, device=w.device).scatter_add_(1, run_start, same.float())
    return (same & (members.gather(1, run_start) > 1)).float().mean(1)
