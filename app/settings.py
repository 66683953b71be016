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
    max_active_per_client: int = Field(0, ge=0, description="queued + running runs one client may have (0: no limit)")
    token: str | None = Field(None, description="workshop mode: API and WebSocket need 'Authorization: Bearer "
                                                "<token>', and a client may cancel or delete only its own runs")
    instructor_token: str | None = Field(None, description="opens /instructor: every run with its owner, and "
                                                           "cancel or delete any of them")
    allowed_origins: list[str] = Field(default_factory=list,
                                       description="extra origins allowed to open WebSockets (same origin always is)")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.executor == "celery" and not self.redis_url:
            raise ValueError("DEEPSCOPE_EXECUTOR=celery needs DEEPSCOPE_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'deepscope.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
