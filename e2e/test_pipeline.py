"""End to end on the real services: PostgreSQL, Redis, the backend, the redis-consumer bridge,
the Spark application (local mode) and Airflow 3, started by the test session."""

from __future__ import annotations

import time
from collections import Counter

import cv2
import numpy as np
import psycopg
import pytest

from contracts.messages import VideoStatus
from e2e.harness import Api, Viewer, decode_data_url, wait_dag_run

pytestmark = pytest.mark.slow
RUN_TIMEOUT_S = 420


def pg(stack):
    return psycopg.connect(stack.infra.env["DATABASE_URL"].replace("postgresql+psycopg", "postgresql"))


def setup_video(stack, clip, calib, name) -> tuple[Api, int]:
    api = Api.of(stack)
    video = api.upload(clip, name)
    api.calibrate(video["id"], calib)
    return api, video["id"]


def watch_and_start(stack, api, video_id, realtime=False) -> tuple[Viewer, dict]:
    viewer = Viewer(
        f"ws://127.0.0.1:{stack.infra.backend_port}/ws/client/stream",
        video_id,
        stack.infra.env["TRAFFIC_API_TOKEN"],
    ).start()
    status, run = api.json("POST", f"/api/videos/{video_id}/stream/start", {"realtime": realtime})
    assert status == 201, run  # the contract: 201 with the Airflow run
    return viewer, run


def run_id(run: dict) -> str:
    return run.get("dag_run_id") or run["dag_run"]["dag_run_id"]


def hub_drops(api: Api) -> int:
    """Frames the backend's hub has dropped for slow clients since it started (every client's:
    ``GET /api/websocket/status``)."""
    return api.expect("GET", "/api/websocket/status")["dropped_frames"]


def assert_stream_in_order(viewer: Viewer, frames_total: int) -> None:
    """Any stream, live ones included: frames arrive in order, none twice, the last one is the end
    of stream; analytics (never dropped for a slow client, unlike frames) cover every frame
    exactly once, but those the processor dropped (live: already older than the latency budget;
    counted on the frames). ``assert_complete_stream`` is the stricter check of realtime=false."""
    numbers = [f["frame_number"] for f in viewer.frames if not f["end_of_stream"]]
    assert numbers == sorted(numbers), "frames out of order"
    assert len(numbers) == len(set(numbers)), "a frame arrived twice"
    assert viewer.frames[-1]["end_of_stream"]
    assert len(numbers) >= frames_total // 2, f"only {len(numbers)} of {frames_total} frames shown"
    updates = [a["frame_number"] for a in viewer.analytics if not a.get("end_of_stream")]
    assert updates == sorted(updates), "analytics out of order"
    assert len(updates) == len(set(updates)), "an analytics update arrived twice"
    missing = sorted(set(range(frames_total)) - set(updates))
    dropped = max((f.get("dropped_frames", 0) for f in viewer.frames), default=0)
    assert len(missing) <= dropped, f"no analytics for frames {missing[:10]} ({dropped} dropped)"


def assert_complete_stream(viewer: Viewer, frames_total: int, hub_dropped: int) -> None:
    """A ``realtime=false`` stream: every frame is processed (DESIGN.md: nothing skipped, nothing
    dropped as late). Frames arrive in order, none twice, the last one is the end of stream, and
    every frame reaches the viewer but those the hub dropped for a slow client (``hub_dropped``:
    the rise of its counter over the stream); analytics (never dropped for a slow client) cover
    every frame exactly once."""
    shown = [f for f in viewer.frames if not f["end_of_stream"]]
    numbers = [f["frame_number"] for f in shown]
    assert numbers == sorted(numbers), "frames out of order"
    assert len(numbers) == len(set(numbers)), "a frame arrived twice"
    assert viewer.frames[-1]["end_of_stream"]
    assert set(numbers) <= set(range(frames_total)), sorted(set(numbers) - set(range(frames_total)))[:10]
    assert frames_total - len(numbers) <= hub_dropped, (
        f"only {len(numbers)} of {frames_total} frames shown ({hub_dropped} dropped by the hub)"
    )
    skipped = max((f.get("skipped_frames", 0) for f in shown), default=0)
    dropped = max((f.get("dropped_frames", 0) for f in shown), default=0)
    assert (skipped, dropped) == (0, 0), f"{skipped} frames skipped, {dropped} dropped with realtime=false"
    updates = [a["frame_number"] for a in viewer.analytics if not a.get("end_of_stream")]
    assert updates == sorted(updates), "analytics out of order"
    assert len(updates) == len(set(updates)), "an analytics update arrived twice"
    missing = sorted(set(range(frames_total)) - set(updates))
    assert not missing, f"no analytics for frames {missing[:10]} ({len(missing)} of {frames_total})"
    assert len(updates) == frames_total, f"{len(updates)} analytics updates for {frames_total} frames"


def speeding_tracks(viewer: Viewer) -> dict[int, float]:
    """track id -> median speed of the speeding vehicles the viewer was told about (NaN for one
    never measured while listed: a flagged vehicle's box may be unmeasured in a frame)."""
    speeds: dict[int, list[float]] = {}
    for a in viewer.analytics:
        for v in a["speeding_vehicles"]:
            measured = speeds.setdefault(v["track_id"], [])
            if v["speed"] is not None:
                measured.append(v["speed"])
    return {t: float(np.median(s)) if s else float("nan") for t, s in speeds.items()}


def video_status(stack, video_id) -> str:
    with pg(stack) as conn:
        return conn.execute("SELECT status FROM videos WHERE id = %s", (video_id,)).fetchone()[0]


def analytics_row(stack, video_id):
    with pg(stack) as conn:
        return conn.execute(
            "SELECT total_vehicles_count, vehicle_type_distribution, speeding_count, avg_dwell_time "
            "FROM video_analytics WHERE video_id = %s",
            (video_id,),
        ).fetchone()


