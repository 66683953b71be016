"""How the service answers bad input: a 422 names the field and the allowed values, an unparseable body
a 400 that says why, and every HTTP error the same ``{"detail": ...}`` shape (docs/api.md)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from deepscope.app.disk import DiskFull, is_disk_full
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
            try:
                detail = _why_unparseable(await request.body())
            except ClientDisconnect:  # over its cap or stalled: app/limits.py has answered already
                detail = "the request body could not be read"
        return JSONResponse({"detail": detail}, exc.status_code, headers=getattr(exc, "headers", None))

    # The database or Redis out of reach: a 503 with Retry-After (the client's retry has a chance), never
    # a bare 500.
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, OperationalError

    for kind, what in ((OperationalError, "the database"), (DBAPIError, "the database"),
                       (RedisConnectionError, "Redis"), (RedisTimeoutError, "Redis")):
        app.add_exception_handler(kind, _unavailable(what))

    @app.exception_handler(DiskFull)
    async def disk_full(request: Request, exc: DiskFull) -> JSONResponse:
        return _disk_full(exc)

    @app.exception_handler(ValidationError)
    async def invalid_model(request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_errors(exc)}, 422)


def _unavailable(what: str) -> Any:
    async def answer(request: Request, exc: Exception) -> JSONResponse:
        if is_disk_full(exc):
            return _disk_full(DiskFull())
        return JSONResponse({"detail": f"{what} is unreachable for the moment; try again in a few seconds"}, 503,
                            headers={"Retry-After": "5"})
    return answer


def _disk_full(exc: DiskFull) -> JSONResponse:
    """507 Insufficient Storage: nothing new can be stored; reading goes on."""
    return JSONResponse({"detail": str(exc)}, 507, headers={"Retry-After": "60"})


def _why_unparseable(body: bytes) -> str:
    """FastAPI's parser gives up on some JSON without saying why; say what we can, and where."""
    import json

    try:
        json.loads(body)
    except RecursionError:
        return (f"the request body is not valid JSON here: {_nest_path(body)} nests deeper than the server parses "
                f"({NEST_LIMIT} levels)")
    except ValueError as exc:
        if "digits" in str(exc):
            return (f"the request body is not valid JSON here: {_digits_path(body)} is a number of more than "
                    "4300 digits")
        return f"the request body is not valid JSON: {str(exc)[:200]}"
    return "the request body could not be parsed"


NEST_LIMIT = 500  # well under Python's recursion limit, which the parser meets first


def _nest_path(body: bytes) -> str:
    """The field whose value nests past NEST_LIMIT levels, as ``model.layers[0][0]...``: the keys on the
    way down, found by scanning brackets outside strings (the parser cannot say)."""
    path: list[str] = []   # one entry per open bracket: its key, or [i] inside an array
    last_string, in_string, escaped, start = "", False, False, 0
    for i, byte in enumerate(body):
        c = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string, last_string = False, body[start:i].decode("utf-8", "replace")[:40]
        elif c == '"':
            in_string, start = True, i + 1
        elif c == ":" and path:
            path[-1] = f".{last_string}" if path[-1].startswith(".") or path[-1] == "" else path[-1]
        elif c in "[{":
            path.append("" if c == "{" else "[0]")
            if len(path) > NEST_LIMIT:
                shown = "".join(p for p in path[: NEST_LIMIT // 100 + 3])
                return f"the field body{shown}..." if shown else "the body"
        elif c in "]}" and path:
            path.pop()
    return "the body"


def _digits_path(body: bytes) -> str:
    import re

    match = re.search(rb'"([^"\\]{1,80})"\s*:\s*-?\d{4301}', body)
    return f"the field {match.group(1).decode('utf-8', 'replace')!r}" if match else "a value"


def _query_message(loc: tuple[Any, ...], err: dict[str, Any]) -> tuple[str, str]:
    name = ".".join(str(p) for p in loc)
    ctx = err.get("ctx") or {}
    limits = ", ".join(f"{k} {v}" for k, v in ctx.items() if k in ("ge", "le", "gt", "lt", "pattern", "expected"))
    return name, f"{name}: {err['msg']}" + (f" ({limits})" if limits and limits not in err["msg"] else "") + \
        (f" (got {_short(err.get('input'))})" if err.get("input") is not None else "")
