"""The service against a real uvicorn on loopback: REST, WebSocket streams, workers, store."""

from __future__ import annotations

import json
import os
import signal
import time
import zlib

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from deepscope.app.settings import Settings
from devtools.server import LiveServer, wait_for

QUICK = {"model": {"depth": 3, "width": 16}, "train": {"epochs": 2, "fresh": True}}
LONG = {"model": {"depth": 4, "width": 32}, "train": {"epochs": 500, "fresh": True}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    with LiveServer(Settings(data_dir=data, workers=2, run_time_limit_s=120)) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def assert_ordered_stream(events):
    """No duplicate, in seq order, nothing missing but coalesced telemetry (layers, boundary, samples)."""
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] == 0
    missing = set(range(seqs[-1] + 1)) - set(seqs)
    return missing


def stream(server, run_id, timeout=60):
    events = []
    with connect(f"{server.ws_url}/ws/runs/{run_id}", open_timeout=10, close_timeout=5) as ws:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                events.append(json.loads(ws.recv(timeout=timeout)))
            except Exception:
                break
    return events


def test_submit_stream_complete(server, client):
    r = client.post("/api/runs", json=QUICK)
    assert r.status_code == 201
    run = r.json()
    assert run["status"] in ("queued", "running") and run["config"]["model"]["depth"] == 3
    events = stream(server, run["id"])
    missing = assert_ordered_stream(events)
    assert events[-1]["type"] == "status" and events[-1]["status"] == "completed"
    assert {e["type"] for e in events} >= {"status", "step", "eval", "layers", "boundary"}
    done = wait_for(client, run["id"])
    assert done["status"] == "completed" and done["progress"] == 1.0
    assert done["summary"]["val_acc"] is not None and done["finished_at"] and done["started_at"]
    stored = client.get(f"/api/runs/{run['id']}/events").json()["data"]
    assert [e for e in stored if e["seq"] not in missing] == events
    assert all(e["type"] in ("layers", "boundary", "samples") for e in stored if e["seq"] in missing)


def test_deflate_encoding_sends_big_events_compressed_and_small_ones_as_text(server, client):
    run = client.post("/api/runs", json=QUICK).json()
    wait_for(client, run["id"])
    frames = []
    with connect(f"{server.ws_url}/ws/runs/{run['id']}?encoding=deflate", open_timeout=10) as ws:
        frames = list(ws)
    events = [json.loads(zlib.decompress(f) if isinstance(f, bytes) else f) for f in frames]
    assert events == stream(server, run["id"])  # the same events, in the same order
    for frame, event in zip(frames, events, strict=True):
        size = len(json.dumps(event, separators=(",", ":")))
        assert isinstance(frame, bytes) == (size >= 1024), (event["type"], size)
    layers = [f for f, e in zip(frames, events, strict=True) if e["type"] == "layers"]
    assert layers and all(len(f) < len(zlib.decompress(f)) / 2 for f in layers)
    # An unknown encoding is refused with a close that names the field and the choices, never answered
    # in some other format.
    with connect(f"{server.ws_url}/ws/runs/{run['id']}?encoding=gzip", open_timeout=10) as ws, \
            pytest.raises(ConnectionClosed) as refused:
        ws.recv(timeout=10)
    assert refused.value.rcvd.code == 4400
    assert refused.value.rcvd.reason == "encoding must be one of json, deflate (got 'gzip')"


