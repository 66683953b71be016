"""Who is asking, and the defences every answer carries (docs/workshop.md).

- **Identity the server issues.** A client's id is random, made here, and signed with the server's
  secret (``DEEPSCOPE_SECRET_KEY``, or one generated once and kept in the data dir). It travels in the
  HttpOnly, SameSite=Strict cookie ``deepscope_id``, or for API scripts in the ``X-DeepScope-Identity``
  header (``POST /api/session`` hands it out). Nothing unsigned ever selects an identity.
- **Cross-site requests.** A state-changing request whose ``Origin`` is not this server (scheme, host
  and port) nor an allowed origin is refused before any route runs: a form on another site cannot
  start runs in a learner's browser.
- **Headers.** Every answer says ``nosniff``; every page gets a Content-Security-Policy with no
  inline script (a report's inline script carries a per-answer nonce) and ``frame-ancestors 'none'``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

COOKIE = "deepscope_id"
HEADER = "x-deepscope-identity"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, else one generated once and kept (0600) in the data dir, so identities
    survive a restart. Replicas that share no data dir must share DEEPSCOPE_SECRET_KEY."""
    if configured:
        return configured.encode()
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip().encode()


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, value: str) -> str:
        digest = hmac.new(self._secret, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def sign(self, value: str) -> str:
        return f"{value}.{self._mac(value)}"

    def verify(self, signed: str | None) -> str | None:
        """The value if ``signed`` carries this server's signature, else None (never an exception)."""
        if not signed or len(signed) > 200 or "." not in signed:
            return None
        value, _, mac = signed.rpartition(".")
        if not value.isalnum() or not hmac.compare_digest(mac.encode(), self._mac(value).encode()):
            return None
        return value


def new_client_id() -> str:
    return secrets.token_hex(8)


def tokens_equal(offered: str | None, expected: str | None) -> bool:
    """Constant-time, and any text at all (a non-ASCII token is simply wrong, never an error)."""
    if not offered or not expected:
        return False
    return hmac.compare_digest(offered.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def cookies(scope: dict[str, Any]) -> dict[str, str]:
    raw = header(scope, b"cookie")
    if not raw:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed cookie header is no identity, not an error
        return {}
    return {k: v.value for k, v in jar.items()}


def _origin(scheme: str, netloc: str) -> tuple[str, str, int | None]:
    parts = urlsplit(f"{scheme}://{netloc}")
    return scheme.lower(), (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme.lower())


def same_origin(origin: str, scope: dict[str, Any]) -> bool:
    """Whether ``origin`` (scheme://host[:port]) is this server as the request reached it: scheme, host
    and port all compared (a WebSocket's ws/wss count as http/https)."""
    scheme = scope.get("scheme", "http")
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    try:
        theirs = urlsplit(origin)
        return _origin(theirs.scheme, theirs.netloc) == _origin(scheme, header(scope, b"host") or "")
    except ValueError:  # a malformed origin or port is not this server
        return False


class SecurityMiddleware:
    """Issues and verifies identities, refuses cross-site state changes, adds the security headers.

    Pure ASGI (no BaseHTTPMiddleware), so streaming answers and WebSockets pass through untouched."""

    def __init__(self, app: Any, signer_for: Any, allowed_origins_for: Any) -> None:
        self.app = app
        self._signer_for = signer_for            # () -> Signer, read lazily: settings live on app.state
        self._allowed_origins_for = allowed_origins_for

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        signer: Signer = self._signer_for()
        jar = cookies(scope)
        client = signer.verify(header(scope, HEADER.encode())) or signer.verify(jar.get(COOKIE))
        fresh = client is None and scope["type"] == "http"
        if fresh:
            client = new_client_id()
        scope.setdefault("state", {})["client"] = client
        scope["state"]["cookies"] = jar
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        origin = header(scope, b"origin")
        if scope["method"] in UNSAFE_METHODS and origin and not (
                same_origin(origin, scope) or origin in self._allowed_origins_for()):
            await _refuse(send, 403, f"cross-site request refused: origin {origin[:100]} is not this server")
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"same-origin"))
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", b"frame-ancestors 'none'"))
                if fresh:
                    value = signer.sign(client)
                    headers.append((b"set-cookie", (f"{COOKIE}={value}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; "
                                                    "HttpOnly; SameSite=Strict").encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(send: Any, status: int, detail: str) -> None:
    import orjson

    body = orjson.dumps({"detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})
