"""A camera's health (``services.camera_health``) in every answer that shows the camera and in
/metrics, from progress hashes written here as its producer writes them
(``StreamProgress.update(ProgressWriter.PRODUCER, ...)``) into the session's real Redis, for camera
rows in the real PostgreSQL: idle, connecting, live, a stale live one (reported reconnecting),
reconnecting with its error, failed; credentials never shown, not even when a producer forgot to
redact them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import text

from backend.db.models import Video
from backend.embedded import free_port
from backend.services import camera_health
from backend.tests.client import request, upload
from contracts import streams
from contracts.messages import CameraState, ProgressWriter, StreamProgress, StreamState

USER = "watchman"
PASSWORD = "s3cr3t:pa55/" + "x7q"
CAMERA_URL = f"rtsp://{USER}:s3cr3t%3Apa55%2Fx7q@192.0.2.10:554/stream1?token=tok-abc123"
SECRETS = (USER, PASSWORD, "s3cr3t%3Apa55%2Fx7q", "tok-abc123")
STATES = ("idle", "connecting", "live", "reconnecting", "failed")


def leaked(body: str | bytes) -> list[str]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    return [s for s in SECRETS if s in body]


def insert_camera(engine, name: str, status: str = "processing") -> int:
    with engine.begin() as conn:
        return conn.execute(
            text(
                "INSERT INTO videos (name, file_path, status, source_kind, source_url, width, height, fps)"
                " VALUES (:n, '', :s, 'camera', :u, 640, 360, 25) RETURNING id"
            ),
            {"n": name, "s": status, "u": CAMERA_URL},
        ).scalar_one()


@pytest.fixture
def camera(api, db_engine, sync_redis) -> Iterator[int]:
    """A camera row (status processing: a run was started) whose progress the test writes."""
    cid = insert_camera(db_engine, f"gate {time.monotonic_ns()}")
    yield cid
    sync_redis.delete(streams.progress_key(cid))
    with db_engine.begin() as conn:
        conn.execute(text("DELETE FROM videos WHERE id = :v"), {"v": cid})


def write_progress(sync_redis, cid: int, **fields: Any) -> None:
    """The producer's fields of a fresh run (as the producer writes its hash)."""
    key = streams.progress_key(cid)
    sync_redis.delete(key)
    now = time.time()
    base = {"run_id": "manual__cam", "state": StreamState.PRODUCING, "started_at": now, "updated_at": now}
    sync_redis.hset(key, mapping=StreamProgress.update(ProgressWriter.PRODUCER, **{**base, **fields}))


def health(api, cid: int) -> dict[str, Any]:
    r = request(api.port, "GET", f"/api/videos/{cid}")
    assert r.status == 200, r.body
    assert not leaked(r.body), r.body
    return r.json()["health"]


def metric_samples(api) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    r = request(api.port, "GET", "/metrics")
    assert r.status == 200
    body = r.body.decode()
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name.startswith("traffic_camera_"):
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return body, samples


def camera_metrics(api, cid: int) -> dict[str, Any]:
    """The camera's traffic_camera_* values: name -> value, and "state" -> {state: value}."""
    body, samples = metric_samples(api)
    assert not leaked(body)
    out: dict[str, Any] = {}
    for (name, labels), value in samples.items():
        label = dict(labels)
        if label["video_id"] != str(cid):
            continue
        if name == "traffic_camera_state":
            out.setdefault("state", {})[label["state"]] = value
        else:
            out[name] = value
    return out


def assert_metrics_say(api, cid: int, state: str) -> dict[str, Any]:
    m = camera_metrics(api, cid)
    assert m["state"] == {s: 1.0 if s == state else 0.0 for s in STATES}, m
    assert m["traffic_camera_up"] == (1.0 if state == "live" else 0.0)
    return m


def test_idle_when_not_streaming(api, camera, db_engine, sync_redis):
    idle = {
        "state": "idle",
        "last_frame_at": None,
        "last_frame_age_s": None,
        "input_fps": None,
        "reconnects": 0,
        "last_error": None,
        "dropped_frames": 0,
    }
    assert health(api, camera) == idle  # processing, but no progress of a run (not started yet)
    m = assert_metrics_say(api, camera, "idle")
    assert (m["traffic_camera_reconnects"], m["traffic_camera_dropped_frames"]) == (0, 0)
    assert "traffic_camera_last_frame_age_seconds" not in m and "traffic_camera_input_fps" not in m

    # a run that ended (cleaned up, or the producer stopped): idle, whatever its camera said last
    for ended in (StreamState.DONE, StreamState.STOPPED):
        write_progress(
            sync_redis, camera, state=ended, camera_state=CameraState.LIVE, last_frame_at=time.time()
        )
        assert health(api, camera) == idle
    # not streaming by its status: idle without reading the hash
    write_progress(sync_redis, camera, camera_state=CameraState.LIVE, last_frame_at=time.time())
    with db_engine.begin() as conn:
        conn.execute(text("UPDATE videos SET status = 'completed' WHERE id = :v"), {"v": camera})
    assert health(api, camera) == idle
    assert_metrics_say(api, camera, "idle")


