"""Where a watched run's events go (``deepscope.watch``; docs/watch.md): a DeepScope server, sent from a
background thread so the training step never waits for the network, or a file in the data directory.

``RemoteSink`` numbers each event (``seq``) as it is handed over and keeps it until the server has it:
up to MEMORY_EVENTS in memory, then in a spill file beside the data directory's watched runs, up to
SPILL_BYTES. While the server is away, training goes on and the events wait; when it is back they are
sent in order (the server stores an event sent twice once). Only past both bounds are events dropped,
and never numbered, so what the server has stays gapless; the run's summary says how many.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson

MEMORY_EVENTS = 20_000
SPILL_BYTES = 512 * 2**20
BATCH_EVENTS = 200
BATCH_BYTES = 4 * 2**20
HEARTBEAT_S = 10.0


def watched_dir(data_dir: Path | None = None) -> Path:
    base = data_dir or Path(os.environ.get("DEEPSCOPE_DATA_DIR") or Path.home() / ".deepscope")
    return base / "watched"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:60].strip("-") or "run"


def _say(message: str) -> None:
    print(f"deepscope.watch: {message}", file=sys.stderr, flush=True)


class FileSink:
    """Events as JSON lines in DATA_DIR/watched/<time>-<name>.jsonl, after a header naming the run: what
    ``deepscope serve`` loads when it starts, and ``deepscope import FILE`` loads on demand."""

    def __init__(self, name: str, config: dict[str, Any], data_dir: Path | None = None) -> None:
        folder = watched_dir(data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{_slug(name)}.jsonl"
        self._file = self.path.open("ab")
        self._file.write(orjson.dumps({"deepscope": "watched run", "name": name, "config": config}) + b"\n")
        self._seq = 0
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(orjson.dumps({"seq": self._seq, **event}) + b"\n")
            self._seq += 1

    def close(self, timeout: float = 0.0) -> bool:
        with self._lock:
            self._file.close()
        return True


class RemoteSink:
    """Sends a run's events to ``client``'s server (``DeepScope``), in order, from a background thread."""

    def __init__(self, client: Any, run_id: str, spill_dir: Path | None = None) -> None:
        self.client, self.run_id = client, run_id
        self._memory: deque[bytes] = deque()
        self._spill_path = watched_dir(spill_dir) / f".spill-{run_id}.jsonl"
        self._spill: Any = None          # open for appending while spilling
        self._spill_read = 0             # bytes of the spill file already sent
        self._spill_size = 0
        self._seq = 0
        self.dropped = 0
        self._lock = threading.Condition()
        self._closing = False
        self._offline_since: float | None = None
        self.refused = False
        self._thread = threading.Thread(target=self._run, name="deepscope-watch-sender", daemon=True)
        self._thread.start()

    # -- the training thread's side: never waits for the network -----------------------------------
    def put(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self._spill is None and len(self._memory) < MEMORY_EVENTS:
                self._memory.append(orjson.dumps({"seq": self._seq, **event}))
            elif self._spill_size < SPILL_BYTES:
                line = orjson.dumps({"seq": self._seq, **event}) + b"\n"
                if self._spill is None:
                    self._spill_path.parent.mkdir(parents=True, exist_ok=True)
                    self._spill = self._spill_path.open("ab")
                self._spill.write(line)
                self._spill.flush()
                self._spill_size += len(line)
            else:
                self.dropped += 1
                return
            self._seq += 1
            self._lock.notify()

    def close(self, timeout: float = 30.0) -> bool:
        """Send what is left (waiting at most ``timeout`` seconds); True when the server has everything."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout)
        with self._lock:
            left = len(self._memory) + (self._spill_size - self._spill_read > 0)
        if left:
            _say(f"the server did not take every event before the end; they wait in {self._spill_path}")
            self._spill_everything()
        return not left

    # -- the sender thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        delay, last_sent = 0.5, time.monotonic()
        while True:
            with self._lock:
                if not self._memory and not self._pending_spill():
                    if self._closing:
                        return
                    self._lock.wait(HEARTBEAT_S - (time.monotonic() - last_sent) if not self._closing else 0.1)
                batch, source = self._next_batch()
            if not batch and time.monotonic() - last_sent < HEARTBEAT_S:
                continue
            if self._send(batch):
                self._sent(len(batch), source)
                delay, last_sent = 0.5, time.monotonic()
            else:
                if self.refused or (self._closing and time.monotonic() - last_sent > 30):
                    return
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    def _pending_spill(self) -> bool:
        return self._spill_size > self._spill_read

    def _next_batch(self) -> tuple[list[bytes], str]:
        """The oldest events: memory first, then the spill file, which holds only newer ones."""
        if self._memory:
            batch, size = [], 0
            for raw in self._memory:
                if len(batch) >= BATCH_EVENTS or size + len(raw) > BATCH_BYTES:
                    break
                batch.append(raw)
                size += len(raw)
            return batch, "memory"
        if self._pending_spill():
            with self._spill_path.open("rb") as f:
                f.seek(self._spill_read)
                lines = [f.readline().rstrip(b"\n") for _ in range(BATCH_EVENTS)]
            return [line for line in lines if line], "spill"
        return [], "memory"

    def _send(self, batch: list[bytes]) -> bool:
        from deepscope.client.api import ApiError

        body = b'{"events":[' + b",".join(batch) + b"]}"
        try:
            answer = self.client.append_raw(self.run_id, body)
        except ApiError as exc:
            if exc.status == 429 or exc.status >= 500:
                time.sleep(2.0 if exc.status == 429 else 0.0)
                return False
            # refused for good (a bug, or the run ended on the server): keep the rest on disk, say so once
            _say(f"the server refused this run's events ({exc.status}: {exc.message}); the rest is kept in "
                 f"{self._spill_path}")
            self.refused = True
            return False
        except Exception as exc:  # the network, or the server away: keep the events and try again
            if self._offline_since is None:
                self._offline_since = time.monotonic()
                _say(f"the DeepScope server is not answering ({type(exc).__name__}); training goes on and its "
                     "events wait to be sent")
            return False
        if self._offline_since is not None:
            _say(f"the server is back after {time.monotonic() - self._offline_since:.0f} s; sending what waited")
            self._offline_since = None
        return answer is not None

    def _sent(self, n: int, source: str) -> None:
        with self._lock:
            if source == "memory":
                for _ in range(n):
                    self._memory.popleft()
                return
            with self._spill_path.open("rb") as f:
                f.seek(self._spill_read)
                for _ in range(n):
                    self._spill_read += len(f.readline())
            if not self._pending_spill() and self._spill is not None:  # all sent: back to memory
                self._spill.close()
                self._spill = None
                self._spill_path.unlink(missing_ok=True)
                self._spill_read = self._spill_size = 0

    def _spill_everything(self) -> None:
        """At the end, what the server did not take stays on disk, in order: the older events from memory
        first, then what the spill file still held."""
        with self._lock, contextlib.suppress(OSError):
            if self._spill is not None:
                self._spill.close()
                self._spill = None
            rest = b""
            if self._spill_path.exists():
                with self._spill_path.open("rb") as f:
                    f.seek(self._spill_read)
                    rest = f.read()
            self._spill_path.parent.mkdir(parents=True, exist_ok=True)
            self._spill_path.write_bytes(b"".join(raw + b"\n" for raw in self._memory) + rest)
            self._memory.clear()
