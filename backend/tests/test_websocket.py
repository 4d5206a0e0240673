"""The WebSocket hub: protocol errors, subscriptions and their Redis keys, ingest auth, origin."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from backend.tests.client import request, upload
from backend.tests.conftest import TOKEN, wait_until
from backend.tests.ws import connect, connect_status, ingest, recv, subscribe


@pytest.fixture
def video_id(api, sample_video) -> int:
    r = upload(api.port, {"name": "ws"}, {"video": ("w.mp4", sample_video.read_bytes())})
    assert r.status == 201
    return r.json()["id"]


def frame_message(
    video_id: int, n: int, jpeg: bytes = b"\xff\xd8jpeg\xff\xd9", produced_at: float | None = None
) -> str:
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    data = {"video_id": video_id, "frame_number": n, "timestamp": n / 25, "processed_frame": url}
    if produced_at is not None:
        data["produced_at"] = produced_at
    return json.dumps(
        {"type": "processed_frame", "data": {**data, "roi_polygon": None, "end_of_stream": False}}
    )


def analytics_message(video_id: int, n: int, produced_at: float | None = None) -> str:
    vehicle = {
        "track_id": 4,
        "bbox": {"x1": 1, "y1": 2, "x2": 30, "y2": 40},
        "speed": 88.5,
        "speed_unit": "km/h",
        "class_id": 2,
        "confidence": 0.9,
    }
    data = {
        "video_id": video_id,
        "frame_number": n,
        "timestamp": n / 25,
        "stats": {"total_vehicles": n, "speeding_count": 1, "current_in_roi": 2},
        "speeding_vehicles": [vehicle],
    }
    if produced_at is not None:
        data["produced_at"] = produced_at
    return json.dumps({"type": "analytics_update", "data": data})


def test_bad_messages_get_errors_and_connection_stays(api, video_id):
    async def scenario():
        conn = await connect(f"{api.ws_url}/ws/client/stream")
        bad = [
            "not json {",
            json.dumps([1, 2]),
            json.dumps({"action": "dance", "channel": f"processed_frame_{video_id}"}),
            json.dumps({"channel": f"processed_frame_{video_id}"}),
            json.dumps({"action": "subscribe"}),
            json.dumps({"action": "subscribe", "channel": 5}),
            json.dumps({"action": "subscribe", "channel": "processed_frame_"}),
            json.dumps({"action": "subscribe", "channel": "processed_frame_1; DROP"}),
            json.dumps({"action": "subscribe", "channel": "admin_secrets"}),
            json.dumps({"action": "subscribe", "channel": "processed_frame_987654"}),  # no such video
        ]
        replies = []
        for text in bad:
            await conn.write_message(text)
            replies.append(await recv(conn))
        ack = await subscribe(conn, f"processed_frame_{video_id}")  # still open and working
        conn.close()
        return replies, ack

    replies, ack = asyncio.run(scenario())
    assert all(r["type"] == "error" and r["message"] for r in replies), replies
    assert "invalid JSON" in replies[0]["message"]
    assert "unknown action" in replies[2]["message"]
    assert "unknown channel" in replies[8]["message"]
    assert ack == {
        "type": "subscription_ack",
        "channel": f"processed_frame_{video_id}",
        "status": "subscribed",
    }


def test_subscription_keys_follow_subscribers(api, video_id, sync_redis):
    """The keys are sets of the instances with subscribers (this one: its BACKEND_INSTANCE),
    scored by when they lapse; another instance's membership is left alone (issue 18)."""
    frame_key = f"websocket:subscription:video:{video_id}"
    analytics_key = f"websocket:analytics:video:{video_id}"
    me = api.app.hub.subscriptions.instance
    assert me == api.app.config.instance_name

    def lapse_in(key: str) -> float:
        score = sync_redis.zscore(key, me)
        return -1.0 if score is None else score - time.time()

    async def scenario():
        a = await connect(f"{api.ws_url}/ws/client/stream")
        b = await connect(f"{api.ws_url}/ws/client/stream")
        assert (await subscribe(a, f"processed_frame_{video_id}"))["status"] == "subscribed"
        assert (await subscribe(b, f"processed_frame_{video_id}"))["status"] == "subscribed"
        assert (await subscribe(a, f"analytics_metrics_{video_id}"))["status"] == "subscribed"
        assert 290 < lapse_in(frame_key) <= 300
        assert 290 < lapse_in(analytics_key) <= 300
        assert 290 < sync_redis.ttl(frame_key) <= 300
        # another instance watches the analytics too
        sync_redis.zadd(analytics_key, {"other-instance": time.time() + 300})
        sync_redis.zadd(frame_key, {me: time.time() + 10})
        sync_redis.expire(frame_key, 10)
        await api_refresh(api)
        assert sync_redis.ttl(frame_key) > 290  # refreshed while subscribed
        assert lapse_in(frame_key) > 290
        await a.write_message(
            json.dumps({"action": "unsubscribe", "channel": f"analytics_metrics_{video_id}"})
        )
        assert (await recv(a))["status"] == "unsubscribed"
        # this instance's last analytics subscriber left: the other instance stays
        assert sync_redis.zrange(analytics_key, 0, -1) == ["other-instance"]
        sync_redis.delete(analytics_key)
        a.close()  # b still watches frames: once the server has handled the close, 1 subscriber

        def frame_watchers() -> int:
            channels = request(api.port, "GET", "/api/websocket/status").json()["channels"]
            return channels.get(f"processed_frame_{video_id}", 0)

        assert await asyncio.to_thread(wait_until, lambda: frame_watchers() == 1)
        assert lapse_in(frame_key) > 0  # b's subscription keeps this instance in the set
        b.close()
        assert await asyncio.to_thread(wait_until, lambda: not sync_redis.exists(frame_key))
        assert frame_watchers() == 0

    asyncio.run(scenario())


