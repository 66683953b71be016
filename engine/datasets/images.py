"""Image sets that ship or are drawn offline: scikit-learn's 8x8 digits and procedural coloured shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepscope.engine.datasets import DATASETS, RawSet

SHAPES = ["circle", "square", "triangle"]
SIZE = 32


@DATASETS.register("digits", "1,797 handwritten digits, 8x8 grey (ships with scikit-learn)",
                   kind="image", synthetic=False, shape=(1, 8, 8), size=1797)
def digits(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None, :, :] / 16.0
    return RawSet(x, d.target.astype(np.int64), [str(i) for i in range(10)])


@DATASETS.register("shapes", "procedural 3x32x32 circles, squares and triangles of any size, place, angle and "
                   "colour: few samples, so augmentation matters", kind="image", synthetic=True, shape=(3, 32, 32))
def shapes(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
    n = cfg.n_samples
    y = rng.integers(0, len(SHAPES), n)
    r = rng.uniform(5.0, 11.0, n)  # half-size in pixels
    cx = rng.uniform(r, SIZE - r)
    cy = rng.uniform(r, SIZE - r)
    theta = rng.uniform(0, 2 * np.pi, n)
    fg = rng.uniform(0.35, 1.0, (n, 3))
    bg = rng.uniform(0.0, 0.3, (n, 3))

    grid = np.arange(SIZE, dtype=np.float64) + 0.5
    gx = grid[None, None, :] - cx[:, None, None]
    gy = grid[None, :, None] - cy[:, None, None]
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u, v = c * gx + s * gy, -s * gx + c * gy
    rr = r[:, None, None]
    circle = u**2 + v**2 <= rr**2
    square = (np.abs(u) <= rr * 0.8) & (np.abs(v) <= rr * 0.8)
    # Equilateral triangle with its circumradius rr: three half-planes at 120 degrees.
    triangle = np.ones_like(circle)
    for k in range(3):
        a = 2 * np.pi * k / 3
        triangle &= np.cos(a) * u + np.sin(a) * v <= rr * 0.5
    masks = np.stack([circle, square, triangle], axis=1)[np.arange(n), y]

    img = np.where(masks[:, None], fg[:, :, None, None], bg[:, :, None, None])
    img += rng.normal(0, cfg.noise * 0.5, img.shape)
    return RawSet(np.clip(img, 0, 1).astype(np.float32), y.astype(np.int64), list(SHAPES))
