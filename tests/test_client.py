"""deepscope.client and `deepscope submit`, against a live server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deepscope.app.settings import Settings
from deepscope.client import ApiError, DeepScope
from devtools.server import LiveServer

QUICK = {"model": {"depth": 2, "width": 8}, "train": {"epochs": 2, "fresh": True}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(Settings(data_dir=tmp_path_factory.mktemp("data"), workers=1, token="class-secret")) as live:
        yield live


def test_the_client_imports_no_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, deepscope.client; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_submit_stream_wait_page_list_cancel_delete(server):
    with DeepScope(server.url, token="class-secret") as ds:
        run = ds.submit(QUICK, group="g")
        streamed = list(ds.stream(run["id"]))
        assert streamed[0]["type"] == "status" and streamed[-1]["status"] == "completed"
        done = ds.wait(run["id"], timeout=60)
        assert done["status"] == "completed" and done["summary"]["val_acc"] is not None
        stored = list(ds.events(run["id"], page=7))  # several pages
        assert [e["seq"] for e in stored] == list(range(len(stored))) and len(stored) > 7
        assert all(e["type"] == "eval" for e in ds.events(run["id"], type="eval"))
        assert ds.metrics_csv(run["id"]).startswith("seq,type")
        assert [r["id"] for r in ds.runs(group="g")] == [run["id"]]
        long = ds.submit({**QUICK, "train": {"epochs": 500, "fresh": True}})
        assert ds.cancel(long["id"])["id"] == long["id"]
        assert ds.wait(long["id"], timeout=60)["status"] == "cancelled"
        ds.delete(run["id"])
        with pytest.raises(ApiError) as gone:
            ds.run(run["id"])
        assert gone.value.status == 404


def test_errors_carry_the_field_and_the_message(server):
    with DeepScope(server.url, token="class-secret") as ds:
        with pytest.raises(ApiError) as bad:
            ds.submit({"model": {"depth": 500}})
        assert bad.value.status == 422 and bad.value.field == "model.depth" and "between 1 and 100" in bad.value.message
    with DeepScope(server.url) as anonymous, pytest.raises(ApiError) as refused:
        anonymous.runs()
    assert refused.value.status == 401 and "token" in refused.value.message


def test_lessons_through_the_client(server):
    with DeepScope(server.url, token="class-secret") as ds:
        assert any(lesson["id"] == "zero-init" for lesson in ds.lessons())
        runs = ds.start_lesson("zero-init")
        for run in runs:
            ds.wait(run["id"], timeout=120)
        outcome = ds.outcome("zero-init", runs[0]["group"])
        assert outcome["finished"] and all(c["held"] is not None for c in outcome["checks"])
        zeros = next(r for r in runs if r["name"] == "zeros, sigmoid")
        assert "symmetry" in [f["id"] for f in ds.findings(zeros["id"])]  # the doctor, through the client


def test_deepscope_submit_follows_a_run(server, tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(QUICK))
    cmd = [sys.executable, "-m", "deepscope.app.cli", "submit", str(config), "--server", server.url]
    out = subprocess.run([*cmd, "--token", "class-secret", "--follow"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "completed" and "step" in out.stderr
    assert "What DeepScope sees:" in out.stderr  # the doctor's reading, in the last lines
    config.write_text(json.dumps({"model": {"depth": 0}}))
    bad = subprocess.run([*cmd, "--token", "class-secret"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "model.depth" in bad.stderr
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "token" in refused.stderr
