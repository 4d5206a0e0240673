"""Redis subscription cache read by the bridge (DESIGN.md, Redis keys).

``websocket:subscription:video:{id}`` (someone watches frames) and
``websocket:analytics:video:{id}`` (someone watches analytics) are sets (ZSET) of the backend
instances that have such a subscriber: member = the instance name (``BACKEND_INSTANCE``), score =
the unix time it lapses, 300 s ahead, refreshed while the instance has subscribers (the key
expires too). An instance removes itself when its last subscriber of the channel leaves, so that
with several instances behind one address (issue 18) one instance's last viewer leaving never
hides another's. The names and the TTL are the shared ones of ``contracts.streams``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from backend.schemas import ANALYTICS_CHANNEL, FRAME_CHANNEL
from contracts import streams

log = logging.getLogger("backend.subscriptions")

KEY_OF_CHANNEL = {
    FRAME_CHANNEL: streams.frame_subscription_key,
    ANALYTICS_CHANNEL: streams.analytics_subscription_key,
}


def subscription_key(kind: str, video_id: int) -> str:
    """Key of channel kind ``processed_frame`` / ``analytics_metrics`` for one video."""
    return KEY_OF_CHANNEL[kind](video_id)


class SubscriptionCache:
    def __init__(
        self, redis: aioredis.Redis, *, ttl_s: int = streams.SUBSCRIPTION_TTL_S, instance: str = "backend"
    ) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.instance = instance
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def _mark(self, pipe: Pipeline, key: str, now: float) -> None:
        """This instance in ``key`` until ``now`` + TTL; members lapsed long ago removed."""
        pipe.zadd(key, {self.instance: now + self.ttl_s})
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.expire(key, self.ttl_s)

    async def _write(self, keys: list[str]) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                self._mark(pipe, key, now)
            replies = await pipe.execute(raise_on_error=False)
        stale = {keys[i // 3] for i, r in enumerate(replies) if isinstance(r, ResponseError)}
        if stale:  # a key of the older format ("true"): replaced by the set
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in stale:
                    pipe.delete(key)
                    self._mark(pipe, key, now)
                await pipe.execute()

    async def sync(self, kind: str, video_id: int, active: bool) -> None:
        """Make this instance's membership of the key match ``active``; serialised per key."""
        key = subscription_key(kind, video_id)
        async with self._locks[key]:
            try:
                if active:
                    await self._write([key])
                else:
                    await self.redis.zrem(key, self.instance)
                log.info("[SUBSCRIPTION-CHECK] %s %s %s", "set" if active else "removed", self.instance, key)
            except RedisError as exc:  # the hub keeps serving; the bridge just sees no key
                log.warning("[SUBSCRIPTION-CHECK] redis error on %s: %s", key, exc)

    async def refresh(self, active: list[tuple[str, int]]) -> None:
        """Re-arm this instance's membership (and the key's TTL) of every key it has subscribers of."""
        if not active:
            return
        try:
            await self._write([subscription_key(kind, video_id) for kind, video_id in active])
        except RedisError as exc:
            log.warning("[SUBSCRIPTION-CHECK] refresh failed: %s", exc)
