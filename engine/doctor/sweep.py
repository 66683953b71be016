"""The doctor's sweep: configs that have each pathology and configs that do not, trained over seeds, and
per finding how often the doctor said it where it should (recall) and only there (precision). The configs
are not the lessons, so the doctor is not tuned to them.

    deepscope doctor [--seeds 3] [--write]      (--write puts the table into docs/doctor.md)

A case lists the findings it must raise (``expect``) and those it may raise besides (``allow``: a dead
net also stalls). Any other finding is a false alarm, and on a healthy case every finding but
``healthy`` is one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from deepscope.engine.doctor import FINDING_IDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "doctor.md"
MARK = ("<!-- sweep: begin -->", "<!-- sweep: end -->")


def case(name: str, expect: set[str], config: dict[str, Any], allow: set[str] = frozenset()) -> dict[str, Any]:
    return {"name": name, "expect": set(expect), "allow": set(allow), "config": config}


def mlp(dataset: str, depth: int, activation: str = "relu", init: str = "he_normal", epochs: int = 10, **extra):
    model = {"depth": depth, "width": extra.pop("width", 32), "activation": activation, "init": init,
             **{k: extra.pop(k) for k in list(extra) if k in ("init_std", "bias_init", "batchnorm", "bn_momentum",
                                                              "dropout")}}
    data = {"dataset": dataset, **extra.pop("data", {})}
    return {"data": data, "model": model, "train": {"epochs": epochs, **extra}}


CASES = [
    # healthy: no problem and no warning
    case("moons, 5 ReLU layers, He", set(), mlp("moons", 5)),
    case("circles, 6 tanh layers, Xavier", set(), mlp("circles", 6, "tanh", "xavier_normal")),
    case("gaussians, 4 leaky ReLU layers, He", set(), mlp("gaussians", 4, "leaky_relu")),
    case("digits, 6 ReLU layers, He, Adam", set(), mlp("digits", 6, width=64, optimizer="adam", lr=0.001, epochs=6)),
    case("spiral, 8 ReLU layers, He, batchnorm", set(), mlp("spiral", 8, batchnorm=True)),
    case("moons, 12 ELU layers, He", set(), mlp("moons", 12, "elu", epochs=6)),
    case("xor, 3 ReLU layers, He", set(), mlp("xor", 3)),
    case("moons, 12 ReLU layers of 64, He, momentum", set(), mlp("moons", 12, width=64, optimizer="momentum", lr=0.01,
                                                              epochs=6)),
    case("shapes, CNN 3x12, Adam", set(), {"data": {"dataset": "shapes", "n_samples": 600},
                                           "model": {"arch": "cnn", "depth": 3, "width": 12},
                                           "train": {"epochs": 4, "optimizer": "adam", "lr": 0.003}}),
    # pathological
    case("moons, 14 sigmoid layers, Xavier", {"vanishing_gradients"}, mlp("moons", 14, "sigmoid", "xavier_normal"),
         allow={"stalled", "saturation", "signal_shrinks"}),
    case("circles, 16 tanh layers, N(0,1)*0.05", {"vanishing_gradients", "signal_shrinks"},
         mlp("circles", 16, "tanh", "small_normal", init_std=0.05), allow={"stalled"}),
    case("moons, 10 ReLU layers, N(0,1)*0.5", {"signal_grows"},
         mlp("moons", 10, "relu", "small_normal", init_std=0.5, lr=1e-4),
         allow={"exploding_gradients", "vanishing_gradients", "diverged", "stalled", "lr_too_high", "dead_units"}),
    case("gaussians, 5 ReLU layers, bias -2", {"dead_units"}, mlp("gaussians", 5, bias_init=-2.0, optimizer="adam", lr=0.003),
         allow={"stalled", "vanishing_gradients"}),
    case("digits, 4 ReLU layers, bias -1.5", {"dead_units"}, mlp("digits", 4, width=64, bias_init=-1.5, epochs=5),
         allow={"stalled", "vanishing_gradients"}),
    case("circles, 5 tanh layers, N(0,1)*3", {"saturation"}, mlp("circles", 5, "tanh", "small_normal", init_std=3.0),
         allow={"stalled", "vanishing_gradients", "exploding_gradients", "lr_too_high"}),
    case("moons, 4 sigmoid layers, N(0,1)*4", {"saturation"}, mlp("moons", 4, "sigmoid", "small_normal", init_std=4.0),
         allow={"stalled", "vanishing_gradients", "exploding_gradients", "lr_too_high"}),
    case("moons, 4 tanh layers, zeros", {"symmetry"}, mlp("moons", 4, "tanh", "zeros", optimizer="adam", lr=0.01),
         allow={"stalled", "vanishing_gradients", "dead_units"}),  # tanh(0) = 0: every unit outputs 0 at first
    case("gaussians, 3 sigmoid layers, zeros", {"symmetry"}, mlp("gaussians", 3, "sigmoid", "zeros"),
         allow={"stalled"}),
    case("circles, 12 ReLU layers, N(0,1)*0.02", {"signal_shrinks"},
         mlp("circles", 12, "relu", "small_normal", init_std=0.02),
         allow={"stalled", "vanishing_gradients", "dead_units"}),
    case("moons, 8 ReLU layers, He, lr 5", {"diverged"}, mlp("moons", 8, lr=5.0, epochs=3),
         allow={"exploding_gradients", "dead_units", "stalled"}),
    case("mnist1d, 300 samples, 3x256, no dropout", {"overfitting"},
         mlp("mnist1d", 3, width=256, epochs=120, lr=0.1, batch_size=32, data={"n_samples": 300, "val_fraction": 0.5})),
    case("moons, 6 ReLU layers, batchnorm, alpha 0.001", {"bn_eval_gap"},
         mlp("moons", 6, batchnorm=True, bn_momentum=0.001, epochs=4),
         allow={"stalled"}),  # eval-mode metrics, the training ones too, use the lagging averages
    case("spiral, 6 ReLU layers, lr 1e-5", {"stalled"}, mlp("spiral", 6, lr=1e-5, epochs=5)),
    case("spiral, 10 ReLU layers, He, SGD lr 0.5", {"lr_too_high"}, mlp("spiral", 10, lr=0.5, epochs=15),
         allow={"dead_units", "diverged", "stalled"}),
]


def run_case(c: dict[str, Any], seed: int) -> set[str]:
    from deepscope.engine import train

    config = json.loads(json.dumps(c["config"]))
    config.setdefault("train", {})["seed"] = seed
    result = train(config, lambda e: None, background_telemetry=False)
    return {f["id"] for f in result["summary"].get("findings", []) if f["severity"] != "info"}


def sweep(seeds: list[int], only: str | None = None) -> dict[str, Any]:
    rows = []
    for c in CASES:
        if only and only not in c["name"]:
            continue
        for seed in seeds:
            fired = run_case(c, seed)
            rows.append({"case": c["name"], "seed": seed, "expect": sorted(c["expect"]), "allow": sorted(c["allow"]),
                         "fired": sorted(fired)})
            print(f"  {c['name']:44} seed {seed}: {', '.join(sorted(fired)) or '-'}", file=sys.stderr, flush=True)
    return {"seeds": seeds, "rows": rows}


def scores(result: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per finding: runs it fired in (fired), rightly (right: expected or allowed there), and runs that
    expected it (expected) and got it (caught); and false alarms on healthy cases."""
    out = {fid: {"fired": 0, "right": 0, "expected": 0, "caught": 0, "healthy_alarms": 0}
           for fid in FINDING_IDS if fid != "healthy"}
    for row in result["rows"]:
        expect, allow, fired = set(row["expect"]), set(row["allow"]), set(row["fired"])
        for fid, s in out.items():
            s["fired"] += fid in fired
            s["right"] += fid in fired and fid in expect | allow
            s["expected"] += fid in expect
            s["caught"] += fid in expect and fid in fired
            s["healthy_alarms"] += fid in fired and not expect
    return out


