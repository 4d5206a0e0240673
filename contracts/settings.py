"""The settings every service shares (DESIGN.md, Configuration): one pydantic-settings base
class, read from the environment (and ``.env``) once at start-up, then passed down.

Each service subclasses it with its own names: ``backend.settings.Settings`` (the REST API and the
hub), ``backend.services.redis_consumer.ConsumerSettings`` (the bridge),
``traffic_pipeline.config.PipelineSettings`` (the Airflow tasks), ``spark.streaming.settings.
SparkSettings`` (the Spark application). A name means the same thing, with the same default, in
every service; ``.env.example`` lists them all (a test checks it against these classes).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .messages import DEFAULT_SPEED_LIMIT_KMH

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/traffic"


def sqlalchemy_url(url: str) -> str:
    """A PostgreSQL URL as SQLAlchemy opens it with psycopg 3 (the backend's and Airflow's driver):
    ``postgresql://`` and ``postgres://`` -> ``postgresql+psycopg://``; any other URL as is."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class CommonSettings(BaseSettings):
    """Names shared by several services."""

    # An empty variable (``MODEL_PATH=`` in .env) means "not set": the default applies.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    DATABASE_URL: str = DEFAULT_DATABASE_URL
    REDIS_HOST: str = "127.0.0.1"
    REDIS_PORT: int = 6379
    # Redis AUTH password of every client (empty: no AUTH; the server's `requirepass`)
    REDIS_PASSWORD: str = ""
    BACKEND_URL: str = "http://127.0.0.1:8686"
    # Shared secret of the bridge -> backend ingest WebSockets (at least 32 characters, never an
    # example value). Empty: generated once into SECRETS_DIR/internal_token, which the backend
    # and the bridge both read (one machine); several hosts: set the same value everywhere.
    INTERNAL_TOKEN: str = ""
    # Where secrets generated when unset are kept, one 0600 file each (relative: from the cwd)
    SECRETS_DIR: Path = Path(".local/secrets")
    VIDEO_STORAGE_PATH: Path = Path("video_storage")
    # The detector model; empty: the processing library's default search (README)
    MODEL_PATH: str = ""
    # The default speed limit (km/h) of a video without its own
    SPEED_LIMIT_KMH: float = Field(default=DEFAULT_SPEED_LIMIT_KMH, gt=0)

    @field_validator("DATABASE_URL")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        """``postgresql://`` / ``postgres://`` (as libpq, Heroku-style hosts and most tools write
        it) accepted in every service: the psycopg 3 driver named (``sqlalchemy_url``)."""
        return sqlalchemy_url(value)


# Secrets (issue 17): example values and short tokens are refused in every environment.
MIN_TOKEN_LENGTH = 32
# Compared lower-cased with everything but letters and digits removed ("Change_Me" -> "changeme").
EXAMPLE_SECRETS = frozenset(
    {
        "changeme",
        "change",
        "secret",
        "password",
        "passwd",
        "admin",
        "token",
        "example",
        "default",
        "test",
        "demo",
        "internaltoken",
        "yoursecret",
        "replaceme",
        "setme",
        "todo",
        "xxx",
    }
)


def weak_secret(value: str, min_length: int = 0) -> str | None:
    """Why ``value`` may not serve as a secret (empty, an example value such as ``change-me``,
    shorter than ``min_length``), or None when it may."""
    stripped = value.strip()
    if not stripped:
        return "is empty"
    plain = re.sub(r"[^a-z0-9]", "", stripped.lower())
    if plain in EXAMPLE_SECRETS or "changeme" in plain:
        return "is an example value"
    if len(stripped) < min_length:
        return f"is shorter than {min_length} characters"
    return None


def _read_secret(path: Path, wait_s: float = 2.0) -> str:
    """A kept secret; a file another process is still writing (empty) is waited for."""
    deadline = time.monotonic() + wait_s
    while True:
        value = path.read_text().strip()
        if value or time.monotonic() > deadline:
            if not value:
                raise ValueError(f"{path} is empty: delete it to have a new secret generated")
            return value
        time.sleep(0.05)


def ensure_secret(directory: Path | str, name: str, nbytes: int = 32) -> str:
    """The secret ``name`` kept in ``directory`` (a file of that name, mode 0600, the directory
    0700): read when it exists, else generated (``secrets.token_urlsafe``) and created atomically
    (O_EXCL): two services starting together (the backend and the bridge) end up with one value."""
    folder = Path(directory).expanduser()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / name
    if path.exists():
        return _read_secret(path)
    value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: its value wins
        return _read_secret(path)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def resolve_token(name: str, value: str, secrets_dir: Path | str) -> str:
    """A token setting as the services use it: the value set, else the one kept in
    ``secrets_dir`` (generated there on first use, ``ensure_secret``). An example value or one
    shorter than ``MIN_TOKEN_LENGTH`` is refused (ValueError), in every environment."""
    if not value.strip():
        return ensure_secret(secrets_dir, name.lower())
    problem = weak_secret(value, MIN_TOKEN_LENGTH)
    if problem:
        raise ValueError(
            f"{name} {problem}: set a long random value (e.g. `python -c 'import secrets; "
            f"print(secrets.token_urlsafe(32))'`), or leave it unset to have one generated into "
            f"{Path(secrets_dir) / name.lower()}"
        )
    return value.strip()
