"""The Redis consumer bridge on the real Redis and the real backend of the test session.

The bridge runs on its own asyncio loop thread (as in production, it only talks to Redis and to
the backend's ingest WebSockets); a browser-like WebSocket client subscribes through the hub and
checks what arrives. Each test uses its own stream name, except the one that runs the module
as a process with the default names.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from tornado.httpserver import HTTPServer
from tornado.websocket import WebSocketClientConnection

from backend.app import TrafficApplication
from backend.db.session import Database
from backend.embedded import EmbeddedRedis, free_port
from backend.services.airflow_client import AirflowClient
from backend.services.redis_consumer import RedisConsumer, redis_client, ws_base
from backend.tests.client import upload
from backend.tests.conftest import TOKEN, LoopThread, wait_until
from backend.tests.ws import connect, recv, subscribe
from contracts import streams
from contracts.assets import REPO_ROOT
from contracts.messages import BBox, ProcessedFrame, Stats, Summary, Vehicle

GROUP = streams.REDIS_CONSUMER_GROUP
RUN = f"run-{uuid.uuid4().hex[:8]}"  # the stream run of the entries (VideoFrame.run_id)


# ---- helpers -----------------------------------------------------------------------------------


def jpeg(n: int) -> bytes:
    img = np.full((24, 32, 3), (n * 20) % 256, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def vehicle(track_id: int, speed: float | None, speeding: bool = False) -> Vehicle:
    return Vehicle(
        track_id=track_id,
        bbox=BBox(x1=1, y1=2, x2=10, y2=12),
        speed=speed,
        class_id=2,
        class_name="car",
        confidence=0.9,
        in_roi=True,
        speeding=speeding,
    )


def processed(
    video_id: int,
    n: int,
    cars: tuple[tuple[float | None, bool], ...] = (),
    eos: bool = False,
    run_id: str = RUN,
) -> ProcessedFrame:
    """``cars``: (speed in this frame, the processor's speeding flag) of each vehicle."""
    vehicles = [vehicle(100 + i, speed, flag) for i, (speed, flag) in enumerate(cars)]
    return ProcessedFrame(
        video_id=video_id,
        frame_number=n,
        timestamp=n / 25,
        processed_frame=jpeg(n),
        vehicles=vehicles,
        stats=Stats(total_vehicles=n, speeding_count=1, current_in_roi=len(vehicles)),
        roi_polygon=[[0, 0], [31, 0], [31, 23]],
        has_homography=True,
        end_of_stream=eos,
        summary=Summary(
            total_vehicles_count=3, avg_dwell_time=1.5, vehicle_type_distribution={"car": 3}, speeding_count=1
        )
        if eos
        else None,
        produced_at=time.time(),
        run_id=run_id,
    )


class Bridge:
    """A ``RedisConsumer`` running on its own loop thread, with short test timings."""

    def __init__(self, redis_port: int, backend_port: int, stream: str, consumer: str = "bridge-test", **kw):
        self.loop = LoopThread()
        options = {
            "claim_min_idle_s": 1.0,
            "claim_interval_s": 0.5,
            "block_ms": 100,
            "max_backoff_s": 0.3,
            **kw,
        }

        def make() -> RedisConsumer:
            return RedisConsumer(
                redis=redis_client("127.0.0.1", redis_port, block_ms=100),
                backend_ws=f"ws://127.0.0.1:{backend_port}",
                token=TOKEN,
                consumer=consumer,
                stream=stream,
                **options,
            )

        self.consumer: RedisConsumer = self.loop.call(make)
        self.future = asyncio.run_coroutine_threadsafe(self.consumer.run(), self.loop.loop)

    def stop(self) -> None:
        self.loop.loop.call_soon_threadsafe(self.consumer.stop)
        try:
            self.future.result(15)
        finally:
            self.loop.call(self.consumer.redis.aclose)
            self.loop.stop()


class Watcher:
    """A browser: one client WebSocket, subscribed to some channels, collecting what arrives."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict] = []
        self.analytics: list[dict] = []

    @classmethod
    async def open(cls, port: int, video_id: int, frames: bool = True, analytics: bool = True) -> Watcher:
        conn = await connect(f"ws://127.0.0.1:{port}/ws/client/stream")
        for wanted, channel in ((frames, "processed_frame"), (analytics, "analytics_metrics")):
            if wanted:
                ack = await subscribe(conn, f"{channel}_{video_id}")
                assert ack["status"] == "subscribed", ack
        return cls(conn)

    async def until(self, frames: int, analytics: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.frames) < frames or len(self.analytics) < analytics:
            message = await recv(self.conn, max(0.1, deadline - time.monotonic()))
            {"frame": self.frames, "analytics": self.analytics}[message["type"]].append(message["data"])

    async def quiet(self, seconds: float) -> None:
        """Collect whatever arrives for ``seconds`` (to prove that nothing more does)."""
        try:
            await self.until(10**9, 10**9, timeout=seconds)
        except TimeoutError:
            pass

    def close(self) -> None:
        self.conn.close()


def frame_numbers(messages: list[dict]) -> list[int]:
    return [m["frame_number"] for m in messages]


def pending(r: redis.Redis, stream: str) -> int:
    """Entries read and not ACKed; -1 while the bridge has not created its group yet."""
    try:
        return r.xpending(stream, GROUP)["pending"]
    except redis.ResponseError:
        return -1


@pytest.fixture
def stream(sync_redis: redis.Redis) -> Iterator[str]:
    name = f"processed-frames-test-{uuid.uuid4().hex[:8]}"
    yield name
    sync_redis.delete(name)


@pytest.fixture
def raw_redis(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)  # bytes: JPEGs in the fields
    yield client
    client.close()


@pytest.fixture
def videos(api, sample_video) -> list[int]:
    """Two videos (channels need an existing video); roomy frame queues for the watchers."""
    api.configure(WS_FRAME_QUEUE=1000)
    ids = []
    for name in ("bridge-a", "bridge-b"):
        r = upload(api.port, {"name": name}, {"video": ("b.mp4", sample_video.read_bytes())})
        assert r.status == 201
        ids.append(r.json()["id"])
    return ids


@pytest.fixture
def bridge(api, redis_server, stream) -> Iterator[Bridge]:
    b = Bridge(redis_server.port, api.port, stream)
    yield b
    b.stop()


def xadd(r: redis.Redis, stream: str, frame: ProcessedFrame) -> bytes:
    return r.xadd(stream, frame.to_fields())


def mark_subscribed(r: redis.Redis, key: str, instance: str = "backend", ttl_s: float = 60) -> None:
    """As a backend instance with a subscriber of the channel does (``SubscriptionCache``)."""
    r.zadd(key, {instance: time.time() + ttl_s})
    r.expire(key, int(ttl_s))


# ---- tests -------------------------------------------------------------------------------------


def test_ws_base():
    assert ws_base("http://127.0.0.1:8686") == "ws://127.0.0.1:8686"
    assert ws_base("https://traffic.example/") == "wss://traffic.example"
    assert ws_base("ws://backend:8686") == "ws://backend:8686"
    assert ws_base("backend:8686") == "ws://backend:8686"


def test_frames_in_order_and_only_speeding_vehicles(api, videos, bridge, raw_redis, stream):
    """``speeding_vehicles`` are the vehicles the processor flagged (``speeding``), whatever their
    speed in this frame: not a fast one without the flag, and a flagged one unmeasured or slow now."""
    vid = videos[0]
    speeds = [
        ((30.0, False),),
        ((61.0, True), (59.9, False)),
        ((95.0, False),),  # fast now, but not (yet) flagged on enough evidence
        ((None, True), (95.5, False)),
        (),
        ((45.0, True), (80.0, True), (10.0, False)),
    ]

    async def scenario() -> Watcher:
        w = await Watcher.open(api.port, vid)
        for n, s in enumerate(speeds):
            xadd(raw_redis, stream, processed(vid, n, s, eos=n == len(speeds) - 1))
        await w.until(len(speeds), len(speeds))
        w.close()
        return w

    w = asyncio.run(scenario())
    assert frame_numbers(w.frames) == list(range(len(speeds)))
    assert frame_numbers(w.analytics) == list(range(len(speeds)))
    for n, frame in enumerate(w.frames):
        assert frame["video_id"] == vid
        assert frame["timestamp"] == pytest.approx(n / 25)
        assert frame["roi_polygon"] == [[0, 0], [31, 0], [31, 23]]
        assert frame["end_of_stream"] is (n == len(speeds) - 1)
        assert frame["run_id"] == RUN
        prefix, b64 = frame["processed_frame"].split(",", 1)
        assert prefix == "data:image/jpeg;base64"
        img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (24, 32, 3)
        assert abs(int(img.mean()) - (n * 20) % 256) <= 2
    speeding = [[v["speed"] for v in a["speeding_vehicles"]] for a in w.analytics]
    assert speeding == [[], [61.0], [], [None], [], [45.0, 80.0]]
    assert [[v["track_id"] for v in a["speeding_vehicles"]] for a in w.analytics][3:] == [
        [100],
        [],
        [100, 101],
    ]
    first = w.analytics[1]["speeding_vehicles"][0]
    assert first == {
        "track_id": 100,
        "bbox": {"x1": 1.0, "y1": 2.0, "x2": 10.0, "y2": 12.0},
        "speed": 61.0,
        "speed_unit": "km/h",
        "class_id": 2,
        "class_name": "car",
        "confidence": 0.9,
        "speeding": True,
    }
    assert w.analytics[3]["stats"] == {"total_vehicles": 3, "speeding_count": 1, "current_in_roi": 2}
    assert {a["run_id"] for a in w.analytics} == {RUN}
    assert wait_until(lambda: pending(raw_redis, stream) == 0)
    assert bridge.consumer.counters.acked == len(speeds)


def test_a_rerun_gets_through_a_resend_does_not(api, videos, bridge, raw_redis, stream):
    """A second run of the same video starts again at frame 0 (new run_id, same or older
    produced_at does not matter); a resend within a run is dropped by the hub."""
    vid = videos[0]
    old = time.time() - 3600

    async def scenario() -> Watcher:
        w = await Watcher.open(api.port, vid)
        for n in range(3):
            xadd(raw_redis, stream, processed(vid, n, run_id="run-a"))
        for n in range(3):
            frame = processed(vid, n, eos=n == 2, run_id="run-b")
            frame.produced_at = old  # no later wall clock: only the run_id tells the runs apart
            xadd(raw_redis, stream, frame)
        xadd(raw_redis, stream, processed(vid, 1, run_id="run-b"))  # a resend of run b
        await w.until(6, 6)
        await w.quiet(0.5)
        w.close()
        return w

    w = asyncio.run(scenario())
    assert [(f["run_id"], f["frame_number"]) for f in w.frames] == [
        ("run-a", 0),
        ("run-a", 1),
        ("run-a", 2),
        ("run-b", 0),
        ("run-b", 1),
        ("run-b", 2),
    ]
    assert [(a["run_id"], a["frame_number"]) for a in w.analytics] == [
        (f["run_id"], f["frame_number"]) for f in w.frames
    ]
    assert wait_until(lambda: pending(raw_redis, stream) == 0)
    assert bridge.consumer.counters.frames_sent == 7  # the bridge forwards; the hub drops the repeat


def test_only_subscribed_channels_get_anything_but_all_is_acked(api, videos, bridge, raw_redis, stream):
    watched, unwatched = videos

    async def scenario() -> Watcher:
        w = await Watcher.open(api.port, watched, frames=False, analytics=True)
        for n in range(4):
            xadd(raw_redis, stream, processed(unwatched, n, ((99.0, True),)))
            xadd(raw_redis, stream, processed(watched, n, ((99.0, True),)))
        await w.until(0, 4)
        await w.quiet(0.5)
        w.close()
        return w

    w = asyncio.run(scenario())
    assert w.frames == []  # frames of the watched video were not subscribed
    assert frame_numbers(w.analytics) == [0, 1, 2, 3]
    assert {a["video_id"] for a in w.analytics} == {watched}
    assert wait_until(lambda: pending(raw_redis, stream) == 0)
    counters = bridge.consumer.counters
    assert counters.frames_sent == 0
    assert counters.analytics_sent == 4
    assert counters.not_subscribed == 4  # the unwatched video's entries: nothing sent
    assert counters.acked == 8
    assert (
        raw_redis.xinfo_groups(stream)[0]["last-delivered-id"]
        == raw_redis.xinfo_stream(stream)["last-generated-id"]
    )


def test_malformed_entries_are_acked_and_skipped(api, videos, bridge, raw_redis, stream, caplog):
    vid = videos[0]
    caplog.set_level(logging.INFO, logger="backend.redis_consumer")

    async def scenario() -> Watcher:
        w = await Watcher.open(api.port, vid)
        xadd(raw_redis, stream, processed(vid, 0))
        raw_redis.xadd(stream, {"video_id": "not-a-number", "frame_number": "1"})
        raw_redis.xadd(stream, {"something": "else"})
        bad_vehicles = processed(vid, 2).to_fields() | {"vehicles": "[{broken"}
        raw_redis.xadd(stream, bad_vehicles)
        xadd(raw_redis, stream, processed(vid, 3))
        await w.until(2, 2)
        await w.quiet(0.3)
        w.close()
        return w

    w = asyncio.run(scenario())
    assert frame_numbers(w.frames) == [0, 3]
    assert frame_numbers(w.analytics) == [0, 3]
    assert wait_until(lambda: pending(raw_redis, stream) == 0)
    assert bridge.consumer.counters.malformed == 3
    assert bridge.consumer.counters.acked == 5
    assert "[REDIS-CONSUMER] malformed entry" in caplog.text


def test_crash_recovery_reclaims_what_a_dead_consumer_read(
    api, videos, redis_server, raw_redis, stream, caplog
):
    """Entries read by a consumer that died before ACKing are claimed (XAUTOCLAIM) and delivered,
    in stream order, before the newer ones."""
    vid = videos[0]
    caplog.set_level(logging.INFO, logger="backend.redis_consumer")
    raw_redis.xgroup_create(stream, GROUP, id="0", mkstream=True)

    async def scenario() -> tuple[Watcher, Bridge]:
        w = await Watcher.open(api.port, vid)
        for n in range(3):
            xadd(raw_redis, stream, processed(vid, n))
        read = raw_redis.xreadgroup(GROUP, "dead-consumer", {stream: ">"}, count=3)
        assert len(read[0][1]) == 3  # read, never ACKed: the consumer was killed
        for n in range(3, 6):
            xadd(raw_redis, stream, processed(vid, n))
        b = Bridge(redis_server.port, api.port, stream, consumer="restarted", claim_min_idle_s=1.0)
        await w.until(6, 6)
        w.close()
        return w, b

    w, b = asyncio.run(scenario())
    try:
        assert frame_numbers(w.frames) == list(range(6))  # the reclaimed ones first: in order
        assert frame_numbers(w.analytics) == list(range(6))
        assert wait_until(lambda: pending(raw_redis, stream) == 0)
        assert b.consumer.counters.reclaimed == 3
        consumers = {c["name"]: c["pending"] for c in raw_redis.xinfo_consumers(stream, GROUP)}
        assert consumers[b"dead-consumer"] == 0
        assert "reclaimed 3 stale pending entries" in caplog.text
    finally:
        b.stop()


def test_entries_of_a_replica_that_dies_later_are_reclaimed(api, videos, bridge, raw_redis, stream):
    """While the bridge runs, another replica reads entries and dies: the periodic XAUTOCLAIM
    takes them over once idle and delivers them."""
    vid = videos[0]

    async def scenario() -> Watcher:
        w = await Watcher.open(api.port, vid, analytics=False)
        xadd(raw_redis, stream, processed(vid, 0))
        await w.until(1, 0)
        for n in (1, 2):
            # Added and read by replica-2 atomically, so the running bridge never sees them as new.
            with raw_redis.pipeline(transaction=True) as pipe:
                pipe.xadd(stream, processed(vid, n).to_fields())
                pipe.xreadgroup(GROUP, "replica-2", {stream: ">"}, count=1)
                assert len(pipe.execute()[1][0][1]) == 1
        assert pending(raw_redis, stream) == 2
        await w.until(3, 0, timeout=40)
        w.close()
        return w

    w = asyncio.run(scenario())
    assert frame_numbers(w.frames) == [0, 1, 2]
    assert wait_until(lambda: pending(raw_redis, stream) == 0)
    assert bridge.consumer.counters.reclaimed == 2


def test_backend_restart_loses_nothing(postgres, redis_server, raw_redis, sync_redis, stream, api, videos):
    """The bridge reconnects to a restarted backend; what it could not deliver stays pending."""
    vid = videos[0]
    port = free_port()
    loop = LoopThread()
    config = api.base_config.model_copy(update={"WS_FRAME_QUEUE": 1000})

    def start(token: str) -> tuple[TrafficApplication, HTTPServer]:
        async def go() -> tuple[TrafficApplication, HTTPServer]:
            app = TrafficApplication(
                config=config.model_copy(update={"INTERNAL_TOKEN": token}),
                db=Database(config.DATABASE_URL),
                redis=aioredis.Redis(port=redis_server.port),
                airflow=AirflowClient(config.AIRFLOW_API_URL, username="admin", password="secret"),
            )
            server = HTTPServer(app)
            server.listen(port, address="127.0.0.1")
            return app, server

        return loop.call(go)

    def stop(app: TrafficApplication, server: HTTPServer) -> None:
        async def go() -> None:
            server.stop()
            app.close_websockets()  # as serve() does on SIGTERM
            await asyncio.sleep(0.2)  # close frames out; the hub drops its subscribers' keys
            await server.close_all_connections()
            await app.redis.aclose()
            app.db.close()

        loop.call(go)

    app, server = start(TOKEN)
    b = Bridge(redis_server.port, port, stream)
    try:

        async def before() -> Watcher:
            w = await Watcher.open(port, vid)
            for n in range(3):
                xadd(raw_redis, stream, processed(vid, n))
            await w.until(3, 3)
            return w

        w1 = asyncio.run(before())
        assert wait_until(lambda: pending(raw_redis, stream) == 0)
        stop(app, server)
        assert b.consumer.frames.conn is None or wait_until(lambda: b.consumer.frames.conn is None)

        # Backend down; a viewer is (still) subscribed as far as Redis knows.
        mark_subscribed(sync_redis, streams.frame_subscription_key(vid))
        mark_subscribed(sync_redis, streams.analytics_subscription_key(vid))
        for n in range(3, 7):
            xadd(raw_redis, stream, processed(vid, n))
        assert wait_until(lambda: pending(raw_redis, stream) >= 1)  # read, in hand, not deliverable
        time.sleep(0.5)
        assert b.consumer.counters.acked == 3  # nothing ACKed while undeliverable
        assert pending(raw_redis, stream) >= 1

        # Back up, refusing the bridge until the viewer has subscribed again (no race).
        app, server = start("not-yet")

        async def after() -> Watcher:
            w = await Watcher.open(port, vid)
            await asyncio.sleep(0.5)
            assert b.consumer.counters.acked == 3  # refused (401): still nothing ACKed
            app.config = app.config.model_copy(update={"INTERNAL_TOKEN": TOKEN})
            await w.until(4, 4)
            await w.quiet(0.3)
            return w

        w2 = asyncio.run(after())
        assert frame_numbers(w1.frames) == [0, 1, 2]
        assert frame_numbers(w2.frames) == [3, 4, 5, 6]
        assert frame_numbers(w2.analytics) == [3, 4, 5, 6]
        assert wait_until(lambda: pending(raw_redis, stream) == 0)
        assert b.consumer.frames.connects >= 2 and b.consumer.analytics.connects >= 2
    finally:
        b.stop()
        stop(app, server)
        loop.stop()


def test_redis_going_away_and_coming_back(api, videos, workdir, caplog):
    """Redis restarts (empty: no persistence): the bridge waits, recreates its group, goes on."""
    vid = videos[0]
    caplog.set_level(logging.INFO, logger="backend.redis_consumer")
    server = EmbeddedRedis(workdir / f"redis-{uuid.uuid4().hex[:6]}").start()
    r = redis.Redis(port=server.port)
    stream = "processed-frames-restart"

    def watched() -> None:
        mark_subscribed(r, streams.frame_subscription_key(vid))
        mark_subscribed(r, streams.analytics_subscription_key(vid))

    b = Bridge(server.port, api.port, stream)
    try:

        async def scenario() -> Watcher:
            w = await Watcher.open(api.port, vid)
            watched()
            xadd(r, stream, processed(vid, 0))
            await w.until(1, 1)
            server.stop()
            await asyncio.sleep(1.5)
            server.start()
            watched()
            xadd(r, stream, processed(vid, 1))
            await w.until(2, 2)
            w.close()
            return w

        w = asyncio.run(scenario())
        assert frame_numbers(w.frames) == [0, 1]
        assert "[REDIS-CONSUMER] Redis unavailable at" in caplog.text
        assert "Redis is back" in caplog.text
        assert wait_until(lambda: r.xpending(stream, GROUP)["pending"] == 0)
    finally:
        b.stop()
        r.close()
        server.stop()


def test_stop_while_backend_is_down_leaves_the_entry_pending(redis_server, raw_redis, stream, sync_redis):
    port = free_port()  # nothing listens there
    mark_subscribed(sync_redis, streams.frame_subscription_key(424242))
    b = Bridge(redis_server.port, port, stream)
    try:
        xadd(raw_redis, stream, processed(424242, 0))
        assert wait_until(lambda: pending(raw_redis, stream) == 1)
    finally:
        started = time.monotonic()
        b.stop()
        assert time.monotonic() - started < 5
        sync_redis.delete(streams.frame_subscription_key(424242))
    assert pending(raw_redis, stream) == 1  # not delivered, so not ACKed


def test_module_runs_with_env_settings_and_stops_on_sigterm(api, videos, raw_redis, redis_server, workdir):
    """``python -m backend.services.redis_consumer`` with the default stream and group names."""
    vid = videos[0]
    raw_redis.delete(streams.PROCESSED_FRAMES)
    env = {
        **os.environ,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_server.port),
        "BACKEND_URL": f"http://127.0.0.1:{api.port}",
        "INTERNAL_TOKEN": TOKEN,
        "SPEED_LIMIT_KMH": "80",  # ignored: the processor decides who is speeding
        "REDIS_CONSUMER_NAME": "bridge-process",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "spark")]),
    }
    log_path = Path(workdir) / f"bridge-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend.services.redis_consumer"],
            cwd=workdir,  # no .env there
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        async def scenario() -> Watcher:
            w = await Watcher.open(api.port, vid)
            xadd(raw_redis, streams.PROCESSED_FRAMES, processed(vid, 0, ((70.0, True), (90.0, False))))
            xadd(raw_redis, streams.PROCESSED_FRAMES, processed(vid, 1, ((85.0, True),), eos=True))
            await w.until(2, 2, timeout=30)
            w.close()
            return w

        w = asyncio.run(scenario())
        assert [[v["speed"] for v in a["speeding_vehicles"]] for a in w.analytics] == [[70.0], [85.0]]
        assert w.frames[-1]["end_of_stream"] is True
        assert wait_until(lambda: pending(raw_redis, streams.PROCESSED_FRAMES) == 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raw_redis.delete(streams.PROCESSED_FRAMES)
    text = log_path.read_text()
    assert "[REDIS-CONSUMER] consumer bridge-process on processed-frames (group redis-consumer-group)" in text
    assert f"[SUBSCRIPTION-CHECK] video {vid}: frames subscribed, analytics subscribed" in text
    assert "[REDIS-CONSUMER] stopped: 2 frames and 2 analytics sent" in text


def test_ingest_payloads_carry_every_field_of_the_entry(api, videos, bridge, raw_redis, stream):
    """What the hub re-sends holds every field of the entry (nothing lost on the way): the frame
    as a data URL with its thinning counters, the analytics with the flagged vehicles only."""
    vid = videos[1]
    frame = processed(vid, 7, ((61.5, True), (12.0, False)))
    frame.skipped_frames, frame.detected_frames, frame.detect_stride = 2, 5, 2
    frame.dropped_frames, frame.detect_hz, frame.degraded = 1, 12.5, True

    async def scenario() -> Watcher:
        w = await Watcher.open(api.port, vid)
        xadd(raw_redis, stream, frame)
        await w.until(1, 1)
        w.close()
        return w

    w = asyncio.run(scenario())
    assert w.frames[0] == {
        "video_id": vid,
        "frame_number": 7,
        "timestamp": 7 / 25,
        "processed_frame": "data:image/jpeg;base64," + base64.b64encode(jpeg(7)).decode("ascii"),
        "roi_polygon": [[0.0, 0.0], [31.0, 0.0], [31.0, 23.0]],
        "end_of_stream": False,
        "produced_at": frame.produced_at,
        "skipped_frames": 2,
        "detected_frames": 5,
        "detect_stride": 2,
        "dropped_frames": 1,
        "detect_hz": 12.5,
        "degraded": True,
        "run_id": RUN,
    }
    assert w.analytics[0] == {
        "video_id": vid,
        "frame_number": 7,
        "timestamp": 7 / 25,
        "stats": {"total_vehicles": 7, "speeding_count": 1, "current_in_roi": 2},
        "speeding_vehicles": [
            {
                "track_id": 100,
                "bbox": {"x1": 1.0, "y1": 2.0, "x2": 10.0, "y2": 12.0},
                "speed": 61.5,
                "speed_unit": "km/h",
                "class_id": 2,
                "class_name": "car",
                "confidence": 0.9,
                "speeding": True,
            }
        ],
        "end_of_stream": False,
        "summary": None,
        "produced_at": frame.produced_at,
        "run_id": RUN,
    }


def test_delivered_entries_older_than_the_retention_are_trimmed_never_pending_or_unread(
    redis_server, raw_redis, stream
):
    """A camera streams for days and its clean-up comes only when it stops: the bridge trims
    processed-frames behind what it delivered and acked, older than the retention."""

    async def scenario() -> list[bytes]:
        client = redis_client("127.0.0.1", redis_server.port, block_ms=100)
        consumer = RedisConsumer(
            redis=client,
            backend_ws="ws://127.0.0.1:1",
            token=TOKEN,
            consumer="c1",
            stream=stream,
            retention_s=60,
        )
        try:
            await consumer.ensure_group()
            for ms in (1000, 2000, 3000, 4000, 5000, 6000):
                await client.xadd(stream, {"video_id": "1"}, id=f"{ms}-0")
            read = await client.xreadgroup(GROUP, "c1", {stream: ">"}, count=4)  # 1000..4000 delivered
            ids = [entry_id for entry_id, _ in read[0][1]]
            await client.xack(stream, GROUP, ids[0], ids[1], ids[3])  # 3000 still pending
            await consumer.trim_delivered(now_ms=60_000 + 10_000)  # retention covers up to 10000
            return [entry_id for entry_id, _ in await client.xrange(stream)]
        finally:
            await client.aclose()

    left = asyncio.run(scenario())
    # 1000 and 2000 go (acked, old); 3000 is pending, so it and all after it stay (4000 acked
    # but after it; 5000 and 6000 never read)
    assert left == [b"3000-0", b"4000-0", b"5000-0", b"6000-0"]
