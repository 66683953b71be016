"""What a capture costs, measured from outside the engine: process CPU per training step, telemetry off
against every step captured, and a lesson run at the defaults against the same run unwatched.

    python benchmarks/capture_cost.py [--repeats 3] [--only NAME ...]

Each model trains whole runs in this process, in three modes, interleaved (off, defaults, every step;
``--repeats`` times): one torch thread, as the workers train. A run's CPU is this process's CPU clock
(every thread: the summary thread included) from its 'running' event to its last event, so data
generation and start-up are left out and every mode pays the same evaluations. Medians over the
repeats:

- step: CPU-ms per training step, telemetry off;
- capture: what capturing every step adds per step (every_steps 1, no rate cap, no budget), in CPU-ms
  and in training steps (goal: at most 0.5);
- defaults: captures a run keeps at the default settings, and its CPU per step against the same run
  unwatched (goal: at most 1.10 for lesson runs);
- first capture: the CPU-ms the training thread spends in the telemetry of step 0's capture, timed around
  each captured step's telemetry (arming, then taking and summarising), against the later captures of a
  run at the defaults: "first/full", against the mean of the later full captures (goal: at most twice),
  "first/later" against the mean of all the later ones, "first/last" against the last. A full capture
  takes the weights (and their duplicate search) and counts dead units on the probe set: step 0, every
  fourth capture after it and the last step are full, the captures between repeat those numbers
  (docs/telemetry.md, "The first capture"). Step 0 must count dead units exactly on the probe set, as a
  later full capture does, so it is held to a later full capture: like with like.

The figures are medians over the repeats; "(range)" is the lowest and highest of each repeat's own ratio
(its runs follow one another), which shows how far this shared machine moves from one minute to the next.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


from deepscope.app.executors.policy import warm_imports  # noqa: E402
from deepscope.engine import train  # noqa: E402
from deepscope.engine.telemetry import session  # noqa: E402
from deepscope.engine.threads import freeze_imports, keep_freed_memory, one_torch_thread  # noqa: E402

# the workers' process setup (app/executors/local_worker.py), so a run here costs what it costs there
warm_imports()
one_torch_thread()
keep_freed_memory()
freeze_imports()

MODELS = {
    "6-layer MLP (dying-relu, relu)": {"data": {"dataset": "spiral", "n_samples": 1500, "noise": 0.1},
                                       "model": {"depth": 6, "activation": "relu", "bias_init": -1.0},
                                       "train": {"epochs": 15, "optimizer": "adam", "lr": 0.005}},
    "10-layer MLP (vanishing-sigmoid)": {"data": {"dataset": "spiral", "n_samples": 1500, "noise": 0.1},
                                         "model": {"depth": 10, "activation": "sigmoid", "init": "xavier_normal"},
                                         "train": {"epochs": 15}},
    "30-layer MLP (xavier-vs-he, He)": {"data": {"dataset": "spiral", "n_samples": 1000, "noise": 0.1},
                                        "model": {"depth": 30, "activation": "relu", "init": "he_normal"},
                                        "train": {"epochs": 40, "optimizer": "sgd", "lr": 0.02}},
    "MLP, inverted dropout (dropout)": {"data": {"dataset": "mnist1d", "n_samples": 1200, "val_fraction": 0.5},
                                        "model": {"depth": 3, "width": 256, "dropout": 0.5},
                                        "train": {"epochs": 80, "lr": 0.1, "batch_size": 32}},
    "100-layer MLP": {"data": {"dataset": "spiral", "n_samples": 1000}, "model": {"depth": 100},
                      "train": {"epochs": 4, "lr": 0.01}},
    "CNN on shapes (augmentation)": {"data": {"dataset": "shapes", "n_samples": 300, "val_fraction": 0.5},
                                     "model": {"arch": "cnn", "depth": 4, "width": 12},
                                     "train": {"epochs": 20, "optimizer": "adam", "lr": 0.003, "batch_size": 32}},
}
class CaptureClock:
    """Thread CPU seconds of each captured step's telemetry (``Telemetry.step``'s way in and out), in order,
    and whether each was a full capture (the weights and the probe set)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.full: list[bool] = []
        step, submit = session.Telemetry.step, session.Telemetry.submit
        clock = self
        taken: list[bool] = []  # the kind of the capture the step in the clock submitted

        def submitted(telemetry: session.Telemetry, capture: session.Capture) -> None:
            taken.append(capture.w_before is not None and capture.units is not None)
            submit(telemetry, capture)

        class Timed:
            def __init__(self, telemetry: session.Telemetry, n: int, due: bool | None = None) -> None:
                self.inner = step(telemetry, n, due)

            def __enter__(self) -> None:
                taken.clear()
                t0 = time.thread_time()
                self.inner.__enter__()
                self.inside = time.thread_time() - t0

            def __exit__(self, *exc: object) -> None:
                t0 = time.thread_time()
                self.inner.__exit__(*exc)
                if self.inner.due:
                    clock.seconds.append(self.inside + time.thread_time() - t0)
                    clock.full.append(bool(taken) and taken[-1])

        session.Telemetry.step = lambda telemetry, n, due=None: Timed(telemetry, n, due)
        session.Telemetry.submit = submitted


