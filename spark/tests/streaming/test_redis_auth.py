"""Every Redis client of the Spark application authenticates with REDIS_PASSWORD (issue 17): the
source's reader, the sink's and the heartbeat's client (``redis_client`` on the query's options)
and the stage's publisher; without it a Redis with ``requirepass`` refuses them."""

from __future__ import annotations

import secrets

import pytest
import redis
from streaming_helpers import REPO  # noqa: F401 - puts the repository on sys.path

from backend.embedded import EmbeddedRedis
from spark.streaming.publisher import get_publisher
from spark.streaming.redis_source import RedisStreamReader, redis_client
from spark.streaming.settings import SparkSettings


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = EmbeddedRedis(tmp_path_factory.mktemp("redis-auth"), password=secrets.token_urlsafe(24)).start()
    yield srv
    srv.stop()


def test_source_sink_and_publisher_clients_use_the_password(server):
    settings = SparkSettings(_env_file=None, REDIS_PORT=server.port, REDIS_PASSWORD=server.password)
    options = {
        "host": settings.REDIS_HOST,
        "port": str(settings.REDIS_PORT),
        "password": settings.REDIS_PASSWORD,
    }
    client = redis_client(options)
    assert client.ping()
    client.close()
    # Spark may hand the options over with other case: still found
    reader = RedisStreamReader({"host": "127.0.0.1", "port": str(server.port), "Password": server.password})
    assert reader.reportLatestOffset() is None  # it read the (empty) stream: authenticated
    reader.stop()
    publisher = get_publisher(settings.REDIS_HOST, settings.REDIS_PORT, settings.REDIS_PASSWORD)
    assert publisher.client.ping()


def test_without_the_password_they_are_refused(server):
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis_client({"host": "127.0.0.1", "port": str(server.port)}).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        get_publisher("127.0.0.1", server.port).client.ping()
