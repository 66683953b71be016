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
