"""The REST API (docs/api.md). Routes stay thin: they translate HTTP and call the run service."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import HTMLResponse

from deepscope.app.deps import (
    CallerDep,
    ClientDep,
    ServiceDep,
    SettingsDep,
    require_instructor,
    require_token,
)
from deepscope.app.options import options
from deepscope.app.presets import BY_ID, PRESETS, check
from deepscope.app.report import render_report
from deepscope.app.schemas import EventsPublic, Problem, RunPublic, RunsPublic, public
from deepscope.app.service import QuotaExceeded
from deepscope.app.statuses import ACTIVE_STATUSES as ACTIVE
from deepscope.app.statuses import RunStatus as Status
from deepscope.engine.config import RunConfig
from deepscope.engine.datasets import DatasetUnavailable, check_available
from deepscope.engine.events import SCALARS, EventType

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)])

R400 = {400: {"model": Problem, "description": "the body is not valid JSON"}}
R401 = {401: {"model": Problem, "description": "a token is required (workshop mode)"}}
R403 = {403: {"model": Problem, "description": "workshop mode: not your run, or not the instructor"}}
R404 = {404: {"model": Problem, "description": "no run with this id"}}
R409 = {409: {"model": Problem, "description": "the run is in the wrong state for this"}}
R422 = {422: {"model": Problem, "description": "invalid input: the detail names the field and the allowed values"}}
R429 = {429: {"model": Problem, "description": "over a quota; see Retry-After"}}


def _found(run: dict[str, Any] | None, run_id: str) -> dict[str, Any]:
    if run is None:
        raise HTTPException(404, f"no run with id {run_id!r}; it may have been deleted")
    return run


def _quota(exc: QuotaExceeded) -> HTTPException:
    return HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)})


def _check_files(cfg: RunConfig, settings: Any) -> None:
    try:
        check_available(cfg.data.dataset, settings.data_dir)
    except DatasetUnavailable as exc:
        raise HTTPException(422, [{"loc": ["body", "data", "dataset"], "field": "data.dataset",
                                   "msg": str(exc), "type": "dataset_unavailable"}]) from None


@router.get("/options", responses=R401)
def get_options() -> dict[str, Any]:
    """Every config field: type, default, choices, limits, help, and when it applies."""
    return options()


@router.get("/presets", responses=R401)
def get_presets() -> list[dict[str, Any]]:
    """The lessons: one idea each, the runs that show it and the outcome to check when they end."""
    return [{**p, "runs": [{"label": r["label"], "config": RunConfig.model_validate(r["config"]).model_dump()}
                           for r in p["runs"]]} for p in PRESETS]


@router.get("/presets/{preset_id}/outcome", responses=R401 | R404 | R422)
def preset_outcome(preset_id: str, service: ServiceDep,
                   group: Annotated[str, Query(max_length=64, description="the group its runs were started in")],
                   ) -> dict[str, Any]:
    """Whether each expected outcome of a lesson held, once its group's runs have ended."""
    preset = BY_ID.get(preset_id)
    if preset is None:
        raise HTTPException(404, f"no lesson {preset_id!r}; GET /api/presets lists them")
    runs = service.list(group=group, limit=1000)
    if not runs:
        raise HTTPException(404, f"no runs in group {group!r}")
    by_label = {r["config"].get("name") or r["name"]: r for r in runs}
    finished = all(r["status"] not in ACTIVE for r in runs)
    checks = [check(e, {label: r["summary"] for label, r in by_label.items()}) for e in preset["expect"]]
    return {"preset": preset_id, "group": group, "finished": finished,
            "statuses": {label: r["status"] for label, r in by_label.items()}, "checks": checks}


@router.post("/presets/{preset_id}/runs", status_code=201, responses=R401 | R404 | R429)
def start_preset(preset_id: str, service: ServiceDep, client: ClientDep) -> list[RunPublic]:
    """Start every run of a lesson as one comparison group."""
    preset = BY_ID.get(preset_id)
    if preset is None:
        raise HTTPException(404, f"no lesson {preset_id!r}; GET /api/presets lists them")
    group = f"{preset_id}-{uuid.uuid4().hex[:6]}"
    try:
        service.check_quota(len(preset["runs"]), client)
    except QuotaExceeded as exc:
        raise _quota(exc) from None
    runs = [service.submit(RunConfig.model_validate(r["config"]), group=group, owner=client) for r in preset["runs"]]
    return [public(r) for r in runs]


