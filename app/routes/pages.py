"""The playground page and its static files (Plotly.js comes from the installed plotly package)."""

from __future__ import annotations

from pathlib import Path

import plotly
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from deepscope.app.security import PAGE_CSP

# templates/ and static/ sit beside app/: at the repository's top level in a checkout, inside the
# deepscope package once installed (pyproject.toml maps them there).
ROOT = Path(__file__).resolve().parents[2]
templates = Jinja2Templates(directory=str(ROOT / "templates"))
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC = ROOT / "static"

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def playground(request: Request) -> HTMLResponse:
    settings = request.app.state.settings
    return templates.TemplateResponse(request, "index.html", {"needs_token": bool(settings.token)},
                                      headers={"Content-Security-Policy": PAGE_CSP})


@router.get("/instructor", response_class=HTMLResponse)
def instructor(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "instructor.html", {}, headers={"Content-Security-Policy": PAGE_CSP})


@router.get("/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


@router.get("/static/{path:path}")
def static(path: str) -> FileResponse:
    target = (STATIC / path).resolve()
    if not target.is_file() or STATIC not in target.parents:
        from fastapi import HTTPException

        raise HTTPException(404, f"no static file {path!r}")
    media = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}.get(target.suffix)
    return FileResponse(target, media_type=media)
