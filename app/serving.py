"""How uvicorn serves the app: one set of options for ``deepscope serve`` and the tests' live server.

Connections are bounded here, below the app (docs/workshop.md):
- at most ``max_connections`` open at once; one more is answered 503 and closed at once, so idle
  sockets cannot use up the server's file descriptors;
- a connection must send a whole request head within ``header_timeout_s`` (slow-loris), on its first
  request and on each one after it;
- proxy headers (X-Forwarded-For) are believed only from ``trusted_proxies``: by default from nobody,
  so a client cannot pick the address its per-address quota counts.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"retry-after: 5\r\ncontent-length: 60\r\n\r\n"
        b'{"detail": "the server has all the connections it can take"}')
assert len(BUSY.split(b"\r\n\r\n", 1)[1]) == 60


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a connection cap and a deadline for each request head."""

    max_connections = 1000
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(BUSY)
            transport.close()
            return
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        if getattr(self, "_head_deadline", None) is None:
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_head_deadline", None) is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        self._head_deadline = None
        if self.cycle is None or self.cycle.response_complete:  # still waiting for a head
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # the next request's head starts arriving
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a head arrived: the request is the app's to time now
            self._disarm()

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm()
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_for(settings: Any) -> type[GuardedH11Protocol]:
    return type("Guarded", (GuardedH11Protocol,), {"max_connections": settings.max_connections,
                                                   "header_timeout_s": settings.header_timeout_s})


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``.

    No permessage-deflate: every event goes to every viewer, and compressing the same 10 KB layers event
    once per viewer cost a quarter of the server's CPU with 100 viewers (benchmarks/service.py).
    websockets-sansio: each send waits while the client's socket buffer is full (backpressure), so a
    viewer that stops reading holds one replay page, not the whole run (docs/workshop.md)."""
    proxies = settings.trusted_proxies
    return {"ws": "websockets-sansio", "ws_per_message_deflate": False, "http": protocol_for(settings),
            "proxy_headers": bool(proxies), "forwarded_allow_ips": ",".join(proxies) if proxies else None,
            "timeout_keep_alive": 5, "h11_max_incomplete_event_size": 16 * 1024}