CLOCK = CaptureClock()
MODES = {"off": {"every_steps": 0}, "defaults": {},
         "every step": {"every_steps": 1, "max_per_second": 0, "budget": 0}}


def run(config: dict, telemetry: dict) -> tuple[float, int, int]:
    """(process CPU seconds from 'running' to the end, training steps, layers events) of one run."""
    marks: dict[str, float] = {}
    counts = {"layers": 0, "steps": 0}

    def emit(event: dict) -> None:
        if event["type"] == "status" and event["status"] == "running":
            marks["start"] = time.process_time()
            counts["steps"] = event["total_steps"]
        counts["layers"] += event["type"] == "layers"
        marks["end"] = time.process_time()

    result = train({**config, "telemetry": telemetry}, emit)
    assert result["status"] == "completed", result
    return marks["end"] - marks["start"], counts["steps"], counts["layers"]


def measure(config: dict, repeats: int) -> dict[str, float]:
    run(config, MODES["defaults"])  # warm: the first run of a process fills caches
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    firsts: list[float] = []
    laters: list[float] = []
    lasts: list[float] = []
    fulls: list[float] = []
    steps = captures = full_captures = 0
    for _ in range(repeats):
        for mode, telemetry in MODES.items():
            CLOCK.seconds.clear()
            CLOCK.full.clear()
            seconds, steps, layers = run(config, telemetry)
            cpu[mode].append(seconds)
            if mode == "defaults":
                captures = layers
                if len(CLOCK.seconds) > 2:
                    firsts.append(CLOCK.seconds[0])
                    laters.append(statistics.mean(CLOCK.seconds[1:-1]))
                    lasts.append(CLOCK.seconds[-1])
                    later_full = [t for t, full in zip(CLOCK.seconds[1:-1], CLOCK.full[1:-1], strict=True) if full]
                    fulls.append(statistics.mean(later_full + CLOCK.seconds[-1:]))
                    full_captures = len(later_full)
    off, defaults, every = (statistics.median(cpu[m]) / steps for m in MODES)
    first, later, last, full = (statistics.median(x) if x else float("nan") for x in (firsts, laters, lasts, fulls))
    # each repeat's own ratios (its three runs follow one another): their range shows the machine's noise
    capture_steps = [(e - o) / o for o, e in zip(cpu["off"], cpu["every step"], strict=True)]
    defaults_ratios = [d / o for o, d in zip(cpu["off"], cpu["defaults"], strict=True)]
    first_later = [f / la for f, la in zip(firsts, laters, strict=True)]
    first_full = [f / fu for f, fu in zip(firsts, fulls, strict=True)]
    return {"steps": steps, "step_ms": off * 1e3, "capture_ms": (every - off) * 1e3,
            "capture_steps": (every - off) / off, "captures": captures, "defaults_ratio": defaults / off,
            "first_ms": first * 1e3, "later_ms": later * 1e3, "last_ms": last * 1e3, "full_ms": full * 1e3,
            "full_captures": full_captures,
            "capture_steps_range": _range(capture_steps), "defaults_range": _range(defaults_ratios),
            "first_later_range": _range(first_later), "first_full_range": _range(first_full)}


def _range(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="models whose name contains one of these")
    args = parser.parse_args()
    names = [n for n in MODELS if not args.only or any(o.lower() in n.lower() for o in args.only)]
    print(f"{'model':34} {'steps':>6} {'step CPU-ms':>11} {'capture CPU-ms':>14} {'in steps':>8} {'(range)':>11} "
          f"{'captures':>8} {'defaults/off':>12} {'(range)':>11} {'first capture ms':>16} {'later ms':>8} "
          f"{'full ms':>7} {'first/full':>10} {'(range)':>11} {'first/later':>11} {'(range)':>11} {'first/last':>10}")
    for name in names:
        r = measure(MODELS[name], args.repeats)
        print(f"{name:34} {r['steps']:6d} {r['step_ms']:11.3f} {r['capture_ms']:14.3f} {r['capture_steps']:8.2f} "
              f"{r['capture_steps_range']:>11} {r['captures']:8d} {r['defaults_ratio']:12.3f} {r['defaults_range']:>11} "
              f"{r['first_ms']:16.2f} {r['later_ms']:8.2f} {r['full_ms']:7.2f} {r['first_ms'] / r['full_ms']:10.2f} "
              f"{r['first_full_range']:>11} {r['first_ms'] / r['later_ms']:11.2f} "
              f"{r['first_later_range']:>11} {r['first_ms'] / r['last_ms']:10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
