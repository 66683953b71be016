"""What watching costs, with every core busy training: steps/s with telemetry against the bare loop.

    python benchmarks/telemetry_overhead.py [--repeats 2] [--seconds 20] [--only NAME] [--modes ...]

A workshop server trains as many runs at once as it has workers (one torch thread each), so no idle
core hides the summary thread. Here every core trains one process, pinned to it (with its summary
thread), and all of them run the same sequence at once: bare, a mode, bare, the next mode, bare, ...
(``--repeats`` times through the modes). Each watched run is compared with the median speed of the bare
runs of the same process, interleaved with it: the same core, the same memory, the same minutes. Two
separate processes, even with the same config at the same moment, differed by 10-20% on this shared VM,
so a ratio between processes measures the machine, not telemetry; and one bare run against the next in
the same process differs by 2-4% (the "bare" row shows it).

A mode's ratio is the median over its runs (repeats x cores); "worst" is the lowest run. The modes:

- bare: each bare run against its process's bare median: the spread of identical runs, the noise in
  every ratio below (its median is 1 by construction; "worst" is what noise alone can show);
- bare, again: a bare run in a watched run's place, measured as a mode;
- budget: the defaults (every 10 steps, at most 10 a second, telemetry.budget 0.03);
- budget, every step: every_steps 1 and no rate cap, so only the budget spaces the captures;
- fixed 10/s: no budget, every_steps set for about 10 captures a second (how captures were spaced
  before the budget), side by side.

Goal: >= 0.97 for the two budget modes. A process that has finished its sequence keeps training,
unmeasured, until every one is done, so no core goes idle. Step 0 and the last step are always captured,
so a short run pays those two captures whatever the budget: runs here last about 20 s. Speed counts the
steps between the 'running' and the final status event, so data generation and start-up are left out
and every mode pays the same evaluation. "CPU ratio" compares steps per CPU second of the whole process
(summary thread included): what a saturated server's throughput loses. Captures/s is the rate reached;
"share" the CPU share telemetry reported spending; ms per capture is timed directly, in one process,
before the runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from deepscope.app.executors.policy import warm_imports  # noqa: E402
from deepscope.engine import train  # noqa: E402
from deepscope.engine.threads import freeze_imports, keep_freed_memory, one_torch_thread  # noqa: E402

# the workers' process setup (app/executors/local_worker.py), so a run here costs what it costs there
warm_imports()
one_torch_thread()
keep_freed_memory()
freeze_imports()

MODELS = {
    "digits MLP 20x128": {"data": {"dataset": "digits"}, "model": {"depth": 20, "width": 128},
                          "train": {"batch_size": 128}},
    # the deep ones at a lower learning rate: at the default 0.1 the 50-layer net diverged after 1,070 steps
    "digits MLP 50x128": {"data": {"dataset": "digits"}, "model": {"depth": 50, "width": 128},
                          "train": {"batch_size": 128, "lr": 0.02}},
    "digits MLP 100x128": {"data": {"dataset": "digits"}, "model": {"depth": 100, "width": 128},
                           "train": {"batch_size": 128, "lr": 0.01}},
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
    """One run: steps/s of wall time, and steps per CPU second of the whole process (every thread, the
    summary thread included), both from the 'running' status to the end."""
    events: list[dict] = []
    cpu_start: list[float] = []

    def emit(event: dict) -> None:
        if event["type"] == "status" and not cpu_start:
            cpu_start.append(time.process_time())
        events.append(event)

    cfg = {**config, "train": {**config["train"], "epochs": epochs}, "telemetry": telemetry}
    result = train(cfg, emit)
    cpu = time.process_time() - cpu_start[0]
    assert result["status"] == "completed", result
    start = next(e["t"] for e in events if e["type"] == "status")
    seconds = events[-1]["t"] - start
    steps = events[0]["total_steps"]
    return {"steps_per_s": steps / seconds, "steps_per_cpu_s": steps / cpu,
            "captures_per_s": sum(e["type"] == "layers" for e in events) / seconds,
            "captures": sum(e["type"] == "layers" for e in events),
            "share": result["summary"].get("telemetry_share", 0.0)}


def step_and_capture_ms(config: dict, epochs: int) -> tuple[float, float]:
    """CPU-ms of a training step and of a capture, measured outside the engine as benchmarks/capture_cost.py
    does: the process's CPU per step with telemetry off, and what capturing every step adds to it."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from capture_cost import MODES, run

    short = {**config, "train": {**config.get("train", {}), "epochs": max(1, epochs // 4)}}
    run(short, MODES["defaults"])  # warm
    off = [run(short, MODES["off"]) for _ in range(2)]
    every = [run(short, MODES["every step"]) for _ in range(2)]
    step = min(c / n for c, n, _ in off)
    return step * 1e3, (min(c / n for c, n, _ in every) - step) * 1e3


def worker(args: argparse.Namespace) -> None:
    """One busy core: a run in each of ``--modes``, in order, each printed as a JSON line. Then it keeps
    training, unmeasured, until ``--stop`` exists: one that finished first would otherwise leave a core
    idle, and the others would end their runs faster."""
    config = MODELS[args.worker]
    for mode in json.loads(args.sequence):
        row = measure(config, telemetry_for(mode, args.fixed_every), args.epochs)
        print(json.dumps({"mode": mode, **row}), flush=True)
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


def sequence(modes: list[str], repeats: int) -> list[str]:
    """bare, then each mode followed by bare, ``repeats`` times: every watched run between two bare ones."""
    return ["bare", *[step for _ in range(repeats) for mode in modes for step in (mode, "bare")]]


def interleaved(label: str, modes: list[str], repeats: int, cores: list[int], epochs: int,
                fixed_every: int) -> dict[str, list[dict]]:
    """Every core trains the same sequence at once, each process pinned to its core. Each watched run is
    compared with the median speed of the bare runs of the same process, interleaved with it: the same
    core, the same memory, the same minutes."""
    stop = os.path.join(tempfile.mkdtemp(), "stop")
    order = sequence(modes, repeats)
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", label, "--sequence", json.dumps(order),
                               "--epochs", str(epochs), "--fixed-every", str(fixed_every), "--stop", stop],
                              stdout=subprocess.PIPE, text=True,
                              preexec_fn=functools.partial(os.sched_setaffinity, 0, {core}))
             for core in cores]
    runs = [[json.loads(p.stdout.readline()) for _ in order] for p in procs]
    open(stop, "w").close()
    for p in procs:
        p.wait()
    results: dict[str, list[dict]] = {mode: [] for mode in ("bare", *modes)}
    for rows in runs:
        bare = [r for r in rows if r["mode"] == "bare"]
        speed = statistics.median(r["steps_per_s"] for r in bare)
        cpu_speed = statistics.median(r["steps_per_cpu_s"] for r in bare)
        for row in rows:  # the bare runs too: their spread about their own median is the noise
            results[row["mode"]].append({**row, "ratio": row["steps_per_s"] / speed,
                                         "cpu_ratio": row["steps_per_cpu_s"] / cpu_speed})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="watched runs per mode and core")
    parser.add_argument("--seconds", type=float, default=20.0, help="rough length of each run")
    parser.add_argument("--only", help="one model, by the start of its name")
    parser.add_argument("--modes", nargs="+", choices=MODES[1:], default=list(MODES[1:]),
                        help="the modes to measure against bare (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sequence", default='["bare"]', help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--fixed-every", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--stop", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    cores = sorted(os.sched_getaffinity(0))
    print(f"torch {torch.__version__}, one thread per run, {len(cores)} runs at once, each pinned to one of "
          f"cores {cores}; each runs {' / '.join(sequence(args.modes, args.repeats))}, about {args.seconds:g} s a run")
    for label, config in MODELS.items():
        if args.only and not label.startswith(args.only):
            continue
        epochs, fixed_every = calibrate(config, args.seconds)
        step_ms, capture_ms = step_and_capture_ms(config, epochs)
        results = interleaved(label, args.modes, args.repeats, cores, epochs, fixed_every)
        print(f"\n{label}: a training step costs {step_ms:.2f} CPU-ms, a capture {capture_ms:.2f} CPU-ms "
              f"({capture_ms / step_ms:.2f} steps), measured outside the engine")
        print(f"  {'mode':20} {'ratio':>6} {'worst':>6} {'per run':>34} {'CPU ratio':>9} {'captures/s':>10} "
              f"{'share':>6} {'captures':>8}")
        for mode in ("bare", *args.modes):
            rows = results[mode]
            ratios = [r["ratio"] for r in rows]
            cpu_ratio = statistics.median(r["cpu_ratio"] for r in rows)
            rate = statistics.median(r["captures_per_s"] for r in rows)
            share = statistics.median(r["share"] for r in rows)
            captures = statistics.median(r["captures"] for r in rows)
            listed = " ".join(f"{x:.3f}" for x in ratios)
            print(f"  {mode:20} {statistics.median(ratios):6.3f} {min(ratios):6.3f} {listed:>34} "
                  f"{cpu_ratio:9.3f} {rate:10.2f} {share:6.3f} {captures:8.0f}", flush=True)


if __name__ == "__main__":
    main()
