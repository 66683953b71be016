"""How the service answers bad input: a 422 names the field and the allowed values, an unparseable body
a 400 that says why, and every HTTP error the same ``{"detail": ...}`` shape (docs/api.md)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from deepscope.engine.config import _short, describe_errors, explain_error


def install(app: FastAPI) -> None:
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
        return JSONResponse({"detail": describe_errors(exc)}, 422)


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
