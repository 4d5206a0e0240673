"""REST endpoints other than upload and start/stop."""

from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from backend.tests.client import put_json, request, upload
from contracts import streams

CALIBRATION = {
    "roi_polygon": [[5, 5], [90, 5], [90, 60], [5, 60]],
    "image_points": [[10, 10], [86, 10], [86, 58], [10, 58]],
    "world_points": [[0, 0], [3.5, 0], [3.5, 20], [0, 20]],
}


@pytest.fixture
def video(api, sample_video) -> dict:
    r = upload(api.port, {"name": "fixture"}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert r.status == 201
    return r.json()


def test_list_and_get(api, video):
    r = request(api.port, "GET", "/api/videos")
    assert r.status == 200
    assert video["id"] in [v["id"] for v in r.json()["videos"]]
    r = request(api.port, "GET", f"/api/videos/{video['id']}")
    assert r.status == 200
    assert r.json() == video


@pytest.mark.parametrize(
    "path", ["/api/videos/999999", "/api/videos/abc", "/api/videos/0", "/api/videos/99999999999"]
)
def test_unknown_video(api, path):
    r = request(api.port, "GET", path)
    assert r.status == 404
    assert r.error_code == "video_not_found"


@pytest.mark.parametrize(
    "suffix, method",
    [
        ("/calibration", "PUT"),
        ("/thumbnail", "GET"),
        ("/stream/start", "POST"),
        ("/stream/stop", "POST"),
        ("/analytics", "GET"),
        ("/violations", "GET"),
        ("/passages", "GET"),
        ("/report", "GET"),
        ("", "DELETE"),
    ],
)
def test_unknown_video_everywhere(api, suffix, method):
    body = json.dumps(CALIBRATION).encode() if method == "PUT" else (b"" if method == "POST" else None)
    r = request(api.port, method, f"/api/videos/424242{suffix}", body, {"Content-Type": "application/json"})
    assert r.status == 404
    assert r.error_code == "video_not_found"


def test_unknown_route_is_json(api):
    r = request(api.port, "GET", "/api/nope")
    assert r.status == 404
    assert r.error_code == "not_found"
    r = request(api.port, "DELETE", "/api/videos")
    assert r.status == 405
    assert r.error_code == "method_not_allowed"


def test_calibration_success(api, video):
    r = put_json(api.port, f"/api/videos/{video['id']}/calibration", CALIBRATION)
    assert r.status == 200, r.body
    out = r.json()
    assert out["reprojection_error_m"] < 1e-6
    stored = out["video"]
    assert stored["roi"] == CALIBRATION["roi_polygon"]
    assert stored["calibrate_coordinates"] == {
        "image_points": CALIBRATION["image_points"],
        "world_points": CALIBRATION["world_points"],
    }
    h = np.array(stored["homography_matrix"])
    assert h.shape == (3, 3)
    mapped = cv2.perspectiveTransform(np.array([[[86.0, 58.0]]]), h)[0, 0]
    assert mapped == pytest.approx([3.5, 20], abs=1e-6)
    assert (
        request(api.port, "GET", f"/api/videos/{video['id']}").json()["homography_matrix"]
        == stored["homography_matrix"]
    )


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        (b"{not json", 400, "invalid_json", None),
        ({"roi_polygon": CALIBRATION["roi_polygon"]}, 400, "invalid_calibration", "image_points"),
        ({**CALIBRATION, "extra": 1}, 400, "invalid_calibration", "extra"),
        (
            {**CALIBRATION, "image_points": [[1, 2], [3, 4], [5, 6]]},
            400,
            "invalid_calibration",
            "image_points",
        ),
        ({**CALIBRATION, "image_points": "abc"}, 400, "invalid_calibration", "image_points"),
        ({**CALIBRATION, "roi_polygon": [[0, 0], [1, 1], [2, 2]]}, 400, "invalid_roi", "roi_polygon"),
        (
            {**CALIBRATION, "image_points": [[10, 10, 1], [86, 10], [86, 58], [10, 58]]},
            400,
            "invalid_calibration",
            "image_points.0",
        ),
        (
            {**CALIBRATION, "world_points": [[0, 0], [3.5, 0], [3.5, 20], [0]]},
            400,
            "invalid_calibration",
            "world_points.3",
        ),
        ({**CALIBRATION, "speed_limit_kmh": 0}, 400, "invalid_speed_limit", "speed_limit_kmh"),
        ([CALIBRATION], 400, "invalid_calibration", None),
        (
            {**CALIBRATION, "image_points": [[0, 0], [1, 1], [2, 2], [3, 3]]},
            422,
            "degenerate_calibration",
            "image_points",
        ),
        (
            {**CALIBRATION, "world_points": [[0, 0], [0, 0], [1, 5], [3, 1]]},
            422,
            "degenerate_calibration",
            "image_points",
        ),
    ],
)
def test_calibration_rejects(api, video, body, status, code, field):
    """Each refusal has its code and names the body's field at fault (``error.field``, absent when
    the error is about the body as a whole), the field the calibration editor marks."""
    r = put_json(api.port, f"/api/videos/{video['id']}/calibration", body)
    assert r.status == status, r.body
    assert r.error_code == code
    assert r.json()["error"].get("field") == field, r.body
    assert set(r.json()["error"]) == {"code", "message"} | ({"field"} if field else set())
    after = request(api.port, "GET", f"/api/videos/{video['id']}").json()
    assert after["homography_matrix"] is None and after["calibrate_coordinates"] is None


