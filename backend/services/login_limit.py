"""Failed logins per client address (issue 17): after ``limit`` failures within ``window_s`` the
address gets 429 until the window ends. Counted in Redis (shared by every backend instance); while
Redis is down, in this process's memory instead, so that an outage never lifts the limit."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("backend.auth")


class LoginLimiter:
    def __init__(self, redis: aioredis.Redis, *, limit: int = 10, window_s: int = 60) -> None:
        self.redis = redis
        self.limit = limit
        self.window_s = window_s
        self._local: dict[str, list[float]] = {}

    @staticmethod
    def key(ip: str) -> str:
        return f"auth:login-failures:{ip}"

    def _local_failures(self, ip: str) -> list[float]:
        cutoff = time.monotonic() - self.window_s
        kept = [t for t in self._local.get(ip, []) if t > cutoff]
        self._local[ip] = kept
        return kept

    async def retry_after(self, ip: str) -> int:
        """Seconds to wait when ``ip`` is over the limit, else 0."""
        try:
            count = int(await self.redis.get(self.key(ip)) or 0)
            if count >= self.limit:
                return max(1, int(await self.redis.ttl(self.key(ip))))
            return 0
        except RedisError:
            failures = self._local_failures(ip)
            if len(failures) >= self.limit:
                return max(1, int(failures[0] + self.window_s - time.monotonic()))
            return 0

    async def failed(self, ip: str) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                # the window starts with the first failure (SET NX EX, not EXPIRE NX: Redis < 7
                # refuses that, and the whole transaction with it); INCR keeps the TTL
                pipe.set(self.key(ip), 0, ex=self.window_s, nx=True)
                pipe.incr(self.key(ip))
                await pipe.execute()
        except RedisError as exc:
            log.warning("login limiter: Redis unavailable (%s); counting in memory", exc)
            self._local_failures(ip).append(time.monotonic())
