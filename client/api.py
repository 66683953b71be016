"""``DeepScope``: one server, one identity, every endpoint a method (docs/api.md lists the endpoints)."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx


class ApiError(Exception):
    """An answer other than 2xx: ``status``, the server's ``detail``, and for a 422 the ``field`` it names."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status, self.detail = status, detail
        first = detail[0] if isinstance(detail, list) and detail and isinstance(detail[0], dict) else None
        self.field = first.get("field") if first else None
        self.message = first.get("msg", str(detail)) if first else str(detail)
        super().__init__(f"{status}: {self.message}")


class DeepScope:
    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._finished: frozenset[str] | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DeepScope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(method, path, **kwargs)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ApiError(r.status_code, detail)
        if r.status_code == 204 or not r.content:
            return None
        return r.json() if "json" in r.headers.get("content-type", "") else r.text

    @property
    def finished(self) -> frozenset[str]:
        """The statuses a run ends in, as the server defines them."""
        if self._finished is None:
            self._finished = frozenset(self.options()["statuses"]["finished"])
        return self._finished

    # -- what the server offers ---------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def options(self) -> dict[str, Any]:
        return self._call("GET", "/api/options")

    def lessons(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/presets")

    # -- runs ---------------------------------------------------------------------------------
    def submit(self, config: dict[str, Any] | None = None, group: str | None = None) -> dict[str, Any]:
        """Start one run; ``{}`` is a valid config. An invalid one raises ApiError naming the field."""
        return self._call("POST", "/api/runs", json=config or {}, params={"group": group} if group else None)

    def start_lesson(self, lesson_id: str) -> list[dict[str, Any]]:
        """Start every run of a lesson as one comparison group."""
        return self._call("POST", f"/api/presets/{quote(lesson_id)}/runs")

    def outcome(self, lesson_id: str, group: str) -> dict[str, Any]:
        return self._call("GET", f"/api/presets/{quote(lesson_id)}/outcome", params={"group": group})

    def run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/runs/{quote(run_id)}")

    def runs(self, status: str | None = None, group: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"status": status, "group": group, "limit": limit}.items() if v is not None}
        return self._call("GET", "/api/runs", params=params)["data"]

    def findings(self, run_id: str) -> list[dict[str, Any]]:
        """What the run doctor says of a run (docs/doctor.md): its final findings once it has finished,
        else the newest live ones (empty while it has seen nothing yet)."""
        run = self.run(run_id)
        if run["summary"].get("findings"):
            return run["summary"]["findings"]
        live = list(self.events(run_id, type="findings"))
        return live[-1]["findings"] if live else []

    def create_watched(self, name: str, config: dict[str, Any], group: str | None = None) -> dict[str, Any]:
        """A run for a model trained elsewhere (``deepscope.watch`` does this; docs/api.md)."""
        return self._call("POST", "/api/watched", json={"name": name, "config": config, "group": group})

    def append_raw(self, run_id: str, body: bytes) -> dict[str, Any]:
        """Append a batch of a watched run's events, already encoded as ``{"events": [...]}``."""
        return self._call("POST", f"/api/runs/{quote(run_id)}/events", content=body,
                          headers={"Content-Type": "application/json"})

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/runs/{quote(run_id)}/cancel")

    def delete(self, run_id: str) -> None:
        self._call("DELETE", f"/api/runs/{quote(run_id)}")

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.5) -> dict[str, Any]:
        """Poll until the run has ended; its final state. TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in self.finished:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {run['status']} after {timeout} s")
            time.sleep(poll)

    # -- events -------------------------------------------------------------------------------
    def events(self, run_id: str, type: str | None = None, after: int = -1, page: int = 1000) -> Iterator[dict]:
        """Every stored event (of one ``type``), in seq order, page by page."""
        while True:
            params: dict[str, Any] = {"after": after, "limit": page}
            if type:
                params["type"] = type
            data = self._call("GET", f"/api/runs/{quote(run_id)}/events", params=params)["data"]
            if not data:
                return
            yield from data
            after = data[-1]["seq"]

    def metrics_csv(self, run_id: str) -> str:
        return self._call("GET", f"/api/runs/{quote(run_id)}/events", params={"format": "csv"})

    def script(self, run_id: str) -> str:
        """The run as one standalone PyTorch script (its dataset, model, init and training loop)."""
        return self._call("GET", f"/api/runs/{quote(run_id)}/script")

    def stream(self, run_id: str, timeout: float = 60.0) -> Iterator[dict]:
        """The run's events over the WebSocket: the stored ones, then live ones until it ends."""
        from websockets.sync.client import connect

        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = "?encoding=deflate" + (f"&token={quote(self.token)}" if self.token else "")
        url = urlunsplit((scheme, parts.netloc, f"{parts.path}/ws/runs/{quote(run_id)}", query[1:], ""))
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        if not cookie:  # the identity comes with the first answer: ask for one before opening the socket
            self._call("POST", "/api/session")
            cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        with connect(url, additional_headers={"Cookie": cookie}, max_size=None, open_timeout=timeout) as ws:
            for message in ws:  # big events come as deflated JSON bytes (docs/events.md)
                yield json.loads(zlib.decompress(message) if isinstance(message, bytes) else message)
