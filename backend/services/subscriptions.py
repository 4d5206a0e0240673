"""Redis subscription cache read by the bridge (DESIGN.md, Redis keys).

``websocket:subscription:video:{id}`` (someone watches frames) and
``websocket:analytics:video:{id}`` (someone watches analytics) hold "true" with a TTL of
300 s, refreshed while anyone is subscribed and deleted when the last subscriber leaves.
The names and the TTL are the shared ones of ``traffic_processing.streams``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from traffic_processing import streams

from backend.schemas import ANALYTICS_CHANNEL, FRAME_CHANNEL

log = logging.getLogger("backend.subscriptions")

KEY_OF_CHANNEL = {
    FRAME_CHANNEL: streams.frame_subscription_key,
    ANALYTICS_CHANNEL: streams.analytics_subscription_key,
}


def subscription_key(kind: str, video_id: int) -> str:
    """Key of channel kind ``processed_frame`` / ``analytics_metrics`` for one video."""
    return KEY_OF_CHANNEL[kind](video_id)


class SubscriptionCache:
    def __init__(self, redis: aioredis.Redis, *, ttl_s: int = streams.SUBSCRIPTION_TTL_S) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def sync(self, kind: str, video_id: int, active: bool) -> None:
        """Make the key match ``active`` (set with TTL, or deleted); serialised per key."""
        key = subscription_key(kind, video_id)
        async with self._locks[key]:
            try:
                if active:
                    await self.redis.set(key, "true", ex=self.ttl_s)
                else:
                    await self.redis.delete(key)
                log.info("[SUBSCRIPTION-CHECK] %s %s", "set" if active else "deleted", key)
            except RedisError as exc:  # the hub keeps serving; the bridge just sees no key
                log.warning("[SUBSCRIPTION-CHECK] redis error on %s: %s", key, exc)

    async def refresh(self, active: list[tuple[str, int]]) -> None:
        """Re-arm the TTL of every key that still has subscribers."""
        if not active:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for kind, video_id in active:
                    pipe.set(subscription_key(kind, video_id), "true", ex=self.ttl_s)
                await pipe.execute()
        except RedisError as exc:
            log.warning("[SUBSCRIPTION-CHECK] refresh failed: %s", exc)
