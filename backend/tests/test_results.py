"""Per-video speed limit, passages, traffic report, video deletion, and the dashboard at ``/``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from backend.embedded import free_port
from backend.tests.client import put_json, request, upload
from contracts import streams
from contracts.messages import StreamProgress, StreamState

CALIBRATION = {
    "roi_polygon": [[5, 5], [90, 5], [90, 60], [5, 60]],
    "image_points": [[10, 10], [86, 10], [86, 58], [10, 58]],
    "world_points": [[0, 0], [3.5, 0], [3.5, 20], [0, 20]],
}
PASSAGE_COLUMNS = [
    "track_id",
    "class_name",
    "first_frame",
    "last_frame",
    "first_time_s",
    "last_time_s",
    "dwell_time_s",
    "speed_kmh",
    "max_speed_kmh",
    "speeding",
    "run_id",
    "passed_at",
    "direction",
]


@pytest.fixture
def video(api, sample_video) -> dict:
    r = upload(api.port, {"name": "results"}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert r.status == 201
    return r.json()


def get(api, path: str):
    return request(api.port, "GET", path)


def calibrate(api, vid: int, **extra):
    return put_json(api.port, f"/api/videos/{vid}/calibration", {**CALIBRATION, **extra})


def add_passage(
    engine, vid: int, track_id: int, class_name: str, t0: float, speed, dwell: float, speeding=False
):
    first = int(t0 * 10)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO vehicle_passages (video_id, track_id, class_name, first_frame, last_frame,"
                " first_time_s, last_time_s, dwell_time_s, speed_kmh, max_speed_kmh, speeding)"
                " VALUES (:v, :t, :c, :f, :l, :t0, :t1, :d, :s, :m, :sp)"
            ),
            {
                "v": vid,
                "t": track_id,
                "c": class_name,
                "f": first,
                "l": first + int(dwell * 10),
                "t0": t0,
                "t1": t0 + dwell,
                "d": dwell,
                "s": speed,
                "m": None if speed is None else speed + 4,
                "sp": speeding,
            },
        )


def add_results(engine, vid: int) -> None:
    """A stored run: analytics row, one violation, two passages."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO video_analytics (video_id, total_vehicles_count) VALUES (:v, 2)"), {"v": vid}
        )
        conn.execute(
            text(
                "INSERT INTO speeding_violations (video_id, track_id, speed_kmh, frame_number)"
                " VALUES (:v, 2, 90, 12)"
            ),
            {"v": vid},
        )
    add_passage(engine, vid, 1, "car", 0.5, 40.0, 2.0)
    add_passage(engine, vid, 2, "car", 1.0, 90.0, 2.0, speeding=True)


def stored_rows(engine, vid: int) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT (SELECT count(*) FROM video_analytics WHERE video_id = :v)"
                " + (SELECT count(*) FROM speeding_violations WHERE video_id = :v)"
                " + (SELECT count(*) FROM vehicle_passages WHERE video_id = :v)"
            ),
            {"v": vid},
        ).scalar_one()


# ---- speed limit ----------------------------------------------------------------------------


