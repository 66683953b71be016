"""The telemetry benchmark runs end to end in miniature (a smoke test: its figures come from a full run,
docs/telemetry.md)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_telemetry_benchmark_interleaves_bare_runs_and_prints_each_modes_row():
    out = subprocess.run([sys.executable, "benchmarks/telemetry_overhead.py", "--only", "digits MLP 20",
                          "--seconds", "1", "--repeats", "1", "--modes", "bare, again", "budget"],
                         cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^  (bare, again|budget)\s+([\d.]+)\s+([\d.]+)\s+((?:[\d.]+ ?)+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$",
        out.stdout, re.M)}
    assert set(rows) == {"bare, again", "budget"}, out.stdout
    ratio, worst, windows, cpu_ratio, rate, share, captures = rows["budget"]
    assert 0 < float(worst) <= float(ratio) and len(windows.split()) == len(os.sched_getaffinity(0)) and float(cpu_ratio) > 0
    assert float(rate) > 0 and float(share) > 0  # captured: step 0 and the last step at least
    assert float(rows["bare, again"][4]) == 0  # bare takes no captures
    assert int(captures) >= 2 and re.search(r"a training step costs [\d.]+ CPU-ms, a capture -?[\d.]+ CPU-ms", out.stdout)


def test_capture_cost_benchmark_measures_a_tiny_run_in_each_mode():
    """benchmarks/capture_cost.py on a tiny config: a step, a capture, the defaults' ratio and the first
    capture against the later ones (and the later full ones) are all measured (in a process of its own: it times Telemetry.step)."""
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import capture_cost as c; "
            "print(json.dumps(c.measure({'data': {'dataset': 'moons', 'n_samples': 400}, 'model': {'depth': 3, 'width': 16},"
            " 'train': {'epochs': 4}}, 1)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    r = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert r["steps"] == 20 and r["captures"] == 20  # min(50, steps): every step of a 20-step run
    assert r["step_ms"] > 0 and r["capture_ms"] == r["capture_ms"] and r["defaults_ratio"] > 0
    assert r["first_ms"] > 0 and r["later_ms"] > 0 and r["full_ms"] > 0
    assert r["full_captures"] == 4  # captures 4, 8, 12 and 16 take the weights and pass the probe set (and the last)
