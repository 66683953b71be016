"""The memory estimate (engine/memory.py) is an upper bound on a run's real peak: measured in a fresh
process on configs of the calibration grid (benchmarks/memory_grid.py has the whole grid and its table)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from deepscope.engine import loop, memory
from deepscope.engine.config import RunConfig

_spec = importlib.util.spec_from_file_location("memory_grid", Path(__file__).resolve().parents[1] / "benchmarks" / "memory_grid.py")
memory_grid = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(memory_grid)

# The grid's rows that train in seconds; the others are the benchmark's
QUICK = ("CNN 3x416 on shapes, batch 1, val 0.9", "CNN 8x64 on digits, batchnorm", "MLP 10x64 on spiral (defaults)",
         "MLP 50x128 on digits, batch 128, every step")


@pytest.mark.parametrize("name", QUICK)
def test_the_estimate_stays_above_the_measured_peak(name):
    measured = memory_grid.measure(memory_grid.GRID[name])
    assert measured["status"] == "completed", measured["error"]
    assert measured["peak_mb"] < measured["estimate"]["total"], measured


def test_evaluation_of_a_wide_first_layer_is_chunked_to_its_budget():
    # A 512-channel conv layer on 32x32 images: 1024 samples of its outputs would be 2 GB
    cfg = RunConfig.model_validate(memory_grid.GRID["CNN 4x512 on shapes, batch 1, val 0.9"])
    chunk = memory.eval_chunk(cfg, (3, 32, 32))
    assert chunk < memory.EVAL_CHUNK
    assert memory.EVAL_LIVE * chunk * max(memory.layer_values(cfg, (3, 32, 32))) * memory.FLOAT <= memory.EVAL_BUDGET
    assert memory.eval_chunk(RunConfig(), (2,)) == memory.EVAL_CHUNK == loop.EVAL_CHUNK  # small nets: one home
