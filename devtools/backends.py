"""The real Redis and PostgreSQL this machine runs, isolated per test session."""

from __future__ import annotations

import uuid

import psycopg

PG_ADMIN = "postgresql://127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/9"


def pg_schema_url() -> tuple[str, str]:
    """A fresh schema in the `test` database, and a SQLAlchemy URL whose connections use it."""
    schema = f"ds_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"PostgreSQL does not answer on 127.0.0.1:5432 (database test): {exc}") from exc
    return schema, f"postgresql+psycopg://127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


def drop_schema(schema: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def flush_redis(url: str = REDIS_URL) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).flushdb()
    except redis.RedisError as exc:
        raise RuntimeError(f"Redis does not answer on 127.0.0.1:6379: {exc}") from exc


class Worker:
    """`deepscope worker` in a subprocess, as an instructor would start one on another machine."""

    def __init__(self, data_dir, redis_url: str = REDIS_URL, concurrency: int = 1) -> None:
        import os
        import subprocess
        import sys
        import threading

        env = {**os.environ, "DEEPSCOPE_REDIS_URL": redis_url, "DEEPSCOPE_DATA_DIR": str(data_dir),
               "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "deepscope.app.cli", "worker", "--concurrency", str(concurrency)],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log: list[str] = []
        self.ready = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.log.append(line)
                if " ready." in line:
                    self.ready.set()

        threading.Thread(target=read, daemon=True).start()

    def wait_ready(self, timeout: float = 60) -> Worker:
        if not self.ready.wait(timeout):
            self.stop()
            raise RuntimeError("worker did not start:\n" + "".join(self.log[-30:]))
        return self

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.kill()
            self.proc.wait(timeout=10)
