"""The REST API (docs/api.md). Routes stay thin: they translate HTTP and call the run service."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse

from deepscope import __version__
from deepscope.app.deps import (
    Caller,
    CallerDep,
    ClientDep,
    ServiceDep,
    SettingsDep,
    require_instructor,
    require_token,
)
from deepscope.app.options import options
from deepscope.app.presets import BY_ID, PRESETS, check, lesson_evidence
from deepscope.app.quotas import QuotaExceeded
from deepscope.app.report import render_report, report_csp
from deepscope.app.schemas import EventsPublic, Problem, RunPublic, RunsPublic, public
from deepscope.app.service import gaps, say_gaps
from deepscope.app.settings import Settings
from deepscope.app.statuses import ACTIVE_STATUSES, RunStatus
from deepscope.engine.config import RunConfig
from deepscope.engine.datasets import DatasetUnavailable, check_available
from deepscope.engine.events import SCALARS, EventType
from deepscope.engine.export import script_for
from deepscope.engine.memory import estimate_mb

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)])

R400 = {400: {"model": Problem, "description": "the body is not valid JSON"}}
R401 = {401: {"model": Problem, "description": "a token is required (workshop mode)"}}
R403 = {403: {"model": Problem, "description": "workshop mode: not your run, or not the instructor"}}
R404 = {404: {"model": Problem, "description": "no run with this id"}}
R409 = {409: {"model": Problem, "description": "the run is in the wrong state for this"}}
R422 = {422: {"model": Problem, "description": "invalid input: the detail names the field and the allowed values"}}
R429 = {429: {"model": Problem, "description": "over a quota; see Retry-After"}}


MAX_EVENTS_BYTES = 4 * 2**20  # one page of events answers at most this much; page on with ?after=


def _found(run: dict[str, Any] | None, run_id: str, who: Caller | None = None) -> dict[str, Any]:
    # A student asking for another student's run learns nothing of it, not even that it exists.
    if run is None or (who is not None and not who.may_read(run)):
        raise HTTPException(404, f"no run with id {run_id[:40]!r}; it may have been deleted")
    return run


def _quota(exc: QuotaExceeded) -> HTTPException:
    return HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)})


def _field_error(field: str, msg: str, type_: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *field.split(".")], "field": field, "msg": msg, "type": type_}])


def _admissible(cfg: RunConfig, settings: Settings, executor_kind: str) -> None:
    """What the config schema cannot know: the files on this server, its memory limit, its devices."""
    try:
        check_available(cfg.data.dataset, settings.data_dir)
    except DatasetUnavailable as exc:
        raise _field_error("data.dataset", str(exc), "dataset_unavailable") from None
    need = estimate_mb(cfg)
    if need["total"] > settings.max_run_memory_mb:
        big = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(need.items(), key=lambda kv: -kv[1])
                        if k not in ("total", "runtime"))[:200]
        raise _field_error("model", f"this run needs about {need['total']:.0f} MB ({big}), over this server's "
                           f"limit of {settings.max_run_memory_mb} MB per run (DEEPSCOPE_MAX_RUN_MEMORY_MB): "
                           "make model.depth, model.width, train.batch_size or data.n_samples smaller",
                           "memory_limit")
    if cfg.train.device == "cuda" and executor_kind == "local" and not _cuda_here():
        raise _field_error("train.device", "train.device is 'cuda' but this server has no CUDA device; "
                           "use auto or cpu", "no_cuda")


def _address(request: Request) -> str | None:
    return request.client.host[:64] if request.client else None


def _cuda_here() -> bool:
    from deepscope.engine.devices import cuda_available  # imports torch: only when a run asks for cuda

    return cuda_available()


def _public(run: dict[str, Any], who: Caller) -> RunPublic:
    return public(run if who.sees_owners() else {**run, "owner": None})


@router.post("/session", tags=["session"], responses=R401)
def session(client: ClientDep, service: ServiceDep, request: Request) -> dict[str, Any]:
    """This client's identity, issued and signed by the server. The answer also sets it as a cookie; a
    script that keeps no cookies sends ``identity`` back as the X-DeepScope-Identity header."""
    signer = request.app.state.signer
    return {"identity": signer.sign(client), "active_runs": service.count_active(client)}


@router.get("/options", tags=["config"], responses=R401)
def get_options() -> dict[str, Any]:
    """Every config field: type, default, choices, limits, help, and when it applies."""
    return options()


@router.get("/presets", tags=["lessons"], responses=R401)
def get_presets() -> list[dict[str, Any]]:
    """The lessons: one idea each, the runs that show it and the outcome to check when they end."""
    evidence = lesson_evidence()
    return [{**{k: v for k, v in p.items() if k != "counters"},
             "runs": [{"label": r["label"], "config": RunConfig.model_validate(r["config"]).model_dump()}
                      for r in p["runs"]], "evidence": evidence.get(p["id"])} for p in PRESETS]


@router.get("/presets/{preset_id}/outcome", tags=["lessons"], responses=R401 | R404 | R422)
def preset_outcome(preset_id: str, service: ServiceDep, who: CallerDep,
                   group: Annotated[str, Query(min_length=1, max_length=64,
                                               description="the group its runs were started in")],
                   ) -> dict[str, Any]:
    """Whether each expected outcome of a lesson held, once its group's runs have ended."""
    preset = BY_ID.get(preset_id)
    if preset is None:
        raise HTTPException(404, f"no lesson {preset_id[:40]!r}; GET /api/presets lists them")
    runs = [r for r in service.list(group=group, limit=1000) if who.may_read(r)]
    if not runs:
        raise HTTPException(404, f"no runs in group {group!r}")
    by_label = {r["config"].get("name") or r["name"]: r for r in runs}
    finished = all(r["status"] not in ACTIVE_STATUSES for r in runs)
    checks = [check(e, {label: r["summary"] for label, r in by_label.items()}) for e in preset["expect"]]
    return {"preset": preset_id, "group": group, "finished": finished,
            "statuses": {label: r["status"] for label, r in by_label.items()}, "checks": checks}


