"""The Celery app and its one task. Workers (``deepscope worker``) import this module; so does the
service, to send tasks. Events go onto one Redis Stream per run, not through Celery results.

Delivery is at most once on purpose: a task is acknowledged when a worker takes it (no acks_late),
because with acks_late a run longer than Redis's visibility timeout is started a second time on
another worker (docs/measured.md). A worker that dies mid-run stops its heartbeat, and the service marks
the run failed. A run is also claimed in Redis before it starts, so it never trains twice at once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_process_init

from deepscope.app.executors import megabytes, stop_check
from deepscope.app.executors import redis_keys as K
from deepscope.app.executors.outbox import Outbox
from deepscope.app.executors.policy import warm_imports
from deepscope.engine.threads import freeze_imports, keep_freed_memory, one_torch_thread

QUEUES = ("runs", "gpu")


def make_celery(redis_url: str) -> Celery:
    app = Celery("deepscope", broker=redis_url)
    app.conf.update(
        task_acks_late=False,
        worker_prefetch_multiplier=1,       # a busy worker leaves queued runs to idle ones
        task_default_queue="runs",
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options={"visibility_timeout": 24 * 3600},
    )
    app.task(name="deepscope.train_run", bind=True)(_train_task)
    return app


def _redis() -> redis.Redis:
    # Timeouts, so that a Redis out of reach fails a write at once instead of holding the run's step
    return redis.Redis.from_url(os.environ["DEEPSCOPE_REDIS_URL"], socket_connect_timeout=2, socket_timeout=10)


@worker_process_init.connect
def _one_thread(**_: Any) -> None:
    one_torch_thread()
    keep_freed_memory()


def _train_task(task: Any, run_id: str, config: dict[str, Any], time_limit_s: float,
                memory_limit_mb: float | None = None, stored_limit_mb: float | None = None) -> str:
    from deepscope.engine import train
    from deepscope.engine.paths import default_data_dir

    warm_imports()  # here, not at process start: a child imports the engine with its first task
    freeze_imports()

    r = _redis()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    claim = f"{worker}|{time.time()}"
    # 1) claim the run: if a cancel (or another delivery) got there first, there is nothing to do
    if not r.set(K.claim(run_id), claim, nx=True, ex=K.FLAG_TTL_S):
        return "skipped"
    outbox = Outbox(r, run_id)  # events wait here through a Redis outage (app/executors/outbox.py)
    # 2) heartbeat and cancel flag, polled on a thread so a step costs no Redis round trip. Each beat
    # also registers the run (a Redis restarted without persistence forgot it: the service's readers
    # find its stream again, its reconciler sees an owner) and sends what waits in the outbox.
    stop = threading.Event()
    cancelled = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                pipe = r.pipeline()
                pipe.set(K.heartbeat(run_id), worker, ex=K.HEARTBEAT_TTL_S)
                pipe.sadd(K.ACTIVE, run_id)
                pipe.set(K.claim(run_id), claim, nx=True, ex=K.FLAG_TTL_S)
                pipe.exists(K.cancel(run_id))
                *_, flag = pipe.execute()
                if flag:
                    cancelled.set()
                outbox.drain()
            except redis.RedisError:
                pass  # Redis away: the run trains on, its events wait in the outbox
            stop.wait(0.1 if not cancelled.is_set() else K.HEARTBEAT_EVERY_S)

    r.set(K.heartbeat(run_id), worker, ex=K.HEARTBEAT_TTL_S)
    thread = threading.Thread(target=beat, name="deepscope-heartbeat", daemon=True)
    thread.start()
    limits = stop_check(cancelled.is_set, time_limit_s, memory_limit_mb)

    def should_stop() -> bool | str:
        return outbox.stop_reason() or limits()

    # 3) train; the engine reports failures as a status event, so this returns normally
    try:
        result = train(config, outbox.put, should_stop, data_dir=default_data_dir(),
                       max_stored_bytes=megabytes(stored_limit_mb))
    finally:
        stop.set()
        thread.join(timeout=5)
        outbox.close()
        try:
            r.delete(K.heartbeat(run_id))
            r.expire(K.stream(run_id), K.STREAM_TTL_S)
        except redis.RedisError:
            pass  # the stream expires once the service has stored the run (celery_executor.py)
    return result["status"]
