"""``/ws/runs/{id}``: one run's events, replayed then live (``RunService.stream`` owns the seam)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from deepscope.app.deps import ServiceDep, caller, ws_allowed
from deepscope.app.service import ViewerOverflow

router = APIRouter()


@router.websocket("/ws/runs/{run_id}")
async def run_stream(websocket: WebSocket, run_id: str, service: ServiceDep) -> None:
    refused = ws_allowed(websocket)
    if refused:
        await websocket.close(code=4403, reason=refused)
        return
    run = await asyncio.to_thread(service.get, run_id)
    await websocket.accept()
    if run is None or not caller(websocket).may_read(run):  # another student's run does not exist for you
        await websocket.close(code=4404, reason=f"no run with id {run_id}")
        return
    try:
        async for raw in service.stream(run_id):
            await websocket.send_text(raw)
        await websocket.close(code=1000)
    except ViewerOverflow:
        await websocket.close(code=1013, reason="too far behind; reconnect to replay")
    except (WebSocketDisconnect, asyncio.CancelledError, RuntimeError):
        pass
