"""Settings from the environment (DESIGN.md, Configuration): the same names and defaults as
``backend/settings.py``, read without pydantic-settings so that the Airflow workers need
nothing but the variables."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PipelineSettings:
    database_url: str
    redis_host: str
    redis_port: int
    speed_limit_kmh: float
    video_storage_path: Path
    stall_timeout_s: float
    jpeg_quality: int
    processor_wait_s: float = 300.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> PipelineSettings:
        env = dict(os.environ if env is None else env)
        return cls(
            database_url=env.get(
                "DATABASE_URL", "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/traffic"
            ),
            redis_host=env.get("REDIS_HOST", "127.0.0.1"),
            redis_port=int(env.get("REDIS_PORT", "6379")),
            speed_limit_kmh=float(env.get("SPEED_LIMIT_KMH", "60")),
            video_storage_path=Path(env.get("VIDEO_STORAGE_PATH", "video_storage")),
            stall_timeout_s=float(env.get("PIPELINE_STALL_TIMEOUT_S", "60")),
            jpeg_quality=int(env.get("PIPELINE_JPEG_QUALITY", "90")),
            processor_wait_s=float(env.get("PIPELINE_PROCESSOR_WAIT_S", "300")),
        )

    def redis(self) -> Any:
        """A binary-safe client (no response decoding: frames are raw JPEG)."""
        import redis

        return redis.Redis(
            host=self.redis_host, port=self.redis_port, socket_timeout=30, health_check_interval=30
        )


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` -> ``postgresql+psycopg://`` (psycopg 3 is installed)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def text(value: Any) -> str | None:
    """Redis reply (bytes or str) -> str."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def hash_text(raw: dict[Any, Any]) -> dict[str, str]:
    """HGETALL reply -> {str: str} whatever the client's ``decode_responses``."""
    return {text(k): text(v) for k, v in raw.items()}  # type: ignore[misc]


def default_log(log: logging.Logger | None, name: str) -> logging.Logger:
    return log if log is not None else logging.getLogger(name)
