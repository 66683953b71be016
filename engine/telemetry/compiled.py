"""The CPU capture kernels, compiled with numba: each call does one job for every tensor of a capture,
reading each tensor a few times and leaving its histogram range, exact counts and sums.

Why compiled (docs/telemetry.md has the measurements): a capture reads what the training step has just
written, so it need not cost more than a fraction of that step. Built from torch operations, every
statistic was a pass of its own and every operation a few microseconds of dispatch; on a 6-layer MLP a
capture cost six training steps, nearly all of it overhead. Here a capture is a handful of calls, each
given a table of the tensors it reads (their addresses and sizes), so no Python runs per tensor.

The counts equal ``np.histogram``'s over the same range, value for value. A value's bin is its local
coordinate ``(x - lo) * bins / (hi - lo)`` rounded down, computed in float64; the few values within
EDGE of a bin edge are checked against numpy's own edges (``np.linspace(lo, hi, bins + 1)``:
``i * step + lo``, the last edge ``hi``), as numpy itself does. The GPU path (``kernels.py``) gives the
same counts in torch; ``tests/test_telemetry.py`` holds both to numpy.

The loops are shaped for the compiler: bounds and sums in vectorised passes (``fastmath`` lets them
reassociate; a NaN or inf still shows in the plain sum, which is checked first), bins computed a block at
a time into scratch that stays in cache, then counted into LANES interleaved copies of the counters.
Compiled when this module is first imported (the workers import it before their first run), and cached
on disk by numba where the package folder is writable.

Every table row's address must be that of a live, contiguous float32 tensor of at least the size the
row gives (``tensor_table`` builds them so): the kernels trust it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

from deepscope.engine.telemetry.bounds import PAD, TIE

LANES = 4        # interleaved copies of the counters: a run of equal bins (half a ReLU layer is 0) would
                 # otherwise make every increment wait for the one before
BLOCK = 4096     # values binned at a time: their bin numbers (16 KB) stay in the L1 cache until counted
EDGE = 1e-3      # in bins: far wider than the float64 rounding of a local coordinate
SUMMARY_FIELDS = ("lo", "hi", "mean", "std", "norm")  # a row of ``summarise``'s output, in this order

# Activation codes (engine/telemetry/layers.py maps modules to them)
IDENTITY, RELU, LEAKY, SIGMOID, TANH, ELU, SELU, GELU, SILU, SOFTPLUS = range(10)
SELU_SCALE = 1.0507009873554805

_KW = {"nogil": True, "cache": True, "boundscheck": False}
_VECTOR = {**_KW, "fastmath": {"reassoc", "contract", "nsz"}}


def tensor_table(tensors: list, *columns: list[int]) -> np.ndarray:
    """Rows of (address, number of values, *columns) for contiguous float32 tensors, for the kernels."""
    return np.array([(t.data_ptr(), t.numel(), *extra) for t, *extra in zip(tensors, *columns, strict=True)],
                    np.int64).reshape(len(tensors), 2 + len(columns))


@intrinsic
def _floats_at(typingctx, address):
    """The float32 values at an address (a tensor's ``data_ptr()``)."""
    sig = types.CPointer(types.float32)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.float32)))

    return sig, codegen


@njit(inline="always")
def _ordered(bits):
    """A float32's bits as an int32 that orders as the float does (negative floats have their magnitude bits
    flipped); its own inverse."""
    return bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))


@njit("Tuple((float64, float64, float64))(float32[::1])", **_VECTOR)
def _sum_min_max(x):
    """The sum, min and max of x in one pass (min and max garbage if x holds a NaN or inf, which shows in the
    sum: the caller checks it first). Min and max are taken on the values' bits ordered as integers
    (``_ordered``), which the compiler keeps in vector registers: as floats, with NaN semantics, they were
    compared one at a time (the pass took 0.4 ns a value against 0.17 now)."""
    bits = x.view(np.int32)
    total = 0.0
    lo, hi = np.int32(2147483647), np.int32(-2147483648)
    for i in range(x.size):
        total += x[i]
        k = _ordered(bits[i])
        lo, hi = min(lo, k), max(hi, k)
    ends = np.empty(2, np.int32)
    ends[0], ends[1] = _ordered(lo), _ordered(hi)
    as_floats = ends.view(np.float32)
    return total, np.float64(as_floats[0]), np.float64(as_floats[1])