def test_connecting_until_the_producer_says_otherwise(api, camera, sync_redis):
    write_progress(sync_redis, camera)  # the run started, no camera_state written yet
    assert health(api, camera)["state"] == "connecting"
    write_progress(sync_redis, camera, camera_state=CameraState.CONNECTING)
    h = health(api, camera)
    assert (h["state"], h["last_frame_at"], h["last_frame_age_s"]) == ("connecting", None, None)
    assert_metrics_say(api, camera, "connecting")


def test_live_then_stale_live_is_reported_reconnecting(api, camera, sync_redis):
    last = time.time() - 0.5
    write_progress(
        sync_redis,
        camera,
        camera_state=CameraState.LIVE,
        last_frame_at=last,
        input_fps=24.87,
        reconnects=1,
        camera_dropped=12,
    )
    h = health(api, camera)
    assert h["state"] == "live"
    assert datetime.fromisoformat(h["last_frame_at"]).timestamp() == pytest.approx(last, abs=1e-3)
    assert 0.4 <= h["last_frame_age_s"] < 5
    assert (h["input_fps"], h["reconnects"], h["dropped_frames"], h["last_error"]) == (24.87, 1, 12, None)
    m = assert_metrics_say(api, camera, "live")
    assert 0.4 <= m["traffic_camera_last_frame_age_seconds"] < 5
    assert m["traffic_camera_input_fps"] == 24.87
    assert (m["traffic_camera_reconnects"], m["traffic_camera_dropped_frames"]) == (1, 12)

    # the producer still says live, but its last frame is 30 s old: it may be dead
    write_progress(sync_redis, camera, camera_state=CameraState.LIVE, last_frame_at=time.time() - 30)
    h = health(api, camera)
    assert h["state"] == "reconnecting"
    assert h["last_frame_age_s"] == pytest.approx(30, abs=2)
    m = assert_metrics_say(api, camera, "reconnecting")
    assert m["traffic_camera_last_frame_age_seconds"] == pytest.approx(30, abs=2)


def test_reconnecting_with_its_error_and_count(api, camera, sync_redis):
    write_progress(
        sync_redis,
        camera,
        camera_state=CameraState.RECONNECTING,
        last_frame_at=time.time() - 8,
        reconnects=4,
        camera_error="no frame for 5 s: reconnecting (attempt 4, next in 8 s)",
        camera_dropped=3,
    )
    h = health(api, camera)
    assert h["state"] == "reconnecting"
    assert (h["reconnects"], h["dropped_frames"]) == (4, 3)
    assert h["last_error"] == "no frame for 5 s: reconnecting (attempt 4, next in 8 s)"
    m = assert_metrics_say(api, camera, "reconnecting")
    assert (m["traffic_camera_reconnects"], m["traffic_camera_dropped_frames"]) == (4, 3)


def test_failed_and_a_buggy_producers_error_is_redacted(api, camera, sync_redis):
    """A producer that wrote the camera's URL with its credentials into camera_error: the API and
    /metrics still show none of them."""
    error = (
        f"Server returned 401 Unauthorized for '{CAMERA_URL}' (user {USER}, password {PASSWORD}); "
        f"also tried rtsp://{USER}:{PASSWORD}@192.0.2.10/stream1"
    )
    write_progress(
        sync_redis,
        camera,
        camera_state=CameraState.FAILED,
        reconnects=2,
        camera_error=error,
        last_frame_at=None,
    )
    h = health(api, camera)
    assert h["state"] == "failed" and h["reconnects"] == 2
    assert "401 Unauthorized" in h["last_error"] and "rtsp://***@192.0.2.10:554/stream1" in h["last_error"]
    assert not leaked(h["last_error"]), h["last_error"]
    for path in ("/api/videos", "/api/cameras"):
        r = request(api.port, "GET", path, headers=api.accounts["viewer"].auth)  # a viewer sees them
        assert r.status == 200 and not leaked(r.body)
        shown = {v["id"]: v for v in r.json()["videos"]}[camera]
        assert shown["health"] == h and shown["source_url"].startswith("rtsp://***@192.0.2.10")
    assert_metrics_say(api, camera, "failed")

    # the producer failing as a whole (its own error) is a failed camera too
    write_progress(
        sync_redis,
        camera,
        state=StreamState.FAILED,
        camera_state=CameraState.LIVE,
        producer_error=f"cannot open {CAMERA_URL}",
        last_frame_at=time.time(),
    )
    h = health(api, camera)
    assert (
        h["state"] == "failed" and "rtsp://***@192.0.2.10" in h["last_error"] and not leaked(h["last_error"])
    )


