"""What watching costs, with every core busy training: steps/s with telemetry against the bare loop.

    python benchmarks/telemetry_overhead.py [--repeats 3] [--seconds 15] [--workers N] [--only NAME] [--modes ...]

A workshop server trains as many runs at once as it has workers (one torch thread each), so no idle
core hides the summary thread. For each model, repeat and mode, N processes (default: one per core)
train at once, all in the same mode, as a class's runs would; the modes take turns, in a different
order each repeat:

- bare: telemetry off;
- bare, again: the same, measured as a mode: its ratio shows how far two identical runs differ on this
  machine (the noise the other ratios carry);
- budget: the defaults (every 10 steps, at most 10 a second, telemetry.budget 0.03);
- budget, every step: every_steps 1 and no rate cap, so only the budget spaces the captures;
- fixed 10/s: no budget, every_steps set for about 10 captures a second (how captures were spaced
  before the budget), side by side.

A process that has finished its run keeps training, unmeasured, until every one is done, so every core
stays busy to the end. A mode's ratio is its median steps/s over the bare median; "worst" is the lowest
of the per-repeat ratios (goal: >= 0.97 for the two budget modes). Step 0 and the last step are always
captured, so a short run pays those two captures whatever the budget: runs here last about 15 s. Speed counts the steps between the 'running' and the
final status event, so data generation and start-up are left out and every mode pays the same
evaluation. Captures/s is the rate reached; "share" the CPU share telemetry reported spending; ms per
capture is timed directly, in one process, before the parallel part.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from deepscope.engine import train  # noqa: E402
from deepscope.engine.telemetry import LayerProbe  # noqa: E402
from deepscope.engine.telemetry.units import probe_size  # noqa: E402

torch.set_num_threads(1)

MODELS = {
    "digits MLP 20x128": {"data": {"dataset": "digits"}, "model": {"depth": 20, "width": 128},
                          "train": {"batch_size": 128}},
    "digits MLP 50x128": {"data": {"dataset": "digits"}, "model": {"depth": 50, "width": 128},
                          "train": {"batch_size": 128}},
    "digits MLP 100x128": {"data": {"dataset": "digits"}, "model": {"depth": 100, "width": 128},
                           "train": {"batch_size": 128}},
    "shapes CNN 4x32": {"data": {"dataset": "shapes", "n_samples": 1200},
                        "model": {"arch": "cnn", "depth": 4, "width": 32}, "train": {"batch_size": 128}},
}
MODES = ("bare", "bare, again", "budget", "budget, every step", "fixed 10/s")


def telemetry_for(mode: str, fixed_every: int) -> dict:
    return {"bare": {"every_steps": 0}, "bare, again": {"every_steps": 0},
            "budget": {},
            "budget, every step": {"every_steps": 1, "max_per_second": 0},
            "fixed 10/s": {"every_steps": fixed_every, "max_per_second": 10, "budget": 0}}[mode]


def measure(config: dict, telemetry: dict, epochs: int) -> dict:
    events: list[dict] = []
    cfg = {**config, "train": {**config["train"], "epochs": epochs}, "telemetry": telemetry}
    result = train(cfg, events.append)
    assert result["status"] == "completed", result
    start = next(e["t"] for e in events if e["type"] == "status")
    seconds = events[-1]["t"] - start
    return {"steps_per_s": events[0]["total_steps"] / seconds,
            "captures_per_s": sum(e["type"] == "layers" for e in events) / seconds,
            "share": result["summary"].get("telemetry_share", 0.0)}


def capture_ms(config: dict) -> float:
    """CPU milliseconds of one capture: the training thread's part and the summary, timed directly."""
    from deepscope.engine.config import RunConfig
    from deepscope.engine.datasets import load_dataset
    from deepscope.engine.models import build_model
    from deepscope.engine.paths import default_data_dir

    cfg = RunConfig.model_validate(config)
    data = load_dataset(cfg.data, 0, default_data_dir())
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    xb, yb = data.x_train[:cfg.train.batch_size], data.y_train[:cfg.train.batch_size]
    times = []
    with LayerProbe(model, 32, probe_x=data.x_train[:probe_size(cfg.model.arch)]) as probe:
        for step in range(12):
            t0 = time.thread_time()
            probe.measure_units()
            probe.armed = True
            t1 = time.thread_time()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            t2 = time.thread_time()
            probe.before_step()
            t3 = time.thread_time()
            opt.step()
            t4 = time.thread_time()
            probe.collect(step)
            times.append((t1 - t0) + (t3 - t2) + (time.thread_time() - t4))
    return statistics.median(times[2:]) * 1000


