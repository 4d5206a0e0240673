"""``GET /api/videos/{id}/violations`` while a stream runs: the live list in Redis (what the
dashboard's speeding log is filled from when a page is opened or reloaded mid-stream), until the
cleanup has stored the rows."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from backend.tests.client import request, upload
from contracts import streams
from contracts.messages import Violation


@pytest.fixture
def video(api, sample_video) -> dict:
    r = upload(api.port, {"name": "live violations"}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert r.status == 201
    return r.json()


def live(track_id: int, speed: float, frame: int, class_name: str = "car") -> str:
    return json.dumps(
        {
            "track_id": track_id,
            "class_name": class_name,
            "speed_kmh": speed,
            "frame_number": frame,
            "timestamp": frame / 30,
        }
    )


def test_live_list_while_nothing_is_stored(api, video, sync_redis):
    vid = video["id"]
    key = streams.violations_key(vid)
    sync_redis.rpush(key, live(4, 88.0, 60), live(2, 101.5, 31, "bus"), "not json", live(4, 90.0, 75))
    try:
        r = request(api.port, "GET", f"/api/videos/{vid}/violations")
        assert r.status == 200
        body = r.json()
        assert body["source"] == "live"
        assert [
            (v["track_id"], v["vehicle_class"], v["speed_kmh"], v["frame_number"]) for v in body["violations"]
        ] == [
            (2, "bus", 101.5, 31),
            (4, "car", 88.0, 60),  # one entry per track: the first one pushed
        ]
        first = body["violations"][0]
        assert first["id"] is None and first["snapshot_path"] is None and first["video_id"] == vid
        assert first["detected_at"] is None and first["snapshot_url"] is None  # an older message
        assert first["video_time_s"] == pytest.approx(31 / 30)
        r = request(api.port, "GET", f"/api/videos/{vid}/violations?format=csv")
        assert [row["track_id"] for row in csv.DictReader(io.StringIO(r.body.decode()))] == ["2", "4"]
    finally:
        sync_redis.delete(key)


def test_stored_rows_win_over_the_live_list(api, video, sync_redis, db_engine):
    vid = video["id"]
    key = streams.violations_key(vid)
    sync_redis.rpush(key, live(9, 99.0, 10))
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO speeding_violations (video_id, track_id, vehicle_class, speed_kmh, frame_number)"
                " VALUES (:v, 3, 'car', 95.0, 12)"
            ),
            {"v": vid},
        )
    try:
        body = request(api.port, "GET", f"/api/videos/{vid}/violations").json()
        assert body["source"] == "stored"
        assert [v["track_id"] for v in body["violations"]] == [3]
    finally:
        sync_redis.delete(key)


def test_no_violations_at_all(api, video):
    body = request(api.port, "GET", f"/api/videos/{video['id']}/violations").json()
    assert body == {"video_id": video["id"], "source": "stored", "violations": []}


def test_live_entries_carry_detected_at_but_never_the_jpeg(api, video, sync_redis):
    """The processor's message carries the wall clock and the JPEG crop (base64); the live list
    answers the first as ISO 8601 (UTC) and never ships the second."""
    vid = video["id"]
    key = streams.violations_key(vid)
    jpeg = b"\xff\xd8\xff" + b"crop" * 100
    flagged = [
        Violation(
            track_id=t,
            vehicle_class="car",
            speed_kmh=90.0,
            frame_number=10 * t,
            video_time_s=t,
            detected_at=at,
        )
        for t, at in ((1, 1_750_000_000.5), (2, 1_750_000_012.0))
    ]
    sync_redis.rpush(key, *[v.model_copy(update={"snapshot_jpeg": jpeg}).model_dump_json() for v in flagged])
    try:
        r = request(api.port, "GET", f"/api/videos/{vid}/violations")
        body = r.json()
        assert body["source"] == "live"
        assert [v["detected_at"] for v in body["violations"]] == [
            datetime.fromtimestamp(1_750_000_000.5, UTC).isoformat(),
            datetime.fromtimestamp(1_750_000_012.0, UTC).isoformat(),
        ]
        assert all(v["snapshot_url"] is None and v["snapshot_path"] is None for v in body["violations"])
        b64 = base64.b64encode(jpeg).decode()[:40]
        assert "snapshot_jpeg" not in r.body.decode() and b64 not in r.body.decode()
        csv_body = request(api.port, "GET", f"/api/videos/{vid}/violations?format=csv").body.decode()
        assert "snapshot_jpeg" not in csv_body and b64 not in csv_body
        rows = list(csv.DictReader(io.StringIO(csv_body)))
        assert rows[0]["detected_at"] == datetime.fromtimestamp(1_750_000_000.5, UTC).isoformat()
    finally:
        sync_redis.delete(key)
