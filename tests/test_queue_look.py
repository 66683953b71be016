"""A waiting run on the local executor: its first look arrives while another run trains, it says its
place in the queue, and its training goes on from the look with no seq twice and the same numbers."""

from __future__ import annotations

import time

import httpx
import pytest

from deepscope.app.settings import Settings
from deepscope.engine import train
from devtools.server import LiveServer, wait_for

LONG = {"model": {"depth": 3, "width": 16}, "train": {"epochs": 150, "fresh": True}}
SMALL = {"model": {"depth": 4, "width": 16, "dropout": 0.8}, "train": {"epochs": 2, "fresh": True}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(Settings(data_dir=tmp_path_factory.mktemp("data"), workers=1)) as live:
        yield live


def stored(c: httpx.Client, run_id: str) -> list[dict]:
    return c.get(f"/api/runs/{run_id}/events", params={"limit": 1000}).json()["data"]


def first_look_of(c: httpx.Client, run_id: str, timeout: float = 20) -> list[dict]:
    """The look's events once all are stored: its step 0 ends with the decision boundary (these runs are
    2-D), which comes after the capture; read between the two, the look looked one event short."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = stored(c, run_id)
        if {"layers", "boundary"} <= {e["type"] for e in events}:
            return events
        time.sleep(0.05)
    raise AssertionError(f"no first look for {run_id}")


def test_a_waiting_run_shows_its_step_0_and_its_place_then_trains_on_from_it(server, tmp_path):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        busy = c.post("/api/runs", json=LONG).json()
        wait_for(c, busy["id"], statuses=("running",))
        waiting = [c.post("/api/runs", json={**SMALL, "train": {**SMALL["train"], "seed": s}}).json() for s in (1, 2)]
        looked = first_look_of(c, waiting[1]["id"])  # the second in line gets its look too
        assert looked[0]["status"] == "queued" and looked[0]["first_look"] and looked[0]["layers"]
        assert {e["step"] for e in looked[1:]} == {0}
        run = c.get(f"/api/runs/{waiting[1]['id']}").json()
        assert run["status"] == "queued" and run["queue"]["place"] == 2 and run["queue"]["of"] == 2
        assert c.get(f"/api/runs/{busy['id']}").json()["status"] == "running"  # the looks came between its steps
        c.post(f"/api/runs/{busy['id']}/cancel")
        for w in waiting:
            assert wait_for(c, w["id"], timeout=120)["status"] == "completed"
        events = stored(c, waiting[1]["id"])
        assert [e["seq"] for e in events] == list(range(len(events)))  # nothing twice, nothing missing
        assert [e["status"] for e in events if e["type"] == "status"] == ["queued", "running", "completed"]
        assert sum(1 for e in events if e["type"] == "layers" and e["step"] == 0) == 1
        alone: list[dict] = []
        expected = train({**SMALL, "train": {**SMALL["train"], "seed": 2}}, alone.append, data_dir=tmp_path)
        final = c.get(f"/api/runs/{waiting[1]['id']}").json()
        assert final["summary"]["val_loss"] == expected["summary"]["val_loss"]
        evals = lambda es: [(e["epoch"], e["val_loss"]) for e in es if e["type"] == "eval"]  # noqa: E731
        assert evals(events) == evals(alone)  # (how many loss points and extra captures a run sends is paced by time)


def test_cancelling_a_run_after_its_first_look_ends_it_after_the_look(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        busy = c.post("/api/runs", json=LONG).json()
        wait_for(c, busy["id"], statuses=("running",))
        waiting = c.post("/api/runs", json={**SMALL, "train": {**SMALL["train"], "seed": 5}}).json()
        looked = first_look_of(c, waiting["id"])
        assert c.post(f"/api/runs/{waiting['id']}/cancel").status_code == 202
        assert wait_for(c, waiting["id"])["status"] == "cancelled"
        events = stored(c, waiting["id"])
        assert [e["seq"] for e in events] == list(range(len(looked) + 1))
        assert events[-1]["status"] == "cancelled"
        c.post(f"/api/runs/{busy['id']}/cancel")
        wait_for(c, busy["id"])