@njit("float64(float32[::1])", **_VECTOR)
def _sum(x):
    total = 0.0
    for i in range(x.size):
        total += x[i]
    return total


@njit("float64(float32[::1], float64)", **_VECTOR)
def _squares_about(x, mean):
    dev = 0.0
    for i in range(x.size):
        d = np.float64(x[i]) - mean
        dev += d * d
    return dev


@njit("void(float32[::1], float32, float32, int32, int32[::1])", **_VECTOR)
def _bin_block(x, lo, scale, bins, out):
    """Each value's slot in the counters: its bin, computed in float32 (eight to a vector; the rounding,
    under 1e-5 of a bin, is far inside EDGE), plus the offset of its lane; flagged (bit 24) where it lies
    within EDGE of an inner edge and must be checked against numpy's edges. The bin is rounded down and
    compared in float32 and converted last (x >= lo, so rounding down is truncation): converting first,
    then comparing integers, took half as long again."""
    last = np.float32(bins - 1)
    below, above = np.float32(EDGE), np.float32(1.0 - EDGE)
    for i in range(x.size):
        t = (x[i] - lo) * scale
        j = np.floor(t)
        j = j if j < last else last
        f = t - j
        near = ((f < below) & (j > 0)) | ((f > above) & (j < last))
        out[i] = np.int32(j) + np.int32((i & (LANES - 1)) * bins) + (np.int32(near) << 24)


@njit(inline="always")
def _edge_checked(v, j, lo, step, last):
    """numpy's check of a bin guessed within one of the truth: the edges decide."""
    if v < j * step + lo:
        return j - 1
    if j != last and v >= (j + 1) * step + lo:
        return j + 1
    return j


@njit("void(float32[::1], int32[::1], float64, float64, int64, int32[::1])", **_KW)
def _count_block(x, binned, lo, step, bins, lanes):
    """Count each value's slot; a flagged value's bin is decided by numpy's edges, in float64."""
    last = bins - 1
    n = x.size
    i = 0
    while i + 4 <= n:
        k0, k1, k2, k3 = binned[i], binned[i + 1], binned[i + 2], binned[i + 3]
        if (k0 | k1 | k2 | k3) >> 24:
            for q in range(4):
                k = binned[i + q]
                if k >> 24:
                    lane = q * bins  # i is a multiple of LANES here
                    k = lane + _edge_checked(np.float64(x[i + q]), (k & 0xFFFFFF) - lane, lo, step, last)
                lanes[k] += 1
        else:
            lanes[k0] += 1
            lanes[k1] += 1
            lanes[k2] += 1
            lanes[k3] += 1
        i += 4
    while i < n:
        k = binned[i]
        if k >> 24:
            lane = (i & (LANES - 1)) * bins
            k = lane + _edge_checked(np.float64(x[i]), (k & 0xFFFFFF) - lane, lo, step, last)
        lanes[k] += 1
        i += 1


