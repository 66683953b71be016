"""The GPU path, checked in one script (under 5 minutes on one GPU; a smoke test with --device cpu):

    python benchmarks/gpu_check.py [--device cuda|cpu] [--quick]

1. The theory tests (tests/test_theory.py) with the engine on the device: every run there uses
   ``train.device`` auto, which picks CUDA when there is one.
2. Every lesson's expected outcomes, trained on the device at seed 0.
3. One run's final numbers on CPU and on the device, same seed: CUDA kernels sum in another order,
   so they agree to a stated tolerance, not bit for bit.
4. Telemetry on the device with fused Adam: steps/s with captures (every 10 steps, no rate cap, the
   default budget) against the bare loop (after a warm-up run, 30 epochs), for a 20-, 50- and 100-layer MLP and a
   CNN, and how many host syncs a capture costs (the engine must sync at most once per capture on
   CUDA: more is a failed check).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

from deepscope.app.presets import PRESETS, check
from deepscope.engine import train

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

MODELS = {
    "digits MLP 20x128": {"data": {"dataset": "digits"}, "model": {"depth": 20, "width": 128}},
    "digits MLP 50x128": {"data": {"dataset": "digits"}, "model": {"depth": 50, "width": 128}},
    "digits MLP 100x128": {"data": {"dataset": "digits"}, "model": {"depth": 100, "width": 128}},
    "shapes CNN 4x32": {"data": {"dataset": "shapes", "n_samples": 1200}, "model": {"arch": "cnn", "depth": 4, "width": 32}},
}
TOLERANCE = 0.02  # relative, on the final training loss, CPU against the device


def with_device(config: dict, device: str) -> dict:
    return {**config, "train": {**config.get("train", {}), "device": device}}


def theory_tests(device: str) -> int:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_theory.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    print(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-2000:])
    return out.returncode


def lessons(device: str, quick: bool) -> int:
    failed = 0
    for preset in PRESETS[:2] if quick else PRESETS:
        summaries, t0 = {}, time.monotonic()
        for run in preset["runs"]:
            result = train(with_device(run["config"], device), lambda e: None)
            summaries[run["label"]] = result["summary"]
        checks = [check(e, summaries) for e in preset["expect"]]
        held = sum(c["held"] is True for c in checks)
        failed += held < len(checks)
        print(f"  {preset['id']:22} {held}/{len(checks)} held  ({time.monotonic() - t0:5.1f} s)", flush=True)
    return failed


def cpu_vs_device(device: str) -> bool:
    config = {"data": {"dataset": "digits"}, "model": {"depth": 6, "width": 64, "batchnorm": True},
              "train": {"epochs": 3, "seed": 3}}
    cpu = train(with_device(config, "cpu"), lambda e: None)["summary"]
    dev = train(with_device(config, device), lambda e: None)["summary"]
    rel = abs(cpu["train_loss"] - dev["train_loss"]) / abs(cpu["train_loss"])
    print(f"  final train_loss cpu {cpu['train_loss']:.6f}  {device} {dev['train_loss']:.6f}  "
          f"relative difference {rel:.2e} (tolerance {TOLERANCE})")
    return rel <= TOLERANCE


def speed(config: dict, device: str, every: int, epochs: int) -> tuple[float, int]:
    events: list[dict] = []
    cfg = {**with_device(config, device), "train": {"batch_size": 128, "optimizer": "adam", "lr": 1e-3,
                                                    "epochs": epochs, "device": device},
           "telemetry": {"every_steps": every, "max_per_second": 0}}
    result = train(cfg, events.append)
    assert result["status"] == "completed", result
    start = next(e["t"] for e in events if e["type"] == "status")
    return events[0]["total_steps"] / (events[-1]["t"] - start), sum(e["type"] == "layers" for e in events)


def syncs_per_capture(config: dict, device: str) -> float | None:
    """Host syncs in one whole capture (probe set, armed step, take, summary), counted by CUDA's sync
    debug mode on the fifth capture, which passes the probe set and reads the weights too (the first
    also fills caches and loads kernels)."""
    if device != "cuda":
        return None
    import warnings

    from deepscope.engine.config import RunConfig
    from deepscope.engine.datasets import load_dataset
    from deepscope.engine.models import build_model
    from deepscope.engine.paths import default_data_dir
    from deepscope.engine.telemetry import Settings, Telemetry, layers_of_net

    cfg = RunConfig.model_validate(config)
    data = load_dataset(cfg.data, 0, default_data_dir()).to(torch.device("cuda"))
    model = build_model(cfg.model, data.input_shape, data.n_classes).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    xb, yb = data.x_train[:128], data.y_train[:128]
    with Telemetry(model, layers_of_net(model), Settings(), None, lambda event: None, opt,
                   probe_x=data.x_train[:256], background=False) as telemetry:
        for capture in range(5):
            torch.cuda.synchronize()
            if capture == 4:
                torch.cuda.set_sync_debug_mode("warn")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with telemetry.step(capture, due=True):
                    loss = torch.nn.functional.cross_entropy(model(xb), yb)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            torch.cuda.set_sync_debug_mode("default")
    sites = [f"{os.path.basename(w.filename)}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
    if sites:
        print(f"    syncs at: {', '.join(sites)}")
    return float(len(sites))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="two lessons and short speed runs (the smoke test)")
    parser.add_argument("--telemetry-only", action="store_true", help="only part 4")
    args = parser.parse_args()
    dev = args.device
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}")
    problems = 0
    if not args.telemetry_only:
        print("1) theory tests on the device:")
        problems += theory_tests(dev) != 0
        print("2) lessons at seed 0:")
        problems += lessons(dev, args.quick)
        print("3) CPU against the device:")
        problems += not cpu_vs_device(dev)
    print("4) telemetry, every 10 steps, no rate cap, default budget, fused Adam:")
    for label, config in MODELS.items():
        epochs = 1 if args.quick else 30  # a few seconds each: the forced first and last captures weigh little
        speed(config, dev, 10, 1)  # warm-up: the first run on a device pays for loading its kernels
        bare, _ = speed(config, dev, 0, epochs)
        telem, captures = speed(config, dev, 10, epochs)
        syncs = syncs_per_capture(config, dev)
        problems += syncs is not None and syncs > 1
        print(f"  {label:20} bare {bare:8.1f} steps/s  telemetry {telem:8.1f}  ratio {telem / bare:5.3f}  "
              f"captures {captures:4d}" + (f"  syncs/capture {syncs:.0f}" if syncs is not None else ""), flush=True)
    print("all checks held" if not problems else f"{problems} check(s) did not hold")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
