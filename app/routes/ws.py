"""``/ws/runs/{id}``: one run's events, replayed then live (``RunService.stream`` owns the seam).

With ``?encoding=deflate`` an event of COMPRESS_FROM bytes or more goes as a binary message: its JSON,
zlib-deflated. A 20-layer ``layers`` event shrinks from about 24 KB to 8 KB (docs/events.md). Each event
is compressed once, however many viewers watch it, and a layers or boundary event once for the store and
the wire together (app/packing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from deepscope.app import heap
from deepscope.app.deps import ServiceDep, caller, ws_allowed
from deepscope.app.packing import deflated
from deepscope.app.service import ViewerOverflow
from deepscope.app.statuses import CloseCode, close_reason

router = APIRouter()
ENCODINGS = ("json", "deflate")
COMPRESS_FROM = 1024  # smaller events (steps, evals) gain little and would cost a decode each on the page


@router.websocket("/ws/runs/{run_id}")
async def run_stream(websocket: WebSocket, run_id: str, service: ServiceDep,
                     encoding: Annotated[str, Query(
                         description="json (default), or deflate: events of 1 KB or more come as binary "
                                     "zlib-deflated JSON")] = "json",
                     ) -> None:
    refused = ws_allowed(websocket)
    if refused:
        await websocket.close(code=CloseCode.FORBIDDEN, reason=close_reason(refused))
        return
    run = await asyncio.to_thread(service.get, run_id)
    await websocket.accept()
    if encoding not in ENCODINGS:  # said on the socket: a refused handshake could only say 403
        await websocket.close(code=CloseCode.BAD_REQUEST, reason=close_reason(
            f"encoding must be one of {', '.join(ENCODINGS)} (got {encoding[:40]!r})"))
        return
    if run is None or not caller(websocket).may_read(run):  # another student's run does not exist for you
        await websocket.close(code=CloseCode.NOT_FOUND, reason=close_reason(f"no run with id {run_id}"))
        return
    try:
        async for raw in service.stream(run_id):
            if encoding == "deflate" and len(raw) >= COMPRESS_FROM:
                await websocket.send_bytes(deflated(raw))
            else:
                await websocket.send_text(raw)
        await websocket.close(code=CloseCode.ENDED)
    except ViewerOverflow:
        await websocket.close(code=CloseCode.TOO_FAR_BEHIND, reason="too far behind; reconnect to replay")
    except (WebSocketDisconnect, asyncio.CancelledError, RuntimeError):
        pass
    finally:
        with contextlib.suppress(RuntimeError):  # a service shutting down has no threads left to ask
            await asyncio.to_thread(heap.give_back)  # a class closing its pages gives their memory back