@router.post("/runs", status_code=201, responses=R400 | R401 | R422 | R429)
def submit_run(config: RunConfig, service: ServiceDep, settings: SettingsDep, client: ClientDep,
               group: Annotated[str | None, Query(max_length=64, description="a comparison group")] = None,
               ) -> RunPublic:
    """Submit one config. Every field has a default, so {} is a valid run."""
    _check_files(config, settings)
    try:
        return public(service.submit(config, group=group, owner=client))
    except QuotaExceeded as exc:
        raise _quota(exc) from None


@router.get("/runs", responses=R401 | R422)
def list_runs(service: ServiceDep, who: CallerDep, status: Status | None = None,
              group: Annotated[str | None, Query(max_length=64)] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> RunsPublic:
    """Runs, newest first. In workshop mode a student sees their own runs; the instructor sees all."""
    owner = who.client if who.sees_only_own() else None
    runs = [public(r) for r in service.list(status=status, group=group, owner=owner, limit=limit)]
    return RunsPublic(data=runs, count=len(runs))


@router.get("/instructor/runs", responses=R401 | R403 | R422, dependencies=[Depends(require_instructor)])
def instructor_runs(service: ServiceDep, status: Status | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> RunsPublic:
    """Every run of every client, with its owner: the instructor's view of a workshop."""
    runs = [public(r) for r in service.list(status=status, limit=limit)]
    return RunsPublic(data=runs, count=len(runs))


@router.get("/runs/{run_id}", responses=R401 | R404)
def get_run(run_id: str, service: ServiceDep) -> RunPublic:
    return public(_found(service.get(run_id), run_id))


@router.get("/runs/{run_id}/events", response_model=EventsPublic, responses=R401 | R404 | R422 | {
    200: {"content": {"application/json": {}, "text/csv": {}},
          "description": "events in seq order; with format=csv, the scalar metrics"}})
def get_events(run_id: str, service: ServiceDep,
               after: Annotated[int, Query(ge=-1, description="only events with a larger seq")] = -1,
               limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
               type: Annotated[EventType | None, Query(description="only events of this type")] = None,
               format: Annotated[str, Query(pattern="^(json|csv)$")] = "json") -> Response:
    """Stored events in seq order; page with ``after`` = the last seq you have."""
    _found(service.get(run_id), run_id)
    if format == "csv":
        return _csv(service, run_id)
    rows = service.events(run_id, after=after, limit=limit, types=(type,) if type else None)
    body = b'{"data":[' + b",".join(r[2].encode() for r in rows) + b'],"count":' + str(len(rows)).encode() + b"}"
    return Response(body, media_type="application/json")


def _csv(service: ServiceDep, run_id: str) -> Response:
    out = io.StringIO()
    columns = ["seq", "type", "epoch", "step", "loss", "acc", "train_loss", "train_acc", "val_loss", "val_acc"]
    writer = csv.DictWriter(out, columns, extrasaction="ignore")
    writer.writeheader()
    for event in service.all_events(run_id, types=tuple(SCALARS)):
        writer.writerow(event)
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{run_id}-metrics.csv"'})


@router.get("/runs/{run_id}/report", response_class=HTMLResponse, responses=R401 | R404)
def get_report(run_id: str, service: ServiceDep) -> HTMLResponse:
    """A self-contained HTML report of one run (Plotly inlined: it opens with no network)."""
    run = _found(service.get(run_id), run_id)
    return HTMLResponse(render_report(run, service.all_events),
                        headers={"Content-Disposition": f'inline; filename="deepscope-{run_id}.html"'})


def _mine(run: dict[str, Any], who: Any, verb: str) -> None:
    if not who.may_change(run):
        raise HTTPException(403, f"run {run['id']} belongs to another client; only its owner or the instructor "
                                 f"may {verb} it")


@router.post("/runs/{run_id}/cancel", status_code=202, responses=R401 | R403 | R404 | R409)
def cancel_run(run_id: str, service: ServiceDep, who: CallerDep) -> RunPublic:
    """Stop a queued or running run; it lands within one training step."""
    run = _found(service.get(run_id), run_id)
    _mine(run, who, "cancel")
    if run["status"] not in ACTIVE or not service.cancel(run_id):
        raise HTTPException(409, f"run {run_id} is {run['status']}; only queued or running runs can be cancelled")
    return public(_found(service.get(run_id), run_id))


@router.delete("/runs/{run_id}", status_code=204, responses=R401 | R403 | R404 | R409)
def delete_run(run_id: str, service: ServiceDep, who: CallerDep) -> Response:
    """Forget a finished run and its events."""
    run = _found(service.get(run_id), run_id)
    _mine(run, who, "delete")
    if run["status"] in ACTIVE:
        raise HTTPException(409, f"run {run_id} is {run['status']}; cancel it before deleting it")
    service.delete(run_id)
    return Response(status_code=204)
