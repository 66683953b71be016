"""Dependencies as named aliases: routes read as typed arguments, and tests can override them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, WebSocket
from starlette.requests import HTTPConnection

from deepscope.app.security import same_origin, tokens_equal
from deepscope.app.service import RunService
from deepscope.app.settings import Settings


def get_service(conn: HTTPConnection) -> RunService:
    """The run service, for HTTP routes and WebSockets alike."""
    return conn.app.state.service


def get_app_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


def _cookies(conn: HTTPConnection) -> dict[str, str]:
    return conn.scope.get("state", {}).get("cookies") or {}


def _has_class_token(conn: HTTPConnection) -> bool:
    settings: Settings = conn.app.state.settings
    if not settings.token:
        return True
    header = conn.headers.get("authorization") or ""
    offered = header[7:].strip() if header.lower().startswith("bearer ") else None
    offered = offered or _cookies(conn).get("deepscope_token") or conn.query_params.get("token")
    return tokens_equal(offered, settings.token)


def client_id(conn: HTTPConnection) -> str | None:
    """Who is asking: the identity the server issued and signed (app/security.py), never what a header says."""
    return conn.scope.get("state", {}).get("client")


def is_instructor(conn: HTTPConnection) -> bool:
    settings: Settings = conn.app.state.settings
    offered = conn.headers.get("x-deepscope-instructor") or _cookies(conn).get("deepscope_instructor")
    return tokens_equal(offered, settings.instructor_token)


def has_token_or_instructor(conn: HTTPConnection) -> bool:
    return is_instructor(conn) or _has_class_token(conn)


def require_token(request: Request) -> None:
    if not has_token_or_instructor(request):
        raise HTTPException(401, "this server needs a token: send 'Authorization: Bearer <token>' "
                                 "(the page asks for it once)", headers={"WWW-Authenticate": "Bearer"})


def ws_allowed(websocket: WebSocket) -> str | None:
    """None if the socket may connect, else why not (bad token, foreign origin, no identity)."""
    settings: Settings = websocket.app.state.settings
    instructor = is_instructor(websocket)
    if not instructor and not _has_class_token(websocket):
        return "this server needs a token"
    origin = websocket.headers.get("origin")
    if origin and not same_origin(origin, websocket.scope) and origin not in settings.allowed_origins:
        return f"origin {origin[:100]} is not allowed"
    if settings.token and not instructor and client_id(websocket) is None:
        return "no identity: load the page or POST /api/session first"
    return None


def require_instructor(request: Request) -> None:
    if not is_instructor(request):
        raise HTTPException(403, "this needs the instructor token (DEEPSCOPE_INSTRUCTOR_TOKEN), sent as the "
                                 "X-DeepScope-Instructor header; the /instructor page asks for it")


class Caller:
    """Who asks, and which runs they may see and change."""

    def __init__(self, client: str | None, instructor: bool, workshop: bool) -> None:
        self.client, self.instructor, self.workshop = client, instructor, workshop

    def may_change(self, run: dict[str, Any]) -> bool:
        # Outside workshop mode there is one user (or a trusted few): everyone may change every run.
        return not self.workshop or self.instructor or (self.client is not None and run.get("owner") == self.client)

    may_read = may_change  # in a workshop, a student's runs are theirs alone, to read as to change

    def sees_only_own(self) -> bool:
        return self.workshop and not self.instructor

    def sees_owners(self) -> bool:
        return not self.workshop or self.instructor


def caller(conn: HTTPConnection) -> Caller:
    settings: Settings = conn.app.state.settings
    return Caller(client_id(conn), is_instructor(conn), bool(settings.token))


ServiceDep = Annotated[RunService, Depends(get_service)]
CallerDep = Annotated[Caller, Depends(caller)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ClientDep = Annotated[str | None, Depends(client_id)]