@njit("void(float32[::1], int64, int64[::1], float64[::1], int32[::1], int32[::1])", **_KW)
def tensor_summary(x, bins, counts, out, binned, lanes):
    """Histogram range, exact counts over ``bins`` equal-width bins, mean, std (two-pass: a sigmoid
    layer's std/mean can be 1e-4) and L2 norm of ``x``; ``out`` receives SUMMARY_FIELDS.

    A tensor with NaN or inf inside gets the range (0, 0), zero counts and NaN moments; a constant one a
    narrow range about its value (engine/telemetry/bounds.py). ``binned`` (BLOCK) and ``lanes``
    (LANES * bins) are scratch."""
    n = x.size
    counts[:] = 0
    total, lo, hi = _sum_min_max(x) if n else (np.nan, 0.0, 0.0)
    if not math.isfinite(total):
        out[0], out[1], out[2], out[3], out[4] = 0.0, 0.0, np.nan, np.nan, np.nan
        return
    mean = total / n
    dev = _squares_about(x, mean)
    if hi - lo <= TIE * max(1.0, abs(lo), abs(hi)):  # a constant: every value in the bin of the first
        pad = max(abs(lo), 1.0) * PAD
        lo, hi = lo - pad, hi + pad
        v = np.float64(x[0])
        counts[_edge_checked(v, min(int((v - lo) * bins / (hi - lo)), bins - 1), lo, (hi - lo) / bins, bins - 1)] = n
        out[0], out[1], out[2], out[3], out[4] = lo, hi, mean, math.sqrt(dev / n), abs(v) * math.sqrt(n)
        return
    lanes[:] = 0
    lo32, scale32, step = np.float32(lo), np.float32(bins / (hi - lo)), (hi - lo) / bins
    for start in range(0, n, BLOCK):
        block = x[start:min(n, start + BLOCK)]
        _bin_block(block, lo32, scale32, np.int32(bins), binned)
        _count_block(block, binned, lo, step, bins, lanes)
    for k in range(LANES):
        for j in range(bins):
            counts[j] += lanes[k * bins + j]
    # ||x||^2 = sum (x - mean)^2 + n mean^2: both terms are sums of squares, so nothing cancels
    out[0], out[1], out[2], out[3], out[4] = lo, hi, mean, math.sqrt(dev / n), math.sqrt(dev + n * mean * mean)


@njit("void(int64[:, ::1], int64, int64[:, ::1], float64[:, ::1])", **_KW)
def summarise(table, bins, counts, out):
    """``tensor_summary`` of every row (address, values, histogram?) into ``counts[row]`` and
    ``out[row]``; a row without a histogram gets only its mean and std (``out[row, 2:4]``)."""
    binned = np.empty(BLOCK, np.int32)
    lanes = np.empty(LANES * bins, np.int32)
    for t in range(table.shape[0]):
        x = carray(_floats_at(table[t, 0]), (table[t, 1],))
        if table[t, 2]:
            tensor_summary(x, bins, counts[t], out[t], binned, lanes)
            continue
        total = _sum(x) if x.size else np.nan
        mean = total / x.size if math.isfinite(total) else np.nan
        out[t, 2] = mean
        out[t, 3] = math.sqrt(_squares_about(x, mean) / x.size) if math.isfinite(total) else np.nan


# f'(z) in closed form, from the pre-activation z and the output a = f(z) (reading a saves an exp)
_SLOPES = (
    lambda z, a, p: 1.0,                                           # IDENTITY
    lambda z, a, p: 1.0 if z > 0 else 0.0,                         # RELU
    lambda z, a, p: 1.0 if z > 0 else p,                           # LEAKY
    lambda z, a, p: a * (1.0 - a),                                 # SIGMOID
    lambda z, a, p: 1.0 - a * a,                                   # TANH
    lambda z, a, p: 1.0 if z > 0 else a + p,                       # ELU: alpha (e^z - 1) below 0, slope a + alpha
    lambda z, a, p: SELU_SCALE if z > 0 else a + p,                # SELU: likewise, p = scale * alpha
    lambda z, a, p: 0.5 * (1.0 + math.erf(z * 0.7071067811865476))  # GELU, z Phi(z): Phi(z) + z phi(z)
    + z * math.exp(-0.5 * z * z) * 0.3989422804014327,
    lambda z, a, p: (a / z if z != 0 else 0.5) * (1.0 + z * (1.0 - (a / z if z != 0 else 0.5))),  # SILU: z s(z)
    lambda z, a, p: -math.expm1(-a),                               # SOFTPLUS: slope 1 - e^-a
)


