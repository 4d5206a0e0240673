"""DATABASE_URL is accepted the same way by every service (``contracts.settings.sqlalchemy_url``):
``postgresql://`` and ``postgres://`` mean the psycopg 3 driver, in the backend and its CLI as in
the Airflow tasks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from backend.db.session import Database
from backend.embedded import EmbeddedPostgres
from backend.settings import Settings
from contracts.settings import CommonSettings, sqlalchemy_url

AIRFLOW_DIR = Path(__file__).resolve().parents[2] / "airflow"
if str(AIRFLOW_DIR) not in sys.path:  # traffic_pipeline without `pip install -e airflow`
    sys.path.insert(0, str(AIRFLOW_DIR))

from traffic_pipeline.config import PipelineSettings  # noqa: E402
from traffic_pipeline.db import get_engine  # noqa: E402

PSYCOPG = "postgresql+psycopg://u:p@db.example:5432/traffic"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db.example:5432/traffic", PSYCOPG),
        ("postgres://u:p@db.example:5432/traffic", PSYCOPG),
        (PSYCOPG, PSYCOPG),
        ("postgresql+psycopg2://u:p@db.example/traffic", "postgresql+psycopg2://u:p@db.example/traffic"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_sqlalchemy_url(url: str, expected: str) -> None:
    assert sqlalchemy_url(url) == expected


@pytest.mark.parametrize(
    "url", ["postgresql://u:p@db.example:5432/traffic", "postgres://u:p@db.example:5432/traffic"]
)
def test_every_services_settings_read_the_same_url(url: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    backend = Settings(_env_file=None, SECRETS_DIR=tmp_path)
    assert backend.DATABASE_URL == PSYCOPG
    assert PipelineSettings(_env_file=None).DATABASE_URL == PSYCOPG
    assert CommonSettings(_env_file=None).DATABASE_URL == PSYCOPG


def test_both_sides_open_a_postgresql_url(postgres: EmbeddedPostgres) -> None:
    """Without psycopg2 installed, a plain ``postgresql://`` URL opens on both sides."""
    plain = postgres.url.replace("postgresql+psycopg://", "postgresql://")
    assert plain != postgres.url
    db = Database(plain, workers=1, video_workers=1, file_workers=1)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.close()
    engine = get_engine(plain)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
