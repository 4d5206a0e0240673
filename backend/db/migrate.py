"""``alembic upgrade head``: the one way the schema is created (local run, stack, tests)."""

from __future__ import annotations

from pathlib import Path

BACKEND_DIR = Path(__file__).resolve().parents[1]


def migrate(url: str) -> None:
    """``alembic upgrade head`` against ``url``."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(BACKEND_DIR / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
