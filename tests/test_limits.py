"""What one client can cost the server, against a real uvicorn with `deepscope serve`'s options
(app/limits.py, app/serving.py): hosts, bodies, the token before the body, slow and idle connections,
the connection cap, and whose X-Forwarded-For is believed."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from deepscope.app.settings import Settings
from devtools.null_executor import NullExecutor
from devtools.server import LiveServer

TOKEN = "class-token"


def live(tmp_path, **overrides):
    return LiveServer(Settings(data_dir=tmp_path, **overrides), executor=NullExecutor())


def raw(port: int, request: bytes, wait: float = 5.0) -> bytes:
    """Send bytes on a fresh connection and read what comes back until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(request)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and b"content-length" in out.lower():
                    head, _, body = out.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(body) >= length:
                        break
        except TimeoutError:
            pass
        return out


@pytest.fixture(scope="module")
def playground(tmp_path_factory):
    with live(tmp_path_factory.mktemp("play"), header_timeout_s=1.0, body_timeout_s=1.0) as server:
        yield server


@pytest.fixture(scope="module")
def workshop(tmp_path_factory):
    with live(tmp_path_factory.mktemp("shop"), token=TOKEN) as server:
        yield server


def test_a_tokenless_playground_answers_only_its_own_host_names(playground):
    assert httpx.get(playground.url + "/healthz").status_code == 200  # 127.0.0.1
    assert httpx.get(playground.url + "/healthz", headers={"host": f"localhost:{playground.port}"}).status_code == 200
    r = httpx.get(playground.url + "/api/runs", headers={"host": "evil.example"})  # a rebinding page's name
    assert r.status_code == 400 and "DEEPSCOPE_ALLOWED_HOSTS" in r.json()["detail"]


def test_a_configured_host_list_and_workshop_mode(tmp_path, workshop):
    with live(tmp_path, allowed_hosts=["deepscope.school.example", "*.lab.example"]) as server:
        ok = {"deepscope.school.example", "pc1.lab.example"}
        for host in ok | {"localhost", "evil.example", "lab.example.evil"}:
            status = httpx.get(server.url + "/healthz", headers={"host": host}).status_code
            assert status == (200 if host in ok | {"localhost"} else 400), host
    # in workshop mode the token guards the API, so any name the students use reaches it
    assert httpx.get(workshop.url + "/healthz", headers={"host": "10.0.0.5:8000"}).status_code == 200


def test_a_control_character_in_a_path_is_a_404_not_a_500(playground):
    for path in ("/static/%00", "/static/js/%00main.js", "/api/runs/%01"):
        assert httpx.get(playground.url + path).status_code == 404, path


def test_a_declared_body_over_the_cap_is_refused_before_it_is_sent(playground):
    # 200 MB announced, not one byte of it sent: the answer comes at once
    t0 = time.monotonic()
    answer = raw(playground.port, b"POST /api/runs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                                  b"content-length: 200000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"limit of 1048576 bytes" in answer
    assert time.monotonic() - t0 < 3


def test_a_streamed_body_is_cut_off_at_the_cap(playground):
    def chunks():
        yield b'{"name": "'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"}'

    r = httpx.post(playground.url + "/api/runs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    assert httpx.get(playground.url + "/healthz").status_code == 200  # and the server goes on


def test_a_stalled_body_is_a_408(playground):
    answer = raw(playground.port, b"POST /api/runs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                                  b"content-length: 100\r\n\r\n{\"name\":", wait=6)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_without_the_token_a_body_is_refused_unread(workshop):
    t0 = time.monotonic()
    answer = raw(workshop.port, b"POST /api/runs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                                b"content-length: 150000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401") and b"needs a token" in answer
    assert time.monotonic() - t0 < 3
    # with it, a small body goes through to the route
    r = httpx.post(workshop.url + "/api/runs", json={"train": {"epochs": 1}},
                   headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201, r.text


def test_a_slow_request_head_is_closed(playground):
    with socket.create_connection(("127.0.0.1", playground.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")  # and the rest never comes
        t0 = time.monotonic()
        assert s.recv(1024) == b""  # closed by the server
        assert 0.5 < time.monotonic() - t0 < 4


def test_idle_connections_are_closed_and_past_the_cap_a_clear_503(tmp_path):
    with live(tmp_path, max_connections=5, header_timeout_s=1.5) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(5)]
        time.sleep(0.2)
        answer = raw(server.port, b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503") and b"all the connections it can take" in answer
        for s in idle:  # the idle ones are let go after the head deadline
            assert s.recv(1024) == b""
            s.close()
        assert httpx.get(server.url + "/healthz").status_code == 200


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(tmp_path):
    """Per-address cap 1: rotating X-Forwarded-For from an untrusted peer is still one address."""
    def codes(server):
        out = []
        for i in range(3):
            with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}) as c:
                c.post("/api/session")
                r = c.post("/api/runs", json={"train": {"epochs": 1, "fresh": True}},
                           headers={"x-forwarded-for": f"10.1.2.{i}"})
                out.append(r.status_code)
        return out

    with live(tmp_path / "a", token=TOKEN, max_active_per_address=1) as server:
        assert codes(server) == [201, 429, 429]
    with live(tmp_path / "b", token=TOKEN, max_active_per_address=1, trusted_proxies=["127.0.0.1"]) as server:
        assert codes(server) == [201, 201, 201]  # the proxy's word for who the students are


@pytest.mark.parametrize("path, code", [("/ws/runs/" + "x" * 200, 4404), ("/ws/runs/" + "%C3%A9" * 40, 4404),
                                        ("/ws/runs/abc?encoding=" + "y" * 200, 4400),
                                        ("/ws/runs/abc?encoding=" + "%C3%A9" * 60, 4400)])
def test_a_long_or_non_ascii_websocket_path_closes_with_its_code(playground, path, code):
    """The close reason quotes the request: cut to fit its frame, it no longer breaks the close (1006)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(playground.ws_url + path) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd.code == code and len(closed.value.rcvd.reason.encode()) <= 123


def test_parse_errors_say_where(playground):
    cases = ((b'{"model": {"width": ' + b"9" * 5000 + b"}}", "'width'"),
             (b'{"model": {"layers": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "body.model.layers[0]"),
             (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "body.a.a"))
    for body, where in cases:
        r = httpx.post(playground.url + "/api/runs", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and where in r.json()["detail"], r.text[:300]


def test_an_empty_group_is_a_422_not_every_run(playground):
    r = httpx.get(playground.url + "/api/presets/zero-init/outcome", params={"group": ""})
    assert r.status_code == 422 and "group" in r.text
