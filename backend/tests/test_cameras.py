"""Cameras as sources, against a real RTSP server on loopback (GStreamer's, ``stack/rtsp.py``)
serving a clip in a loop with basic auth: the access rule (an operator), the connection test
at creation and its clear errors, credentials in no response and no log line, rename / re-point /
snapshot refresh, deletion."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from urllib.parse import quote

import cv2
import numpy as np
import pytest
from sqlalchemy import text

from backend.embedded import free_port
from backend.services.redact import redact, redact_text
from backend.tests.client import post_json, put_json, request, upload
from backend.tests.conftest import CAMERA_PASSWORD, CAMERA_USER, count_videos
from contracts import streams


def secrets_in(text: str | bytes) -> list[str]:
    """Which forms of the camera's credentials appear in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    forms = {CAMERA_PASSWORD, quote(CAMERA_PASSWORD, safe=""), CAMERA_USER}
    return [f for f in forms if f in text]


def add(api, name: str, url: str, auth: dict[str, str] | None = None):
    return post_json(api.port, "/api/cameras", {"name": name, "url": url}, auth)


def test_camera_routes_need_an_operator(api, rtsp_camera, db_engine):
    """A camera makes the backend connect where it is told: without credentials (or with a wrong
    token) every camera route is 401, a viewer may list the cameras but gets 403 on adding,
    changing and refreshing one, and nothing is done, nothing is stored; an operator may."""
    operator, viewer = api.accounts["operator"].auth, api.accounts["viewer"].auth
    cam = add(api, "guarded", rtsp_camera.url, operator).json()
    calls = [
        ("GET", "/api/cameras", None),
        ("POST", "/api/cameras", {"name": "x", "url": rtsp_camera.url}),
        ("PUT", f"/api/cameras/{cam['id']}", {"name": "taken over"}),
        ("POST", f"/api/cameras/{cam['id']}/snapshot", None),
    ]
    before = count_videos(db_engine)
    thumbnail = request(api.port, "GET", f"/api/videos/{cam['id']}/thumbnail").body
    wrong = {"Authorization": f"Bearer {api.accounts['operator'].token}x"}
    for headers in ({}, wrong):
        for method, path, body in calls:
            data = None if body is None else json.dumps(body).encode()
            sent = {"Content-Type": "application/json", **headers}
            r = request(api.port, method, path, data, sent, auth=False)
            assert (r.status, r.error_code) == (401, "unauthorized"), (method, path, r.body)
    for method, path, body in calls:
        data = None if body is None else json.dumps(body).encode()
        r = request(api.port, method, path, data, {"Content-Type": "application/json", **viewer})
        if method == "GET":  # viewers see the cameras (their URLs redacted)
            assert r.status == 200 and cam["id"] in [v["id"] for v in r.json()["videos"]]
        else:
            assert (r.status, r.error_code) == (403, "forbidden"), (method, path, r.body)
            assert "operator" in r.json()["error"]["message"]
    assert count_videos(db_engine) == before
    assert request(api.port, "GET", f"/api/videos/{cam['id']}").json()["name"] == "guarded"
    assert request(api.port, "GET", f"/api/videos/{cam['id']}/thumbnail").body == thumbnail
    # an operator may
    renamed = put_json(api.port, f"/api/cameras/{cam['id']}", {"name": "renamed"}, operator)
    assert renamed.status == 200 and renamed.json()["name"] == "renamed"
    assert request(api.port, "POST", f"/api/cameras/{cam['id']}/snapshot", headers=operator).status == 200
    assert request(api.port, "GET", "/api/cameras", headers=operator).status == 200
    # deleting a video (a camera is one) is an admin's
    assert request(api.port, "DELETE", f"/api/videos/{cam['id']}", headers=operator).status == 403
    assert request(api.port, "DELETE", f"/api/videos/{cam['id']}").status == 204


def test_adding_a_camera_grabs_a_frame_and_never_shows_its_credentials(api, rtsp_camera, caplog):
    caplog.set_level(logging.DEBUG)
    r = add(api, "gate north", rtsp_camera.url)
    assert r.status == 201, r.body
    cam = r.json()
    assert cam["source_kind"] == "camera"
    assert (cam["width"], cam["height"]) == (640, 360)
    assert cam["fps"] == pytest.approx(25, abs=0.5)
    assert cam["source_url"] == f"rtsp://***@127.0.0.1:{rtsp_camera.port}/cam"
    assert not secrets_in(r.body)

    # the snapshot is the thumbnail (what the calibration editor draws on): the camera's frame
    thumb = request(api.port, "GET", f"/api/videos/{cam['id']}/thumbnail")
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(thumb.body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3) and image.std() > 10  # a real picture, not a blank

    for path in ("/api/cameras", "/api/videos", f"/api/videos/{cam['id']}"):
        listed = request(api.port, "GET", path)
        assert listed.status == 200 and not secrets_in(listed.body), path
    listed = request(api.port, "GET", "/api/cameras").json()["videos"]
    assert cam["id"] in [v["id"] for v in listed]
    assert not [rec.getMessage() for rec in caplog.records if secrets_in(rec.getMessage())]
    assert request(api.port, "DELETE", f"/api/videos/{cam['id']}").status == 204


