"""Data augmentation on a whole batch at once, on the model's device, with per-sample parameters.

Flip, rotation and zoom fold into one affine map per image, applied with a single
``affine_grid`` + ``grid_sample``; the colour shift is an add. Only training batches pass here.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from deepscope.engine.config import AugmentConfig


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    if not cfg.active or x.ndim != 4:
        return x
    n, c = x.shape[:2]
    dev = x.device

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=gen, device="cpu") * (hi - lo) + lo).to(dev)

    if cfg.hflip or cfg.rotate_deg > 0 or cfg.scale > 0:
        angle = uniform(-cfg.rotate_deg, cfg.rotate_deg, n) * (math.pi / 180)
        zoom = uniform(1 - cfg.scale, 1 + cfg.scale, n)
        flip = torch.where(uniform(0, 1, n) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n, device=dev)
        # grid_sample maps output coords to input coords, so zooming in by z samples a grid 1/z as wide.
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # Border padding repeats the edge (the background here) instead of bringing in black corners.
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.color_shift > 0:
        x = x + uniform(-cfg.color_shift, cfg.color_shift, n, c, 1, 1)
    return x
