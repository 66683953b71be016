"""The body of a local worker process. Imported by the forkserver before any worker forks, so torch,
its optimizer machinery, the engine and its compiled kernels are loaded once and every worker starts
warm (``policy.warm_imports``)."""

from __future__ import annotations

import os

from deepscope.engine.threads import one_torch_thread, set_thread_env

set_thread_env()

import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402

from deepscope.app.executors import megabytes, stop_check  # noqa: E402
from deepscope.app.executors.local import CANCEL_SET  # noqa: E402
from deepscope.app.executors.policy import warm_imports  # noqa: E402
from deepscope.engine import train  # noqa: E402

warm_imports()


def worker_main(conn: Any, cancel_flag: Any, data_dir: str) -> None:
    """Serve runs from ``conn`` until it sends None:
    ('run', run_id, config, time_limit_s, memory_limit_mb, stored_limit_mb)."""
    one_torch_thread()
    send_lock = threading.Lock()

    def send(msg: tuple) -> None:
        with send_lock:  # the telemetry thread emits too
            conn.send(msg)

    send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the service went away: so does this worker
            return
        if msg is None:
            return
        _, run_id, config, time_limit, memory_limit, stored_limit = msg
        should_stop = stop_check(lambda: cancel_flag.value == CANCEL_SET, time_limit, memory_limit)

        def emit(event: dict[str, Any], run_id: str = run_id) -> None:
            send(("event", run_id, orjson.dumps(event)))

        train(config, emit, should_stop, data_dir=Path(data_dir), max_stored_bytes=megabytes(stored_limit))
        send(("done", run_id))
