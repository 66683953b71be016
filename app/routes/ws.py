"""``/ws/runs/{id}``: replay the stored events, then stream live ones, with no gap and no duplicate.

Order matters: subscribe to the hub first (so nothing published from now on is missed), then wait
for the writer to commit what was published before (so the store holds everything older), then
replay from the store, then forward live events whose seq is beyond the last one sent.
"""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from app.deps import ws_allowed
from app.store import TERMINAL

router = APIRouter()


def _is_terminal(type_: str, raw: str) -> bool:
    return type_ == "status" and orjson.loads(raw).get("status") in TERMINAL


@router.websocket("/ws/runs/{run_id}")
async def run_stream(websocket: WebSocket, run_id: str) -> None:
    refused = ws_allowed(websocket)
    if refused:
        await websocket.close(code=4403, reason=refused)
        return
    service = websocket.app.state.service
    run = await run_in_threadpool(service.store.get_run, run_id)
    await websocket.accept()
    if run is None:
        await websocket.close(code=4404, reason=f"no run with id {run_id}")
        return
    hub = service.hub
    viewer = hub.subscribe(run_id)
    try:
        await run_in_threadpool(service.store.writer.flush)
        last = -1
        while rows := await run_in_threadpool(service.store.events, run_id, last, 1000):
            for seq, type_, raw in rows:
                await websocket.send_text(raw)
                last = seq
                if _is_terminal(type_, raw):
                    await websocket.close(code=1000)
                    return
        # Published but maybe not stored yet (another replica persists it): the executor has it.
        for seq, type_, raw in await run_in_threadpool(service.executor.replay_after, run_id, last):
            await websocket.send_text(raw)
            last = seq
            if _is_terminal(type_, raw):
                await websocket.close(code=1000)
                return
        run = await run_in_threadpool(service.store.get_run, run_id)
        if run is None or (run["status"] in TERMINAL and run["last_seq"] <= last):
            await websocket.close(code=1000)
            return
        while True:
            batch = await viewer.get_batch()
            for seq, type_, raw in batch:
                if seq <= last:
                    continue
                await websocket.send_text(raw)
                last = seq
                if _is_terminal(type_, raw):
                    await websocket.close(code=1000)
                    return
            if viewer.overflowed:
                await websocket.close(code=1013, reason="too far behind; reconnect to replay")
                return
    except (WebSocketDisconnect, asyncio.CancelledError, RuntimeError):
        pass
    finally:
        hub.unsubscribe(viewer)