@router.post("/presets/{preset_id}/runs", tags=["lessons"], status_code=201, responses=R401 | R404 | R429)
def start_preset(preset_id: str, service: ServiceDep, client: ClientDep, who: CallerDep,
                 request: Request) -> list[RunPublic]:
    """Start every run of a lesson as one comparison group (identical trainings are shared)."""
    preset = BY_ID.get(preset_id)
    if preset is None:
        raise HTTPException(404, f"no lesson {preset_id[:40]!r}; GET /api/presets lists them")
    group = f"{preset_id}-{uuid.uuid4().hex[:6]}"
    configs = [RunConfig.model_validate(r["config"]) for r in preset["runs"]]
    try:
        return [_public(r, who) for r in service.submit_many(configs, group=group, owner=client,
                                                             address=_address(request))]
    except QuotaExceeded as exc:
        raise _quota(exc) from None


@router.post("/runs", tags=["runs"], status_code=201, responses=R400 | R401 | R422 | R429)
def submit_run(config: RunConfig, service: ServiceDep, settings: SettingsDep, client: ClientDep, who: CallerDep,
               request: Request, group: Annotated[str | None, Query(max_length=64, description="a comparison group")] = None,
               ) -> RunPublic:
    """Submit one config. Every field has a default, so {} is a valid run."""
    _admissible(config, settings, settings.executor)
    try:
        return _public(service.submit(config, group=group, owner=client, address=_address(request)), who)
    except QuotaExceeded as exc:
        raise _quota(exc) from None


