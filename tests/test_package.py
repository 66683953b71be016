"""The wheel ships one top-level package, ``deepscope``, with the page inside it, and works installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_one_package_that_serves_the_page(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("deepscope-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"deepscope", wheel.name.split("-py3")[0] + ".dist-info"}
    for needed in ("deepscope/templates/index.html", "deepscope/templates/instructor.html",
                   "deepscope/static/js/main.js", "deepscope/static/style.css", "deepscope/engine/loop.py",
                   "deepscope/app/main.py"):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "benchmarks/", "devtools/")) for n in names)

    # Installed on its own (not the checkout): the page renders from the package's own files.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    probe = ("import deepscope.app, deepscope.app.routes.pages as p; "
             "from deepscope.app.main import create_app; from fastapi.testclient import TestClient; "
             f"assert str(p.ROOT).startswith({str(target)!r}), p.ROOT; "
             "c = TestClient(create_app(), base_url='http://localhost'); "
             "assert c.get('/static/js/main.js').status_code == 200; print('ok')")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                              "DEEPSCOPE_DATA_DIR": str(tmp_path / "data")})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