def test_calibration_refuses_unknown_fields_naming_them(api, video):
    """One spelling: ``roi_polygon`` (the calibration files' name); ``roi`` and any other field the
    OpenAPI document does not list are refused, each named."""
    points = {k: CALIBRATION[k] for k in ("image_points", "world_points")}
    url = f"/api/videos/{video['id']}/calibration"
    r = put_json(api.port, url, {"roi": CALIBRATION["roi_polygon"], **points})
    assert r.status == 400 and r.error_code == "invalid_calibration"
    assert r.json()["error"]["field"] == "roi"
    message = r.json()["error"]["message"]
    assert "unknown field 'roi'" in message and "'roi_polygon'" in message, message
    r = put_json(api.port, url, {**CALIBRATION, "roi": CALIBRATION["roi_polygon"], "fps": 25, "video": "x"})
    assert r.status == 400 and r.error_code == "invalid_calibration"
    assert "unknown fields 'roi', 'fps', 'video'" in r.json()["error"]["message"]
    after = request(api.port, "GET", f"/api/videos/{video['id']}").json()
    assert after["homography_matrix"] is None


def test_a_calibration_file_is_accepted_with_its_calibration_fields(api, video):
    """What stack/run.py sends: a calibrations/*.json's roi_polygon, points and speed limit."""
    r = put_json(api.port, f"/api/videos/{video['id']}/calibration", {**CALIBRATION, "speed_limit_kmh": 50})
    assert r.status == 200, r.body
    assert r.json()["video"]["roi"] == CALIBRATION["roi_polygon"]
    assert r.json()["video"]["speed_limit_kmh"] == 50


@pytest.mark.parametrize(
    "field, index, point, code",
    [
        ("roi_polygon", 2, [935, 10], "invalid_roi"),
        ("roi_polygon", 0, [-1, 5], "invalid_roi"),
        ("roi_polygon", 3, [5, 64.5], "invalid_roi"),
        ("image_points", 1, [97, 10], "invalid_calibration"),
        ("image_points", 3, [10, -0.5], "invalid_calibration"),
    ],
)
def test_calibration_points_outside_the_frame_are_refused(api, video, field, index, point, code):
    """The sample video is 96x64: a point beyond it is refused, named in the message."""
    points = [list(p) for p in CALIBRATION[field]]
    points[index] = point
    r = put_json(api.port, f"/api/videos/{video['id']}/calibration", {**CALIBRATION, field: points})
    assert r.status == 400 and r.error_code == code, r.body
    x, y = point
    assert r.json()["error"]["message"] == f"{field}[{index}] = ({x:g}, {y:g}) is outside the 96x64 frame"
    assert r.json()["error"]["field"] == field
    after = request(api.port, "GET", f"/api/videos/{video['id']}").json()
    assert after["homography_matrix"] is None and after["calibrate_coordinates"] is None


def test_calibration_points_on_the_frame_border_are_inside(api, video):
    body = {
        **CALIBRATION,
        "roi_polygon": [[0, 0], [96, 0], [96, 64], [0, 64]],
        "image_points": [[0, 0], [96, 0], [96, 64], [0, 64]],
    }
    r = put_json(api.port, f"/api/videos/{video['id']}/calibration", body)
    assert r.status == 200, r.body
    assert r.json()["video"]["roi"] == body["roi_polygon"]


def test_thumbnail(api, video):
    r = request(api.port, "GET", f"/api/videos/{video['id']}/thumbnail")
    assert r.status == 200
    assert r.headers["Content-Type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(r.body, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (64, 96, 3)


def test_analytics_final_live_and_missing(api, video, db_engine, sync_redis):
    vid = video["id"]
    r = request(api.port, "GET", f"/api/videos/{vid}/analytics")
    assert r.status == 404 and r.error_code == "analytics_not_found"
    sync_redis.set(f"analytics:video:{vid}", json.dumps({"total_vehicles": 3, "speeding_count": 1}), ex=60)
    r = request(api.port, "GET", f"/api/videos/{vid}/analytics")
    assert r.status == 200
    assert r.json() == {"source": "live", "video_id": vid, "total_vehicles": 3, "speeding_count": 1}
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO video_analytics (video_id, total_vehicles_count, avg_dwell_time,"
                " vehicle_type_distribution, speeding_count) VALUES (:v, 12, 4.5, :dist, 2)"
            ),
            {"v": vid, "dist": json.dumps({"car": 10, "truck": 2})},
        )
    r = request(api.port, "GET", f"/api/videos/{vid}/analytics")
    assert r.status == 200
    body = r.json()
    assert body["source"] == "final"
    assert (body["total_vehicles_count"], body["avg_dwell_time"], body["speeding_count"]) == (12, 4.5, 2)
    assert body["vehicle_type_distribution"] == {"car": 10, "truck": 2}


