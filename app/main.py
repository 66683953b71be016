"""The FastAPI app: its lifespan starts and stops the store, the hub and the executor."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from deepscope import __version__
from deepscope.app.executors import Executor
from deepscope.app.hub import Hub
from deepscope.app.security import SecurityMiddleware, Signer, load_secret
from deepscope.app.service import RunService
from deepscope.app.settings import Settings, get_settings
from deepscope.app.store import Store
from deepscope.engine.config import _short, explain_error

log = logging.getLogger("deepscope")
VERSION = __version__


def make_executor(settings: Settings) -> Executor:
    if settings.executor == "celery":
        from deepscope.app.executors.celery_executor import CeleryExecutor

        return CeleryExecutor(settings)
    from deepscope.app.executors.local import LocalExecutor

    return LocalExecutor(settings.workers, settings.data_dir, settings.run_time_limit_s, settings.max_run_memory_mb)


def create_app(settings: Settings | None = None, executor: Executor | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.db_url)
        ex = executor or make_executor(settings)
        if getattr(ex, "interrupts_on_restart", True):
            interrupted = store.mark_interrupted()
            if interrupted:
                log.warning("marked %d runs interrupted: they were in flight when the service stopped",
                            len(interrupted))
        hub = Hub()
        hub.bind(asyncio.get_running_loop())
        service = RunService(store, hub, ex, settings.max_queued, settings.max_active_per_client or 0,
                             settings.max_active_per_address or 0)
        app.state.service, app.state.settings = service, settings
        ex.start(service)
        try:
            yield
        finally:
            ex.shutdown()
            store.close()

    app = FastAPI(title="DeepScope", version=VERSION, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="See why very deep networks train or fail to train. The run config is the "
                              "RunConfig schema below; every field has a default, so {} is a valid run.")
    app.state.settings = settings
    signer = app.state.signer = Signer(load_secret(settings.secret_key, settings.data_dir))
    app.add_middleware(SecurityMiddleware, signer_for=lambda: signer,
                       allowed_origins_for=lambda: settings.allowed_origins)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            return JSONResponse({"detail": "the request body is not valid JSON: " +
                                 "; ".join(str(e.get("ctx", {}).get("error", e["msg"])) for e in errs)}, 400)
        detail = []
        for e in errs:
            loc = tuple(e["loc"])
            where = loc[0] if loc and loc[0] in ("body", "query", "path") else None
            inner = loc[1:] if where else loc
            if where in ("query", "path"):
                field, msg = _query_message(inner, e)
            else:  # the run config: its own limits and choices say what is allowed
                field, msg = explain_error(inner, e["type"], e["msg"], e.get("input"), e.get("ctx"))
            detail.append({"loc": list(loc), "field": field, "msg": msg, "type": e["type"]})
        return JSONResponse({"detail": detail}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = _why_unparseable(await request.body())
        return JSONResponse({"detail": detail}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(ValidationError)
    async def invalid_model(request: Request, exc: ValidationError) -> JSONResponse:
        from deepscope.engine.config import describe_errors

        return JSONResponse({"detail": describe_errors(exc)}, 422)

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request) -> dict[str, Any]:
        """Liveness and readiness: ok once the store and executor are up."""
        service = getattr(request.app.state, "service", None)
        return {"status": "ok", "version": VERSION,
                "executor": service.executor.stats() if service else None}

    from deepscope.app.routes import api, docs, pages, ws

    app.include_router(api.router)
    app.include_router(ws.router)
    app.include_router(pages.router)
    app.include_router(docs.router)
    return app


def _why_unparseable(body: bytes) -> str:
    """FastAPI's parser gives up on some JSON without saying why; say what we can."""
    import json

    try:
        json.loads(body)
    except RecursionError:
        return "the request body is not valid JSON here: it nests deeper than the server parses"
    except ValueError as exc:
        if "digits" in str(exc):
            return "the request body is not valid JSON here: it holds a number of more than 4300 digits"
        return f"the request body is not valid JSON: {str(exc)[:200]}"
    return "the request body could not be parsed"


def _query_message(loc: tuple[Any, ...], err: dict[str, Any]) -> tuple[str, str]:
    name = ".".join(str(p) for p in loc)
    ctx = err.get("ctx") or {}
    limits = ", ".join(f"{k} {v}" for k, v in ctx.items() if k in ("ge", "le", "gt", "lt", "pattern", "expected"))
    return name, f"{name}: {err['msg']}" + (f" ({limits})" if limits and limits not in err["msg"] else "") + \
        (f" (got {_short(err.get('input'))})" if err.get("input") is not None else "")
