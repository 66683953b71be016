"""The memory estimate (engine/memory.py) against the real peak, on a grid of configs: the widest layers,
the largest generated dataset, the largest batch, batch 1 with most of the data held out for validation.

    python benchmarks/memory_grid.py [--only NAME ...]

Each config trains one epoch in a fresh process (one torch thread, as a worker trains); its peak is the
process's peak resident memory (``VmHWM``; ``ru_maxrss`` would count the parent's too), interpreter and
torch included, as the worker's limit counts it. The estimate must stay above the peak on every row (tests/test_limits.py runs a few of them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

EVERY_STEP = {"every_steps": 1, "budget": 0, "max_per_second": 0}  # captures in flight all the time
GRID = {
    "CNN 4x512 on shapes, batch 1, val 0.9": {"data": {"dataset": "shapes", "n_samples": 2000, "val_fraction": 0.9},
                                             "model": {"arch": "cnn", "depth": 4, "width": 512},
                                             "train": {"batch_size": 1}},
    "CNN 3x416 on shapes, batch 1, val 0.9": {"data": {"dataset": "shapes", "n_samples": 1200, "val_fraction": 0.9},
                                             "model": {"arch": "cnn", "depth": 3, "width": 416},
                                             "train": {"batch_size": 1}},
    "CNN 2x512 on 20,000 shapes, batch 256": {"data": {"dataset": "shapes", "n_samples": 20000, "val_fraction": 0.9},
                                              "model": {"arch": "cnn", "depth": 2, "width": 512},
                                              "train": {"batch_size": 256}},
    "CNN 8x64 on digits, batchnorm": {"data": {"dataset": "digits"}, "model": {"arch": "cnn", "depth": 8, "width": 64,
                                                                              "batchnorm": True}},
    "MLP 100x512 on 20,000 mnist1d, batch 4096": {"data": {"dataset": "mnist1d", "n_samples": 20000},
                                                  "model": {"depth": 100, "width": 512},
                                                  "train": {"batch_size": 4096, "lr": 0.001}},
    "MLP 10x64 on spiral (defaults)": {},
    "CNN 4x32 on shapes, batch 128, every step": {"data": {"dataset": "shapes"}, "model": {"arch": "cnn", "depth": 4, "width": 32},
                                                  "train": {"batch_size": 128}, "telemetry": EVERY_STEP},
    "MLP 50x128 on digits, batch 128, every step": {"data": {"dataset": "digits"}, "model": {"depth": 50, "width": 128},
                                                    "train": {"batch_size": 128}, "telemetry": EVERY_STEP},
    "MLP 30x512 on spiral, batch 1024, every step": {"model": {"depth": 30, "width": 512},
                                                     "train": {"batch_size": 1024}, "telemetry": EVERY_STEP},
}

_CHILD = """
import json, resource, sys
import torch
torch.set_num_threads(1)
from deepscope.engine import train
from deepscope.engine.threads import keep_freed_memory
keep_freed_memory()  # as a worker trains
from deepscope.engine.config import RunConfig
from deepscope.engine.memory import estimate_mb
cfg = json.loads(sys.argv[1])
estimate = estimate_mb(RunConfig.model_validate(cfg))
result = train(cfg, lambda e: None)
# VmHWM, this process's own peak: ru_maxrss also counts the parent's before exec (a pytest of 900 MB)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"status": result["status"], "error": result["error"], "peak_mb": peak, "estimate": estimate}))
"""


def measure(config: dict) -> dict:
    """One epoch of ``config`` in a fresh process: its peak RSS and the estimate, in MB."""
    config = {**config, "train": {**config.get("train", {}), "epochs": 1}}
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(config)], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="configs whose name contains one of these")
    args = parser.parse_args()
    print(f"{'config':44} {'estimate MB':>11} {'peak MB':>8} {'peak/estimate':>13}  largest item")
    worst = 0.0
    for name, config in GRID.items():
        if args.only and not any(o.lower() in name.lower() for o in args.only):
            continue
        m = measure(config)
        items = {k: v for k, v in m["estimate"].items() if k != "total"}
        biggest = max(items, key=items.get)
        ratio = m["peak_mb"] / m["estimate"]["total"]
        worst = max(worst, ratio)
        print(f"{name:44} {m['estimate']['total']:11.0f} {m['peak_mb']:8.0f} {ratio:13.2f}  "
              f"{biggest} {items[biggest]:.0f} MB ({m['status']})", flush=True)
    print(f"worst peak/estimate: {worst:.2f} (the estimate bounds the peak where this is under 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
