"""The probes a load balancer and an orchestrator call: readiness (/healthz) and liveness (/livez)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deepscope import __version__ as VERSION

router = APIRouter(tags=["service"])


@router.get("/healthz", responses={503: {"description": "the database or Redis is down"}})
def healthz(request: Request) -> JSONResponse:
    """Readiness: 200 while the database and (scale-out) Redis answer, else 503 naming which is down,
    so a load balancer sends no traffic here. /livez is the liveness probe."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        return JSONResponse({"status": "starting", "version": VERSION, "executor": None}, 503,
                            headers={"Retry-After": "2"})
    stats = service.executor.stats()
    down = {k: v for k, v in (("database", service.store.ping()), ("redis", stats.get("redis"))) if v}
    body = {"status": "unavailable" if down else "ok", "version": VERSION, "executor": stats,
            "database": down.get("database", "ok"), **({"redis": down["redis"]} if "redis" in down else {})}
    return JSONResponse(body, 503 if down else 200, headers={"Retry-After": "5"} if down else None)


@router.get("/livez")
def livez() -> dict[str, str]:
    """Liveness: 200 while the process serves requests at all, whatever the database and Redis do."""
    return {"status": "alive", "version": VERSION}

