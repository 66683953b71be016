"""The ``deepscope`` command: ``serve`` the playground, ``run`` one config headless, ``worker`` for scale-out."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from deepscope.engine.events import SCALARS, EventType, Status


def _progress(event: dict[str, Any], state: dict[str, Any]) -> None:
    """A one-line progress bar on stderr, redrawn on step and eval events."""
    if event["type"] == EventType.STATUS and event["status"] == Status.RUNNING:
        state["total"] = event["total_steps"]
    elif event["type"] in SCALARS:
        state.update({k: event[k] for k in ("step", "loss", "val_acc") if event.get(k) is not None})
        now = time.monotonic()
        if now - state.get("drawn", 0.0) < 0.2:  # a redraw per event would flood a log
            return
        state["drawn"] = now
        total = state.get("total") or 1
        done = min(1.0, (state.get("step", 0) + 1) / total)
        bar = "#" * int(done * 30)
        extra = f" loss {state['loss']:.4f}" if "loss" in state else ""
        extra += f" val_acc {state['val_acc']:.3f}" if "val_acc" in state else ""
        sys.stderr.write(f"\r[{bar:<30}] {done:6.1%} step {state.get('step', 0)}/{total}{extra}   ")
        sys.stderr.flush()


def _read_config(path: str, command: str) -> Any:
    """The JSON config at ``path`` ('-': standard input), or None after saying why it cannot be read."""
    try:
        return json.loads(Path(path).read_text()) if path != "-" else json.load(sys.stdin)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"deepscope {command}: cannot read {path}: {exc}", file=sys.stderr)
        return None


def say_findings(summary: dict[str, Any], out=sys.stderr) -> None:
    """The doctor's reading of a run, in words: the last lines a person reads (stdout stays JSON)."""
    findings = summary.get("findings") or []
    if not findings:
        return
    print("What DeepScope sees:", file=out)
    for f in findings:
        evidence = f.get("evidence") or {}
        look = ", ".join(str(evidence[k]) for k in ("chart", "stat", "layer") if evidence.get(k))
        where = f"; look at {look}" + (f" at step {f['step']}" if f.get("step") is not None else "") if look else ""
        lesson = f"; the lesson {f['lesson']} teaches it" if f.get("lesson") else ""
        print(f"  {f['severity']:7}  {f['title']}. {f['detail'].rstrip('.')}{where}{lesson}.", file=out)


def cmd_run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from deepscope.engine.config import RunConfig, describe_errors

    raw = _read_config(args.config, "run")
    if raw is None:
        return 2
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        for err in describe_errors(exc):
            print(f"invalid config: {err['msg']}", file=sys.stderr)
        return 2

    from deepscope.engine.threads import freeze_imports, keep_freed_memory, one_torch_thread, set_thread_env

    set_thread_env()  # the workers' setup, so this run's numbers match the same run in the service
    from deepscope.engine import train

    one_torch_thread()
    keep_freed_memory()
    freeze_imports()
    sink = open(args.events, "w") if args.events else None  # noqa: SIM115 - closed below
    state: dict[str, Any] = {}
    import orjson

    def emit(event: dict[str, Any]) -> None:
        if sink:
            sink.write(orjson.dumps(event).decode() + "\n")
        _progress(event, state)

    try:
        result = train(cfg, emit)
    finally:
        if sink:
            sink.close()
    state["drawn"] = 0.0
    _progress({"type": EventType.EVAL}, state)
    sys.stderr.write("\n")
    say_findings(result["summary"])
    print(json.dumps({"name": cfg.display_name(), "status": result["status"], "error": result["error"],
                      "summary": result["summary"]}, indent=2))
    return 0 if result["status"] in (Status.COMPLETED, Status.DIVERGED) else 1


