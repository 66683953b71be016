"""The GPU check script runs end to end on the CPU (a smoke test: on a GPU machine it runs with --device cuda)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu():
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "all checks held" in out.stdout
    assert "relative difference 0.00e+00" in out.stdout  # CPU against CPU: the same numbers
