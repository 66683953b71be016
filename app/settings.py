"""One settings object, from ``DEEPSCOPE_*`` environment variables (or a .env file)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deepscope.engine.paths import default_data_dir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEEPSCOPE_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="address `deepscope serve` listens on")
    port: int = Field(8000, ge=1, le=65535, description="port `deepscope serve` listens on")
    data_dir: Path = Field(default_factory=default_data_dir,
                           description="the database and user-provided dataset files live here")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in data_dir/deepscope.db")
    executor: Literal["local", "celery"] = Field("local", description="local worker processes, or Celery over Redis")
    redis_url: str | None = Field(None, description="Redis for the celery executor, e.g. redis://127.0.0.1:6379/0")
    replica_id: str | None = Field(None, description="this app replica's name in the Redis consumer group "
                                                     "(default: the host name); keep it stable across restarts")
    workers: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)), ge=1, le=64,
                         description="local worker processes (one torch thread each)")
    run_time_limit_s: float = Field(900.0, gt=0, description="a run still training after this many seconds is stopped")
    max_queued: int = Field(200, ge=1, description="runs waiting for a worker, over everyone; more are refused (429)")
    max_active_per_client: int | None = Field(None, ge=0, description="queued + running runs one client may have "
                                                                      "(0: no limit; default 3 with a token, else 0)")
    max_active_per_address: int | None = Field(None, ge=0, description="trainings queued or running from one network "
                                                                       "address (0: no limit; default half of "
                                                                       "max_queued with a token, else 0)")
    token: str | None = Field(None, description="workshop mode: API and WebSocket need 'Authorization: Bearer "
                                                "<token>', and a client may cancel or delete only its own runs")
    instructor_token: str | None = Field(None, description="opens /instructor: every run with its owner, and "
                                                           "cancel or delete any of them")
    allowed_origins: list[str] = Field(default_factory=list,
                                       description="extra origins allowed to open WebSockets and send changes "
                                                   "(the server's own origin always is)")
    secret_key: str | None = Field(None, description="signs client identities; default: generated once and kept "
                                                     "in data_dir/secret_key (replicas without a shared data dir "
                                                     "must share one)")
    allowed_hosts: list[str] | None = Field(None, description="host names the server answers to (a JSON list; "
                                                               "'*' any, '*.example.org' a domain); default: "
                                                               "localhost, 127.0.0.1 and ::1, or any host with a "
                                                               "token (app/limits.py)")
    trusted_proxies: list[str] = Field(default_factory=list,
                                       description="addresses of reverse proxies whose X-Forwarded-For and "
                                                   "X-Forwarded-Proto are believed (a JSON list, or '*'); "
                                                   "default: none, so a client cannot choose its address")
    max_body_bytes: int = Field(2**20, ge=1024, description="the largest request body outside a watched run's "
                                                             "events (413 past it, refused before it is read)")
    body_timeout_s: float = Field(30.0, gt=0, description="a request body that stalls this long is refused (408)")
    header_timeout_s: float = Field(10.0, gt=0, description="a connection that has not sent a whole request "
                                                            "head in this time is closed")
    max_connections: int = Field(1000, ge=1, description="open connections, WebSockets included; more are "
                                                          "answered 503 and closed")
    first_looks: bool = Field(True, description="a run that waits for a worker gets its step 0 computed at once "
                                                "by a busy worker, between its own steps (local executor)")
    max_run_mb: float = Field(16.0, ge=1, description="what one run's captures, boundaries and samples may store; "
                                                      "past it they thin evenly over the steps left (the run's "
                                                      "summary says so)")
    storage_quota_client_mb: float | None = Field(None, ge=0, description="what one client's finished runs may "
                                                                         "store before it may start no more "
                                                                         "(0: no limit; default 200 with a "
                                                                         "token, else 0)")
    storage_quota_mb: float | None = Field(None, ge=0, description="what all finished runs may store before the "
                                                                  "server starts no more (0: no limit; default "
                                                                  "5000 with a token, else 0)")
    retention_days: float = Field(0.0, ge=0, description="finished runs older than this are deleted, hourly and by "
                                                         "`deepscope gc` (0: kept until deleted)")
    max_run_memory_mb: int = Field(2048, ge=256, description="a run whose estimated memory exceeds this is refused "
                                                            "(422); one that grows past it while training fails")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        # A workshop shares its workers: one client, or one machine rotating identities, never fills the server.
        if self.max_active_per_client is None:
            self.max_active_per_client = 3 if self.token else 0
        if self.max_active_per_address is None:
            self.max_active_per_address = max(1, self.max_queued // 2) if self.token else 0
        if self.storage_quota_client_mb is None:
            self.storage_quota_client_mb = 200.0 if self.token else 0.0
        if self.storage_quota_mb is None:
            self.storage_quota_mb = 5000.0 if self.token else 0.0
        if self.executor == "celery" and not self.redis_url:
            raise ValueError("DEEPSCOPE_EXECUTOR=celery needs DEEPSCOPE_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'deepscope.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
