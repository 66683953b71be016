"""The FastAPI app: its lifespan starts and stops the store, the hub and the executor."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from deepscope import __version__
from deepscope.app import errors, housekeeping, reconciler, sharing
from deepscope.app.event_log import EventWriter
from deepscope.app.executors import Executor
from deepscope.app.hub import Hub
from deepscope.app.limits import RequestLimits
from deepscope.app.quotas import Quotas
from deepscope.app.security import SecurityMiddleware, Signer, load_secret
from deepscope.app.service import RunService
from deepscope.app.settings import Settings, get_settings
from deepscope.app.store import Store

log = logging.getLogger("deepscope")
IO_THREADS = 64
VERSION = __version__


def make_executor(settings: Settings) -> Executor:
    if settings.executor == "celery":
        from deepscope.app.executors.celery_executor import CeleryExecutor

        return CeleryExecutor(settings)
    from deepscope.app.executors.local import LocalExecutor

    return LocalExecutor(settings.workers, settings.data_dir, settings.run_time_limit_s, settings.max_run_memory_mb,
                         settings.max_run_mb, settings.first_looks)


async def _watch_the_watched(service: RunService, settings: Settings) -> None:
    """Load the watched runs written to files in the data directory without a server, then end, every few
    seconds, the watched runs whose training stopped sending (app/watched.py)."""
    await asyncio.to_thread(import_watched_files, service, settings.data_dir)
    while True:
        await asyncio.sleep(5)
        try:
            await asyncio.to_thread(service.watched.reap)
        except RuntimeError:  # the service is shutting down
            return
        except Exception:  # the store briefly unreachable: the next round tries again
            log.exception("could not check the watched runs")


async def _reconcile(service: RunService) -> None:
    """Every few seconds, queue again or end the runs no worker holds (app/reconciler.py)."""
    while True:
        await asyncio.sleep(reconciler.EVERY_S)
        try:
            await asyncio.to_thread(service.reconciler.once)
        except RuntimeError:  # the service is shutting down
            return
        except Exception:  # the store or Redis briefly unreachable: the next round tries again
            log.exception("could not reconcile the runs in flight")


async def _apply_retention(store: Store, retention_days: float) -> None:
    """Every hour, delete the finished runs older than DEEPSCOPE_RETENTION_DAYS (app/housekeeping.py)."""
    while retention_days > 0:
        try:
            expired = await asyncio.to_thread(housekeeping.expire, store, retention_days)
            if expired:
                log.info("deleted %d runs finished more than %g days ago", expired, retention_days)
        except Exception:  # the store briefly unreachable: the next hour tries again
            log.exception("could not apply the retention")
        await asyncio.sleep(housekeeping.EVERY_S)


def import_watched_files(service: RunService, data_dir: Any) -> list[str]:
    """Every file of deepscope.watch's in DATA_DIR/watched not loaded yet (each loaded one is renamed
    *.imported, so a restart does not load it twice)."""
    from deepscope.app.watched import WATCH_TIMEOUT_S, finished_file

    loaded = []
    for path in sorted((data_dir / "watched").glob("*.jsonl")):
        if not finished_file(path) and time.time() - path.stat().st_mtime < WATCH_TIMEOUT_S:
            continue  # its training may still be writing it
        try:
            run = service.watched.import_file(path)
        except Exception as exc:  # a file being written, or not ours: left for later
            log.warning("did not load %s: %s", path, exc)
            continue
        path.rename(path.with_suffix(".imported"))
        loaded.append(run["id"])
    return loaded


def operation_id(route: APIRoute) -> str:
    """An operation's OpenAPI id is its function's name (``submit_run``, not ``submit_run_api_runs_post``):
    what a generated client names its methods."""
    return route.name


def _lifespan(settings: Settings, executor: Executor | None):
    """The service's life: the store, the event writer and the executor start with it and stop with it;
    what a stop during an outage kept on disk is stored first, and runs left in flight are interrupted."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # A stream's replay waits on the event writer's barrier and the database in a thread: asyncio's
        # default pool (cores + 4) would queue a class's streams behind a few of those waits.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(IO_THREADS, "deepscope-io"))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.db_url)
        ex = executor or make_executor(settings)
        writer = EventWriter(store, followers=sharing.followed, spill_dir=settings.data_dir / "spill")
        spilled = writer.load_spilled()  # what a stop during a database outage kept on disk
        if spilled:
            log.warning("stored %d events kept on disk when the service last stopped", spilled)
        if getattr(ex, "interrupts_on_restart", True):
            interrupted = store.mark_interrupted()
            if interrupted:
                log.warning("marked %d runs interrupted: they were in flight when the service stopped",
                            len(interrupted))
        hub = Hub()
        hub.bind(asyncio.get_running_loop())
        quotas = Quotas(settings.max_queued, settings.max_active_per_client or 0, settings.max_active_per_address or 0,
                        int((settings.storage_quota_client_mb or 0) * 1e6), int((settings.storage_quota_mb or 0) * 1e6))
        service = RunService(store, hub, ex, quotas, log=writer)
        service.watched.max_stored_bytes = int(settings.max_run_mb * 1e6) if settings.max_run_mb else None
        app.state.service, app.state.settings = service, settings
        ex.start(service)
        tasks = [asyncio.create_task(_watch_the_watched(service, settings)), asyncio.create_task(_reconcile(service)),
                 asyncio.create_task(_apply_retention(store, settings.retention_days))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            ex.shutdown()
            service.close()
            store.close()

    return lifespan


def create_app(settings: Settings | None = None, executor: Executor | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="DeepScope", version=VERSION, lifespan=_lifespan(settings, executor), docs_url=None, redoc_url=None,
                  generate_unique_id_function=operation_id,
                  description="See why very deep networks train or fail to train. The run config is the "
                              "RunConfig schema below; every field has a default, so {} is a valid run.")
    app.state.settings = settings
    signer = app.state.signer = Signer(load_secret(settings.secret_key, settings.data_dir))
    # Added first, so it runs inside the security middleware: the limits read the cookies that one parsed.
    app.add_middleware(RequestLimits, settings_for=lambda: settings)
    app.add_middleware(SecurityMiddleware, signer_for=lambda: signer,
                       allowed_origins_for=lambda: settings.allowed_origins)

    errors.install(app)

    from deepscope.app.routes import api, docs, health, pages, watch, ws

    app.include_router(health.router)
    app.include_router(api.router)
    app.include_router(watch.router)
    app.include_router(ws.router)
    app.include_router(pages.router)
    app.include_router(docs.router)
    return app
