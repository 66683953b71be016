"""The GPU path of a capture's summary, in torch: every number computed where the tensors are and brought
to the host together, the capture's one sync (``benchmarks/gpu_check.py`` counts them on CUDA).

It gives the CPU path's event (``compiled.py``): the same histogram range rule (``bounds.py``), every
value binned in float64 against numpy's edges (``np.linspace(lo, hi, bins + 1)``: ``i * step + lo``, the
last edge ``hi``), the same closed-form slopes (``layers.slope_of``). Nothing here waits for the host
(no ``.item()``, no ``unique``, no index tensor built from Python lists), and per-layer statistics are
taken once per run of equal-shape layers (``stacked_runs``), not once per layer.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from deepscope.engine.telemetry.bounds import PAD, TIE
from deepscope.engine.telemetry.event import histogram
from deepscope.engine.telemetry.layers import WatchedLayer, slope_of, units_shape

# Values per stacked group: a few operations on 512 KB follow, which stays in cache; one stack of 100
# layers streamed each operation through memory.
CHUNK_VALUES = 1 << 17


def device_bounds(flat: list[torch.Tensor]) -> torch.Tensor:
    """The histogram range of every tensor as a (tensors, 2) float64 tensor on their device (bounds.py)."""
    mm = torch.stack([torch.stack(torch.aminmax(t)) for t in flat]).double()
    lo, hi = mm[:, 0], mm[:, 1]
    finite = lo.isfinite() & hi.isfinite()
    scale = torch.maximum(torch.maximum(lo.abs(), hi.abs()), torch.ones_like(lo))
    pad = torch.where(hi - lo <= TIE * scale, torch.maximum(lo.abs(), torch.ones_like(lo)) * PAD, 0.0)
    zero = torch.zeros_like(lo)
    return torch.stack([torch.where(finite, lo - pad, zero), torch.where(finite, hi + pad, zero)], 1)


@functools.lru_cache(maxsize=8)
def _owners(sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Per value: the index of its tensor. Filled on the device: copying the sizes there would sync."""
    return torch.cat([torch.full((size,), k, dtype=torch.int64, device=device) for k, size in enumerate(sizes)])


def device_histograms(flat: list[torch.Tensor], ranges: torch.Tensor, bins: int) -> torch.Tensor:
    """Exact equal-width counts of every tensor over its range, as a (tensors, bins) tensor; a tensor with
    NaN or inf inside gets zero counts."""
    dev, n = flat[0].device, len(flat)
    which = _owners(tuple(t.numel() for t in flat), dev)
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
    return counts * valid[:, None]