@router.get("/runs", tags=["runs"], responses=R401 | R422)
def list_runs(service: ServiceDep, who: CallerDep, status: RunStatus | None = None,
              group: Annotated[str | None, Query(max_length=64)] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> RunsPublic:
    """Runs, newest first. In workshop mode a student sees their own runs; the instructor sees all."""
    if who.sees_only_own() and who.client is None:
        return RunsPublic(data=[], count=0)
    owner = who.client if who.sees_only_own() else None
    runs = [_public(r, who) for r in service.list(status=status, group=group, owner=owner, limit=limit)]
    return RunsPublic(data=runs, count=len(runs))


@router.get("/instructor/runs", tags=["instructor"], responses=R401 | R403 | R422, dependencies=[Depends(require_instructor)])
def instructor_runs(service: ServiceDep, status: RunStatus | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> RunsPublic:
    """Every run of every client, with its owner: the instructor's view of a workshop."""
    runs = [public(r) for r in service.list(status=status, limit=limit)]
    return RunsPublic(data=runs, count=len(runs))


@router.get("/instructor/workers", tags=["instructor"], responses=R401 | R403, dependencies=[Depends(require_instructor)])
def instructor_workers(service: ServiceDep) -> dict[str, Any]:
    """The workers training runs now: local processes, or every Celery worker connected to Redis, with the
    queues each takes and the run it trains (``busy``). A workshop's check that its workers are up."""
    workers = service.workers()
    return {"data": workers, "count": len(workers)}


@router.get("/runs/{run_id}", tags=["runs"], responses=R401 | R404)
def get_run(run_id: str, service: ServiceDep, who: CallerDep) -> RunPublic:
    return _public(_found(service.get(run_id), run_id, who), who)


@router.get("/runs/{run_id}/events", tags=["runs"], response_model=EventsPublic, responses=R401 | R404 | R422 | {
    200: {"content": {"application/json": {}, "text/csv": {}},
          "description": "events in seq order; with format=csv, the scalar metrics"}})
def get_events(run_id: str, service: ServiceDep, who: CallerDep,
               after: Annotated[int, Query(ge=-1, le=2**31, description="only events with a larger seq")] = -1,
               limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
               type: Annotated[EventType | None, Query(description="only events of this type")] = None,
               format: Annotated[str, Query(pattern="^(json|csv)$")] = "json") -> Response:
    """Stored events in seq order; page with ``after`` = the last seq you have. A page stops early, at
    about 4 MB, so ``count`` may be less than ``limit`` while more events follow."""
    _found(service.get(run_id), run_id, who)
    if format == "csv":
        return _csv(service, run_id)
    parts, seqs, size = [], [], 0
    for seq, _, raw in service.events(run_id, after=after, limit=limit, types=(type,) if type else None):
        if parts and size + len(raw) > MAX_EVENTS_BYTES:
            break
        parts.append(raw.encode())
        seqs.append(seq)
        size += len(raw)
    # Where the page skips seqs, it says so: an outage lost them (with ?type=, the others are elsewhere).
    missing = [] if type else gaps(seqs, after)
    body = (b'{"data":[' + b",".join(parts) + b'],"count":' + str(len(parts)).encode()
            + b',"missing":' + orjson.dumps(missing) + b"}")
    return Response(body, media_type="application/json")


def _csv(service: ServiceDep, run_id: str) -> StreamingResponse:
    columns = ["seq", "type", "epoch", "step", "loss", "acc", "train_loss", "train_acc", "val_loss", "val_acc"]

    def rows():  # streamed: a long run's metrics never sit in memory whole
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, extrasaction="ignore")
        writer.writeheader()
        for event in service.all_events(run_id, types=tuple(SCALARS)):
            writer.writerow(event)
            if out.tell() > 65536:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    missing = service.missing(run_id)
    return StreamingResponse(rows(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{run_id}-metrics.csv"',
        **({"X-DeepScope-Missing-Seqs": say_gaps(missing)} if missing else {})})


@router.get("/runs/{run_id}/report", tags=["runs"], response_class=HTMLResponse, responses=R401 | R404)
def get_report(run_id: str, service: ServiceDep, who: CallerDep) -> HTMLResponse:
    """A self-contained HTML report of one run (Plotly inlined: it opens with no network)."""
    run = _found(service.get(run_id), run_id, who)
    page, nonce = render_report(run, service.all_events, service.missing(run_id))
    return HTMLResponse(page, headers={"Content-Disposition": f'inline; filename="deepscope-{run_id}.html"',
                                       "Content-Security-Policy": report_csp(nonce)})


@router.get("/runs/{run_id}/script", tags=["runs"], response_class=PlainTextResponse, responses=R401 | R404 | R409 | {
    200: {"content": {"text/x-python": {}}, "description": "one standalone PyTorch script"}})
def get_script(run_id: str, service: ServiceDep, who: CallerDep) -> Response:
    """The run as one standalone PyTorch script: the dataset, the model with its init, batchnorm, dropout
    and augmentation, and the training loop, with the run's config and seed. At one torch thread on the
    machine that trained the run, it prints the run's epoch metrics (docs/api.md)."""
    run = _found(service.get(run_id), run_id, who)
    if run.get("source") == "watched":
        raise HTTPException(409, f"run {run_id} is a watched run: its training is your own code, so DeepScope "
                                 "has no script of it")
    script = script_for(run["config"], version=__version__, run_id=run_id)
    return Response(script, media_type="text/x-python; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="deepscope-{run_id}.py"'})


def _mine(run: dict[str, Any], who: Caller, verb: str) -> None:
    if not who.may_change(run):
        raise HTTPException(403, f"run {run['id']} belongs to another client; only its owner or the instructor "
                                 f"may {verb} it")


@router.post("/runs/{run_id}/cancel", tags=["runs"], status_code=202, responses=R401 | R403 | R404 | R409)
def cancel_run(run_id: str, service: ServiceDep, who: CallerDep) -> RunPublic:
    """Stop a queued or running run; it lands within one training step."""
    run = _found(service.get(run_id), run_id, who)
    _mine(run, who, "cancel")
    cancelled = run["status"] in ACTIVE_STATUSES and service.cancel(run_id, force=who.instructor)
    if not cancelled:
        raise HTTPException(409, f"run {run_id} is {run['status']}; only queued or running runs can be cancelled")
    return _public(_found(service.get(run_id), run_id), who)


@router.delete("/runs/{run_id}", tags=["runs"], status_code=204, responses=R401 | R403 | R404 | R409)
def delete_run(run_id: str, service: ServiceDep, who: CallerDep) -> Response:
    """Forget a finished run and its events."""
    run = _found(service.get(run_id), run_id, who)
    _mine(run, who, "delete")
    if run["status"] in ACTIVE_STATUSES:
        raise HTTPException(409, f"run {run_id} is {run['status']}; cancel it before deleting it")
    service.delete(run_id)
    return Response(status_code=204)
