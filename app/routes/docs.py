"""API docs that work offline: Swagger UI at /docs and ReDoc at /redoc, their assets served from the
installed ``fastapi-offline`` package, never from a CDN (a workshop room often has no internet).

FastAPI's pages start Swagger UI with one inline script; its Content-Security-Policy allows exactly
that script, by its hash, and nothing else inline."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = Path(fastapi_offline.__file__).parent / "static"
PREFIX = "/docs-assets"
router = APIRouter(include_in_schema=False)


def _with_csp(page: HTMLResponse) -> HTMLResponse:
    body = page.body.decode()
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in re.findall(r"<script>(.*?)</script>", body, re.S))
    csp = (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'")
    return HTMLResponse(body, headers={"Content-Security-Policy": csp})


@router.get("/docs")
def swagger(request: Request) -> HTMLResponse:
    return _with_csp(get_swagger_ui_html(openapi_url="/openapi.json", title="DeepScope API",
                                         swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
                                         swagger_css_url=f"{PREFIX}/swagger-ui.css",
                                         swagger_favicon_url=f"{PREFIX}/favicon.png"))


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return _with_csp(get_redoc_html(openapi_url="/openapi.json", title="DeepScope API",
                                    redoc_js_url=f"{PREFIX}/redoc.standalone.js",
                                    redoc_favicon_url=f"{PREFIX}/favicon.png", with_google_fonts=False))


@router.get(PREFIX + "/{name}")
def asset(name: str) -> FileResponse:
    target = ASSETS / name
    if "/" in name or not target.is_file():
        raise HTTPException(404, f"no docs asset {name[:60]!r}")
    media = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}.get(target.suffix)
    return FileResponse(target, media_type=media, headers={"Cache-Control": "max-age=86400"})
