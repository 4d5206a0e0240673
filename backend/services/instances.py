"""The backend instances' registry in Redis (issue 18: several backends behind one address).

Every backend process registers itself under its instance name (``BACKEND_INSTANCE``) with the
address of its ingest WebSockets (``BACKEND_INGEST_URL``): ``streams.BACKEND_INSTANCES_KEY``, a
ZSET whose score is the unix time the registration lapses, and ``streams.BACKEND_INSTANCE_URL_KEY``,
a hash name -> URL. It beats every ``streams.BACKEND_HEARTBEAT_S`` (the lapse
``streams.BACKEND_INSTANCE_TTL_S`` ahead) and leaves on a clean stop, so that a killed instance
drops out of the bridge's routing within the TTL. The bridge reads it with ``live_instances``.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from contracts import streams

log = logging.getLogger("backend.instances")

# Registrations lapsed this long ago are removed (with their URL) by the next heartbeat of anyone.
FORGET_AFTER_S = 60.0


class InstanceRegistry:
    """One backend's registration: ``beat()`` periodically, ``leave()`` on a clean stop."""

    def __init__(
        self,
        redis: aioredis.Redis,
        name: str,
        url: str,
        *,
        ttl_s: float = streams.BACKEND_INSTANCE_TTL_S,
    ) -> None:
        self.redis = redis
        self.name = name
        self.url = url
        self.ttl_s = ttl_s
        self._registered = False
        self._failing = False

    async def beat(self) -> None:
        """Register, or extend the registration; forget instances dead for long."""
        now = time.time()
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(streams.BACKEND_INSTANCE_URL_KEY, self.name, self.url)
                pipe.zadd(streams.BACKEND_INSTANCES_KEY, {self.name: now + self.ttl_s})
                pipe.zrangebyscore(streams.BACKEND_INSTANCES_KEY, "-inf", now - FORGET_AFTER_S)
                replies = await pipe.execute()
            gone = [streams.text(n) for n in replies[2]]
            if gone:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.zrem(streams.BACKEND_INSTANCES_KEY, *gone)
                    pipe.hdel(streams.BACKEND_INSTANCE_URL_KEY, *gone)
                    await pipe.execute()
        except RedisError as exc:
            if not self._failing:
                log.warning("[BACKEND-INSTANCE] heartbeat of %s failed: %s", self.name, exc)
            self._failing = True
            return
        if not self._registered or self._failing:
            log.info("[BACKEND-INSTANCE] %s registered, ingest at %s", self.name, self.url)
        self._registered, self._failing = True, False

    async def leave(self) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(streams.BACKEND_INSTANCES_KEY, self.name)
                pipe.hdel(streams.BACKEND_INSTANCE_URL_KEY, self.name)
                await pipe.execute()
            log.info("[BACKEND-INSTANCE] %s left the registry", self.name)
        except RedisError as exc:  # it lapses by itself within the TTL
            log.warning("[BACKEND-INSTANCE] %s could not leave the registry: %s", self.name, exc)
        self._registered = False


async def live_instances(redis: aioredis.Redis, now: float | None = None) -> dict[str, str]:
    """``{instance name: ingest URL}`` of the registrations that have not lapsed."""
    now = time.time() if now is None else now
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(streams.BACKEND_INSTANCES_KEY, now, "+inf")
        pipe.hgetall(streams.BACKEND_INSTANCE_URL_KEY)
        names, urls = await pipe.execute()
    return parse_live(names, urls)


def parse_live(names: list, urls: dict) -> dict[str, str]:
    """The replies of ZRANGEBYSCORE (live names) and HGETALL (URLs) -> ``{name: url}``."""
    by_name = {streams.text(k): streams.text(v) for k, v in (urls or {}).items()}
    live = (streams.text(n) for n in names or [])
    return {name: by_name[name] for name in live if name in by_name}
