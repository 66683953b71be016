"""Identical config + seed trains once: a class pressing the same lesson shares one training, each
student with their own run id streaming the same events (live while it trains, replayed after)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.sync.client import connect

from deepscope.app.settings import Settings
from devtools.server import LiveServer, wait_for

RUN = {"model": {"depth": 3, "width": 16}, "train": {"epochs": 40}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(Settings(data_dir=tmp_path_factory.mktemp("data"), workers=1)) as live:
        yield live


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30)


def seqs_and_types(server, run_id: str, cookies) -> list[tuple[int, str]]:
    header = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    out = []
    with connect(f"{server.ws_url}/ws/runs/{run_id}", additional_headers=header) as ws:
        while True:
            try:
                event = json.loads(ws.recv(timeout=60))
            except Exception:
                return out
            out.append((event["seq"], event["type"]))


def test_a_second_request_shares_the_training_and_streams_the_same_events(server):
    config = {**RUN, "train": {**RUN["train"], "seed": 11}}
    with client(server) as ann, client(server) as bob:
        first = ann.post("/api/runs", json={**config, "name": "ann's private name"}).json()
        second = bob.post("/api/runs", json={**config, "name": "bob's copy"}).json()
        assert second["id"] != first["id"] and second["summary"]["shared_from"] == first["id"]
        live = seqs_and_types(server, second["id"], bob.cookies)  # watched while the original trains
        done = wait_for(bob, second["id"])
        original = wait_for(ann, first["id"])
        assert done["status"] == original["status"] == "completed"
        assert done["summary"]["val_acc"] == original["summary"]["val_acc"]
        assert done["summary"]["shared_from"] == first["id"]
        replayed = [(e["seq"], e["type"]) for e in bob.get(f"/api/runs/{second['id']}/events").json()["data"]]
        stored = [(e["seq"], e["type"]) for e in ann.get(f"/api/runs/{first['id']}/events").json()["data"]]
        assert replayed == stored and [s for s, _ in stored] == list(range(len(stored)))
        # the training's events are bob's to see, its owner's name for it is not
        assert "ann's private name" not in bob.get(f"/api/runs/{second['id']}/events").text
        # live, a viewer may skip a snapshot that a newer one superseded (docs/architecture.md); every
        # step, eval and status event arrives, in order, once
        curves = [e for e in stored if e[1] not in ("layers", "boundary", "samples")]
        assert [e for e in live if e[1] not in ("layers", "boundary", "samples")] == curves
        assert set(live) <= set(stored) and [s for s, _ in live] == sorted({s for s, _ in live})
        rows = server.service.store.list_runs(limit=1000)
        assert sum(1 for r in rows if r["id"] in (first["id"], second["id"]) and r["shared_from"] is None) == 1
        # a late request for a finished training is finished at once
        third = bob.post("/api/runs", json=config).json()
        assert third["status"] == "completed" and third["summary"]["shared_from"] == first["id"]


def test_fresh_opts_out_and_a_different_seed_trains_again(server):
    config = {**RUN, "train": {**RUN["train"], "epochs": 2, "seed": 12}}
    with client(server) as ann:
        a = ann.post("/api/runs", json=config).json()
        b = ann.post("/api/runs", json={**config, "train": {**config["train"], "fresh": True}}).json()
        c = ann.post("/api/runs", json={**config, "train": {**config["train"], "seed": 13}}).json()
        assert "shared_from" not in b["summary"] and "shared_from" not in c["summary"]
        for run in (a, b, c):
            wait_for(ann, run["id"])


def test_cancelling_a_share_stops_only_that_share(server):
    config = {**RUN, "train": {**RUN["train"], "epochs": 400, "seed": 14}}
    with client(server) as ann, client(server) as bob:
        first = ann.post("/api/runs", json=config).json()
        wait_for(ann, first["id"], statuses=("running",))
        share = bob.post("/api/runs", json=config).json()
        assert bob.post(f"/api/runs/{share['id']}/cancel").status_code == 202
        ended = wait_for(bob, share["id"])
        assert ended["status"] == "cancelled"
        events = bob.get(f"/api/runs/{share['id']}/events").json()["data"]
        assert events[-1]["type"] == "status" and events[-1]["status"] == "cancelled"
        assert ann.get(f"/api/runs/{first['id']}").json()["status"] == "running"
        assert ann.post(f"/api/runs/{first['id']}/cancel").status_code == 202
        assert wait_for(ann, first["id"])["status"] == "cancelled"


def test_the_owner_who_cancels_a_watched_training_leaves_it_and_it_goes_on_for_the_others(server):
    config = {**RUN, "train": {**RUN["train"], "epochs": 400, "seed": 16}}
    with client(server) as ann, client(server) as bob:
        first = ann.post("/api/runs", json=config).json()
        wait_for(ann, first["id"], statuses=("running",))
        share = bob.post("/api/runs", json=config).json()
        left = ann.post(f"/api/runs/{first['id']}/cancel")
        assert left.status_code == 202 and left.json()["status"] == "cancelled"
        assert "goes on" in left.json()["error"] and left.json()["finished_at"]
        owner = server.service.store.get_run(first["id"])["owner"]
        assert owner and server.service.count_active(owner) == 0  # her quota no longer counts it
        # ann's run ends where she left, with a cancelled status; bob's share trains on
        mine = ann.get(f"/api/runs/{first['id']}/events", params={"limit": 1000}).json()["data"]
        assert mine[-1]["type"] == "status" and mine[-1]["status"] == "cancelled"
        assert [e["seq"] for e in mine] == list(range(len(mine)))
        time.sleep(1.0)
        theirs = bob.get(f"/api/runs/{share['id']}").json()
        assert theirs["status"] == "running" and theirs["progress"] > 0
        assert bob.get(f"/api/runs/{share['id']}/events", params={"limit": 1000}).json()["count"] > len(mine)
        assert ann.get(f"/api/runs/{first['id']}").json()["status"] == "cancelled"  # still, as it trains on
        # the last watcher leaves: nobody watches, so the training stops
        assert bob.post(f"/api/runs/{share['id']}/cancel").status_code == 202
        deadline = time.monotonic() + 30
        while server.service.store.get_run(first["id"])["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.service.store.get_run(first["id"])["status"] == "cancelled"


def test_deleting_the_original_keeps_the_events_of_its_shares(server):
    config = {**RUN, "train": {**RUN["train"], "epochs": 2, "seed": 15}}
    with client(server) as ann, client(server) as bob:
        first = ann.post("/api/runs", json=config).json()
        share = bob.post("/api/runs", json=config).json()
        wait_for(bob, share["id"])
        n = bob.get(f"/api/runs/{share['id']}/events").json()["count"]
        assert ann.delete(f"/api/runs/{first['id']}").status_code == 204
        assert bob.get(f"/api/runs/{share['id']}/events").json()["count"] == n > 0
        assert bob.delete(f"/api/runs/{share['id']}").status_code == 204
        assert server.service.store.events(first["id"]) == []  # the last watcher took the events with it
