"""``deepscope worker``: a Celery worker serving the run queues, warm (torch imported before it forks)."""

from __future__ import annotations

import os
import sys


def run_worker(queues: str = "runs", concurrency: int | None = None) -> int:
    from deepscope.app.settings import get_settings

    settings = get_settings()
    if not settings.redis_url:
        print("deepscope worker needs DEEPSCOPE_REDIS_URL (e.g. redis://127.0.0.1:6379/0)", file=sys.stderr)
        return 2
    from deepscope.engine.threads import set_thread_env

    set_thread_env()
    os.environ["DEEPSCOPE_REDIS_URL"] = settings.redis_url
    # Import torch and the engine in the parent, so every forked child starts with them loaded.
    from deepscope.app.executors.policy import warm_imports

    warm_imports()
    from deepscope.app.executors.celery_app import QUEUES, make_celery

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in wanted if q not in QUEUES]
    if unknown:
        print(f"deepscope worker: unknown queue(s) {', '.join(unknown)}; choose from {', '.join(QUEUES)}",
              file=sys.stderr)
        return 2
    app = make_celery(settings.redis_url)
    # A name per process (Celery's default is celery@HOST): two workers on one machine stay two in the
    # replies the instructor's worker list is made of.
    argv = ["worker", "-Q", ",".join(wanted), "--pool=prefork", "--loglevel=INFO", "--without-gossip",
            "--without-mingle", "-c", str(concurrency or os.cpu_count() or 1), "-n", f"deepscope-{os.getpid()}@%h"]
    app.worker_main(argv=argv)
    return 0
