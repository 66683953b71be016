"""A real uvicorn serving the app on a free loopback port, in a thread, for WebSocket and browser tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import uvicorn

from deepscope.app.main import create_app
from deepscope.app.serving import uvicorn_options
from deepscope.app.settings import Settings
from deepscope.app.statuses import FINISHED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, settings: Settings, executor=None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.app = create_app(settings, executor)
        # the options `deepscope serve` uses: its connection limits and proxy rules are what the tests meet
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    **uvicorn_options(settings)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(self.url + "/healthz", timeout=2).json()
                if health["executor"] and health["executor"].get("ready", 1) == health["executor"].get("workers", 1):
                    return self
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def service(self):
        return self.app.state.service


def wait_for(client: httpx.Client, run_id: str, statuses=FINISHED, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s")
