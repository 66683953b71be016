"""Workshop mode: the token, quotas, ownership, the instructor's view, WebSocket origins."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from deepscope.app.settings import Settings
from devtools.server import LiveServer, wait_for

LONG = {"model": {"depth": 3, "width": 16}, "train": {"epochs": 500}}
QUICK = {"model": {"depth": 2, "width": 8}, "train": {"epochs": 1}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), workers=1, token="class-secret",
                        instructor_token="teacher-secret", max_active_per_client=2, max_queued=5)
    with LiveServer(settings) as live:
        yield live


def student(server, name: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, headers={
        "Authorization": "Bearer class-secret", "X-DeepScope-Client": name})


def test_the_token_is_required(server):
    r = httpx.get(server.url + "/api/runs")
    assert r.status_code == 401 and "token" in r.json()["detail"]
    assert httpx.get(server.url + "/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(server.url + "/api/runs", cookies={"deepscope_token": "class-secret"}).status_code == 200
    assert httpx.get(server.url + "/healthz").status_code == 200  # health stays open for load balancers
    with pytest.raises(InvalidStatus) as refused, connect(f"{server.ws_url}/ws/runs/x") as ws:
        ws.recv(timeout=5)
    assert refused.value.response.status_code == 403


def test_per_client_quota_answers_429_with_retry_after(server):
    with student(server, "ann") as ann:
        runs = [ann.post("/api/runs", json=LONG) for _ in range(3)]
        assert [r.status_code for r in runs[:2]] == [201, 201]
        assert runs[2].status_code == 429 and int(runs[2].headers["Retry-After"]) > 0
        assert "at most 2" in runs[2].json()["detail"]
        for r in runs[:2]:
            ann.post(f"/api/runs/{r.json()['id']}/cancel")
            wait_for(ann, r.json()["id"])


def test_a_client_cannot_touch_another_clients_runs_but_the_instructor_can(server):
    with student(server, "bob") as bob, student(server, "eve") as eve:
        run = bob.post("/api/runs", json=LONG).json()
        assert run["owner"] == "bob"
        r = eve.post(f"/api/runs/{run['id']}/cancel")
        assert r.status_code == 403 and "another client" in r.json()["detail"]
        assert all(x["owner"] == "eve" for x in eve.get("/api/runs").json()["data"])
        assert eve.get("/api/instructor/runs").status_code == 403
        teacher = {"X-DeepScope-Instructor": "teacher-secret"}
        listed = httpx.get(server.url + "/api/instructor/runs", headers=teacher).json()
        assert any(x["id"] == run["id"] and x["owner"] == "bob" for x in listed["data"])
        assert httpx.post(f"{server.url}/api/runs/{run['id']}/cancel", headers=teacher).status_code == 202
        wait_for(bob, run["id"])
        assert eve.delete(f"/api/runs/{run['id']}").status_code == 403
        assert bob.delete(f"/api/runs/{run['id']}").status_code == 204


def test_global_queue_limit(server):
    clients = [student(server, f"s{i}") for i in range(4)]
    try:
        codes = [c.post("/api/runs", json=LONG).status_code for c in clients for _ in range(2)]
        assert codes.count(201) == 5 and codes.count(429) == 3
    finally:
        for c in clients:
            for run in c.get("/api/runs").json()["data"]:
                if run["status"] in ("queued", "running"):
                    c.post(f"/api/runs/{run['id']}/cancel")
            for run in c.get("/api/runs").json()["data"]:
                wait_for(c, run["id"])
            c.close()


def test_websocket_needs_the_token_and_refuses_other_origins(server):
    with student(server, "ws") as c:
        run = c.post("/api/runs", json=QUICK).json()
        wait_for(c, run["id"])
    url = f"{server.ws_url}/ws/runs/{run['id']}?token=class-secret"
    with connect(url) as ws:
        assert '"seq":0' in ws.recv(timeout=10)
    with connect(url, origin=f"http://127.0.0.1:{server.port}") as ws:  # the page's own origin
        assert '"seq":0' in ws.recv(timeout=10)
    with pytest.raises(InvalidStatus) as refused, connect(url, origin="http://evil.example") as ws:
        ws.recv(timeout=5)
    assert refused.value.response.status_code == 403


def test_instructor_page_is_served(server):
    r = httpx.get(server.url + "/instructor")
    assert r.status_code == 200 and "instructor" in r.text.lower()
