"""Alembic environment: URL from settings (or ``-x url=…`` / config), ``compare_type=True``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from backend.db import account_models  # noqa: F401  (registers the accounts tables)
from backend.db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        from contracts.settings import sqlalchemy_url

        return sqlalchemy_url(url)  # as DATABASE_URL accepts it
    from backend.settings import Settings

    return Settings().DATABASE_URL


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    section = config.get_section(config.config_ini_section, {})
    section["sqlalchemy.url"] = _url()
    connectable = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