def test_speed_limit_defaults_to_the_setting_and_is_set_with_the_calibration(api, video):
    vid = video["id"]
    assert video["speed_limit_kmh"] == 60.0
    api.configure(SPEED_LIMIT_KMH=50.0)
    assert get(api, f"/api/videos/{vid}").json()["speed_limit_kmh"] == 50.0
    api.configure(SPEED_LIMIT_KMH=60.0)

    r = put_json(api.port, f"/api/videos/{vid}/calibration", {**CALIBRATION, "speed_limit_kmh": 80})
    assert r.status == 200, r.body
    assert r.json()["video"]["speed_limit_kmh"] == 80.0
    assert get(api, f"/api/videos/{vid}").json()["speed_limit_kmh"] == 80.0
    listed = {v["id"]: v for v in get(api, "/api/videos").json()["videos"]}
    assert listed[vid]["speed_limit_kmh"] == 80.0
    assert get(api, f"/api/videos/{vid}").json()["calibrate_coordinates"]["speed_limit_kmh"] == 80.0

    # a calibration without a limit (or with null) is back to the default
    r = put_json(api.port, f"/api/videos/{vid}/calibration", {**CALIBRATION, "speed_limit_kmh": None})
    assert r.status == 200 and r.json()["video"]["speed_limit_kmh"] == 60.0
    r = put_json(api.port, f"/api/videos/{vid}/calibration", {**CALIBRATION, "speed_limit_kmh": 42.5})
    assert r.json()["video"]["speed_limit_kmh"] == 42.5
    r = put_json(api.port, f"/api/videos/{vid}/calibration", CALIBRATION)
    assert r.json()["video"]["speed_limit_kmh"] == 60.0


@pytest.mark.parametrize("limit", [0, -30, "fast", "80", True, 1e6, [80], {"kmh": 80}])
def test_bad_speed_limit_is_400_and_changes_nothing(api, video, limit):
    vid = video["id"]
    assert calibrate(api, vid, speed_limit_kmh=70).status == 200
    r = calibrate(api, vid, speed_limit_kmh=limit)
    assert r.status == 400, r.body
    assert r.error_code == "invalid_speed_limit"
    assert r.json()["error"]["message"].startswith("speed_limit_kmh")
    assert get(api, f"/api/videos/{vid}").json()["speed_limit_kmh"] == 70.0


def test_non_finite_speed_limit_is_400(api, video):
    body = json.dumps(CALIBRATION)[:-1] + ', "speed_limit_kmh": Infinity}'
    r = put_json(api.port, f"/api/videos/{video['id']}/calibration", body.encode())
    assert r.status == 400 and r.error_code == "invalid_speed_limit"


# ---- passages and report ----------------------------------------------------------------------


def seed_report_passages(db_engine, vid: int) -> None:
    add_passage(db_engine, vid, 7, "car", 130.0, 97.0, 4.0, speeding=True)  # minute 2
    add_passage(db_engine, vid, 3, "car", 5.0, 48.0, 2.0)  # minute 0
    add_passage(db_engine, vid, 4, "truck", 30.0, 82.0, 3.0, speeding=True)  # minute 0
    add_passage(db_engine, vid, 5, "car", 65.0, None, 1.0)  # minute 1, never measured
    add_passage(db_engine, vid, 6, "bus", 61.0, 55.0, 2.5)  # minute 1


def test_passages_json_and_csv(api, video, db_engine):
    vid = video["id"]
    seed_report_passages(db_engine, vid)
    r = get(api, f"/api/videos/{vid}/passages")
    assert r.status == 200
    body = r.json()
    assert body["video_id"] == vid
    passages = body["passages"]
    assert [p["track_id"] for p in passages] == [3, 4, 6, 5, 7]  # by first frame
    assert all(list(p) == PASSAGE_COLUMNS for p in passages)
    assert passages[1] == {
        "track_id": 4,
        "class_name": "truck",
        "first_frame": 300,
        "last_frame": 330,
        "first_time_s": 30.0,
        "last_time_s": 33.0,
        "dwell_time_s": 3.0,
        "speed_kmh": 82.0,
        "max_speed_kmh": 86.0,
        "speeding": True,
        "run_id": "",
        "passed_at": None,
        "direction": None,
    }
    assert passages[3]["speed_kmh"] is None and passages[3]["max_speed_kmh"] is None

    r = get(api, f"/api/videos/{vid}/passages?format=csv")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/csv")
    assert f'filename="video_{vid}_passages.csv"' in r.headers["Content-Disposition"]
    lines = r.body.decode().splitlines()
    assert lines[0] == ",".join(PASSAGE_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(r.body.decode())))
    assert [row["track_id"] for row in rows] == ["3", "4", "6", "5", "7"]
    assert rows[1] == {
        "track_id": "4",
        "class_name": "truck",
        "first_frame": "300",
        "last_frame": "330",
        "first_time_s": "30.0",
        "last_time_s": "33.0",
        "dwell_time_s": "3.0",
        "speed_kmh": "82.0",
        "max_speed_kmh": "86.0",
        "speeding": "true",
        "run_id": "",
        "passed_at": "",
        "direction": "",
    }
    assert rows[3]["speed_kmh"] == "" and rows[3]["speeding"] == "false"


