"""What deepscope.watch costs your own training, side by side in one run:

    python benchmarks/watch_overhead.py [--steps 2000] [--rounds 3] [--only resnet]

For a small ResNet (skips, batchnorm) and a transformer encoder, in one process, one torch thread,
interleaved rounds of the same training loop:

- bare: the loop as written;
- watch: under ``deepscope.watch`` at the defaults (50 captures spread over the run, more while the
  budget allows), its events written to a local file (a server adds the sender thread's work, which
  the budget does not count);
- histc every 100: what ``wandb.watch`` does by default, done naively: every 100 steps, a
  ``torch.histc`` of every weight and every gradient, each read to the host.

Speed is steps per second of wall time over the loop; the ratio is against the median bare round.
Goal: watch at least 0.95 of bare, with at least 50 captures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import deepscope  # noqa: E402
from tests.test_watch import ResNet, Transformer  # noqa: E402

torch.set_num_threads(1)
MODELS = {"resnet": (ResNet, (32, 3, 16, 16)), "transformer": (Transformer, (32, 12, 16))}


def loop(model, opt, x, y, steps: int, after_step=None) -> float:
    t0 = time.perf_counter()
    for step in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(step, loss)
    return steps / (time.perf_counter() - t0)


def histc_every(model, every: int):
    params = [p for p in model.parameters() if p.dim() > 1]

    def after(step, loss):
        if step % every == 0:
            for p in params:
                for t in (p.detach(), p.grad):
                    t.histc(bins=64, min=float(t.min()), max=float(t.max())).tolist()
    return after


def measure(name: str, steps: int, rounds: int) -> dict[str, list[float]]:
    make, shape = MODELS[name]
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(*shape, generator=gen), torch.randint(0, 3, (shape[0],), generator=gen)
    speeds: dict[str, list[float]] = {"bare": [], "watch": [], "histc every 100": []}
    captures = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds + 1):  # the first round warms up, unmeasured
            for mode in speeds:
                torch.manual_seed(0)
                model = make()
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                if mode == "watch":
                    run = deepscope.watch(model, opt, name=name, total_steps=steps, data_dir=tmp)
                    speed = loop(model, opt, x, y, steps, lambda s, loss, run=run: run.log(loss=loss))
                    summary = run.finish()
                    captures.append(summary.get("captures", 0))
                else:
                    speed = loop(model, opt, x, y, steps, histc_every(model, 100) if mode != "bare" else None)
                speeds[mode].append(speed)
    speeds = {mode: v[1:] for mode, v in speeds.items()}
    speeds["captures"] = captures[1:]
    return speeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=list(MODELS))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, one thread; {args.steps} steps a run, {args.rounds} rounds, interleaved")
    for name in [args.only] if args.only else MODELS:
        s = measure(name, args.steps, args.rounds)
        bare = statistics.median(s["bare"])
        print(f"\n{name}:")
        for mode in ("bare", "watch", "histc every 100"):
            extra = f"  captures {int(statistics.median(s['captures']))}" if mode == "watch" else ""
            print(f"  {mode:16} {statistics.median(s[mode]):8.1f} steps/s  ratio {statistics.median(s[mode]) / bare:5.3f}"
                  f"  (rounds {' '.join(f'{v / bare:.3f}' for v in s[mode])}){extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
