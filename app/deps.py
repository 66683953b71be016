"""Dependencies as named aliases: routes read as typed arguments, and tests can override them."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket
from starlette.requests import HTTPConnection

from deepscope.app.service import RunService
from deepscope.app.settings import Settings


def get_service(conn: HTTPConnection) -> RunService:
    """The run service, for HTTP routes and WebSockets alike."""
    return conn.app.state.service


def get_app_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


def _token_ok(settings: Settings, header: str | None, cookie: str | None, query: str | None) -> bool:
    if not settings.token:
        return True
    offered = None
    if header and header.lower().startswith("bearer "):
        offered = header[7:].strip()
    offered = offered or cookie or query
    return offered is not None and hmac.compare_digest(offered, settings.token)


def client_id(request: Request) -> str:
    """Who is asking: the page's own id (header or cookie), else the address. Quotas and ownership use it."""
    return (request.headers.get("x-deepscope-client") or request.cookies.get("deepscope_client")
            or (request.client.host if request.client else "unknown"))[:64]


def is_instructor(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    offered = request.headers.get("x-deepscope-instructor") or request.cookies.get("deepscope_instructor")
    return bool(settings.instructor_token and offered and hmac.compare_digest(offered, settings.instructor_token))


def require_token(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if is_instructor(request):
        return
    if not _token_ok(settings, request.headers.get("authorization"), request.cookies.get("deepscope_token"),
                     request.query_params.get("token")):
        raise HTTPException(401, "this server needs a token: send 'Authorization: Bearer <token>' "
                                 "(the page asks for it once)", headers={"WWW-Authenticate": "Bearer"})


def ws_allowed(websocket: WebSocket) -> str | None:
    """None if the socket may connect, else why not (bad token, foreign origin)."""
    settings: Settings = websocket.app.state.settings
    instructor = websocket.cookies.get("deepscope_instructor")
    is_instructor = bool(settings.instructor_token and instructor
                         and hmac.compare_digest(instructor, settings.instructor_token))
    if not is_instructor and not _token_ok(settings, websocket.headers.get("authorization"),
                                           websocket.cookies.get("deepscope_token"),
                                           websocket.query_params.get("token")):
        return "this server needs a token"
    origin = websocket.headers.get("origin")
    if origin:
        host = websocket.headers.get("host", "")
        same = origin.split("://", 1)[-1] == host
        if not same and origin not in settings.allowed_origins:
            return f"origin {origin} is not allowed"
    return None


def require_instructor(request: Request) -> None:
    if not is_instructor(request):
        raise HTTPException(403, "this needs the instructor token (DEEPSCOPE_INSTRUCTOR_TOKEN), sent as the "
                                 "X-DeepScope-Instructor header; the /instructor page asks for it")


class Caller:
    """Who asks, and whether they may touch runs that are not theirs."""

    def __init__(self, client: str, instructor: bool, workshop: bool) -> None:
        self.client, self.instructor, self.workshop = client, instructor, workshop

    def may_change(self, run: dict) -> bool:
        # Outside workshop mode there is one user (or a trusted few): everyone may change every run.
        return not self.workshop or self.instructor or run.get("owner") == self.client

    def sees_only_own(self) -> bool:
        return self.workshop and not self.instructor


def caller(request: Request) -> Caller:
    settings: Settings = request.app.state.settings
    return Caller(client_id(request), is_instructor(request), bool(settings.token))


ServiceDep = Annotated[RunService, Depends(get_service)]
CallerDep = Annotated[Caller, Depends(caller)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ClientDep = Annotated[str, Depends(client_id)]
