"""A PostgreSQL or Redis of a test's own, on a port of its own, that the test may stop and start again
(fault tests). The machine's own servers on 5432 and 6379 are never touched."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.server import free_port

PG_BIN = next((Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None) \
    if Path("/usr/lib/postgresql").exists() else None


def _wait_port(port: int, up: bool, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            answered = s.connect_ex(("127.0.0.1", port)) == 0
        if answered == up:
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not {'open' if up else 'close'} in {timeout} s")


class OwnPostgres:
    """initdb in a temporary directory (as the postgres user when the tests run as root: initdb refuses
    root), trust authentication, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        # Its own directory in /tmp: the postgres user cannot enter root's pytest directories.
        self.root = Path(tempfile.mkdtemp(prefix="deepscope-pg-"))
        self.dir = self.root / "pg"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        exe = str(PG_BIN / tool) if PG_BIN and (PG_BIN / tool).exists() else tool
        command = [exe, *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> OwnPostgres:
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(self.dir / "log"), "-w", "start", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off")
        _wait_port(self.port, up=True)
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-m", "immediate", "-w", "stop")
        _wait_port(self.port, up=False)

    def __enter__(self) -> OwnPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # stopped already
        shutil.rmtree(self.root, ignore_errors=True)


class OwnRedis:
    """redis-server with no persistence, so a restart comes back empty (as a cache-only Redis does)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> OwnRedis:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        _wait_port(self.port, up=True)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
            _wait_port(self.port, up=False)

    def __enter__(self) -> OwnRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