def test_passages_empty_and_bad_format(api, video):
    vid = video["id"]
    assert get(api, f"/api/videos/{vid}/passages").json() == {"video_id": vid, "passages": []}
    r = get(api, f"/api/videos/{vid}/passages?format=csv")
    assert r.status == 200 and r.body.decode().splitlines() == [",".join(PASSAGE_COLUMNS)]
    for fmt in ("xml", "", "CSV"):
        r = get(api, f"/api/videos/{vid}/passages?format={fmt}")
        assert r.status == 400 and r.error_code == "invalid_format", fmt
        assert "json" in r.json()["error"]["message"]


def test_report_from_the_passages(api, video, db_engine):
    vid = video["id"]
    assert calibrate(api, vid, speed_limit_kmh=80).status == 200
    seed_report_passages(db_engine, vid)
    r = get(api, f"/api/videos/{vid}/report")
    assert r.status == 200
    report = r.json()
    hist = report["speed"].pop("histogram")
    assert report == {
        "video_id": vid,
        "total_vehicles": 5,
        "speeding_count": 2,
        "avg_dwell_time_s": 2.5,
        "class_mix": {"bus": 1, "car": 3, "truck": 1},
        "speed": {"limit_kmh": 80.0, "mean_kmh": 70.5, "p85_kmh": 90.25, "measured_vehicles": 4},
        "volume_per_minute": [
            {"minute": 0, "counts": {"bus": 0, "car": 1, "truck": 1}},
            {"minute": 1, "counts": {"bus": 1, "car": 1, "truck": 0}},
            {"minute": 2, "counts": {"bus": 0, "car": 1, "truck": 0}},
        ],
    }
    assert hist["bin_width_kmh"] == 10
    assert [(b["from_kmh"], b["to_kmh"]) for b in hist["bins"]] == [(10 * i, 10 * i + 10) for i in range(10)]
    assert [b["count"] for b in hist["bins"]] == [0, 0, 0, 0, 1, 1, 0, 0, 1, 1]


def test_report_histogram_reaches_the_limit_and_empty_report(api, video, db_engine):
    vid = video["id"]
    empty = get(api, f"/api/videos/{vid}/report").json()
    assert empty == {
        "video_id": vid,
        "total_vehicles": 0,
        "speeding_count": 0,
        "avg_dwell_time_s": 0.0,
        "class_mix": {},
        "speed": {
            "limit_kmh": 60.0,
            "mean_kmh": None,
            "p85_kmh": None,
            "measured_vehicles": 0,
            "histogram": {"bin_width_kmh": 10, "bins": []},
        },
        "volume_per_minute": [],
    }
    add_passage(db_engine, vid, 1, "car", 0.0, 30.0, 1.0)
    report = get(api, f"/api/videos/{vid}/report").json()
    bins = report["speed"]["histogram"]["bins"]
    assert bins[-1] == {"from_kmh": 60, "to_kmh": 70, "count": 0}  # up to the 60 km/h limit
    assert sum(b["count"] for b in bins) == 1 and bins[3]["count"] == 1
    assert report["speed"]["mean_kmh"] == report["speed"]["p85_kmh"] == 30.0
    assert report["volume_per_minute"] == [{"minute": 0, "counts": {"car": 1}}]