def table(result: dict[str, Any]) -> str:
    n_healthy = sum(1 for r in result["rows"] if not r["expect"])
    lines = [f"The sweep: {len(CASES)} cases at seeds {result['seeds'][0]}-{result['seeds'][-1]} "
             f"({len(result['rows'])} runs, {n_healthy} of them healthy), made by `deepscope doctor --seeds "
             f"{len(result['seeds'])} --write`.", "",
             "| finding | precision | recall | false alarms on healthy runs |", "|---|---|---|---|"]
    for fid, s in scores(result).items():
        precision = f"{s['right']}/{s['fired']}" if s["fired"] else "never fired"
        recall = f"{s['caught']}/{s['expected']}" if s["expected"] else "no case expects it"
        lines.append(f"| `{fid}` | {precision} | {recall} | {s['healthy_alarms']} of {n_healthy} |")
    lines += ["", "| case | seed | findings |", "|---|---|---|"]
    lines += [f"| {r['case']} | {r['seed']} | {', '.join(f'`{f}`' for f in r['fired']) or 'healthy'} |"
              for r in result["rows"]]
    return "\n".join(lines)


def write(result: dict[str, Any]) -> None:
    text = DOC.read_text()
    start, end = text.index(MARK[0]) + len(MARK[0]), text.index(MARK[1])
    DOC.write_text(text[:start] + "\n" + table(result) + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepscope doctor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per case (default 3)")
    parser.add_argument("--only", help="only the cases whose name contains this")
    parser.add_argument("--write", action="store_true", help="write the table into docs/doctor.md")
    args = parser.parse_args(argv)
    from deepscope.engine.threads import freeze_imports, keep_freed_memory, one_torch_thread, set_thread_env

    set_thread_env()
    one_torch_thread()
    keep_freed_memory()
    freeze_imports()
    t0 = time.monotonic()
    result = sweep(list(range(args.seeds)), args.only)
    print(table(result))
    if args.write:
        write(result)
    print(f"\n{len(result['rows'])} runs in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    wrong = sum(s["fired"] - s["right"] for s in scores(result).values())
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
