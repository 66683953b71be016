"""Workshop mode, tried as a student with the class token would: the token, server-issued identities,
owner-only reads, quotas (atomic, not bypassed by a new identity), the instructor's view, origins,
cross-site requests, security headers and bad input."""

from __future__ import annotations

import concurrent.futures
import contextlib

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from deepscope.app.security import Signer
from deepscope.app.settings import Settings
from devtools.server import LiveServer, wait_for

LONG = {"model": {"depth": 3, "width": 16}, "train": {"epochs": 500, "fresh": True}}
QUICK = {"model": {"depth": 2, "width": 8}, "train": {"epochs": 1, "fresh": True}}
TEACHER = {"X-DeepScope-Instructor": "teacher-secret"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), workers=1, token="class-secret",
                        instructor_token="teacher-secret", max_active_per_client=2, max_queued=5,
                        max_active_per_address=4)
    with LiveServer(settings) as live:
        yield live


@contextlib.contextmanager
def student(server):
    """A student's script: the class token, and a cookie jar that keeps the identity the server issues."""
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": "Bearer class-secret"}) as c:
        assert c.post("/api/session").status_code == 200
        yield c


def cancel_all(server) -> None:
    for run in httpx.get(server.url + "/api/instructor/runs", headers=TEACHER).json()["data"]:
        if run["status"] in ("queued", "running"):
            httpx.post(f"{server.url}/api/runs/{run['id']}/cancel", headers=TEACHER)
    with httpx.Client(base_url=server.url, headers=TEACHER) as teacher:
        for run in teacher.get("/api/instructor/runs").json()["data"]:
            wait_for(teacher, run["id"])


def test_the_token_is_required(server):
    r = httpx.get(server.url + "/api/runs")
    assert r.status_code == 401 and "token" in r.json()["detail"]
    assert httpx.get(server.url + "/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(server.url + "/api/runs", cookies={"deepscope_token": "class-secret"}).status_code == 200
    assert httpx.get(server.url + "/healthz").status_code == 200  # health stays open for load balancers
    with pytest.raises(InvalidStatus) as refused, connect(f"{server.ws_url}/ws/runs/x") as ws:
        ws.recv(timeout=5)
    assert refused.value.response.status_code == 403


def test_non_ascii_tokens_are_refused_not_errors(server):
    for token in ("clåss-sécret", "ключ", "🔑"):
        raw = token.encode()  # UTF-8 bytes on the wire, as a browser or curl sends them
        assert httpx.get(server.url + "/api/runs", headers={"Authorization": b"Bearer " + raw}).status_code == 401
        assert httpx.get(server.url + "/api/runs", headers={"X-DeepScope-Instructor": raw}).status_code == 401
        assert httpx.get(server.url + "/api/runs", params={"token": token}).status_code == 401
        assert httpx.get(server.url + "/api/runs", headers={"Cookie": b"deepscope_token=" + raw}).status_code == 401
    with pytest.raises(InvalidStatus) as refused, connect(f"{server.ws_url}/ws/runs/x?token=%C3%A5%F0%9F%94%91"):
        pass
    assert refused.value.response.status_code == 403


def test_the_server_issues_identities_and_headers_cannot_choose_one(server):
    with student(server) as bob, student(server) as eve:
        run = bob.post("/api/runs", json=QUICK).json()
        assert run["owner"] is None  # students never see owner ids
        # eve claims to be bob every way the old API allowed, and with a forged cookie
        for spoof in ({"X-DeepScope-Client": "bob"}, {"X-DeepScope-Identity": "bob"},
                      {"Cookie": "deepscope_id=bob"}, {"Cookie": f"deepscope_id={run['id']}.AAAA"}):
            c = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer class-secret", **spoof})
            assert c.get(f"/api/runs/{run['id']}").status_code == 404
            assert c.get("/api/runs").json()["count"] == 0
            c.close()
        assert eve.get(f"/api/runs/{run['id']}").status_code == 404
        wait_for(bob, run["id"])
        # an identity travels as a signed value: the script that sends it back is the same client
        identity = bob.post("/api/session").json()["identity"]
        headers = {"Authorization": "Bearer class-secret", "X-DeepScope-Identity": identity}
        assert httpx.get(f"{server.url}/api/runs/{run['id']}", headers=headers).status_code == 200
        # ...and only signed by this server: bob's id with any other signature is nobody (the HMAC is checked)
        value, _, mac = identity.rpartition(".")
        for forged in (f"{value}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}", f"{value}.", value,
                       f"{value}.{Signer(b'another-server').sign(value).rpartition('.')[2]}"):
            headers["X-DeepScope-Identity"] = forged
            assert httpx.get(f"{server.url}/api/runs/{run['id']}", headers=headers).status_code == 404, forged


def test_a_student_reads_only_their_own_runs(server):
    with student(server) as bob, student(server) as eve:
        run = bob.post("/api/runs", json=QUICK, params={"group": "g1"}).json()
        wait_for(bob, run["id"])
        for path in (f"/api/runs/{run['id']}", f"/api/runs/{run['id']}/events",
                     f"/api/runs/{run['id']}/events?format=csv", f"/api/runs/{run['id']}/report"):
            assert bob.get(path).status_code == 200, path
            assert eve.get(path).status_code == 404, path
        assert eve.get("/api/presets/zero-init/outcome", params={"group": "g1"}).status_code == 404
        assert all(r["id"] != run["id"] for r in eve.get("/api/runs").json()["data"])
        eve_cookie = "; ".join(f"{k}={v}" for k, v in eve.cookies.items())
        with connect(f"{server.ws_url}/ws/runs/{run['id']}?token=class-secret",
                     additional_headers={"Cookie": eve_cookie}) as ws, pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 4404
        bob_cookie = "; ".join(f"{k}={v}" for k, v in bob.cookies.items())
        with connect(f"{server.ws_url}/ws/runs/{run['id']}?token=class-secret",
                     additional_headers={"Cookie": bob_cookie}) as ws:
            assert '"seq":0' in ws.recv(timeout=10)


def test_per_client_quota_answers_429_with_retry_after(server):
    with student(server) as ann:
        runs = [ann.post("/api/runs", json=LONG) for _ in range(3)]
        assert [r.status_code for r in runs[:2]] == [201, 201]
        assert runs[2].status_code == 429 and int(runs[2].headers["Retry-After"]) > 0
        assert "at most 2" in runs[2].json()["detail"]
    cancel_all(server)


def test_the_quota_holds_under_a_burst(server):
    with student(server) as ann:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: ann.post("/api/runs", json=LONG).status_code, range(20)))
        assert codes.count(201) == 2 and codes.count(429) == 18
        assert sum(r["status"] in ("queued", "running") for r in ann.get("/api/runs").json()["data"]) == 2
    cancel_all(server)


