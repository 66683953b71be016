"""MNIST-1D, generated offline by the recipe of Greydanus (2020): ten 1-D digit templates, stretched,
shifted, sheared and made noisy, resampled to 40 points. Never downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepscope.engine.datasets import DATASETS, RawSet

TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
]) - 5.0
CANVAS = 60
OUT = 40


def _smooth(noise: np.ndarray, sigma: float) -> np.ndarray:
    k = np.arange(-3 * sigma, 3 * sigma + 1)
    kernel = np.exp(-0.5 * (k / sigma) ** 2)
    kernel /= kernel.sum()
    return np.stack([np.convolve(row, kernel, mode="same") for row in noise])


@DATASETS.register("mnist1d", "procedural MNIST-1D: ten 1-D digit shapes, shifted, scaled, sheared, noisy "
                   "(40 points)", kind="sequence", synthetic=True, shape=(40,))
def mnist1d(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
    n = cfg.n_samples
    y = rng.integers(0, 10, n)
    x = np.zeros((n, CANVAS))
    canvas_t = np.arange(CANVAS, dtype=np.float64)
    for i in range(n):
        # 1) stretch the template to a random length and 2) put it at a random offset
        length = rng.integers(24, 40)
        offset = rng.integers(0, CANVAS - length)
        tpl = np.interp(np.linspace(0, 11, length), np.arange(12), TEMPLATES[y[i]])
        x[i, offset:offset + length] = tpl * rng.uniform(0.8, 1.2)
    # 3) shear, 4) correlated noise, 5) independent noise
    x += rng.uniform(-0.75, 0.75, (n, 1)) * np.linspace(-1, 1, CANVAS)[None]
    x += _smooth(rng.normal(0, 0.25, (n, CANVAS)), 2.0)
    x += rng.normal(0, 0.05 + cfg.noise * 0.2, (n, CANVAS))
    # 6) resample to OUT points
    out_t = np.linspace(0, CANVAS - 1, OUT)
    x = np.stack([np.interp(out_t, canvas_t, row) for row in x])
    return RawSet(x.astype(np.float32), y.astype(np.int64), [str(i) for i in range(10)])