async def api_refresh(api):
    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(api.app.hub.refresh(), api.loop.loop))


async def viewer_and_ingest(api, video_id: int):
    """A client on both channels of the video, and the bridge's two ingest connections."""
    viewer = await connect(f"{api.ws_url}/ws/client/stream")
    await subscribe(viewer, f"processed_frame_{video_id}")
    await subscribe(viewer, f"analytics_metrics_{video_id}")
    return viewer, await ingest(api.port, "processed"), await ingest(api.port, "analytics")


def test_ingest_routes_to_subscribers_only(api, video_id, sample_video):
    other = upload(api.port, {"name": "other"}, {"video": ("o.mp4", sample_video.read_bytes())}).json()["id"]

    async def scenario():
        viewer, frames, stats = await viewer_and_ingest(api, video_id)
        await frames.write_message(frame_message(other, 1))  # nobody watches that one
        await frames.write_message(frame_message(video_id, 2))
        await stats.write_message(analytics_message(video_id, 2))
        got = [await recv(viewer), await recv(viewer)]
        await frames.write_message(json.dumps({"type": "processed_frame", "data": {"video_id": "x"}}))
        err = await recv(frames)
        for c in (viewer, frames, stats):
            c.close()
        return got, err

    got, err = asyncio.run(scenario())
    by_type = {m["type"]: m for m in got}
    assert by_type["frame"]["data"]["video_id"] == video_id
    assert by_type["frame"]["data"]["frame_number"] == 2
    assert by_type["frame"]["data"]["processed_frame"].startswith("data:image/jpeg;base64,")
    analytics = by_type["analytics"]["data"]
    assert analytics["stats"] == {"total_vehicles": 2, "speeding_count": 1, "current_in_roi": 2}
    assert analytics["speeding_vehicles"][0]["speed"] == 88.5
    assert err["type"] == "error"