def test_a_new_identity_per_request_cannot_fill_the_server(server):
    # A script that drops its cookie gets a fresh identity every time: the per-address cap still holds,
    # so classmates elsewhere keep room on the server (max_queued 5, at most 4 from one address).
    codes = []
    for _ in range(8):
        with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer class-secret"}) as fresh:
            codes.append(fresh.post("/api/runs", json=LONG).status_code)
    assert codes.count(201) == 4 and codes.count(429) == 4
    cancel_all(server)


def test_a_client_cannot_change_another_clients_runs_but_the_instructor_can(server):
    with student(server) as bob, student(server) as eve:
        run = bob.post("/api/runs", json=LONG).json()
        assert eve.post(f"/api/runs/{run['id']}/cancel").status_code == 404
        assert eve.get("/api/instructor/runs").status_code == 403
        assert eve.get("/api/instructor/workers").status_code == 403
        workers = httpx.get(server.url + "/api/instructor/workers", headers=TEACHER).json()
        assert workers["count"] == len(workers["data"]) >= 1 and workers["data"][0]["queues"] == ["runs"]
        listed = httpx.get(server.url + "/api/instructor/runs", headers=TEACHER).json()
        owner = next(x["owner"] for x in listed["data"] if x["id"] == run["id"])
        assert owner and len(owner) == 16  # a server-made id, shown to the instructor only
        assert httpx.post(f"{server.url}/api/runs/{run['id']}/cancel", headers=TEACHER).status_code == 202
        wait_for(bob, run["id"])
        assert eve.delete(f"/api/runs/{run['id']}").status_code == 404
        assert bob.delete(f"/api/runs/{run['id']}").status_code == 204


def test_global_queue_limit(server):
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(student(server)) for _ in range(4)]
        try:
            codes = [c.post("/api/runs", json=LONG).status_code for c in clients for _ in range(2)]
            assert codes.count(201) == 4 and codes.count(429) == 4  # 4 from this address, of 5 on the server
        finally:
            cancel_all(server)


def test_websocket_needs_the_token_and_refuses_other_origins(server):
    with student(server) as c:
        run = c.post("/api/runs", json=QUICK).json()
        wait_for(c, run["id"])
        cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in c.cookies.items())}
    url = f"{server.ws_url}/ws/runs/{run['id']}?token=class-secret"
    # (a viewer that leaves mid-replay: the server reads its close only after the replay, so do not wait)
    with connect(url, additional_headers=cookie, close_timeout=0.5) as ws:
        assert '"seq":0' in ws.recv(timeout=10)
    with connect(url, origin=f"http://127.0.0.1:{server.port}", additional_headers=cookie, close_timeout=0.5) as ws:
        assert '"seq":0' in ws.recv(timeout=10)
    for origin in ("http://evil.example", f"https://127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port + 1}"):
        with pytest.raises(InvalidStatus) as refused, connect(url, origin=origin, additional_headers=cookie) as ws:
            ws.recv(timeout=5)
        assert refused.value.response.status_code == 403, origin