def silent_server() -> tuple[int, threading.Event]:
    """A TCP server that accepts and never answers (a camera that hangs): its port, and the event
    that stops it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue
        for conn in held:
            conn.close()
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1], stop


@pytest.fixture(scope="module")
def audio_only_camera(camera_clip):
    from stack.rtsp import RtspCamera

    with RtspCamera(camera_clip, path="/mic", audio_only=True) as cam:
        yield cam


def test_each_camera_failure_gets_a_clear_error_and_stores_nothing(
    api, rtsp_camera, audio_only_camera, db_engine, caplog
):
    caplog.set_level(logging.DEBUG)
    wrong_password = "wr0ng-" + CAMERA_PASSWORD[-6:]
    wrong_creds = rtsp_camera.url.replace(quote(CAMERA_PASSWORD, safe=""), quote(wrong_password, safe=""))
    assert wrong_creds != rtsp_camera.url
    hang_port, stop_hanging = silent_server()
    api.configure(CAMERA_TIMEOUT_S=1.5)
    cases = [
        (wrong_creds, 422, "camera_auth_failed"),
        (rtsp_camera.address, 422, "camera_auth_failed"),  # no credentials at all
        (rtsp_camera.url.replace("/cam", "/nowhere"), 422, "camera_not_found"),
        (f"rtsp://{CAMERA_USER}:x@127.0.0.1:{free_port()}/cam", 422, "camera_unreachable"),
        (audio_only_camera.url, 422, "camera_no_video"),
        (f"rtsp://127.0.0.1:{hang_port}/cam", 422, "camera_timeout"),
        ("ftp://127.0.0.1/cam", 400, "invalid_url"),
        ("not a url", 400, "invalid_url"),
        ("rtsp:///no-host", 400, "invalid_url"),
    ]
    before = count_videos(db_engine)
    try:
        for url, status, code in cases:
            started = time.monotonic()
            r = add(api, "bad", url)
            took = time.monotonic() - started
            assert (r.status, r.error_code) == (status, code), (url, r.body)
            assert took < 10, (url, took)  # a hung camera answers within the timeout, not never
            message = r.json()["error"]["message"]
            assert message and not secrets_in(message) and wrong_password not in message, message
    finally:
        stop_hanging.set()
    assert post_json(api.port, "/api/cameras", {"name": "x"}).error_code == "invalid_body"
    assert post_json(api.port, "/api/cameras", b"{nope").error_code == "invalid_json"
    assert post_json(api.port, "/api/cameras", {"name": "", "url": rtsp_camera.url}).status == 400
    assert count_videos(db_engine) == before  # nothing stored by a failed test
    logged = [rec.getMessage() for rec in caplog.records]
    assert not [m for m in logged if secrets_in(m) or wrong_password in m]


def test_rename_repoint_refresh_and_delete(api, rtsp_camera, sample_video):
    cam = add(api, "before", rtsp_camera.url).json()
    one = f"/api/cameras/{cam['id']}"

    r = put_json(api.port, one, {"name": "after"})
    assert r.status == 200 and r.json()["name"] == "after" and r.json()["source_url"] == cam["source_url"]
    # a new URL is tested first: a wrong one changes nothing
    r = put_json(api.port, one, {"url": rtsp_camera.url.replace("/cam", "/gone")})
    assert r.error_code == "camera_not_found"
    assert request(api.port, "GET", f"/api/videos/{cam['id']}").json()["source_url"] == cam["source_url"]
    r = put_json(api.port, one, {"url": rtsp_camera.url, "extra": 1})
    assert r.error_code == "invalid_body"

    snapshot = api.storage / "cameras" / f"{cam['id']}.jpg"
    snapshot.unlink()  # the snapshot lost: the thumbnail says so, a refresh grabs a new one
    assert request(api.port, "GET", f"/api/videos/{cam['id']}/thumbnail").status == 404
    r = request(api.port, "POST", f"{one}/snapshot")
    assert r.status == 200 and snapshot.stat().st_size > 1000
    assert request(api.port, "GET", f"/api/videos/{cam['id']}/thumbnail").status == 200

    # an uploaded video is not a camera
    video = upload(api.port, {"name": "file"}, {"video": ("v.mp4", sample_video.read_bytes())}).json()
    assert video["source_kind"] == "file" and video["source_url"] is None
    assert put_json(api.port, f"/api/cameras/{video['id']}", {"name": "x"}).error_code == "not_a_camera"
    assert request(api.port, "POST", f"/api/cameras/{video['id']}/snapshot").error_code == ("not_a_camera")
    assert put_json(api.port, "/api/cameras/424242", {"name": "x"}).error_code == "video_not_found"

    assert request(api.port, "DELETE", f"/api/videos/{cam['id']}").status == 204
    assert not snapshot.exists()
    assert request(api.port, "DELETE", f"/api/videos/{video['id']}").status == 204


def add_results(engine, video_id: int, run_id: str, track_id: int) -> None:
    """A passage and a violation of an earlier run of the video."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO vehicle_passages (video_id, run_id, track_id, class_name, first_frame,"
                " last_frame, first_time_s, last_time_s, dwell_time_s, speed_kmh, max_speed_kmh,"
                " speeding) VALUES (:v, :r, :t, 'car', 5, 30, 0.5, 3.0, 2.5, 91.5, 95.0, true)"
            ),
            {"v": video_id, "r": run_id, "t": track_id},
        )
        conn.execute(
            text(
                "INSERT INTO speeding_violations (video_id, run_id, track_id, vehicle_class, speed_kmh,"
                " frame_number, video_time_s) VALUES (:v, :r, :t, 'car', 91.5, 12, 1.2)"
            ),
            {"v": video_id, "r": run_id, "t": track_id},
        )