def stacked_runs(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Runs of consecutive tensors of equal shape, stacked on a new first dimension in chunks of at most
    CHUNK_VALUES values, in order: their results concatenate into one value per tensor."""
    runs: list[list[int]] = []
    for i, t in enumerate(tensors):
        prev = runs[-1] if runs else None
        if prev is None or tensors[prev[0]].shape != t.shape or (len(prev) + 1) * t.numel() > CHUNK_VALUES:
            runs.append([i])
        else:
            prev.append(i)
    return [torch.stack([tensors[i] for i in run]) for run in runs]


def moments_of(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of every tensor (two-pass, float64 sums), as two tensors of len(tensors)."""
    means, stds = [], []
    for rows in stacked_runs([t.reshape(-1).float() for t in tensors]):
        rows = rows.double()
        mean = rows.mean(1)
        means.append(mean)
        stds.append((rows - mean[:, None]).square_().mean(1).sqrt_())
    return torch.cat(means), torch.cat(stds)


@functools.lru_cache(maxsize=64)
def hash_vector(size: int) -> np.ndarray:
    """The fixed random vector each unit's incoming weights are hashed with (the duplicate search)."""
    return np.random.default_rng(12345).standard_normal(size)


def duplicate_fractions(w: torch.Tensor) -> torch.Tensor:
    """Fraction of units with another unit's incoming weights, for G layers stacked as (G, units, fan-in).
    Rows sorted by a hash fall into runs of equal hashes; each row is compared exactly with the first of
    its run (``compiled.duplicate_fraction`` on the CPU)."""
    g, n, k = w.shape
    if n < 2:
        return torch.zeros(g, device=w.device)
    probe = torch.from_numpy(hash_vector(k)).to(w.device)
    keys, order = (w.double() * probe).sum(2).sort(dim=1, stable=True)
    position = torch.arange(n, device=w.device).expand(g, n)
    starts_run = torch.ones(g, n, dtype=torch.bool, device=w.device)
    starts_run[:, 1:] = keys[:, 1:] != keys[:, :-1]
    run_start = torch.where(starts_run, position, 0).cummax(1).values
    offset = (torch.arange(g, device=w.device) * n)[:, None]
    sorted_rows = w.reshape(g * n, k).index_select(0, (order + offset).flatten())
    # rows picked with flat row numbers: take_along_dim's broadcasting was 5x slower
    same = (sorted_rows == sorted_rows.index_select(0, (run_start + offset).flatten())).all(1).view(g, n)
    members = torch.zeros(g, n, device=w.device).scatter_add_(1, run_start, same.float())
    return (same & (members.gather(1, run_start) > 1)).float().mean(1)


def _unit_rows(layers: list[WatchedLayer], z: list[torch.Tensor], a: list[torch.Tensor],
               units: list[torch.Tensor | None] | None) -> torch.Tensor:
    """(dead, saturated, slope) per layer, NaN where a layer has none."""
    dev, rows = z[0].device, []
    nan = torch.full((), float("nan"), device=dev, dtype=torch.float64)
    for i, layer in enumerate(layers):
        if not layer.has_units:
            rows.append(torch.stack([nan, nan, nan]))
            continue
        act = layer.activation
        counted = units[i] if units is not None and units[i] is not None else a[i]
        dead = 1 - (counted.reshape(units_shape(counted, layer.unit_axis)) != 0).any(2).any(0).double().mean()
        if act is None or z[i].numel() != a[i].numel():
            rows.append(torch.stack([dead, nan, nan]))
            continue
        s = slope_of(act.code, z[i].double(), a[i].double(), act.param)
        saturated = (s.abs() < act.flat_below).double().mean() if act.saturating else torch.zeros_like(nan)
        rows.append(torch.stack([dead, saturated, s.mean()]))
    return torch.stack(rows)


def device_summary(layers: list[WatchedLayer], cap: Any, bins: int) -> tuple[np.ndarray, list[dict]]:
    """The stat table (layers x STAT_NAMES) and histograms per layer, as ``Summariser._on_host`` gives
    them, with one sync."""
    from deepscope.engine.telemetry.event import STAT_NAMES

    n, per = len(layers), 3 + (cap.w_before is not None)
    flat = [t.reshape(-1).float() for i in range(n)
            for t in (cap.pre[i], cap.act[i], cap.grads[i], *([cap.w_before[i]] if per == 4 else []))]
    ranges = device_bounds(flat)
    counts = device_histograms(flat, ranges, bins)
    mean, std = (m.view(n, per) for m in moments_of(flat))
    dev = ranges.device
    nan = torch.full((n,), float("nan"), device=dev, dtype=torch.float64)
    present = [i for i in range(n) if cap.act_grad[i] is not None]
    by_layer = dict(zip(present, moments_of([cap.act_grad[i] for i in present])[1], strict=True)) if present else {}
    units = _unit_rows(layers, cap.pre, cap.act, cap.units.acts if cap.units is not None and cap.units_fresh else None)
    norm = cap.norm_params.double() if cap.norm_params is not None else torch.stack([nan, nan], 1)
    columns = {
        "preact_mean": mean[:, 0], "preact_std": std[:, 0], "act_mean": mean[:, 1], "act_std": std[:, 1],
        "grad_norm": torch.stack(torch._foreach_norm([cap.grads[i].double() for i in range(n)])),
        "act_grad_std": torch.stack([by_layer.get(i, nan[0]) for i in range(n)]),
        "weight_std": std[:, 3] if per == 4 else nan,
        "update_ratio": cap.update[:, 0].double() / cap.update[:, 1].double().clamp_min(1e-30),
        "dead_frac": units[:, 0], "saturated_frac": units[:, 1], "slope_mean": units[:, 2],
        "duplicate_frac": torch.cat([duplicate_fractions(w.reshape(w.shape[0], w.shape[1], -1))
                                     for w in stacked_runs(cap.w_before)]).double() if per == 4 else nan,
        "bn_gamma_mean": norm[:, 0], "bn_beta_mean": norm[:, 1]}
    table = torch.stack([columns[name] for name in STAT_NAMES], 1)
    host = torch.cat([ranges.flatten(), counts.flatten().double(), table.flatten()]).cpu().numpy()  # the one sync
    k = len(flat)
    r, c = host[:2 * k].reshape(k, 2).tolist(), host[2 * k:2 * k + k * bins].astype(np.int64).reshape(k, bins).tolist()
    hists = [{kind: histogram(*r[i * per + j], c[i * per + j], cap.step) if j < per else None
              for j, kind in enumerate(("preact", "act", "grad", "weight"))} for i in range(n)]
    return host[2 * k + k * bins:].reshape(n, len(STAT_NAMES)).copy(), hists
