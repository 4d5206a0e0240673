"""Service secrets (issue 17): example values and short tokens refused in every environment, the
ingest token generated once into SECRETS_DIR and shared by the backend and the bridge, Redis
clients authenticating with REDIS_PASSWORD, the embedded PostgreSQL with a password
(scram-sha-256, an earlier run's trust cluster switched over)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import stat
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from pydantic import ValidationError

from backend.embedded import EmbeddedPostgres, EmbeddedRedis
from backend.services.redis_consumer import ConsumerSettings, redis_client
from backend.settings import Settings
from contracts.settings import MIN_TOKEN_LENGTH, ensure_secret, resolve_token, weak_secret

LONG = "t-" + secrets.token_urlsafe(32)


@pytest.mark.parametrize(
    "value",
    ["", "   ", "change-me", "CHANGE_ME", "changeme", "secret", "password", "admin", "change-me-" + "x" * 40],
)
def test_example_values_are_refused(value, tmp_path):
    assert weak_secret(value, MIN_TOKEN_LENGTH)
    if value.strip():
        with pytest.raises(ValueError, match="INTERNAL_TOKEN"):
            resolve_token("INTERNAL_TOKEN", value, tmp_path)
    else:  # blank: unset, generated
        assert (
            resolve_token("INTERNAL_TOKEN", value, tmp_path)
            == (tmp_path / "internal_token").read_text().strip()
        )


def test_short_tokens_are_refused_and_long_ones_kept():
    assert "shorter than 32" in (weak_secret("a" * 31, MIN_TOKEN_LENGTH) or "")
    assert weak_secret("a" * 32, MIN_TOKEN_LENGTH) is None
    assert resolve_token("INTERNAL_TOKEN", f"  {LONG}  ", Path("/nonexistent")) == LONG


@pytest.mark.parametrize("token", ["change-me", "test-internal-token", "x" * 31])
@pytest.mark.parametrize("environment", ["development", "production", ""])
def test_the_backend_and_the_bridge_refuse_a_weak_token_in_every_environment(token, environment, tmp_path):
    for cls in (Settings, ConsumerSettings):
        with pytest.raises(ValidationError, match="INTERNAL_TOKEN"):
            cls(_env_file=None, INTERNAL_TOKEN=token, ENVIRONMENT=environment, SECRETS_DIR=tmp_path)


@pytest.mark.parametrize("password", ["admin", "change-me", "secret", "password"])
def test_the_backend_refuses_an_example_airflow_password(password, tmp_path):
    with pytest.raises(ValidationError, match="AIRFLOW_PASSWORD"):
        Settings(_env_file=None, INTERNAL_TOKEN=LONG, AIRFLOW_PASSWORD=password, SECRETS_DIR=tmp_path)


def test_an_unset_token_is_generated_once_and_shared(tmp_path):
    folder = tmp_path / "secrets"
    backend = Settings(_env_file=None, SECRETS_DIR=folder)
    bridge = ConsumerSettings(_env_file=None, SECRETS_DIR=folder)
    assert backend.INTERNAL_TOKEN == bridge.INTERNAL_TOKEN
    assert len(backend.INTERNAL_TOKEN) >= MIN_TOKEN_LENGTH
    kept = folder / "internal_token"
    assert kept.read_text().strip() == backend.INTERNAL_TOKEN
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert backend.AIRFLOW_PASSWORD == (folder / "airflow_password").read_text().strip()  # the same way
    # read again, never replaced; a value set wins over the file
    assert Settings(_env_file=None, SECRETS_DIR=folder).INTERNAL_TOKEN == backend.INTERNAL_TOKEN
    assert ConsumerSettings(_env_file=None, SECRETS_DIR=folder, INTERNAL_TOKEN=LONG).INTERNAL_TOKEN == LONG


def _ensure(folder: str) -> str:
    return ensure_secret(folder, "internal_token")


def test_services_starting_together_agree_on_one_token(tmp_path):
    with multiprocessing.get_context("fork").Pool(8) as pool:
        values = pool.map(_ensure, [str(tmp_path)] * 32)
    assert len(set(values)) == 1
    assert (tmp_path / "internal_token").read_text().strip() == values[0]


# ---- Redis AUTH ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def protected_redis(workdir: Path):
    password = secrets.token_urlsafe(24)
    server = EmbeddedRedis(workdir / f"redis-auth-{uuid.uuid4().hex[:6]}", password=password).start()
    yield server
    server.stop()


def test_redis_with_requirepass_refuses_a_client_without_the_password(protected_redis):
    assert protected_redis.password
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=protected_redis.port).set("k", "v")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=protected_redis.port, password="wrong-" + LONG).ping()
    assert redis.Redis(port=protected_redis.port, password=protected_redis.password).ping()
    # its command line does not show the password to the machine's other users
    cmdline = Path(f"/proc/{protected_redis.proc.pid}/cmdline").read_bytes()
    assert protected_redis.password.encode() not in cmdline
    assert stat.S_IMODE((protected_redis.data_dir / "redis.conf").stat().st_mode) == 0o600


def test_the_bridge_authenticates_with_redis_password(protected_redis, tmp_path):
    settings = ConsumerSettings(
        _env_file=None,
        REDIS_PORT=protected_redis.port,
        REDIS_PASSWORD=protected_redis.password,
        INTERNAL_TOKEN=LONG,
    )

    async def ping(password: str) -> bool:
        client = redis_client(settings.REDIS_HOST, settings.REDIS_PORT, password=password)
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    assert asyncio.run(ping(settings.REDIS_PASSWORD))
    with pytest.raises(redis.exceptions.AuthenticationError):
        asyncio.run(ping(""))


def test_the_backend_app_authenticates_with_redis_password(protected_redis, postgres, tmp_path):
    from backend.app import build_app

    config = Settings(
        _env_file=None,
        DATABASE_URL=postgres.url,
        REDIS_PORT=protected_redis.port,
        REDIS_PASSWORD=protected_redis.password,
        INTERNAL_TOKEN=LONG,
        SECRETS_DIR=tmp_path,
        VIDEO_STORAGE_PATH=tmp_path / "videos",
    )

    async def go() -> bool:
        app = build_app(config)
        try:
            return bool(await app.redis.ping())
        finally:
            await app.redis.aclose()
            app.db.close()

    assert asyncio.run(go())


# ---- PostgreSQL with a password --------------------------------------------------------------


def test_postgres_with_a_password_takes_no_other_connection(postgres):
    """The test session's own server (testing.fixtures): generated password, scram-sha-256."""
    assert postgres.password and f"postgres:{postgres.password}@" in postgres.url
    with psycopg.connect(postgres.url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()
        assert row is not None and row[0].startswith("SCRAM-SHA-256$")
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    for password in (None, "wrong-" + LONG):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                host="127.0.0.1", port=postgres.port, user="postgres", password=password, dbname="traffic"
            )
    hba = (postgres.data_dir / "pgdata" / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), rules
    assert [rule[3] for rule in rules if rule[0] == "host"] == ["127.0.0.1/32"]


def test_an_earlier_trust_cluster_gets_the_password(workdir):
    """make demo's data dir from before passwords (initdb --auth=trust) keeps working: the
    password is set on its next start and pg_hba.conf switched to scram-sha-256."""
    data = workdir / f"pg-trust-{uuid.uuid4().hex[:6]}"
    old = EmbeddedPostgres(data, database="kept").start()
    try:
        with psycopg.connect(old.url.replace("+psycopg", "")) as conn:  # no password: trust
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (42)")
            conn.commit()
    finally:
        old.stop()
    password = secrets.token_urlsafe(24)
    pg = EmbeddedPostgres(data, database="kept", password=password).start()
    try:
        with psycopg.connect(pg.url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT x FROM t").fetchone() == (42,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="kept")
    finally:
        pg.stop()
    again = EmbeddedPostgres(data, database="kept", password=password).start()  # next start: as usual
    try:
        with psycopg.connect(again.url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT x FROM t").fetchone() == (42,)
    finally:
        again.stop()
    assert not os.path.exists(data / ".initdb-pwfile")
