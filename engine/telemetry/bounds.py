"""The histogram range rule, in one place: a tensor's histogram spans [min, max]; a constant tensor gets
a narrow range about its value (so its one bin is not zero-wide); a tensor with NaN or inf inside gets
(0, 0) and zero counts. ``compiled.py`` and ``kernels.py`` apply the same rule, with these constants."""

from __future__ import annotations

import math

PAD = 1e-3    # a constant's range: its value +- PAD * max(|value|, 1)
TIE = 1e-12   # max - min under TIE * max(1, |min|, |max|) counts as a constant


def bounds(lo: float, hi: float) -> tuple[float, float]:
    """Histogram range for data in [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 0.0
    if hi - lo <= TIE * max(1.0, abs(lo), abs(hi)):
        pad = max(abs(lo), 1.0) * PAD
        return lo - pad, hi + pad
    return lo, hi
