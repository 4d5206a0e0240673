"""The settings every service shares (DESIGN.md, Configuration): one pydantic-settings base
class, read from the environment (and ``.env``) once at start-up, then passed down.

Each service subclasses it with its own names: ``backend.settings.Settings`` (the REST API and the
hub), ``backend.services.redis_consumer.ConsumerSettings`` (the bridge),
``traffic_pipeline.config.PipelineSettings`` (the Airflow tasks), ``spark.streaming.settings.
SparkSettings`` (the Spark application). A name means the same thing, with the same default, in
every service; ``.env.example`` lists them all (a test checks it against these classes).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .schemas import DEFAULT_SPEED_LIMIT_KMH

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/traffic"


class CommonSettings(BaseSettings):
    """Names shared by several services."""

    # An empty variable (``MODEL_PATH=`` in .env) means "not set": the default applies.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    DATABASE_URL: str = DEFAULT_DATABASE_URL
    REDIS_HOST: str = "127.0.0.1"
    REDIS_PORT: int = 6379
    BACKEND_URL: str = "http://127.0.0.1:8686"
    # Shared secret of the bridge -> backend ingest WebSockets
    INTERNAL_TOKEN: str = "change-me"
    VIDEO_STORAGE_PATH: Path = Path("video_storage")
    # The detector model; empty: the processing library's default search (README)
    MODEL_PATH: str = ""
    # The default speed limit (km/h) of a video without its own
    SPEED_LIMIT_KMH: float = Field(default=DEFAULT_SPEED_LIMIT_KMH, gt=0)