@pytest.mark.parametrize("suffix", ["/passages", "/passages?format=csv", "/report"])
@pytest.mark.parametrize("vid", ["424242", "abc", "0"])
def test_passages_and_report_of_an_unknown_video(api, suffix, vid):
    r = get(api, f"/api/videos/{vid}{suffix}")
    assert r.status == 404 and r.error_code == "video_not_found"


def test_live_analytics_snapshot_leaves_out_the_passages(api, video, sync_redis):
    vid = video["id"]
    summary = {
        "total_vehicles_count": 1,
        "avg_dwell_time": 1.0,
        "vehicle_type_distribution": {"car": 1},
        "speeding_count": 0,
        "vehicles": [{"track_id": 1}],
    }
    sync_redis.set(streams.analytics_key(vid), json.dumps(summary), ex=60)
    body = get(api, f"/api/videos/{vid}/analytics").json()
    assert body["source"] == "live" and "vehicles" not in body and body["total_vehicles_count"] == 1


# ---- delete -----------------------------------------------------------------------------------


def test_delete_removes_the_file_the_rows_and_the_keys(api, video, db_engine, sync_redis):
    vid = video["id"]
    path = Path(video["file_path"])
    assert path.is_file()
    add_results(db_engine, vid)
    sync_redis.set(streams.analytics_key(vid), "{}", ex=60)
    sync_redis.hset(streams.progress_key(vid), mapping=StreamProgress(state=StreamState.DONE).to_hash())
    assert stored_rows(db_engine, vid) == 4

    r = request(api.port, "DELETE", f"/api/videos/{vid}")
    assert r.status == 204 and r.body == b""
    assert not path.exists()
    assert stored_rows(db_engine, vid) == 0
    assert sync_redis.exists(streams.analytics_key(vid), streams.progress_key(vid)) == 0
    assert get(api, f"/api/videos/{vid}").error_code == "video_not_found"
    assert vid not in [v["id"] for v in get(api, "/api/videos").json()["videos"]]
    r = request(api.port, "DELETE", f"/api/videos/{vid}")
    assert r.status == 404 and r.error_code == "video_not_found"


@pytest.mark.parametrize("vid", ["424242", "abc", "0", "-1", "99999999999"])
def test_delete_unknown_video(api, vid):
    r = request(api.port, "DELETE", f"/api/videos/{vid}")
    assert r.status == 404 and r.error_code == "video_not_found"


def test_delete_while_streaming_is_409(api, video, db_engine):
    vid = video["id"]
    path = Path(video["file_path"])
    started = request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"")
    assert started.status == 201
    api.airflow_state.set_state(started.json()["dag_run"]["dag_run_id"], "running")
    for status in ("processing", "stopping"):
        with db_engine.begin() as conn:
            conn.execute(text("UPDATE videos SET status = :s WHERE id = :v"), {"s": status, "v": vid})
        r = request(api.port, "DELETE", f"/api/videos/{vid}")
        assert r.status == 409, r.body
        assert r.error_code == "video_streaming" and "stop" in r.json()["error"]["message"]
        assert path.is_file() and get(api, f"/api/videos/{vid}").status == 200

    # Airflow unreachable: it cannot be told that the run ended, so still 409
    original = api.app.airflow
    api.app.airflow = api.airflow_client(f"http://127.0.0.1:{free_port()}")
    try:
        r = request(api.port, "DELETE", f"/api/videos/{vid}")
    finally:
        api.app.airflow = original
    assert r.status == 409 and r.error_code == "video_streaming"

    # The run ended, but its cleanup never set the final status: the video can go.
    api.airflow_state.finish_all()
    assert request(api.port, "DELETE", f"/api/videos/{vid}").status == 204
    assert not path.exists()


def test_delete_after_a_finished_run(api, video, db_engine):
    vid = video["id"]
    with db_engine.begin() as conn:
        conn.execute(text("UPDATE videos SET status = 'completed' WHERE id = :v"), {"v": vid})
    add_results(db_engine, vid)
    assert request(api.port, "DELETE", f"/api/videos/{vid}").status == 204
    assert stored_rows(db_engine, vid) == 0