def test_truth_clip_end_to_end(stack, truth):
    clip, calib, data = truth
    api, video_id = setup_video(stack, clip, calib, "truth")
    hub_before = hub_drops(api)
    viewer, run = watch_and_start(stack, api, video_id)
    assert viewer.wait(RUN_TIMEOUT_S), f"no end of stream: {len(viewer.frames)} frames, {viewer.errors}"
    assert not viewer.errors

    assert_complete_stream(viewer, data["frames"], hub_drops(api) - hub_before)
    for f in viewer.frames[:: max(1, len(viewer.frames) // 10)]:
        if f["processed_frame"]:
            img = cv2.imdecode(
                np.frombuffer(decode_data_url(f["processed_frame"]), np.uint8), cv2.IMREAD_COLOR
            )
            assert img is not None and img.shape == (360, 640, 3)

    truth_speeding = sorted(t["speed_kmh"] for t in data["vehicles"] if t["speeding"])
    seen = sorted(speeding_tracks(viewer).values())
    assert len(seen) == len(truth_speeding), (seen, truth_speeding)
    for measured, expected in zip(seen, truth_speeding):
        assert abs(measured - expected) <= 5, (seen, truth_speeding)

    assert wait_dag_run(stack, run_id(run), 120) == "success"
    total, types, speeding, _ = analytics_row(stack, video_id)
    assert total == len(data["vehicles"])
    assert types == dict(Counter(t["class_name"] for t in data["vehicles"]))
    assert speeding == len(truth_speeding)
    with pg(stack) as conn:
        rows = conn.execute(
            "SELECT track_id, speed_kmh FROM speeding_violations WHERE video_id = %s", (video_id,)
        ).fetchall()
    assert sorted(round(r[1]) for r in rows) == pytest.approx(truth_speeding, abs=5)


def test_two_videos_at_once_without_cross_talk(stack, truth):
    clip, calib, data = truth
    api, first = setup_video(stack, clip, calib, "twin A")
    _, second = setup_video(stack, clip, calib, "twin B")
    hub_before = hub_drops(api)
    viewer_a, run_a = watch_and_start(stack, api, first)
    viewer_b, run_b = watch_and_start(stack, api, second)
    for viewer in (viewer_a, viewer_b):
        assert viewer.wait(RUN_TIMEOUT_S), f"no end of stream: {len(viewer.frames)} frames, {viewer.errors}"
    for viewer in (viewer_a, viewer_b):
        assert_complete_stream(viewer, data["frames"], hub_drops(api) - hub_before)
    assert {f["video_id"] for f in viewer_a.frames} == {first}
    assert {a["video_id"] for a in viewer_b.analytics} == {second}
    for run in (run_a, run_b):
        assert wait_dag_run(stack, run_id(run), 120) == "success"
    for video_id in (first, second):
        assert analytics_row(stack, video_id)[0] == len(data["vehicles"])


def test_stop_mid_stream_ends_within_seconds_and_stores_partial_analytics(stack):
    import json

    from stack.sample import SAMPLE_CALIBRATION, SAMPLE_VIDEO

    api, video_id = setup_video(stack, SAMPLE_VIDEO, json.loads(SAMPLE_CALIBRATION.read_text()), "stop me")
    viewer, run = watch_and_start(stack, api, video_id, realtime=True)

    def counted() -> int:
        return max((a["stats"]["total_vehicles"] for a in viewer.analytics), default=0)

    deadline = time.monotonic() + 120
    while (len(viewer.frames) < 50 or counted() < 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(viewer.frames) >= 50 and counted() >= 1, viewer.errors
    status, body = api.json("POST", f"/api/videos/{video_id}/stream/stop")
    assert status in (200, 202), body
    stopped_at = time.monotonic()
    assert viewer.wait(30), "no end of stream after stop"
    assert time.monotonic() - stopped_at < 15
    assert viewer.frames[-1]["frame_number"] < 1190 - 1  # it really stopped early
    # A stop is not a failure: the run succeeds and the video is "stopped".
    assert wait_dag_run(stack, run_id(run), 120) == "success"
    assert video_status(stack, video_id) == VideoStatus.STOPPED
    final = [a for a in viewer.analytics if a.get("end_of_stream")]
    assert final and final[-1]["summary"], "no final summary on the analytics channel"
    row = analytics_row(stack, video_id)  # partial analytics stored, as the viewer was told
    assert row is not None and row[0] == final[-1]["summary"]["total_vehicles_count"] >= counted() >= 1
    status, _ = api.json("POST", f"/api/videos/{video_id}/stream/stop")
    assert status == 409  # idle again


@pytest.mark.parametrize("victim", ["spark", "redis-consumer"])
def test_kill_9_mid_stream_loses_nothing_and_counts_once(stack, truth, victim):
    clip, calib, data = truth
    api, video_id = setup_video(stack, clip, calib, f"kill {victim}")
    hub_before = hub_drops(api)
    viewer, run = watch_and_start(stack, api, video_id)
    deadline = time.monotonic() + 180
    while len(viewer.frames) < 60 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(viewer.frames) >= 60, viewer.errors
    stack.kill(victim)  # SIGKILL, the whole process group
    time.sleep(2)
    stack.start(victim)
    assert viewer.wait(RUN_TIMEOUT_S), (
        f"no end of stream after restarting {victim}: {len(viewer.frames)} frames"
    )
    assert_complete_stream(viewer, data["frames"], hub_drops(api) - hub_before)
    assert wait_dag_run(stack, run_id(run), 180) == "success"
    assert analytics_row(stack, video_id)[0] == len(data["vehicles"])
