"""The lesson sweep: every lesson's runs trained at many seeds, per check how often it held and by
what margin (docs/lessons.md). ``deepscope lessons --seeds 10`` runs it; the page shows the result
beside the learner's own badge, from ``app/lesson_evidence.json``.

Each torch thread count runs in its own process (the count is set before torch starts work), one
after the other: a run's numbers depend on it, and a lesson must hold at both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EVIDENCE = Path(__file__).with_name("lesson_evidence.json")
TABLE = Path(__file__).resolve().parents[1] / "docs" / "lessons.md"


def run_lesson(preset: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Train a lesson's runs at one seed (in this process); its checks, with margins."""
    from deepscope.app.presets import check
    from deepscope.engine import train

    summaries = {}
    for run in preset["runs"]:
        config = json.loads(json.dumps(run["config"]))
        config.setdefault("train", {})["seed"] = seed
        result = train(config, lambda e: None, background_telemetry=False)
        summaries[run["label"]] = result["summary"]
    return [check(e, summaries) for e in preset["expect"]]


def load_lessons(path: str | None) -> dict[str, dict[str, Any]]:
    """The built-in lessons, or those of a JSON file (a list in the shape of GET /api/presets)."""
    if path:
        return {p["id"]: p for p in json.loads(Path(path).read_text())}
    from deepscope.app.presets import BY_ID

    return BY_ID


def sweep_here(lessons: dict[str, dict[str, Any]], ids: list[str], seeds: list[int]) -> dict[str, Any]:
    return {pid: [run_lesson(lessons[pid], seed) for seed in seeds] for pid in ids}


def sweep(ids: list[str], seeds: list[int], threads: list[int], lessons_file: str | None = None,
          jobs: int = 1) -> dict[str, Any]:
    """Per lesson and check: held n/N over seeds x thread counts, margin median and minimum. ``jobs``
    worker processes share the seeds of each thread count (each one a torch thread per thread)."""
    outcomes: dict[str, list[list[dict[str, Any]]]] = {pid: [] for pid in ids}
    for n in threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "DEEPSCOPE_SWEEP_THREADS": str(n)}
        extra = ["--lessons", lessons_file] if lessons_file else []
        chunks = [seeds[i::jobs] for i in range(jobs) if seeds[i::jobs]]
        procs = [subprocess.Popen([sys.executable, "-m", "deepscope.app.lesson_sweep", "--worker", "--only", *ids,
                                   "--seeds", *map(str, chunk), *extra], env=env, stdout=subprocess.PIPE, text=True)
                 for chunk in chunks]
        results = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode:
                raise subprocess.CalledProcessError(proc.returncode, proc.args, out)
            results.append(json.loads(out.splitlines()[-1]))
        for pid in ids:
            by_seed = {seed: checks for chunk, result in zip(chunks, results, strict=True)
                       for seed, checks in zip(chunk, result[pid], strict=True)}
            outcomes[pid].extend(by_seed[seed] for seed in seeds)
    evidence: dict[str, Any] = {}
    for pid, per_seed in outcomes.items():
        checks = []
        for i in range(len(per_seed[0])):
            results = [seed_checks[i] for seed_checks in per_seed]
            margins = [r["margin"] for r in results if r["margin"] is not None]
            checks.append({"text": results[0]["text"], "held": sum(r["held"] is True for r in results),
                           "of": len(results), "margin_median": statistics.median(margins) if margins else None,
                           "margin_min": min(margins) if margins else None, "margin_unit": results[0]["margin_unit"]})
        evidence[pid] = {"seeds": seeds, "threads": threads, "checks": checks}
    return evidence


def margin_text(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value + 0.0:.3g}" + (" decades" if unit == "log10" else "")  # + 0.0: a tie reads 0, not -0


def table(evidence: dict[str, Any]) -> str:
    lines = ["| lesson | check | held | margin median | margin min |", "|---|---|---|---|---|"]
    for pid, ev in evidence.items():
        for c in ev["checks"]:
            lines.append(f"| {pid} | {c['text']} | {c['held']}/{c['of']} | "
                         f"{margin_text(c['margin_median'], c['margin_unit'])} | "
                         f"{margin_text(c['margin_min'], c['margin_unit'])} |")
    return "\n".join(lines)


def write(evidence: dict[str, Any]) -> None:
    old = json.loads(EVIDENCE.read_text()) if EVIDENCE.exists() else {}
    merged = {**old, **evidence}
    EVIDENCE.write_text(json.dumps(merged, indent=1) + "\n")
    ev0 = next(iter(merged.values()))
    TABLE.write_text("# Lesson evidence\n\nEvery lesson's runs trained at seeds "
                     f"{ev0['seeds'][0]}-{ev0['seeds'][-1]}, at {' and '.join(map(str, ev0['threads']))} torch "
                     "thread(s): per check, how often it held and by what margin (the distance from the "
                     "check's threshold, in the direction it must go; in decades for ratios). Made by "
                     f"`deepscope lessons --seeds {len(ev0['seeds'])} --threads {' '.join(map(str, ev0['threads']))} --write`.\n\n" + table(merged) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepscope lessons", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[10],
                        help="how many seeds (0..N-1), or the seeds themselves when more than one is given")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to sweep")
    parser.add_argument("--only", nargs="+", help="lesson ids (default: every lesson)")
    parser.add_argument("--write", action="store_true", help="update app/lesson_evidence.json and docs/lessons.md")
    parser.add_argument("--lessons", help="a JSON file of lessons to sweep instead of the built-in ones "
                                          "(a list shaped like GET /api/presets: id, runs, expect)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes sharing the seeds (one per core)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lessons = load_lessons(args.lessons)
    ids = args.only or list(lessons)
    seeds = list(range(args.seeds[0])) if len(args.seeds) == 1 and not args.worker else args.seeds
    if args.worker:
        import torch

        n = int(os.environ.get("DEEPSCOPE_SWEEP_THREADS", "1"))
        torch.set_num_threads(n)
        torch.set_num_interop_threads(n)
        print(json.dumps(sweep_here(lessons, ids, seeds)))
        return 0
    t0 = time.monotonic()
    evidence = sweep(ids, seeds, args.threads, args.lessons, max(1, args.jobs))
    print(table(evidence))
    print(f"\n{len(ids)} lessons x {len(seeds)} seeds x {len(args.threads)} thread counts in "
          f"{time.monotonic() - t0:.0f} s", file=sys.stderr)
    if args.write and not args.lessons:
        write(evidence)
    return 0 if all(c["held"] == c["of"] for ev in evidence.values() for c in ev["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