def stored_runs(engine, video_id: int) -> tuple[list[str], list[str]]:
    """The run ids of the video's stored passages and violations."""
    query = "SELECT run_id FROM {} WHERE video_id = :v ORDER BY run_id"
    with engine.connect() as conn:
        passages, violations = (
            list(conn.execute(text(query.format(table)), {"v": video_id}).scalars())
            for table in ("vehicle_passages", "speeding_violations")
        )
    return passages, violations


def test_a_camera_streams_live_like_a_video_and_keeps_its_results(api, rtsp_camera, db_engine, sync_redis):
    """Start triggers the DAG with conf {video_id, realtime: true} through (fake) Airflow; realtime
    false is refused (a camera cannot be read faster than it sends); the camera's stored passages
    and violations of earlier runs stay (they accumulate, told apart by run_id), its Redis keys of
    the previous run go."""
    cam = add(api, "streamed", rtsp_camera.url).json()
    cid = cam["id"]
    start = f"/api/videos/{cid}/stream/start"
    add_results(db_engine, cid, "earlier-run", 7)
    sync_redis.set(streams.stop_key(cid), "1")
    sync_redis.rpush(streams.violations_key(cid), '{"track_id": 1}')
    triggers = api.airflow_state.triggers

    refused = request(api.port, "POST", start, b'{"realtime": false}', {"Content-Type": "application/json"})
    assert (refused.status, refused.error_code) == (400, "invalid_realtime"), refused.body
    assert api.airflow_state.triggers == triggers
    assert request(api.port, "GET", f"/api/videos/{cid}").json()["status"] == "uploaded"

    for body in (b"", b'{"realtime": true}'):
        r = request(api.port, "POST", start, body, {"Content-Type": "application/json"})
        assert r.status == 201, r.body
        run = r.json()["dag_run"]
        assert run["dag_id"] == "video_streaming_pipeline"
        assert run["conf"] == {"video_id": cid, "realtime": True}
        assert api.airflow_state.runs[run["dag_run_id"]]["conf"] == {"video_id": cid, "realtime": True}
        assert not secrets_in(r.body)
        shown = request(api.port, "GET", f"/api/videos/{cid}").json()
        assert shown["status"] == "processing"
        assert shown["health"]["state"] == "idle"  # no progress of the run yet
        assert sync_redis.exists(streams.stop_key(cid), streams.violations_key(cid)) == 0
        assert request(api.port, "POST", start, b"").error_code == "already_streaming"
        api.airflow_state.finish_all()
    assert api.airflow_state.triggers == triggers + 2
    assert stored_runs(db_engine, cid) == (["earlier-run"], ["earlier-run"])  # kept over both starts

    assert request(api.port, "DELETE", f"/api/videos/{cid}").status == 204
    assert stored_runs(db_engine, cid) == ([], [])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/live", "rtsp://***@10.0.0.5:554/live"),
        ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
        (
            "http://cam.local/mjpg?user=a&password=hunter2&fps=10",
            "http://cam.local/mjpg?user=a&password=***&fps=10",
        ),
        ("https://cdn.example/live.m3u8?token=abc123", "https://cdn.example/live.m3u8?token=***"),
        ("rtsp://user@host/x", "rtsp://***@host/x"),
    ],
)
def test_redact(url, shown):
    assert redact(url) == shown


def test_redact_text_hides_urls_and_the_secrets_themselves():
    text = "Server returned 401 for 'rtsp://admin:p%3Ass@127.0.0.1:554/cam' (user admin, p:ss)"
    out = redact_text(text, "admin", "p:ss")
    assert "p:ss" not in out and "p%3Ass" not in out and "admin" not in out
    assert "rtsp://***@127.0.0.1:554/cam" in out