def _slope_sums(slope):
    """The slope summed over n values, and the count under ``flat_below``, for one activation: the
    closed form is inlined and the loop has no branch on which activation it is."""
    f = njit(inline="always")(slope)

    @njit(inline="always")
    def sums(z_at, a_at, n, param, flat_below):
        z, a = carray(_floats_at(z_at), (n,)), carray(_floats_at(a_at), (n,))
        total, flat = 0.0, 0.0
        for i in range(n):
            g = f(np.float64(z[i]), np.float64(a[i]), param)
            total += g
            flat += abs(g) < flat_below
        return total, flat

    return sums


(_S0, _S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8, _S9) = (_slope_sums(s) for s in _SLOPES)


@njit("void(int64[:, ::1], float64[:, ::1], float64[:, ::1])", **_VECTOR)
def slopes(table, params, out):
    """Per row (z address, values, a address, activation code) with ``params[row]`` = (its parameter,
    the flat-tail threshold): the mean slope f'(z) and the share of values under the threshold."""
    for t in range(table.shape[0]):
        z_at, n, a_at, code = table[t, 0], table[t, 1], table[t, 2], table[t, 3]
        p, flat_below = params[t, 0], params[t, 1]
        if code == RELU:
            total, flat = _S1(z_at, a_at, n, p, flat_below)
        elif code == LEAKY:
            total, flat = _S2(z_at, a_at, n, p, flat_below)
        elif code == SIGMOID:
            total, flat = _S3(z_at, a_at, n, p, flat_below)
        elif code == TANH:
            total, flat = _S4(z_at, a_at, n, p, flat_below)
        elif code == ELU:
            total, flat = _S5(z_at, a_at, n, p, flat_below)
        elif code == SELU:
            total, flat = _S6(z_at, a_at, n, p, flat_below)
        elif code == GELU:
            total, flat = _S7(z_at, a_at, n, p, flat_below)
        elif code == SILU:
            total, flat = _S8(z_at, a_at, n, p, flat_below)
        elif code == SOFTPLUS:
            total, flat = _S9(z_at, a_at, n, p, flat_below)
        else:
            total, flat = _S0(z_at, a_at, n, p, flat_below)
        out[t, 0] = total / n if n else np.nan
        out[t, 1] = flat / n if n else np.nan


@njit("void(int64[:, ::1], int64, int64[:, ::1], float64[:, ::1], int64[:, ::1], float64[:, ::1], float64[:, ::1])",
      **_KW)
def summarise_capture(table, bins, counts, out, sloped, params, slope_out):
    """``summarise``, then ``slopes`` of the rows (z row, a row, activation code) of ``sloped``: a capture's
    tensors read in one call, each one's address given once."""
    summarise(table, bins, counts, out)
    rows = np.empty((sloped.shape[0], 4), np.int64)
    for r in range(sloped.shape[0]):
        z, a = sloped[r, 0], sloped[r, 1]
        rows[r, 0], rows[r, 1], rows[r, 2], rows[r, 3] = table[z, 0], table[z, 1], table[a, 0], sloped[r, 2]
    slopes(rows, params, slope_out)


@njit("void(float64[:, ::1], int64[::1], int64[::1], float64[:, ::1], int64[::1], boolean[::1], "
      "float64[:, ::1], int64[::1], float64[:, ::1])", **_KW)
def stat_table(out, stat_to, stat_from, slope_out, sloped_layers, saturating, update, columns, stats):
    """A capture's (layers, statistics) table from what ``summarise_capture`` left: ``stats.flat[stat_to]``
    from ``out.flat[stat_from]``; the mean slope and the saturated share (0 where the activation has no
    flat tail) of each of ``sloped_layers``; each layer's update ratio |dW| / |W| from ``update``. The
    rest is NaN. ``columns``: where the slope, the saturated share and the update ratio go."""
    flat_stats, flat_out = stats.reshape(-1), out.reshape(-1)
    flat_stats[:] = np.nan
    for k in range(stat_to.size):
        flat_stats[stat_to[k]] = flat_out[stat_from[k]]
    for r in range(sloped_layers.size):
        i = sloped_layers[r]
        stats[i, columns[0]] = slope_out[r, 0]
        stats[i, columns[1]] = slope_out[r, 1] if saturating[r] else 0.0
    for i in range(stats.shape[0]):
        stats[i, columns[2]] = update[i, 0] / max(update[i, 1], 1e-30)