def test_violations_json_and_csv(api, video, db_engine):
    vid = video["id"]
    with db_engine.begin() as conn:
        for track, speed, frame in [(7, 81.5, 40), (3, 95.0, 12)]:
            conn.execute(
                text(
                    "INSERT INTO speeding_violations (video_id, track_id, vehicle_class, speed_kmh,"
                    " frame_number, video_time_s) VALUES (:v, :t, 'car', :s, :f, :f / 25.0)"
                ),
                {"v": vid, "t": track, "s": speed, "f": frame},
            )
    r = request(api.port, "GET", f"/api/videos/{vid}/violations")
    assert r.status == 200
    items = r.json()["violations"]
    assert [(i["track_id"], i["speed_kmh"], i["frame_number"]) for i in items] == [
        (3, 95.0, 12),
        (7, 81.5, 40),
    ]
    r = request(api.port, "GET", f"/api/videos/{vid}/violations?format=csv")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.body.decode())))
    assert [(row["track_id"], row["speed_kmh"]) for row in rows] == [("3", "95.0"), ("7", "81.5")]
    r = request(api.port, "GET", f"/api/videos/{vid}/violations?format=xml")
    assert r.status == 400 and r.error_code == "invalid_format"


def test_violations_csv_empty_has_header(api, video):
    r = request(api.port, "GET", f"/api/videos/{video['id']}/violations?format=csv")
    assert r.status == 200
    assert r.body.decode().splitlines() == [
        "id,video_id,track_id,vehicle_class,speed_kmh,frame_number,video_time_s,detected_at,snapshot_path,"
        "snapshot_url"
    ]


def test_cascade_delete(api, video, db_engine):
    with db_engine.begin() as conn:
        conn.execute(text("INSERT INTO video_analytics (video_id) VALUES (:v)"), {"v": video["id"]})
        conn.execute(
            text(
                "INSERT INTO speeding_violations (video_id, track_id, speed_kmh, frame_number)"
                " VALUES (:v, 1, 70, 1)"
            ),
            {"v": video["id"]},
        )
        conn.execute(text("DELETE FROM videos WHERE id = :v"), {"v": video["id"]})
        left = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM video_analytics WHERE video_id = :v)"
                " + (SELECT count(*) FROM speeding_violations WHERE video_id = :v)"
            ),
            {"v": video["id"]},
        ).scalar_one()
    assert left == 0


def test_health(api, sync_redis):
    r = request(api.port, "GET", "/api/health")
    assert r.status == 200
    assert r.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok"},
        "processor": "not running",
    }
    sync_redis.set(streams.PROCESSOR_HEARTBEAT_KEY, "1", ex=30)  # what the Spark application keeps
    try:
        assert request(api.port, "GET", "/api/health").json()["processor"] == "ready"
    finally:
        sync_redis.delete(streams.PROCESSOR_HEARTBEAT_KEY)


def test_websocket_status(api):
    r = request(api.port, "GET", "/api/websocket/status")
    assert r.status == 200
    body = r.json()
    assert {"total_connections", "channels", "backend_connections"} <= body.keys()


def health_requests_counted(port: int) -> float:
    """``backend_http_requests_total`` of 200 answers to GET /api/health, as /metrics says."""
    r = request(port, "GET", "/metrics")
    assert r.status == 200
    labels = {"method": "GET", "handler": "HealthHandler", "status": "200"}
    for family in text_string_to_metric_families(r.body.decode()):
        for sample in family.samples:
            if sample.name == "backend_http_requests_total" and sample.labels == labels:
                return sample.value
    return 0.0


def test_metrics(api):
    r = request(api.port, "GET", "/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert b"backend_http_requests_total" in r.body
    assert b"backend_ws_clients" in r.body
    before = health_requests_counted(api.port)
    assert request(api.port, "GET", "/api/health").status == 200
    assert request(api.port, "GET", "/api/health").status == 200
    assert health_requests_counted(api.port) == before + 2  # each request counted once


def test_cors_for_allowed_origin(api):
    r = request(api.port, "OPTIONS", "/api/videos", headers={"Origin": "http://localhost:4200"})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:4200"
    r = request(api.port, "GET", "/api/videos", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