def cmd_submit(args: argparse.Namespace) -> int:
    """A config to a running server (deepscope.client); with --follow, its progress until it ends."""
    from deepscope.client import ApiError, DeepScope

    raw = _read_config(args.config, "submit")
    if raw is None:
        return 2
    with DeepScope(args.server, token=args.token) as ds:
        try:
            run = ds.submit(raw)
        except ApiError as exc:
            where = f"{exc.field}: " if exc.field and exc.field not in exc.message else ""
            print(f"deepscope submit: {where}{exc.message}", file=sys.stderr)
            return 2 if exc.status == 422 else 1
        except Exception as exc:  # httpx's connection errors: say where we tried
            print(f"deepscope submit: cannot reach {args.server}: {exc}", file=sys.stderr)
            return 1
        print(f"run {run['id']} ({run['name']}): {run['status']} at {args.server}/api/runs/{run['id']}",
              file=sys.stderr)
        if not args.follow:
            print(json.dumps(run, indent=2))
            return 0
        state: dict[str, Any] = {}
        for event in ds.stream(run["id"]):
            _progress(event, state)
        sys.stderr.write("\n")
        final = ds.wait(run["id"])
        say_findings(final["summary"])
    print(json.dumps({"id": final["id"], "name": final["name"], "status": final["status"],
                      "error": final["error"], "summary": final["summary"]}, indent=2))
    return 0 if final["status"] in (Status.COMPLETED, Status.DIVERGED) else 1


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    import deepscope.app.main  # noqa: F401 - imported before the heap is frozen (below)
    from deepscope.app.serving import uvicorn_options
    from deepscope.app.settings import get_settings
    from deepscope.engine.threads import freeze_imports

    # The service imports torch and numba too (the config's checks, the engine's registries): 330,000
    # objects that live as long as it does. A full garbage collection walked them all, 160 ms with the
    # event loop stopped, every few seconds of a class's busiest minute.
    freeze_imports()

    settings = get_settings()
    if args.forwarded_allow_ips is not None:
        settings.trusted_proxies = [ip.strip() for ip in args.forwarded_allow_ips.split(",") if ip.strip()]
    uvicorn.run("deepscope.app.main:create_app", factory=True, host=args.host or settings.host,
                port=args.port or settings.port, log_level="info", **uvicorn_options(settings))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """A watched run written to a file (deepscope.watch without a server) into a server, or this machine's store."""
    import pathlib

    path = pathlib.Path(args.file)
    if not path.is_file():
        print(f"deepscope import: no file {path}", file=sys.stderr)
        return 2
    if args.server:
        from deepscope.client import ApiError, DeepScope

        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not lines or lines[0].get("deepscope") != "watched run":
            print(f"deepscope import: {path} is not a run written by deepscope.watch", file=sys.stderr)
            return 2
        with DeepScope(args.server, token=args.token) as ds:
            try:
                run = ds.create_watched(lines[0]["name"][:80], lines[0]["config"])
                for start in range(1, len(lines), 200):
                    ds.append_raw(run["id"], json.dumps({"events": lines[start:start + 200]}).encode())
            except ApiError as exc:
                print(f"deepscope import: the server refused it: {exc.message}", file=sys.stderr)
                return 1
        print(f"imported as run {run['id']}: {args.server}/#run={run['id']}")
        return 0
    from deepscope.app.hub import Hub
    from deepscope.app.service import RunService
    from deepscope.app.settings import get_settings
    from deepscope.app.store import Store

    store = Store(get_settings().db_url)
    service = RunService(store, Hub(), executor=None)  # type: ignore[arg-type] - an import trains nothing
    try:
        run = service.watched.import_file(path)
    except ValueError as exc:
        print(f"deepscope import: {exc}", file=sys.stderr)
        return 2
    finally:
        service.close()
        store.close()
    print(f"imported as run {run['id']} ({run['status']}); deepscope serve shows it")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Retention, orphaned events and the space back, on this machine's store (DEEPSCOPE_DATABASE_URL)."""
    from deepscope.app import housekeeping
    from deepscope.app.settings import get_settings
    from deepscope.app.store import Store

    settings = get_settings()
    days = settings.retention_days if args.older_than_days is None else args.older_than_days
    if days < 0:
        print(f"deepscope gc: --older-than-days must be 0 or more, not {days:g}", file=sys.stderr)
        return 2
    store = Store(settings.db_url)
    try:
        done = housekeeping.gc(store, days)
    finally:
        store.close()
    print(f"deleted {done['expired_runs']} runs finished more than {days:g} days ago" if days > 0
          else "deleted no runs by age (no retention: DEEPSCOPE_RETENTION_DAYS or --older-than-days)")
    print(f"deleted the events of {done['orphaned_event_runs']} runs deleted earlier; compressed "
          f"{done['packed_runs']} finished runs stored uncompressed")
    print(f"the store: {done['bytes_before'] / 1e6:.1f} MB before, {done['bytes_after'] / 1e6:.1f} MB after")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from deepscope.app.executors.celery_worker import run_worker

    return run_worker(queues=args.queues, concurrency=args.concurrency)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepscope", description="See why deep networks train or fail to train.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="the playground and API (default http://127.0.0.1:8000)")
    p.add_argument("--host", help="address to listen on (default DEEPSCOPE_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default DEEPSCOPE_PORT or 8000)")
    p.add_argument("--forwarded-allow-ips", metavar="IPS",
                   help="comma-separated addresses of reverse proxies whose X-Forwarded-For is believed "
                        "(default DEEPSCOPE_TRUSTED_PROXIES, or none)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("run", help="train one config in this process, headless")
    p.add_argument("config", help="a JSON run config ('-' reads standard input); {} is valid")
    p.add_argument("--events", help="write every event as one JSON line to this file")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("submit", help="send a config to a running server (the playground or a workshop)")
    p.add_argument("config", help="a JSON run config ('-' reads standard input)")
    p.add_argument("--server", default="http://127.0.0.1:8000", help="the server's URL (default %(default)s)")
    p.add_argument("--token", help="the workshop's class token, when the server asks for one")
    p.add_argument("--follow", action="store_true", help="show its progress until it ends, then its summary")
    p.set_defaults(func=cmd_submit)
    sub.add_parser("lessons", help="train every lesson at many seeds and report how often each check held "
                                   "(deepscope lessons --help)")
    sub.add_parser("doctor", help="the doctor's sweep: configs with and without each pathology, over seeds, and "
                                  "each finding's precision and recall (deepscope doctor --help)")
    p = sub.add_parser("import", help="load a run that deepscope.watch wrote to a file (no server was reachable)")
    p.add_argument("file", help="the file, in DEEPSCOPE_DATA_DIR/watched/ by default")
    p.add_argument("--server", help="send it to this server instead of this machine's store")
    p.add_argument("--token", help="the workshop's class token, when the server asks for one")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("gc", help="delete runs past the retention and events left by deleted runs, compress "
                                  "old uncompressed runs, then VACUUM")
    p.add_argument("--older-than-days", type=float, metavar="DAYS",
                   help="delete the runs that finished more than DAYS ago (default DEEPSCOPE_RETENTION_DAYS; "
                        "0 deletes none by age)")
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser("worker", help="a scale-out worker: takes runs from Redis (DEEPSCOPE_REDIS_URL)")
    p.add_argument("--queues", default="runs", help="comma-separated queues: runs (CPU) and/or gpu")
    p.add_argument("--concurrency", type=int, default=None, help="runs at once (default: one per core)")
    p.set_defaults(func=cmd_worker)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lessons"]:  # its own options: deepscope lessons --help
        from deepscope.app.lesson_sweep import main as lessons_main

        return lessons_main(argv[1:])
    if argv[:1] == ["doctor"]:
        from deepscope.engine.doctor.sweep import main as doctor_main

        return doctor_main(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
