"""Training speed with per-layer telemetry at ~10 captures/s against the bare loop, side by side.

    python benchmarks/telemetry_overhead.py [--repeats 3] [--seconds 6]

One torch thread, as a worker runs. For each model: a bare run (telemetry off) measures steps/s,
``every_steps`` is set so captures land about 10 times a second, then bare and telemetry runs
alternate; the figures are medians. Speed counts the steps between the 'running' and the final
status event, so data generation and start-up are left out and both runs pay the same evaluation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from deepscope.engine import train  # noqa: E402
from deepscope.engine.telemetry import LayerProbe  # noqa: E402

torch.set_num_threads(1)

MODELS = {
    "digits MLP 20x128 (batch 128)": {"data": {"dataset": "digits"},
                                      "model": {"depth": 20, "width": 128}, "train": {"batch_size": 128}},
    "digits MLP 50x128 (batch 128)": {"data": {"dataset": "digits"},
                                      "model": {"depth": 50, "width": 128}, "train": {"batch_size": 128}},
    "shapes CNN 4x32 (batch 128)": {"data": {"dataset": "shapes", "n_samples": 1200}, "model": {
        "arch": "cnn", "depth": 4, "width": 32}, "train": {"batch_size": 128}},
}


def steps_per_second(config: dict, every: int, epochs: int) -> tuple[float, int]:
    events: list[dict] = []
    cfg = {**config, "train": {**config["train"], "epochs": epochs}, "telemetry": {"every_steps": every, "max_per_second": 0}}
    result = train(cfg, events.append)
    assert result["status"] == "completed", result
    start = next(e["t"] for e in events if e["type"] == "status")
    end = events[-1]["t"]
    steps = events[0]["total_steps"]
    captures = sum(e["type"] == "layers" for e in events)
    return steps / (end - start), captures


def capture_ms(config: dict) -> float:
    """Milliseconds that one capture of every layer adds (collect + before_step), timed directly."""
    from deepscope.engine.config import RunConfig
    from deepscope.engine.datasets import load_dataset
    from deepscope.engine.models import build_model
    from deepscope.engine.paths import default_data_dir

    cfg = RunConfig.model_validate(config)
    data = load_dataset(cfg.data, 0, default_data_dir())
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    xb, yb = data.x_train[:cfg.train.batch_size], data.y_train[:cfg.train.batch_size]
    import time
    times = []
    with LayerProbe(model, 32) as probe:
        for _ in range(15):
            probe.armed = True
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            t0 = time.perf_counter()
            probe.before_step()
            t1 = time.perf_counter()
            opt.step()
            t2 = time.perf_counter()
            probe.collect(0)
            times.append((t1 - t0) + (time.perf_counter() - t2))
    return statistics.median(times[3:]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="rough length of each run")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"{'model':34} {'bare steps/s':>12} {'telemetry steps/s':>18} {'captures/s':>10} "
          f"{'ratio':>6} {'ms/capture':>10}")
    for label, config in MODELS.items():
        probe_speed, _ = steps_per_second(config, 0, 1)
        from deepscope.engine.config import RunConfig
        from deepscope.engine.datasets import load_dataset
        from deepscope.engine.paths import default_data_dir
        cfg = RunConfig.model_validate(config)
        n = len(load_dataset(cfg.data, 0, default_data_dir()).y_train)
        steps_per_epoch = max(1, n // cfg.train.batch_size)
        epochs = max(1, round(args.seconds * probe_speed / steps_per_epoch))
        every = max(1, round(probe_speed / 10))
        bare, telem, rate = [], [], []
        for _ in range(args.repeats):
            bare.append(steps_per_second(config, 0, epochs)[0])
            speed, captures = steps_per_second(config, every, epochs)
            telem.append(speed)
            rate.append(captures / (epochs * steps_per_epoch / speed))
        b, t = statistics.median(bare), statistics.median(telem)
        print(f"{label:34} {b:12.1f} {t:18.1f} {statistics.median(rate):10.1f} {t / b:6.3f} "
              f"{capture_ms(config):10.2f}", flush=True)


if __name__ == "__main__":
    main()