def test_a_deleted_camera_leaves_the_metrics(api, db_engine, sync_redis):
    cid = insert_camera(db_engine, "to delete")
    write_progress(sync_redis, cid, camera_state=CameraState.LIVE, last_frame_at=time.time(), input_fps=10.0)
    try:
        assert_metrics_say(api, cid, "live")
        _, samples = metric_samples(api)
        named = [labels for (name, labels), _ in samples.items() if name == "traffic_camera_up"]
        assert (("name", "to delete"), ("video_id", str(cid))) in named
        assert request(api.port, "DELETE", f"/api/videos/{cid}").status == 204  # no active run
        assert camera_metrics(api, cid) == {}
        assert sync_redis.exists(streams.progress_key(cid)) == 0
    finally:
        with db_engine.begin() as conn:
            conn.execute(text("DELETE FROM videos WHERE id = :v"), {"v": cid})


def test_a_file_has_no_health_and_every_camera_answer_has_one(api, camera, sample_video, sync_redis):
    video = upload(api.port, {"name": "file"}, {"video": ("f.mp4", sample_video.read_bytes())}).json()
    try:
        assert video["health"] is None
        assert request(api.port, "GET", f"/api/videos/{video['id']}").json()["health"] is None
        write_progress(sync_redis, camera, camera_state=CameraState.LIVE, last_frame_at=time.time())
        listed = {v["id"]: v for v in request(api.port, "GET", "/api/videos").json()["videos"]}
        assert listed[video["id"]]["health"] is None and listed[camera]["health"]["state"] == "live"
        cams = request(api.port, "GET", "/api/cameras").json()["videos"]
        assert all(c["health"] is not None for c in cams) and video["id"] not in [c["id"] for c in cams]
        _, samples = metric_samples(api)
        assert not [k for k in samples if ("video_id", str(video["id"])) in k[1]]  # files: no series
    finally:
        assert request(api.port, "DELETE", f"/api/videos/{video['id']}").status == 204


def test_redis_down_leaves_a_streaming_cameras_health_unknown(api, camera, db_engine):
    idle = insert_camera(db_engine, "parked", status="uploaded")
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    healthy, api.app.redis = api.app.redis, dead
    try:
        r = request(api.port, "GET", "/api/videos")
        assert r.status == 200
        listed = {v["id"]: v for v in r.json()["videos"]}
        assert listed[camera]["health"] is None  # unknown: not guessed
        assert listed[idle]["health"]["state"] == "idle"  # known from its row alone
        assert camera_metrics(api, camera) == {}
        assert assert_metrics_say(api, idle, "idle")
    finally:
        api.app.redis = healthy
        api.loop.call(dead.aclose)
        with db_engine.begin() as conn:
            conn.execute(text("DELETE FROM videos WHERE id = :v"), {"v": idle})


def test_compute_without_services():
    """The rule itself: a row and a progress hash at a given wall clock."""
    cam = Video(
        id=1, name="c", file_path="", status="processing", source_kind="camera", source_url=CAMERA_URL
    )
    now = 1_750_000_000.0

    def at(**fields: Any) -> camera_health.CameraHealth:
        progress = StreamProgress.model_validate({"state": StreamState.PRODUCING, **fields})
        return camera_health.compute(cam, progress, now)

    assert camera_health.compute(cam, None, now).state == "idle"
    assert at().state == "connecting"
    assert at(camera_state="live", last_frame_at=now - 4.9).state == "live"
    assert at(camera_state="live", last_frame_at=now - 5.1).state == "reconnecting"
    assert at(camera_state="live", last_frame_at=now + 2).last_frame_age_s == 0  # clock skew: never negative
    assert at(camera_state="live", updated_at=now - 1).state == "live"  # no frame time: its last write
    assert at(camera_state="live").state == "reconnecting"  # nothing says it is live
    assert at(camera_state="failed", camera_error=f"x {CAMERA_URL}").last_error == (
        "x rtsp://***@192.0.2.10:554/stream1?token=***"
    )
    long = at(camera_state="reconnecting", camera_error="e" * 5000).last_error
    assert long is not None and len(long) == camera_health.MAX_ERROR_CHARS