def test_replay_after_completion_and_paging(server, client):
    run = client.post("/api/runs", json=QUICK).json()
    wait_for(client, run["id"])
    replay = stream(server, run["id"])
    assert replay[-1]["status"] == "completed" and [e["seq"] for e in replay] == list(range(len(replay)))
    page = client.get(f"/api/runs/{run['id']}/events", params={"after": 5, "limit": 3}).json()
    assert [e["seq"] for e in page["data"]] == [6, 7, 8]
    csv = client.get(f"/api/runs/{run['id']}/events", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("seq,type,epoch,step,loss") and len(lines) >= 5
    assert sum(",eval," in line for line in lines) == 2
    report = client.get(f"/api/runs/{run['id']}/report")
    assert report.status_code == 200 and "Plotly.newPlot" in report.text and "<script src" not in report.text
    # what a learner takes home: the doctor's words and readable numbers, the raw JSON only behind a disclosure
    assert "What DeepScope sees" in report.text and "Key numbers" in report.text
    assert '"type": "log"' not in report.text.split("Dead fraction per layer")[1].split("}}")[0]



def test_the_reports_log_charts_draw_a_zero_as_a_cross_at_the_floor():
    """A dead net's weight gradients are exactly 0: on a log axis they would vanish without a word."""
    from deepscope.app.report import _layer_charts

    layer = lambda name, g: {"name": name, "stats": {"act_std": 0.5, "grad_norm": g, "dead_frac": 1.0,  # noqa: E731
                                                     "saturated_frac": 0.0, "duplicate_frac": 0.0}}
    captures = [{"step": 0, "layers": [layer("linear1", 0.02), layer("linear2", 0.0)]},
                {"step": 9, "layers": [layer("linear1", 0.0), layer("linear2", 0.0)]}]
    grads = next(f for f in _layer_charts(captures) if f["title"].startswith("Weight-gradient"))
    lines = [t for t in grads["data"] if t["mode"] == "lines+markers"]
    crosses = [t for t in grads["data"] if t["mode"] == "markers"]
    assert [t["y"] for t in lines] == [[0.02, None], [None, None]]
    assert [t["x"] for t in crosses] == [["linear2"], ["linear1", "linear2"]]
    assert all(y == 0.002 for t in crosses for y in t["y"]) and "exactly 0" in grads["layout"]["yaxis"]["title"]["text"]

def test_live_stream_joins_mid_run_without_gap_or_duplicate(server, client):
    run = client.post("/api/runs", json={**QUICK, "train": {"epochs": 40}}).json()
    time.sleep(0.8)
    events = stream(server, run["id"])
    stored = client.get(f"/api/runs/{run['id']}/events").json()["data"]
    missing = assert_ordered_stream(events)
    assert all(e["type"] in ("layers", "boundary", "samples") for e in stored if e["seq"] in missing)
    assert events[-1]["status"] == "completed"


def test_cancel_running_and_queued(server, client):
    running = client.post("/api/runs", json=LONG).json()
    events = []
    with connect(f"{server.ws_url}/ws/runs/{running['id']}") as ws:
        while not any(e["type"] == "step" for e in events):
            events.append(json.loads(ws.recv(timeout=30)))
        r = client.post(f"/api/runs/{running['id']}/cancel")
        assert r.status_code == 202
        while events[-1].get("status") not in ("cancelled",):
            events.append(json.loads(ws.recv(timeout=30)))
    assert wait_for(client, running["id"])["status"] == "cancelled"
    assert client.post(f"/api/runs/{running['id']}/cancel").status_code == 409
    # Two workers: fill both, the third waits in the queue and is cancelled there.
    a, b, c = (client.post("/api/runs", json=LONG).json() for _ in range(3))
    assert client.get(f"/api/runs/{c['id']}").json()["status"] == "queued"
    assert client.post(f"/api/runs/{c['id']}/cancel").status_code == 202
    assert wait_for(client, c["id"])["status"] == "cancelled"
    for r in (a, b):
        client.post(f"/api/runs/{r['id']}/cancel")
        assert wait_for(client, r["id"])["status"] == "cancelled"


def test_delete_removes_run_and_events(server, client):
    run = client.post("/api/runs", json=QUICK).json()
    wait_for(client, run["id"])
    assert client.delete(f"/api/runs/{run['id']}").status_code == 204
    assert client.get(f"/api/runs/{run['id']}").status_code == 404
    assert client.get(f"/api/runs/{run['id']}/events").status_code == 404
    assert server.service.store.events(run["id"]) == []
    assert client.delete(f"/api/runs/{run['id']}").status_code == 404
    active = client.post("/api/runs", json=LONG).json()
    assert client.delete(f"/api/runs/{active['id']}").status_code == 409
    client.post(f"/api/runs/{active['id']}/cancel")
    wait_for(client, active["id"])


@pytest.mark.parametrize("body, field, words", [
    ({"model": {"depth": 500}}, "model.depth", "between 1 and 100"),
    ({"model": {"activation": "swish"}}, "model.activation", "leaky_relu"),
    ({"telemetry": {"bins": 2}}, "telemetry.bins", "between 8 and 128"),
    ({"model": {"arch": "cnn"}}, "model.arch", "image dataset"),
    ({"data": {"dataset": "mnist"}}, "data.dataset", "train-images-idx3-ubyte"),
    ({"unknown": 1}, "unknown", "not a field"),
])
def test_invalid_configs_get_422_naming_the_field(client, body, field, words):
    r = client.post("/api/runs", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["field"] == field and words in detail["msg"]


def test_unparseable_json_is_400_and_unknown_ids_404(client):
    r = client.post("/api/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    assert client.get("/api/runs/nope").status_code == 404
    assert client.post("/api/runs/nope/cancel").status_code == 404
    assert client.post("/api/presets/nope/runs").status_code == 404


def test_options_and_presets(client):
    opts = client.get("/api/options").json()
    fields = {f["name"]: f for s in opts["sections"] for f in s["fields"]}
    assert fields["model.depth"]["ge"] == 1 and fields["model.depth"]["le"] == 100
    assert "leaky_relu" in fields["model.activation"]["choices"]
    assert fields["model.init_std"]["applies_when"]["values"] == ["small_normal"]
    presets = client.get("/api/presets").json()
    ids = {p["id"] for p in presets}
    assert {"vanishing-sigmoid", "zero-init", "xavier-vs-he", "batchnorm-sigmoid", "dropout", "augmentation",
            "dying-relu", "leaky-slope-one", "small-init-depth", "sigmoid-tanh-relu"} <= ids
    for p in presets:
        assert p["explanation"] and p["look_at"] and p["expect"] and len(p["runs"]) >= 2


def test_preset_starts_a_group(server, client):
    runs = client.post("/api/presets/zero-init/runs").json()
    lesson = next(p for p in client.get("/api/presets").json() if p["id"] == "zero-init")
    assert len(runs) == len(lesson["runs"]) and len({r["group"] for r in runs}) == 1
    listed = client.get("/api/runs", params={"group": runs[0]["group"]}).json()
    assert listed["count"] == len(runs)
    for r in runs:
        client.post(f"/api/runs/{r['id']}/cancel")
        wait_for(client, r["id"])


def test_killed_worker_fails_its_run_and_is_replaced(server, client):
    run = client.post("/api/runs", json=LONG).json()
    with connect(f"{server.ws_url}/ws/runs/{run['id']}") as ws:
        while json.loads(ws.recv(timeout=30))["type"] != "step":
            pass
        pid = server.service.executor.worker_pid(run["id"])
        os.kill(pid, signal.SIGKILL)
        last = None
        while True:
            last = json.loads(ws.recv(timeout=30))
            if last["type"] == "status":
                break
    assert last["status"] == "failed" and "worker process died" in last["message"]
    failed = wait_for(client, run["id"])
    assert failed["status"] == "failed" and "died" in failed["error"]
    assert client.get("/healthz").json()["status"] == "ok"
    after = client.post("/api/runs", json=QUICK).json()
    assert wait_for(client, after["id"])["status"] == "completed"
    assert server.service.executor.stats()["replaced"] >= 1


def test_wall_clock_limit_stops_a_run(tmp_path):
    with LiveServer(Settings(data_dir=tmp_path, workers=1, run_time_limit_s=1.5)) as live, \
            httpx.Client(base_url=live.url) as c:
        run = c.post("/api/runs", json=LONG).json()
        done = wait_for(c, run["id"], timeout=30)
        assert done["status"] == "cancelled" and "wall-clock limit of 1.5 s" in done["error"]


def test_restart_mid_run_marks_interrupted_and_keeps_finished_runs(tmp_path):
    settings = Settings(data_dir=tmp_path, workers=1)
    with LiveServer(settings) as live, httpx.Client(base_url=live.url) as c:
        finished = c.post("/api/runs", json=QUICK).json()
        wait_for(c, finished["id"])
        n_events = c.get(f"/api/runs/{finished['id']}/events").json()["count"]
        mid = c.post("/api/runs", json=LONG).json()
        wait_for(c, mid["id"], statuses=("running",))
    with LiveServer(settings) as live, httpx.Client(base_url=live.url) as c:
        assert c.get(f"/api/runs/{mid['id']}").json()["status"] == "interrupted"
        kept = c.get(f"/api/runs/{finished['id']}").json()
        assert kept["status"] == "completed"
        assert c.get(f"/api/runs/{finished['id']}/events").json()["count"] == n_events
        assert stream(live, mid["id"], timeout=5) is not None  # a socket to an interrupted run closes


def test_a_hole_in_the_stored_events_is_said_by_the_events_the_csv_and_the_report(client, server):
    """An outage that lost events (a store restored from a backup, a replica that died holding them):
    the replay does not hide the hole."""
    run = client.post("/api/runs", json={"train": {"epochs": 1}}).json()
    done = wait_for(client, run["id"])
    assert done["status"] == "completed"
    assert client.get(f"/api/runs/{run['id']}/events").json()["missing"] == []
    store = server.service.store
    n = len(store.event_seqs(run["id"]))
    with store.engine.begin() as conn:  # lose seq 3-5 and 7
        conn.exec_driver_sql(f"DELETE FROM events WHERE run_id = '{run['id']}' AND seq IN (3, 4, 5, 7)")
    page = client.get(f"/api/runs/{run['id']}/events").json()
    assert page["missing"] == [[3, 5], [7, 7]] and page["count"] == n - 4
    assert client.get(f"/api/runs/{run['id']}/events", params={"after": 5}).json()["missing"] == [[7, 7]]
    assert client.get(f"/api/runs/{run['id']}/events", params={"type": "step"}).json()["missing"] == []
    csv = client.get(f"/api/runs/{run['id']}/events", params={"format": "csv"})
    assert csv.headers["x-deepscope-missing-seqs"] == "3-5, 7"
    assert "the store does not have seq 3-5, 7 of this run" in client.get(f"/api/runs/{run['id']}/report").text
