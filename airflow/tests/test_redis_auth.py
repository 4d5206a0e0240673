"""The pipeline tasks' Redis client authenticates with REDIS_PASSWORD (issue 17)."""

from __future__ import annotations

import secrets
import uuid

import pytest
import redis as redis_lib
from traffic_pipeline.config import PipelineSettings

from backend.embedded import EmbeddedRedis


def test_the_tasks_client_uses_redis_password(workdir, postgres):
    server = EmbeddedRedis(workdir / f"redis-auth-{uuid.uuid4().hex[:6]}", password=secrets.token_urlsafe(24))
    server.start()
    try:
        settings = PipelineSettings(
            _env_file=None, DATABASE_URL=postgres.url, REDIS_PORT=server.port, REDIS_PASSWORD=server.password
        )
        client = settings.redis()
        assert client.ping()
        client.close()
        without = settings.model_copy(update={"REDIS_PASSWORD": ""}).redis()
        with pytest.raises(redis_lib.exceptions.AuthenticationError):
            without.ping()
    finally:
        server.stop()
