"""How much memory a run needs, estimated from its config before anything is built.

A shared server refuses a config that would not fit (docs/workshop.md) rather than letting one run
take a worker's memory. The big items: the dataset (held once plus a working copy), parameters with
their gradients, the optimizer's state and the probe's copy, one batch of every hidden layer's
outputs times what is kept per value (autograd's saved tensors; with telemetry, the histogram buffers),
evaluation in chunks cut so that the widest layer's outputs stay under EVAL_BUDGET, the probe set's
activations, and the worker's torch runtime (more for a CNN). Calibrated against the peak RSS
(``VmHWM``) of real runs on a grid of configs: benchmarks/memory_grid.py prints the table, and
tests/test_memory_estimate.py holds the estimate above the peak on its quick rows.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from deepscope.engine.datasets import DATASETS
from deepscope.engine.models import pooled_blocks
from deepscope.engine.telemetry.units import PROBE_IMAGES, PROBE_SAMPLES

if TYPE_CHECKING:
    from deepscope.engine.config import RunConfig

RUNTIME_MB = 480.0   # a worker with torch, numba's kernels and the engine loaded, after a tiny run (445 MB measured)
# Per value of a hidden layer's output, per sample of a batch: autograd's saved tensors and the step's
# temporaries (telemetry off), and with telemetry the histogram buffers (a capture keeps the tensors
# autograd saved, no copies). Measured at batch 256-4096, where they dominate: about 21 bytes a value
# (benchmarks/memory_grid.py); these leave twice that.
BYTES_PER_VALUE = 40
BYTES_PER_VALUE_WATCHED = 48
# A CNN's convolutions keep kernels and workspaces per batch shape (training, evaluation chunks, the probe
# set): an 8-block CNN on digits peaked 176 MB over the MLP's runtime
CNN_RUNTIME_MB = 200.0
# What each watched layer costs beyond its values (its records, caches and allocator overhead): a
# 50-layer MLP at batch 128 captured every step peaked 100 MB over the runtime, its items 55 MB
PER_LAYER_MB = 1.0
MAX_CLASSES = 10
EVAL_CHUNK = 1024  # engine/loop.py's (which the exported script copies; tests/test_memory_estimate.py holds them equal)
# Evaluation holds about EVAL_LIVE layer outputs at once (a conv's, its normalisation's, its activation's),
# and its chunk is cut so that these stay under EVAL_BUDGET bytes
EVAL_LIVE = 3
EVAL_BUDGET = 256 * 2**20
FLOAT = 4


def layer_values(cfg: RunConfig, shape: tuple[int, ...]) -> list[int]:
    """Values of each hidden layer's output for one sample (the CNN's pools shrink later layers)."""
    m = cfg.model
    if m.arch != "cnn":
        return [m.width] * m.depth
    pixels = math.prod(shape[1:])
    pools = pooled_blocks(m.depth, shape[1], shape[2])
    values = []
    for layer in range(m.depth):
        values.append(m.width * pixels)
        if layer in pools:
            pixels //= 4
    return values


def eval_chunk(cfg: RunConfig, shape: tuple[int, ...]) -> int:
    """Samples evaluated at once: EVAL_CHUNK, or fewer where the largest layer's outputs for that many
    would pass EVAL_BUDGET (a 512-channel first conv layer on 28x28 images is 1.6 GB for 1024 samples)."""
    widest = max(layer_values(cfg, shape))
    return max(1, min(EVAL_CHUNK, EVAL_BUDGET // (EVAL_LIVE * FLOAT * widest)))


def estimate_mb(cfg: RunConfig) -> dict[str, float]:
    """Megabytes by item and ``total``."""
    meta = DATASETS.entry(cfg.data.dataset).meta
    shape = tuple(meta["shape"])
    n = meta.get("size") or cfg.data.n_samples
    m = cfg.model
    features = math.prod(shape)
    fan_in = 9 * shape[0] if m.arch == "cnn" else features
    per_unit = 9 if m.arch == "cnn" else 1
    params = fan_in * m.width + (m.depth - 1) * per_unit * m.width * m.width + m.width * MAX_CLASSES
    state = {"sgd": 0, "momentum": 1, "adam": 2}.get(cfg.train.optimizer, 2)
    layers = layer_values(cfg, shape)
    values = sum(layers)
    watched = bool(cfg.telemetry.every_steps)
    per_value = BYTES_PER_VALUE_WATCHED if watched else BYTES_PER_VALUE
    probe = PROBE_IMAGES if m.arch == "cnn" else PROBE_SAMPLES
    items = {
        "dataset": 2 * n * features * FLOAT,
        "parameters": (3 + state) * params * FLOAT,
        "activations": cfg.train.batch_size * values * per_value,
        # the largest layer, not the average: its outputs for one chunk are the evaluation's peak
        "evaluation": EVAL_LIVE * min(eval_chunk(cfg, shape), n) * max(layers) * FLOAT,
        # the probe set's activations, every layer's kept at once (engine/telemetry/units.py)
        "probe set": 2 * probe * values * FLOAT if watched else 0,
        "layers": (m.depth + 1) * PER_LAYER_MB * 2**20,
    }
    out = {k: v / 2**20 for k, v in items.items()}
    out["runtime"] = RUNTIME_MB + (CNN_RUNTIME_MB if m.arch == "cnn" else 0.0)
    out["total"] = sum(out.values())
    return out
