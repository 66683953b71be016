"""What the page shows besides layer telemetry: the decision boundary and augmented samples."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
import torch

from deepscope.engine.datasets import DataSplit
from deepscope.engine.events import EventType

GRID = 40
POINTS = 300
SAMPLES = 8


def png_data_url(img: np.ndarray) -> str:
    """A data: URL of an RGB or grey uint8 image (H, W) or (H, W, 3); PNG written by hand, no imaging library."""
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    color_type = {1: 0, 3: 2}[c]
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


@torch.no_grad()
def boundary_event(model: torch.nn.Module, data: DataSplit, step: int, epoch: int) -> dict:
    """Class probabilities (in percent) over a grid spanning the (normalised) training inputs."""
    x = data.x_train
    lo, hi = x.min(0).values.tolist(), x.max(0).values.tolist()
    pad = [(h - lo_) * 0.1 for lo_, h in zip(lo, hi, strict=True)]
    xs = torch.linspace(lo[0] - pad[0], hi[0] + pad[0], GRID, device=x.device)
    ys = torch.linspace(lo[1] - pad[1], hi[1] + pad[1], GRID, device=x.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    was_training = model.training
    model.eval()
    probs = torch.softmax(model(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)), 1)
    model.train(was_training)
    probs = probs.reshape(GRID, GRID, -1).permute(2, 0, 1)
    return {
        "type": EventType.BOUNDARY.value, "step": step, "epoch": epoch,
        "x": [round(v, 4) for v in xs.tolist()], "y": [round(v, 4) for v in ys.tolist()],
        # Percent steps are finer than a heatmap's colours and keep the event at about a third of the size.
        "probs": (probs * 100).round().to(torch.uint8).cpu().numpy().tolist(),
        "prob_scale": 100,
    }


def training_points(data: DataSplit) -> dict:
    """A fixed, evenly spread subset of the (normalised) training points to draw under the boundary."""
    x = data.x_train
    idx = torch.linspace(0, len(x) - 1, min(POINTS, len(x)), device=x.device).long()
    return {"x": [round(v, 4) for v in x[idx, 0].tolist()], "y": [round(v, 4) for v in x[idx, 1].tolist()],
            "label": data.y_train[idx].tolist()}


def samples_event(batch: torch.Tensor, labels: torch.Tensor, data: DataSplit, step: int, epoch: int) -> dict:
    """A few training images as the model sees them (augmented as its batches are), back in pixel colours."""
    imgs = batch[:SAMPLES].detach().float().cpu().numpy()
    c = imgs.shape[1]
    imgs = imgs * data.std.reshape(1, c, 1, 1) + data.mean.reshape(1, c, 1, 1)
    pixels = (np.clip(imgs, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    return {
        "type": EventType.SAMPLES.value, "step": step, "epoch": epoch,
        "images": [png_data_url(p if c == 3 else p[:, :, 0]) for p in pixels],
        "labels": [data.classes[i] for i in labels[:SAMPLES].tolist()],
    }
