"""Watched runs' routes (docs/api.md, "Watched runs"): ``deepscope.watch`` creates a run and appends its
events in batches. Every event is validated as the engine's own (``app/ingest.py``)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request

from deepscope.app.deps import CallerDep, ClientDep, ServiceDep, require_token
from deepscope.app.ingest import MAX_BODY_BYTES, WatchedCreate
from deepscope.app.quotas import QuotaExceeded
from deepscope.app.routes.api import R401, R403, R404, R409, R422, R429, _address, _public, _quota
from deepscope.app.schemas import Problem, RunPublic
from deepscope.app.watched import IngestRefused

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)], tags=["watched"])
R413 = {413: {"model": Problem, "description": f"the request is over {MAX_BODY_BYTES // 2**20} MB"}}


@router.post("/watched", status_code=201, responses=R401 | R422 | R429)
def create_watched(spec: WatchedCreate, service: ServiceDep, client: ClientDep, who: CallerDep,
                   request: Request) -> RunPublic:
    """A run of a model trained elsewhere, which then appends its events (``deepscope.watch`` does both)."""
    try:
        run = _public(service.watched.create(spec, client, _address(request)), who)
    except QuotaExceeded as exc:
        raise _quota(exc) from None
    run.max_stored_bytes = service.watched.max_stored_bytes
    return run


async def _body(request: Request) -> tuple[Any, int]:
    """The JSON body, read with a cap: a body over MAX_BODY_BYTES is refused before it is all in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the request is {int(declared)} bytes, over the limit of {MAX_BODY_BYTES}: "
                                 "send fewer events at a time")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, f"the request is over the limit of {MAX_BODY_BYTES} bytes: send fewer events "
                                     "at a time")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks)), size
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"the request body is not valid JSON: {str(exc)[:200]}") from None


@router.post("/runs/{run_id}/events", responses=R401 | R403 | R404 | R409 | R413 | R422 | R429 | {
    200: {"description": "how many events were new, and the seq of the newest stored"}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": {
            "type": "object"}}}}}}}})
async def append_events(run_id: str, request: Request, service: ServiceDep, client: ClientDep) -> dict[str, Any]:
    """Append events to a watched run: ``{"events": [...]}``, each an event of docs/events.md with its
    ``seq``, the next after the last stored. An event sent again is stored once; an empty list is a
    heartbeat (a watched run that sends nothing for 60 s ends as interrupted)."""
    import asyncio

    payload, size = await _body(request)
    try:
        return await asyncio.to_thread(service.watched.append, run_id, payload, client, size)
    except IngestRefused as exc:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
        raise HTTPException(exc.status, exc.detail, headers=headers) from None