def test_cross_site_form_posts_are_refused(server):
    # What a form on another site makes a learner's browser send: the cookies, a foreign Origin, no JSON.
    with student(server) as c:
        r = c.post("/api/presets/zero-init/runs", headers={"Origin": "http://evil.example",
                                                            "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 403 and "cross-site" in r.json()["detail"]
        assert c.post("/api/runs", json=QUICK, headers={"Origin": f"https://127.0.0.1:{server.port}"}).status_code == 403
        same = c.post("/api/runs", json=QUICK, headers={"Origin": f"http://127.0.0.1:{server.port}"})
        assert same.status_code == 201
        wait_for(c, same.json()["id"])


def test_pages_and_answers_carry_security_headers(server):
    page = httpx.get(server.url + "/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    cookie = page.headers["set-cookie"]
    assert "deepscope_id=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert httpx.get(server.url + "/healthz").headers["x-content-type-options"] == "nosniff"
    with student(server) as c:
        run = c.post("/api/runs", json=QUICK).json()
        wait_for(c, run["id"])
        report = c.get(f"/api/runs/{run['id']}/report")
        policy = report.headers["content-security-policy"]
        nonce = policy.split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in report.text and "<script>" not in report.text
        assert "frame-ancestors 'none'" in policy


def test_health_shows_no_pids_or_paths(server):
    text = httpx.get(server.url + "/healthz").text
    assert "pid" not in text and "/tmp" not in text and "/root" not in text


def test_bad_input_is_a_clear_4xx(server):
    with student(server) as c:
        for body, field in (({"model": {"depth": True}}, "model.depth"), ({"model": {"depth": "10"}}, "model.depth"),
                            ({"train": {"lr": "0.1"}}, "train.lr"), ({"model": {"batchnorm": "yes"}}, "model.batchnorm")):
            r = c.post("/api/runs", json=body)
            assert r.status_code == 422 and r.json()["detail"][0]["field"] == field, (body, r.text)
        r = c.post("/api/runs", json={"model": {"activation": "x" * 500_000}})  # under the body cap: 422
        assert r.status_code == 422 and len(r.text) < 2000
        r = c.post("/api/runs", json={"model": {"activation": "x" * 10_000_000}})  # over it: refused unread
        assert r.status_code == 413 and "limit of 1048576 bytes" in r.json()["detail"]
        r = c.get("/api/runs/x/events", params={"after": "9223372036854775808"})
        assert r.status_code == 422 and "after" in r.text
        assert c.get("/api/runs/x/events", params={"limit": 0}).status_code == 422
        r = c.post("/api/runs", json={"train": {"device": "cuda"}})
        assert r.status_code == 422 and "cuda" in r.json()["detail"][0]["msg"]
        r = c.post("/api/runs", json={"data": {"dataset": "mnist"}})
        assert r.status_code == 422 and "/tmp" not in r.text and "DEEPSCOPE_DATA_DIR" in r.text


def test_oversized_configs_are_refused_with_the_fields_and_the_limit(server):
    with student(server) as c:
        for body in ({"model": {"depth": 100, "width": 512}, "train": {"batch_size": 4096},
                      "telemetry": {"every_steps": 1}},
                     {"data": {"dataset": "shapes", "n_samples": 20000}, "model": {"arch": "cnn", "width": 256},
                      "train": {"batch_size": 256}}):
            r = c.post("/api/runs", json=body)
            detail = r.json()["detail"][0]
            assert r.status_code == 422 and "DEEPSCOPE_MAX_RUN_MEMORY_MB" in detail["msg"], r.text
            assert "model.depth" in detail["msg"] and "train.batch_size" in detail["msg"]


def test_a_failed_run_says_one_line_publicly(server):
    # Files that are there but are not IDX files: the run starts, then fails while loading them.
    folder = server.app.state.settings.data_dir / "mnist"
    folder.mkdir(exist_ok=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (folder / name).write_bytes(b"not an idx file")
    with student(server) as c:
        run = c.post("/api/runs", json={"data": {"dataset": "mnist"}, "train": {"fresh": True}}).json()
        assert wait_for(c, run["id"])["status"] == "failed"
        last = c.get(f"/api/runs/{run['id']}/events").json()["data"][-1]
        assert last["status"] == "failed" and "IDX" in last["message"]
        assert "traceback" not in last and "\n" not in last["message"]
        assert str(server.app.state.settings.data_dir) not in last["message"]


def test_instructor_page_is_served(server):
    r = httpx.get(server.url + "/instructor")
    assert r.status_code == 200 and "instructor" in r.text.lower()


def test_unparseable_bodies_say_why(server):
    with student(server) as c:
        for body, words in (('{"model": {"depth": ' + "9" * 5000 + "}}", "4300 digits"),
                            ('{"model": ' + "[" * 100000 + "]" * 100000 + "}", "nests deeper"),
                            ('{"model": {"depth": 3,}}', "not valid JSON")):
            r = c.post("/api/runs", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and words in r.json()["detail"], r.text
