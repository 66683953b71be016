"""Generated 2-D point sets: small enough to train in seconds, drawn so a decision boundary is visible."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepscope.engine.datasets import DATASETS, RawSet


def _points(x: np.ndarray, y: np.ndarray, classes: int) -> RawSet:
    return RawSet(x.astype(np.float32), y.astype(np.int64), [f"class {i}" for i in range(classes)])


@DATASETS.register("spiral", "three interleaved spiral arms: needs a deep non-linear boundary",
                   kind="points", synthetic=True, shape=(2,))
def spiral(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
    k = 3
    y = rng.integers(0, k, cfg.n_samples)
    r = rng.uniform(0.05, 1.0, cfg.n_samples)
    t = y * (2 * np.pi / k) + 4.0 * r + rng.normal(0, cfg.noise, cfg.n_samples) * 1.5
    x = np.stack([r * np.sin(t), r * np.cos(t)], axis=1)
    return _points(x, y, k)


@DATASETS.register("circles", "a disc inside a ring", kind="points", synthetic=True, shape=(2,))
def circles(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
    y = rng.integers(0, 2, cfg.n_samples)
    radius = np.where(y == 0, 0.5, 1.0)
    t = rng.uniform(0, 2 * np.pi, cfg.n_samples)
    x = np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)
    x += rng.normal(0, cfg.noise, x.shape)
    return _points(x, y, 2)


@DATASETS.register("moons", "two interleaving half circles", kind="points", synthetic=True, shape=(2,))
def moons(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
    y = rng.integers(0, 2, cfg.n_samples)
    t = rng.uniform(0, np.pi, cfg.n_samples)
    x = np.where(
        (y == 0)[:, None],
        np.stack([np.cos(t), np.sin(t)], axis=1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1),
    )
    x += rng.normal(0, cfg.noise, x.shape)
    return _points(x, y, 2)


@DATASETS.register("xor", "four quadrants, opposite ones alike: no linear model can separate them",
                   kind="points", synthetic=True, shape=(2,))
def xor(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
    x = rng.uniform(-1, 1, (cfg.n_samples, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    x += rng.normal(0, cfg.noise, x.shape)
    return _points(x, y, 2)


@DATASETS.register("gaussians", "four Gaussian blobs; noise widens them until they overlap",
                   kind="points", synthetic=True, shape=(2,))
def gaussians(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
    centres = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64)
    y = rng.integers(0, len(centres), cfg.n_samples)
    x = centres[y] + rng.normal(0, 0.3 + cfg.noise, (cfg.n_samples, 2))
    return _points(x, y, len(centres))
