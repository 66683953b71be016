"""What one request may cost the server, checked before any route reads a byte of it (docs/workshop.md).

- **Hosts.** A request for a host name this server does not answer to is refused (400): a page on
  another site that points its own name at 127.0.0.1 (DNS rebinding) cannot drive a tokenless
  playground. The loopback names, and ``DEEPSCOPE_ALLOWED_HOSTS``; by default any host in workshop
  mode, where the token guards the API.
- **Paths.** A path with a control character (``/static/%00``) is a 404, not an error in a file lookup.
- **The token first.** In workshop mode a request with a body and no class token is refused (401)
  before its body is read.
- **Bodies.** A body over its cap is refused (413) when its declared length says so, or as soon as the
  bytes read pass the cap; a body that stalls for ``body_timeout_s`` between chunks is a 408.

The connections themselves (how many, and how long their headers may take) are bounded in
``serving.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import HTTPConnection

from deepscope.app.security import _refuse, header
from deepscope.app.statuses import close_reason

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def host_name(host_header: str | None) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(configured: list[str] | None, workshop: bool) -> list[str]:
    """The loopback names always (a rebinding page brings a name of its own), and the configured ones."""
    if configured:
        return [*LOOPBACK_HOSTS, *(h.lower() for h in configured)]
    return ["*"] if workshop else list(LOOPBACK_HOSTS)


def host_allowed(host_header: str | None, allowed: list[str]) -> bool:
    name = host_name(host_header)
    return "*" in allowed or name in allowed or any(a.startswith("*.") and name.endswith(a[1:]) for a in allowed)


def body_cap(path: str, method: str, settings: Any) -> int:
    """The events of a watched run come in batches up to the ingest cap; every other body is a config."""
    from deepscope.app.ingest import MAX_BODY_BYTES

    if method == "POST" and path.startswith("/api/runs/") and path.endswith("/events"):
        return MAX_BODY_BYTES
    return settings.max_body_bytes


class RequestLimits:
    """Pure ASGI middleware: the checks above, in that order."""

    def __init__(self, app: Any, settings_for: Any) -> None:
        self.app = app
        self._settings_for = settings_for  # () -> Settings, read lazily

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        settings = self._settings_for()
        refusal = self._refusal(scope, settings)
        if refusal:
            status, detail = refusal
            if scope["type"] == "websocket":  # refused before the handshake: the client sees a 403
                await send({"type": "websocket.close", "code": 1008, "reason": close_reason(detail)})
            else:
                await _refuse(send, status, detail)
            return
        if scope["type"] == "websocket" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        await self._with_capped_body(scope, receive, send, settings)

    def _refusal(self, scope: dict[str, Any], settings: Any) -> tuple[int, str] | None:
        host = header(scope, b"host")
        allowed = allowed_hosts(settings.allowed_hosts, bool(settings.token))
        if not host_allowed(host, allowed):
            return 400, (f"host {host_name(host)[:80]!r} is not served here: DEEPSCOPE_ALLOWED_HOSTS lists the "
                         f"names this server answers to (now: {', '.join(allowed)[:200]})")
        if any(ord(c) < 32 or ord(c) == 127 for c in scope.get("path", "")):
            return 404, "no such path: it holds a control character"
        if scope["type"] == "http" and scope["method"] in BODY_METHODS and settings.token:
            from deepscope.app.deps import has_token_or_instructor

            if not has_token_or_instructor(HTTPConnection(scope)):
                return 401, ("this server needs a token: send 'Authorization: Bearer <token>' (the page asks for "
                             "it once)")
        if scope["type"] == "http" and scope["method"] in BODY_METHODS:
            declared = header(scope, b"content-length")
            cap = body_cap(scope["path"], scope["method"], settings)
            if declared and declared.isdigit() and int(declared) > cap:
                return 413, f"the request body is {int(declared)} bytes, over the limit of {cap} bytes"
        return None

    async def _with_capped_body(self, scope: dict[str, Any], receive: Any, send: Any, settings: Any) -> None:
        """Counts the body as the app reads it. Past the cap (or after a stall) this answers itself and tells
        the app the client has gone; whatever the app then says is dropped."""
        cap = body_cap(scope["path"], scope["method"], settings)
        read = 0
        state = {"started": False, "answered": False}

        async def refuse(status: int, detail: str) -> dict[str, Any]:
            if not state["started"] and not state["answered"]:
                state["answered"] = True
                await _refuse(send, status, detail)
            return {"type": "http.disconnect"}

        async def capped_receive() -> dict[str, Any]:
            nonlocal read
            if state["answered"]:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), settings.body_timeout_s)
            except TimeoutError:
                return await refuse(408, f"the request body stalled for {settings.body_timeout_s:g} s")
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > cap:
                    return await refuse(413, f"the request body is over the limit of {cap} bytes")
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["answered"]:
                return
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, capped_receive, guarded_send)
