"""Several backend instances behind one address (issue 18), on the real Redis: the instances'
registry, the per-instance subscription sets, and the bridge delivering to every live instance
that has subscribers, each at its own address.

Two real backends (``TrafficApplication``, the session's database and Redis) run on their own
loop thread and ports, registered under their own instance names; the bridge runs as in
``test_redis_consumer`` with its fallback (``BACKEND_URL``) pointed at the session's backend,
which is not registered: nothing must reach it while instances are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from tornado.httpserver import HTTPServer

from backend.app import TrafficApplication
from backend.db.session import Database
from backend.embedded import free_port
from backend.services import metrics
from backend.services.airflow_client import AirflowClient
from backend.services.instances import InstanceRegistry, live_instances
from backend.services.redis_consumer import FALLBACK
from backend.services.subscriptions import SubscriptionCache
from backend.tests import test_redis_consumer as bridge_tests
from backend.tests.conftest import LoopThread, wait_until
from backend.tests.test_redis_consumer import Bridge, Watcher, frame_numbers, pending, processed, xadd
from contracts import streams

# the bridge tests' fixtures: a stream of its own per test, a bytes client, two videos
stream, raw_redis, videos = bridge_tests.stream, bridge_tests.raw_redis, bridge_tests.videos

REGISTRY_TTL_S = 2.0  # the instances' registration in these tests (streams.BACKEND_INSTANCE_TTL_S: 5)


@pytest.fixture(autouse=True)
def clean_registry(sync_redis: redis.Redis) -> Iterator[None]:
    sync_redis.delete(streams.BACKEND_INSTANCES_KEY, streams.BACKEND_INSTANCE_URL_KEY)
    yield
    sync_redis.delete(streams.BACKEND_INSTANCES_KEY, streams.BACKEND_INSTANCE_URL_KEY)


class Instance:
    """One backend instance on its own port and loop, registered with a short TTL."""

    def __init__(self, api, redis_port: int, name: str, *, register: bool = True) -> None:  # noqa: ANN001
        self.name = name
        self.api = api
        self.port = free_port()
        self.loop = LoopThread()
        config = api.base_config.model_copy(
            update={
                "WS_FRAME_QUEUE": 1000,
                "BACKEND_INSTANCE": name,
                "BACKEND_INGEST_URL": f"http://127.0.0.1:{self.port}",
                "BACKEND_PORT": self.port,
            }
        )

        async def go() -> tuple[TrafficApplication, HTTPServer]:
            app = TrafficApplication(
                config=config,
                db=Database(config.DATABASE_URL),
                redis=aioredis.Redis(port=redis_port),
                airflow=AirflowClient(config.AIRFLOW_API_URL, username="admin", password="secret"),
            )
            app.registry.ttl_s = REGISTRY_TTL_S
            server = HTTPServer(app)
            server.listen(self.port, address="127.0.0.1")
            if register:
                app.start_background()  # registers, then beats every second
            return app, server

        self.app, self.server = self.loop.call(go)
        self.alive = True

    def register(self) -> None:
        self.loop.call(self.app.start_background)

    def die(self) -> None:
        """As a kill -9: no more heartbeat, no leaving the registry, every connection cut."""

        async def go() -> None:
            self.app.stop_background()
            self.app.hub.subscriptions = None  # a dead process removes nothing from Redis
            self.server.stop()
            for handler in list(self.app.websockets):
                protocol = handler.ws_connection
                if protocol is not None and getattr(protocol, "stream", None) is not None:
                    protocol.stream.close()  # cut: no close frame
            await self.server.close_all_connections()

        self.loop.call(go)
        self.alive = False

    def stop(self) -> None:
        async def go() -> None:
            if self.alive:
                self.app.stop_background()
                await self.app.registry.leave()
                self.server.stop()
                self.app.close_websockets()
                await asyncio.sleep(0.1)
                await self.server.close_all_connections()
            await self.app.redis.aclose()
            self.app.db.close()

        try:
            self.loop.call(go)
        finally:
            self.loop.stop()
            # /metrics reads the hub of the last application made: the session backend's again
            metrics.bind_hub(self.api.app.hub)


@pytest.fixture
def instances(api, redis_server, sync_redis) -> Iterator[tuple[Instance, Instance]]:
    a = Instance(api, redis_server.port, "test-a")
    b = Instance(api, redis_server.port, "test-b")
    assert wait_until(lambda: sync_redis.zcard(streams.BACKEND_INSTANCES_KEY) == 2)
    yield a, b
    a.stop()
    b.stop()


# ---- the registry and the subscription sets -------------------------------------------------------


def test_registry_heartbeat_lapse_and_leave(redis_server, sync_redis):
    loop = LoopThread()
    r = loop.call(lambda: aioredis.Redis(port=redis_server.port))
    try:
        one = InstanceRegistry(r, "one", "http://10.0.0.1:8686", ttl_s=1.0)
        two = InstanceRegistry(r, "two", "http://10.0.0.2:8686", ttl_s=30.0)
        loop.call(one.beat)
        loop.call(two.beat)
        assert loop.call(lambda: live_instances(r)) == {
            "one": "http://10.0.0.1:8686",
            "two": "http://10.0.0.2:8686",
        }
        lapse = sync_redis.zscore(streams.BACKEND_INSTANCES_KEY, "two") - time.time()
        assert 28 < lapse <= 30
        time.sleep(1.2)  # "one" stopped beating: it lapsed (its entry is still there, not live)
        assert loop.call(lambda: live_instances(r)) == {"two": "http://10.0.0.2:8686"}
        loop.call(one.beat)  # back
        assert set(loop.call(lambda: live_instances(r))) == {"one", "two"}
        loop.call(two.leave)  # a clean stop: gone at once, URL too
        assert loop.call(lambda: live_instances(r)) == {"one": "http://10.0.0.1:8686"}
        assert sync_redis.hget(streams.BACKEND_INSTANCE_URL_KEY, "two") is None
        # registrations dead for long are forgotten by anyone's heartbeat
        sync_redis.zadd(streams.BACKEND_INSTANCES_KEY, {"ancient": time.time() - 3600})
        sync_redis.hset(streams.BACKEND_INSTANCE_URL_KEY, "ancient", "http://10.0.0.9:8686")
        loop.call(one.beat)
        assert sync_redis.zscore(streams.BACKEND_INSTANCES_KEY, "ancient") is None
        assert sync_redis.hget(streams.BACKEND_INSTANCE_URL_KEY, "ancient") is None
    finally:
        loop.call(r.aclose)
        loop.stop()


def test_subscription_sets_are_per_instance(redis_server, sync_redis):
    key = streams.frame_subscription_key(987654)
    loop = LoopThread()
    r = loop.call(lambda: aioredis.Redis(port=redis_server.port))
    try:
        a = SubscriptionCache(r, ttl_s=300, instance="a")
        b = SubscriptionCache(r, ttl_s=300, instance="b")
        sync_redis.set(key, "true", ex=300)  # the older format: replaced by the set
        loop.call(lambda: a.sync("processed_frame", 987654, True))
        loop.call(lambda: b.sync("processed_frame", 987654, True))
        assert sorted(sync_redis.zrange(key, 0, -1)) == ["a", "b"]
        assert 290 < sync_redis.ttl(key) <= 300
        loop.call(lambda: a.sync("processed_frame", 987654, False))  # a's last viewer left
        assert sync_redis.zrange(key, 0, -1) == ["b"]
        loop.call(lambda: b.sync("processed_frame", 987654, False))
        assert not sync_redis.exists(key)
    finally:
        sync_redis.delete(key)
        loop.call(r.aclose)
        loop.stop()


# ---- the bridge and two instances --------------------------------------------------------------------


def test_every_live_instance_with_subscribers_gets_the_stream(
    api, videos, instances, redis_server, raw_redis, stream
):
    """Viewers on both instances get every frame and analytics message; an instance whose last
    viewer left gets nothing more, the other one everything (A's leaving never hides B's)."""
    a, b = instances
    vid, other = videos
    bridge = Bridge(redis_server.port, api.port, stream)  # fallback: the unregistered session backend
    try:

        async def scenario() -> tuple[Watcher, Watcher, Watcher]:
            wa = await Watcher.open(a.port, vid)
            wb = await Watcher.open(b.port, vid)
            wb_analytics_only = await Watcher.open(b.port, other, frames=False)
            fallback_viewer = await Watcher.open(api.port, vid)  # must get nothing
            for n in range(3):
                xadd(raw_redis, stream, processed(vid, n))
                xadd(raw_redis, stream, processed(other, n))
            await wa.until(3, 3)
            await wb.until(3, 3)
            await wb_analytics_only.until(0, 3)
            wa.close()  # A's last viewer leaves
            await asyncio.sleep(0.3)
            for n in range(3, 6):
                xadd(raw_redis, stream, processed(vid, n))
            await wb.until(6, 6)
            await fallback_viewer.quiet(0.3)
            assert fallback_viewer.frames == [] and fallback_viewer.analytics == []
            fallback_viewer.close()
            wb.close()
            wb_analytics_only.close()
            await asyncio.sleep(0.3)  # the close handshakes done: the session's backend has nobody
            return wa, wb, wb_analytics_only

        wa, wb, wbo = asyncio.run(scenario())
        assert frame_numbers(wa.frames) == frame_numbers(wa.analytics) == [0, 1, 2]
        assert frame_numbers(wb.frames) == frame_numbers(wb.analytics) == [0, 1, 2, 3, 4, 5]
        assert wbo.frames == [] and frame_numbers(wbo.analytics) == [0, 1, 2]
        assert wait_until(lambda: pending(raw_redis, stream) == 0)
        assert set(bridge.consumer.targets) == {"test-a", "test-b"}
        assert bridge.consumer.fallback.frames.connects == 0  # never used while instances live
        assert bridge.consumer.counters.by_video[vid].frames == frozenset({"test-b"})
        status = a.app.hub.status()
        assert status["channels"] == {}  # A has nobody left
    finally:
        bridge.stop()


def test_a_dead_instance_drops_out_after_its_ttl_and_delivery_goes_on(
    api, videos, instances, redis_server, raw_redis, sync_redis, stream
):
    """A dies (no heartbeat, no leave, connections cut) while the stream goes on: its viewer
    reconnects to B; the bridge holds the entry while A's registration is live, then A drops out
    and B gets every entry, the moved viewer all of them from its resubscription on (no gap)."""
    a, b = instances
    vid = videos[0]
    bridge = Bridge(redis_server.port, api.port, stream, max_backoff_s=0.2)
    try:

        async def scenario() -> tuple[Watcher, Watcher, Watcher, float]:
            wa = await Watcher.open(a.port, vid)
            wb = await Watcher.open(b.port, vid)
            for n in range(3):
                xadd(raw_redis, stream, processed(vid, n))
            await wa.until(3, 3)
            await wb.until(3, 3)
            await asyncio.to_thread(a.die)
            moved = await Watcher.open(b.port, vid)  # the page reconnects (through the proxy) to B
            started = time.monotonic()
            for n in range(3, 8):
                xadd(raw_redis, stream, processed(vid, n))
            await wb.until(8, 8, timeout=REGISTRY_TTL_S + 10)
            stalled = time.monotonic() - started
            await moved.until(5, 5)
            for w in (wb, moved):
                w.close()
            return wa, wb, moved, stalled

        wa, wb, moved, stalled = asyncio.run(scenario())
        assert frame_numbers(wa.analytics) == [0, 1, 2]
        assert frame_numbers(wb.frames) == frame_numbers(wb.analytics) == list(range(8))
        assert frame_numbers(moved.frames) == frame_numbers(moved.analytics) == [3, 4, 5, 6, 7]
        # held while A's registration was live (at most its TTL and a retry), then on to B
        print(f"delivery held {stalled:.2f} s for the dead instance (registration TTL {REGISTRY_TTL_S} s)")
        assert stalled < REGISTRY_TTL_S + 3
        assert wait_until(lambda: pending(raw_redis, stream) == 0)
        assert set(bridge.consumer.targets) == {"test-b"}
        assert bridge.consumer.counters.by_video[vid].analytics == frozenset({"test-b"})
        assert FALLBACK not in bridge.consumer.counters.by_video[vid].frames
        # A's subscription entry lingers (it lapses with the subscription TTL) but routes nothing
        assert sync_redis.zscore(streams.frame_subscription_key(vid), "test-a") is not None
    finally:
        bridge.stop()


def test_the_instance_back_under_its_name_gets_the_stream_again(
    api, videos, instances, redis_server, raw_redis, sync_redis, stream
):
    """All instances gone (registry empty): the bridge holds the entry on BACKEND_URL as with
    one backend (nothing lost), and delivers to the instances once they register again."""
    a, b = instances
    vid = videos[0]
    bridge = Bridge(redis_server.port, free_port(), stream, max_backoff_s=0.2)  # nothing at BACKEND_URL
    try:

        async def scenario() -> Watcher:
            wb = await Watcher.open(b.port, vid)
            xadd(raw_redis, stream, processed(vid, 0))
            await wb.until(1, 1)
            await asyncio.to_thread(a.die)
            await asyncio.to_thread(b.die)
            assert await asyncio.to_thread(
                wait_until,
                lambda: not sync_redis.zrangebyscore(streams.BACKEND_INSTANCES_KEY, time.time(), "+inf"),
            )
            for n in range(1, 4):
                xadd(raw_redis, stream, processed(vid, n))
            await asyncio.sleep(1.0)
            assert bridge.consumer.counters.acked == 1  # held, not dropped, while nobody is registered
            wb.close()
            # restarted, on a new port, under the same name; its viewer back before it registers
            back = await asyncio.to_thread(Instance, api, redis_server.port, "test-b", register=False)
            instances_back.append(back)
            w = await Watcher.open(back.port, vid)
            await asyncio.to_thread(back.register)
            await w.until(3, 3, timeout=15)
            w.close()
            return w

        instances_back: list[Instance] = []
        try:
            w = asyncio.run(scenario())
        finally:
            for inst in instances_back:
                inst.stop()
        # the viewer came back after the entries were written: it sees those still held (held on
        # frame 1 until the instance was back, so 1, 2, 3: none lost)
        assert frame_numbers(w.frames) == [1, 2, 3]
        assert wait_until(lambda: pending(raw_redis, stream) == 0)
    finally:
        bridge.stop()