def test_status_reports_each_streams_detection_stride(api, video_id):
    """The live thinning a frame message carries (stride, detected, skipped, dropped, rate,
    degraded) shows in the status."""

    async def scenario():
        viewer, frames, stats = await viewer_and_ingest(api, video_id)
        message = json.loads(frame_message(video_id, 30, produced_at=1_700_000_000.0))
        message["data"].update(
            detect_stride=3,
            detected_frames=10,
            skipped_frames=20,
            dropped_frames=4,
            detect_hz=8.33,
            degraded=False,
        )
        await frames.write_message(json.dumps(message))
        got = await recv(viewer)
        for c in (viewer, frames, stats):
            c.close()
        return got

    got = asyncio.run(scenario())
    assert got["data"]["detect_stride"] == 3 and got["data"]["detected_frames"] == 10
    status = request(api.port, "GET", "/api/websocket/status").json()
    assert status["streams"][str(video_id)] == {
        "frame_number": 30,
        "detect_stride": 3,
        "detected_frames": 10,
        "skipped_frames": 20,
        "dropped_frames": 4,
        "detect_hz": 8.33,
        "degraded": False,
    }


def test_redelivered_messages_reach_clients_once(api, video_id):
    """The bridge resends what it wrote but had not ACKed when it died: clients see it once; a
    new run of the same video (frame 0 again, produced later) still gets through."""

    before = request(api.port, "GET", "/api/websocket/status").json()["repeats_dropped"]

    async def scenario():
        viewer, frames, stats = await viewer_and_ingest(api, video_id)
        t0 = 1_700_000_000.0
        run = [0, 1, 2, 1, 2, 3]  # 1 and 2 delivered again after a restart
        for n in run:
            await frames.write_message(frame_message(video_id, n, produced_at=t0 + n))
            await stats.write_message(analytics_message(video_id, n, produced_at=t0 + n))
        for n in (0, 1):  # the next run
            await frames.write_message(frame_message(video_id, n, produced_at=t0 + 900 + n))
            await stats.write_message(analytics_message(video_id, n, produced_at=t0 + 900 + n))
        got = [await recv(viewer) for _ in range(12)]
        await frames.write_message(frame_message(video_id, 99, produced_at=t0 + 999))
        last = await recv(viewer)  # nothing else was queued before it
        for c in (viewer, frames, stats):
            c.close()
        return got, last

    got, last = asyncio.run(scenario())
    for kind in ("frame", "analytics"):
        numbers = [m["data"]["frame_number"] for m in got if m["type"] == kind]
        assert numbers == [0, 1, 2, 3, 0, 1], (kind, numbers)
    assert last["data"]["frame_number"] == 99
    status = request(api.port, "GET", "/api/websocket/status").json()
    assert status["repeats_dropped"] - before == 4  # frames 1 and 2, frame and analytics each


@pytest.mark.parametrize("kind", ["processed", "analytics"])
def test_ingest_without_token_refused(api, kind):
    url = f"{api.ws_url}/ws/backend/{kind}"
    assert asyncio.run(connect_status(url, origin=None, auth=False)) == 401
    assert asyncio.run(connect_status(url, origin=None)) == 401  # a user's API token is not it
    assert asyncio.run(connect_status(url, origin=None, token="wrong")) == 401
    assert asyncio.run(connect_status(url, origin=None, token=TOKEN)) == 101
    # a browser (any Origin) is refused even with the token
    assert asyncio.run(connect_status(url, token=TOKEN)) == 403


def test_disallowed_origin_refused(api):
    url = f"{api.ws_url}/ws/client/stream"
    assert asyncio.run(connect_status(url, origin="http://evil.example")) == 403
    assert asyncio.run(connect_status(url, origin="http://localhost:4200")) == 101
    assert asyncio.run(connect_status(url, origin=None)) == 101  # non-browser clients send none
    # the dashboard this backend serves: same host:port as the request, under any name
    assert asyncio.run(connect_status(url, origin=f"http://127.0.0.1:{api.port}")) == 101
    assert asyncio.run(connect_status(url, origin=f"http://127.0.0.1:{api.port + 1}")) == 403