@njit("void(int64[:, ::1], float64[::1])", **_VECTOR)
def dead_fractions(table, out):
    """Per row (address, values, samples, units, positions) of an activation laid out as (samples, units,
    positions): the fraction of units whose output is exactly 0 for every sample and position."""
    for t in range(table.shape[0]):
        samples, units, positions = table[t, 2], table[t, 3], table[t, 4]
        alive = np.zeros(units, np.uint8)
        if positions == 1:  # a linear layer: one flag per unit, OR-ed row by row (a vector op per row)
            a = carray(_floats_at(table[t, 0]), (samples, units))
            for s in range(samples):
                for u in range(units):
                    alive[u] |= a[s, u] != 0
        else:
            a3 = carray(_floats_at(table[t, 0]), (samples, units, positions))
            for s in range(samples):
                for u in range(units):
                    seen = alive[u]
                    for p in range(positions):
                        seen |= a3[s, u, p] != 0
                    alive[u] = seen
        out[t] = 1.0 - alive.sum() / units if units else np.nan


@njit("void(int64[:, ::1], float64[::1], float64[::1])", **_KW)
def duplicate_fractions(table, probe, out):
    """Per row (address, values, units) of a weight laid out as (units, fan-in): the fraction of units whose
    incoming weights equal another unit's exactly.

    Each row is hashed with one dot product against ``probe`` (identical rows give bit-identical hashes:
    each is reduced with the same sequence of operations); rows sorted by hash fall into runs of equal
    hashes, and each row is compared exactly with the first row of its run."""
    for t in range(table.shape[0]):
        n = table[t, 2]
        k = table[t, 1] // n if n else 0
        w = carray(_floats_at(table[t, 0]), (n, k))
        if n < 2:
            out[t] = 0.0
            continue
        keys = np.empty(n)
        for r in range(n):
            h = 0.0
            for c in range(k):
                h += w[r, c] * probe[c]
            keys[r] = h
        order = np.argsort(keys, kind="mergesort")
        dup, start = 0, 0
        while start < n:
            end = start + 1
            while end < n and keys[order[end]] == keys[order[start]]:
                end += 1
            first, same = order[start], 1
            for m in range(start + 1, end):
                row, equal = order[m], True
                for c in range(k):
                    if w[row, c] != w[first, c]:
                        equal = False
                        break
                same += equal
            if same > 1:
                dup += same
            start = end
        out[t] = dup / n


@njit("void(float64[:, ::1], int64[::1], float64[:, ::1], boolean)", **_KW)
def keep_columns(table, columns, kept, keep):
    """``kept`` becomes ``table[:, columns]`` (``keep``), or those columns of ``table`` become ``kept``."""
    for i in range(table.shape[0]):
        for j in range(columns.size):
            if keep:
                kept[i, j] = table[i, columns[j]]
            else:
                table[i, columns[j]] = kept[i, j]


@njit("void(int64[:, ::1])", **_VECTOR)
def copy_values(table):
    """Per row (address from, values, address to): the values copied."""
    for t in range(table.shape[0]):
        n = table[t, 1]
        src, dst = carray(_floats_at(table[t, 0]), (n,)), carray(_floats_at(table[t, 2]), (n,))
        for i in range(n):
            dst[i] = src[i]


@njit("void(int64[:, ::1], float64[:, ::1])", **_VECTOR)
def update_norms(table, out):
    """Per row (address after, values, address before): ||after - before|| and ||before||."""
    for t in range(table.shape[0]):
        n = table[t, 1]
        after, before = carray(_floats_at(table[t, 0]), (n,)), carray(_floats_at(table[t, 2]), (n,))
        du, w = 0.0, 0.0
        for i in range(n):
            b = np.float64(before[i])
            d = np.float64(after[i]) - b
            du += d * d
            w += b * b
        out[t, 0], out[t, 1] = math.sqrt(du), math.sqrt(w)