def worker(args: argparse.Namespace) -> None:
    """One busy core: one run in ``--mode``, printed as a JSON line. Then it keeps training, unmeasured,
    until ``--stop`` exists: one that finished first would otherwise leave a core idle, and the others
    would end their runs faster."""
    config = MODELS[args.worker]
    print(json.dumps({"mode": args.mode, **measure(config, telemetry_for(args.mode, args.fixed_every), args.epochs)}),
          flush=True)
    while not os.path.exists(args.stop):
        measure(config, {"every_steps": 0}, 1)


def calibrate(config: dict, seconds: float) -> tuple[int, int]:
    """Epochs for a run of about ``seconds``, and every_steps for about 10 captures a second."""
    speed = measure(config, {"every_steps": 0}, 1)["steps_per_s"]
    from deepscope.engine.config import RunConfig
    from deepscope.engine.datasets import load_dataset
    from deepscope.engine.paths import default_data_dir

    cfg = RunConfig.model_validate(config)
    n = len(load_dataset(cfg.data, 0, default_data_dir()).y_train)
    steps_per_epoch = max(1, n // cfg.train.batch_size)
    return max(1, round(seconds * speed / steps_per_epoch)), max(1, round(speed / 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="rough length of each run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="runs training at once")
    parser.add_argument("--only", help="one model, by the start of its name")
    parser.add_argument("--modes", nargs="+", choices=MODES[1:], default=list(MODES[1:]),
                        help="the modes to measure besides bare (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="bare", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--fixed-every", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--stop", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"torch {torch.__version__}, one thread per run, {args.workers} runs at once on {os.cpu_count()} cores, "
          f"{args.repeats} repeats of about {args.seconds:g} s per mode")
    for label, config in MODELS.items():
        if args.only and not label.startswith(args.only):
            continue
        epochs, fixed_every = calibrate(config, args.seconds)
        ms = capture_ms(config)
        modes = ("bare", *args.modes)
        results: dict[str, list[list[dict]]] = {mode: [] for mode in modes}
        for repeat in range(args.repeats):
            for mode in modes[repeat % len(modes):] + modes[:repeat % len(modes)]:
                stop = os.path.join(tempfile.mkdtemp(), "stop")
                procs = [subprocess.Popen([sys.executable, __file__, "--worker", label, "--mode", mode, "--epochs",
                                           str(epochs), "--fixed-every", str(fixed_every), "--stop", stop],
                                          stdout=subprocess.PIPE, text=True) for _ in range(args.workers)]
                rows = [json.loads(p.stdout.readline()) for p in procs]
                open(stop, "w").close()
                for p in procs:
                    p.wait()
                results[mode].append(rows)
        bare = statistics.median(r["steps_per_s"] for rep in results["bare"] for r in rep)
        print(f"\n{label}: bare {bare:.1f} steps/s per run; a capture costs {ms:.1f} ms of CPU")
        print(f"  {'mode':20} {'steps/s':>8} {'ratio':>6} {'worst':>6} {'captures/s':>10} {'share':>6}")
        for mode in modes[1:]:
            speeds = [r["steps_per_s"] for rep in results[mode] for r in rep]
            worst = min(statistics.median(r["steps_per_s"] for r in rep) /
                        statistics.median(b["steps_per_s"] for b in bare_rep)
                        for rep, bare_rep in zip(results[mode], results["bare"], strict=True))
            rate = statistics.median(r["captures_per_s"] for rep in results[mode] for r in rep)
            share = statistics.median(r["share"] for rep in results[mode] for r in rep)
            print(f"  {mode:20} {statistics.median(speeds):8.1f} {statistics.median(speeds) / bare:6.3f} "
                  f"{worst:6.3f} {rate:10.2f} {share:6.3f}", flush=True)


if __name__ == "__main__":
    main()
