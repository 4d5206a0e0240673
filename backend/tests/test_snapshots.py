"""Violations' wall-clock ``detected_at`` and JPEG snapshots, end to end: a ``Violation`` as the
Spark sink RPUSHes it -> the pipeline's clean-up (``airflow/traffic_pipeline``) stores the row and
writes the crop next to the uploaded videos -> ``GET /api/videos/{id}/violations`` and
``GET /api/violations/{id}/snapshot``; deleting the video (or starting a new run) removes them."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from sqlalchemy import text

from backend.tests.client import request, upload
from contracts import streams
from contracts.messages import Violation

AIRFLOW_DIR = Path(__file__).resolve().parents[2] / "airflow"
if str(AIRFLOW_DIR) not in sys.path:  # traffic_pipeline without `pip install -e airflow`
    sys.path.insert(0, str(AIRFLOW_DIR))

from traffic_pipeline.cleanup import cleanup  # noqa: E402
from traffic_pipeline.config import PipelineSettings  # noqa: E402

T0 = 1_750_000_000.25  # a wall clock (epoch seconds)


def crop(value: int) -> bytes:
    img = np.full((24, 32, 3), value, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


@pytest.fixture
def video(api, sample_video) -> dict:
    r = upload(api.port, {"name": "snapshots"}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert r.status == 201
    return r.json()


@pytest.fixture
def bredis(redis_server):
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


def violation(track_id: int, detected_at: float | None, jpeg: bytes | None) -> Violation:
    return Violation(
        track_id=track_id,
        vehicle_class="car",
        speed_kmh=80.0 + track_id,
        frame_number=10 * track_id,
        video_time_s=track_id / 10,
        detected_at=detected_at,
        snapshot_jpeg=jpeg,
    )


def store(api, bredis, db_engine, vid: int, *violations: Violation, now: float = T0 + 999) -> dict:
    """What the sink and the clean-up do: RPUSH model_dump_json(), then drain into PostgreSQL."""
    for v in violations:
        bredis.rpush(streams.violations_key(vid), v.model_dump_json())
    return cleanup(
        vid,
        redis=bredis,
        engine=db_engine,
        settings=PipelineSettings(_env_file=None, VIDEO_STORAGE_PATH=api.storage),
        delivery_wait_s=0,
        now=lambda: now,
    )


def get(api, path: str):
    return request(api.port, "GET", path)


def test_violation_message_round_trips_the_snapshot_as_base64():
    v = violation(3, T0, crop(200))
    raw = v.model_dump_json()
    assert '"snapshot_jpeg":"/9j/' in raw  # base64 of the JPEG's FF D8 FF
    assert Violation.model_validate_json(raw) == v
    assert Violation.model_validate_json(raw).snapshot_jpeg == crop(200)
    # an older processor's message (without the new fields) still reads
    old = '{"track_id": 1, "class_name": "car", "speed_kmh": 70, "frame_number": 3, "timestamp": 0.1}'
    assert Violation.model_validate_json(old).detected_at is None
    assert Violation.model_validate_json(old).snapshot_jpeg is None


def test_detected_at_and_snapshot_stored_and_served(api, video, bredis, db_engine):
    vid = video["id"]
    a, b = crop(40), crop(220)
    result = store(
        api,
        bredis,
        db_engine,
        vid,
        violation(1, T0, a),
        violation(2, T0 + 7.5, b),  # flagged 7.5 s later
        violation(3, None, None),  # an older processor: no wall clock, no crop
    )
    assert result["violations_added"] == 3 and result["snapshots_written"] == 2

    body = get(api, f"/api/videos/{vid}/violations").json()
    assert body["source"] == "stored"
    by_track = {v["track_id"]: v for v in body["violations"]}
    assert by_track[1]["detected_at"] == datetime.fromtimestamp(T0, UTC).isoformat()
    assert by_track[2]["detected_at"] == datetime.fromtimestamp(T0 + 7.5, UTC).isoformat()
    assert by_track[3]["detected_at"] == datetime.fromtimestamp(T0 + 999, UTC).isoformat()  # clean-up time
    assert by_track[1]["detected_at"] != by_track[2]["detected_at"]
    assert by_track[3]["snapshot_url"] is None and by_track[3]["snapshot_path"] is None
    for track, jpeg in ((1, a), (2, b)):
        v = by_track[track]
        assert v["snapshot_url"] == f"/api/violations/{v['id']}/snapshot"
        assert Path(v["snapshot_path"]) == (api.storage / "snapshots" / str(vid) / f"{track}.jpg").resolve()
        r = get(api, v["snapshot_url"])
        assert r.status == 200
        assert r.headers["Content-Type"] == "image/jpeg"
        assert r.body == jpeg
    assert "snapshot_jpeg" not in get(api, f"/api/videos/{vid}/violations").body.decode()

    r = get(api, f"/api/violations/{by_track[3]['id']}/snapshot")
    assert r.status == 404 and r.error_code == "snapshot_not_found"
    assert r.headers["Content-Type"].startswith("application/json")

    csv_text = get(api, f"/api/videos/{vid}/violations?format=csv").body.decode()
    header, *rows = csv_text.splitlines()
    assert header.endswith(",detected_at,snapshot_path,snapshot_url")
    assert f"/api/violations/{by_track[1]['id']}/snapshot" in rows[0]
    assert "/9j/" not in csv_text


@pytest.mark.parametrize("raw", ["987654321", "abc", "0", "99999999999", "-1"])
def test_snapshot_of_an_unknown_violation_is_404(api, raw):
    r = get(api, f"/api/violations/{raw}/snapshot")
    assert r.status == 404 and r.error_code == "violation_not_found"
    assert r.json()["error"]["message"]


def test_snapshot_file_gone_or_outside_the_storage_is_404(api, video, db_engine, workdir):
    vid = video["id"]
    outside = workdir / "elsewhere.jpg"
    outside.write_bytes(crop(9))
    ids = []
    with db_engine.begin() as conn:
        for track, path in ((1, api.storage / "snapshots" / str(vid) / "missing.jpg"), (2, outside)):
            ids.append(
                conn.execute(
                    text(
                        "INSERT INTO speeding_violations (video_id, track_id, speed_kmh, frame_number,"
                        " snapshot_path) VALUES (:v, :t, 90, 1, :p) RETURNING id"
                    ),
                    {"v": vid, "t": track, "p": str(path)},
                ).scalar_one()
            )
    for violation_id in ids:
        r = get(api, f"/api/violations/{violation_id}/snapshot")
        assert r.status == 404 and r.error_code == "snapshot_not_found"


def test_deleting_the_video_removes_its_snapshots(api, video, bredis, db_engine):
    vid = video["id"]
    store(api, bredis, db_engine, vid, violation(1, T0, crop(10)), violation(2, T0 + 1, crop(20)))
    directory = api.storage / "snapshots" / str(vid)
    assert sorted(p.name for p in directory.iterdir()) == ["1.jpg", "2.jpg"]
    ids = [v["id"] for v in get(api, f"/api/videos/{vid}/violations").json()["violations"]]
    assert request(api.port, "DELETE", f"/api/videos/{vid}").status == 204
    assert not directory.exists()
    assert get(api, f"/api/violations/{ids[0]}/snapshot").error_code == "violation_not_found"


def test_a_new_run_removes_the_previous_snapshots(api, video, bredis, db_engine):
    vid = video["id"]
    store(api, bredis, db_engine, vid, violation(1, T0, crop(10)))
    directory = api.storage / "snapshots" / str(vid)
    assert (directory / "1.jpg").is_file()
    assert request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"").status == 201
    assert not directory.exists()
    assert get(api, f"/api/videos/{vid}/violations").json()["violations"] == []