def test_a_new_run_forgets_the_previous_runs_results(api, video, db_engine):
    vid = video["id"]
    add_results(db_engine, vid)
    assert request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"").status == 201
    assert stored_rows(db_engine, vid) == 0
    assert get(api, f"/api/videos/{vid}/passages").json()["passages"] == []


def test_a_refused_start_keeps_the_results(api, video, db_engine):
    vid = video["id"]
    add_results(db_engine, vid)
    original = api.app.airflow
    api.app.airflow = api.airflow_client(f"http://127.0.0.1:{free_port()}")
    try:
        assert request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"").status == 503
    finally:
        api.app.airflow = original
    assert stored_rows(db_engine, vid) == 4


def test_cors_preflight_allows_delete(api):
    r = request(api.port, "OPTIONS", "/api/videos/1", headers={"Origin": "http://localhost:4200"})
    assert r.status == 204 and "DELETE" in r.headers["Access-Control-Allow-Methods"]


# ---- the dashboard at / ---------------------------------------------------------------------------


@pytest.fixture
def built(api, tmp_path) -> Path:
    """A stand-in for ``ng build`` output, configured as FRONTEND_DIST."""
    dist = tmp_path / "dist" / "traffic-dashboard" / "browser"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><html><body><app-root></app-root></body></html>")
    (dist / "main-ABCD1234.js").write_text("console.log('app');")
    (dist / "styles-WXYZ5678.css").write_text("body{margin:0}")
    (dist / "assets" / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "secret.txt").write_text("not for the web")
    api.configure(FRONTEND_DIST=dist)
    return dist


def test_without_a_build_root_gives_a_hint(api, tmp_path):
    api.configure(FRONTEND_DIST=tmp_path / "nothing-built")
    r = get(api, "/")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    hint = r.json()
    assert "not built" in hint["message"] and hint["api"] == "/api/openapi.json"
    for path in ("/videos/3", "/index.html"):
        r = get(api, path)
        assert r.status == 404 and r.error_code == "not_found", path
    assert get(api, "/api/nope").error_code == "not_found"


def test_the_build_is_served_with_spa_fallback(api, built):
    index = (built / "index.html").read_bytes()
    for path in ("/", "/index.html", "/videos", "/videos/3/report", "/calibrate?video=2"):
        r = get(api, path)
        assert r.status == 200, path
        assert r.body == index, path
        assert r.headers["Content-Type"] == "text/html; charset=UTF-8"
        assert r.headers["Cache-Control"] == "no-cache"
    r = get(api, "/main-ABCD1234.js")
    assert r.status == 200 and r.body == b"console.log('app');"
    assert r.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in r.headers["Cache-Control"]
    assert get(api, "/styles-WXYZ5678.css").headers["Content-Type"].startswith("text/css")
    r = get(api, "/assets/logo.svg")
    assert r.status == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
    assert "immutable" not in r.headers["Cache-Control"]
    # a missing file is the app's business (its own not-found page): index.html
    assert get(api, "/assets/missing.png").body == index
    # nothing outside the build
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt"):
        assert b"not for the web" not in get(api, path).body, path
    r = request(api.port, "HEAD", "/")
    assert r.status == 200 and r.body == b"" and int(r.headers["Content-Length"]) == len(index)


def test_api_ws_and_metrics_are_not_the_app(api, built):
    for path in ("/api", "/api/", "/api/nope", "/api/videos/1/nope", "/ws", "/ws/nope", "/metrics/x"):
        r = get(api, path)
        assert r.status == 404, path
        assert r.error_code == "not_found", path
    assert get(api, "/api/health").json()["checks"]["database"] == "ok"
    assert get(api, "/metrics").headers["Content-Type"].startswith("text/plain")
    r = request(api.port, "POST", "/videos/3", b"{}")
    assert r.status == 404 and r.error_code == "not_found"
