"""A live camera end to end: a real RTSP server on loopback (stack/rtsp.py: GStreamer's RTSP
server) serving the ground-truth clip in a loop, added through the REST API, streamed by the real
stack (Airflow's long-running producer, Spark, the bridge, the backend) until stopped.

What users rely on, checked as they would see it: the passages in PostgreSQL, written as vehicles
pass (never only at the end), equal the truth once per loop (counts, classes, speeders, speeds); the
camera's health goes to reconnecting during an outage and back to live by itself, losing nothing
that passed before; a viewer sees the camera within the live latency bound; a kill -9 of the Spark
driver or of the bridge neither loses nor duplicates a passage."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter

import numpy as np
import psycopg
import pytest

from e2e.harness import Api, Viewer, wait_dag_run
from e2e.test_pipeline import run_id

pytestmark = pytest.mark.slow
USER, PASSWORD = "e2e-operator", "cam-" + secrets.token_hex(6)
MATCH_FRAMES = 20  # a passage's first/last frame in the ROI within this of the truth's
SPEED_MAE_KMH = 1.5  # per loop, over the measured vehicles
SPEED_TOLERANCE_KMH = 5.0  # any one vehicle


@pytest.fixture(scope="module")
def camera_server(truth, tmp_path_factory):
    """The truth clip (8 vehicles, 30-120 km/h, 9 s at 30 fps) as H.264 in a loop, with basic auth."""
    from stack.rtsp import RtspCamera, server_available, transcode

    missing = server_available()
    assert missing is None, missing  # .ci/run installs it (make rtsp-deps): never skipped
    clip, _, _ = truth
    h264 = transcode(clip, tmp_path_factory.mktemp("camera") / "truth.mp4")
    with RtspCamera(h264, user=USER, password=PASSWORD) as cam:
        yield cam


def admin(stack) -> dict:
    return {"Content-Type": "application/json"}  # Api.of(stack) sends the stack's admin token


def add_camera(stack, api: Api, name: str, url: str) -> tuple[int, dict]:
    return api.call("POST", "/api/cameras", json.dumps({"name": name, "url": url}).encode(), admin(stack))


def health(api: Api, video_id: int) -> dict:
    status, video = api.json("GET", f"/api/videos/{video_id}")
    assert status == 200, video
    return video["health"] or {}


def wait_for(predicate, timeout_s: float, step_s: float = 0.5, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step_s)
    assert predicate(), f"timed out after {timeout_s:.0f} s waiting for {what}"


def stored_passages(stack, video_id: int) -> list[dict]:
    url = stack.infra.env["DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, track_id, class_name, first_frame, last_frame, speed_kmh, speeding, passed_at"
            " FROM vehicle_passages WHERE video_id = %s ORDER BY first_frame",
            (video_id,),
        )
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]


def loops(passages: list[dict], truth: dict) -> dict[int, list[dict]]:
    """The passages of each loop of the clip, by the loop's index on the camera's frame numbers:
    the loop's phase is the one that puts the most passages within ``MATCH_FRAMES`` of a truth
    vehicle's frames in the ROI (the camera joined the server's loop at some point of it)."""
    length = truth["frames"]
    starts = np.array([v["first_frame_in_roi"] for v in truth["vehicles"]])
    ends = np.array([v["last_frame_in_roi"] for v in truth["vehicles"]])

    def fits(phase: int) -> int:
        n = 0
        for p in passages:
            first = (p["first_frame"] + phase) % length
            last = first + (p["last_frame"] - p["first_frame"])
            n += bool(np.any((abs(starts - first) <= MATCH_FRAMES) & (abs(ends - last) <= MATCH_FRAMES)))
        return n

    phase = max(range(length), key=fits)
    out: dict[int, list[dict]] = {}
    for p in passages:
        k, first = divmod(p["first_frame"] + phase, length)
        out.setdefault(k, []).append(
            {**p, "first_frame": first, "last_frame": first + p["last_frame"] - p["first_frame"]}
        )
    return out


def check_loop(passages: list[dict], truth: dict) -> dict:
    """One loop's passages against the truth: every vehicle once, its class, the speeders, speeds."""
    from testing.synthetic import score

    s = score(passages, truth)
    classes = Counter(p["class_name"] for p in passages)
    want = Counter(v["class_name"] for v in truth["vehicles"])
    speeders = sorted(round(p["speed_kmh"] or 0) for p in passages if p["speeding"])
    want_speeders = sorted(round(v["speed_kmh"]) for v in truth["vehicles"] if v["speeding"])
    report = {
        "counted": s["counted"],
        "missed": s["missed"],
        "extra": s["extra"],
        "classes": dict(classes),
        "speeders": speeders,
        "mae_kmh": round(s["mae_kmh"], 2),
        "max_error_kmh": round(s["max_error_kmh"], 2),
    }
    assert s["counted"] == s["truth"] and not s["missed"] and not s["extra"], report
    assert classes == want, report
    assert len(speeders) == len(want_speeders) and not s["missed_speeders"] and not s["false_flags"], report
    assert s["mae_kmh"] <= SPEED_MAE_KMH and s["max_error_kmh"] <= SPEED_TOLERANCE_KMH, report
    return report


def complete_loops(by_loop: dict[int, list[dict]]) -> list[int]:
    """Loop indices wholly seen: not the first nor the last (cut by the start, an outage or now)."""
    keys = sorted(by_loop)
    return keys[1:-1]


def test_wrong_url_and_wrong_credentials_are_refused_at_creation(stack, camera_server):
    api = Api.of(stack)
    wrong_password = camera_server.url.replace(PASSWORD, "nope-" + PASSWORD[-4:])
    for url, code in (
        (wrong_password, "camera_auth_failed"),
        (camera_server.url.replace("/cam", "/elsewhere"), "camera_not_found"),
        ("rtsp://127.0.0.1:9/cam", "camera_unreachable"),
    ):
        status, body = add_camera(stack, api, "wrong", url)
        assert (status, body["error"]["code"]) == (422, code), body
        assert PASSWORD[-6:] not in json.dumps(body) and "nope-" not in json.dumps(body)


def test_a_camera_streams_two_loops_survives_an_outage_and_results_are_written_as_vehicles_pass(
    stack, truth, camera_server
):
    clip, calib, data = truth
    api = Api.of(stack)
    status, cam = add_camera(stack, api, "truth camera", camera_server.url)
    assert status == 201, cam
    vid = cam["id"]
    assert PASSWORD not in json.dumps(cam)
    api.calibrate(vid, calib)
    viewer = Viewer(
        f"ws://127.0.0.1:{stack.infra.backend_port}/ws/client/stream",
        vid,
        stack.infra.env["TRAFFIC_API_TOKEN"],
    ).start()
    status, run = api.json("POST", f"/api/videos/{vid}/stream/start", {"realtime": True})
    assert status == 201, run
    loop_s = data["frames"] / data["fps"]
    try:
        wait_for(lambda: health(api, vid).get("state") == "live", 120, what="the camera live")
        # two whole loops and the ends of the ones around them
        wait_for(
            lambda: len(complete_loops(loops(stored_passages(stack, vid), data))) >= 2,
            4 * loop_s + 60,
            step_s=2,
            what="two complete loops of passages in PostgreSQL",
        )
        h = health(api, vid)
        assert h["state"] == "live" and h["input_fps"] and abs(h["input_fps"] - data["fps"]) < 5, h
        before = stored_passages(stack, vid)
        by_loop = loops(before, data)
        reports = [check_loop(by_loop[k], data) for k in complete_loops(by_loop)[:2]]
        print("loops:", reports)
        # written as they passed, each with the wall clock of its last frame in the ROI
        assert all(p["passed_at"] is not None for p in before)

        # the viewer: frames of the camera within the live latency bound
        frames = [f for f in viewer.frames if f.get("produced_at")]
        assert len(frames) > data["fps"] * loop_s, len(frames)
        latency = sorted(f["_arrived"] - f["produced_at"] for f in frames[len(frames) // 4 :])
        p95 = latency[int(0.95 * (len(latency) - 1))]
        print(f"camera -> viewer latency: p50 {latency[len(latency) // 2]:.2f} s, p95 {p95:.2f} s")
        assert p95 <= float(stack.infra.env.get("LIVE_LATENCY_BUDGET_S", 1.0)) * 1.5, p95

        # outage: the server is killed for 10 s mid-loop
        camera_server.stop()
        outage_at = time.time()
        wait_for(lambda: health(api, vid).get("state") == "reconnecting", 20, step_s=0.2, what="reconnecting")
        seen_reconnecting = time.time() - outage_at
        time.sleep(max(0.0, 10.0 - (time.time() - outage_at)))
        camera_server.start()
        back_at = time.time()
        wait_for(lambda: health(api, vid).get("state") == "live", 60, step_s=0.2, what="live again")
        reconnect_s = time.time() - back_at
        h = health(api, vid)
        assert h["reconnects"] >= 1 and h["last_error"], h
        print(
            f"outage: reconnecting after {seen_reconnecting:.1f} s, "
            f"live {reconnect_s:.1f} s after the server came back"
        )
        # nothing that passed before the outage is lost (and nothing is written twice)
        after = stored_passages(stack, vid)
        keys = {(p["run_id"], p["track_id"]) for p in after}
        assert {(p["run_id"], p["track_id"]) for p in before} <= keys
        assert len(keys) == len(after)
        # and after it, a whole loop is counted right again
        resumed = lambda: [p for p in stored_passages(stack, vid) if p["passed_at"].timestamp() > back_at]  # noqa: E731
        wait_for(
            lambda: len(complete_loops(loops(resumed(), data))) >= 1,
            3 * loop_s + 60,
            step_s=2,
            what="a complete loop after the outage",
        )
        by_loop = loops(resumed(), data)
        print("after the outage:", check_loop(by_loop[complete_loops(by_loop)[0]], data))
    finally:
        viewer.stop()
        status, _ = api.json("POST", f"/api/videos/{vid}/stream/stop")
    assert status == 202
    assert wait_dag_run(stack, run_id(run), 120) == "success"
    status, video = api.json("GET", f"/api/videos/{vid}")
    assert video["status"] == "stopped" and video["health"]["state"] == "idle", video


@pytest.mark.parametrize("victim", ["spark", "redis-consumer"])
def test_kill_9_while_a_camera_streams_neither_loses_nor_duplicates_passages(
    stack, truth, camera_server, victim
):
    clip, calib, data = truth
    if camera_server.proc is None:
        camera_server.start()
    api = Api.of(stack)
    status, cam = add_camera(stack, api, f"kill {victim}", camera_server.url)
    assert status == 201, cam
    vid = cam["id"]
    api.calibrate(vid, calib)
    status, run = api.json("POST", f"/api/videos/{vid}/stream/start", {"realtime": True})
    assert status == 201, run
    loop_s = data["frames"] / data["fps"]
    try:
        wait_for(lambda: len(stored_passages(stack, vid)) >= 10, 3 * loop_s + 120, step_s=1, what="passages")
        stack.kill(victim)  # SIGKILL, the whole process group
        killed_at = time.time()
        before = stored_passages(stack, vid)
        time.sleep(2)
        stack.start(victim)
        # the camera's results resume by themselves
        wait_for(
            lambda: any(p["passed_at"].timestamp() > killed_at + 5 for p in stored_passages(stack, vid)),
            240,
            step_s=2,
            what=f"passages after restarting {victim}",
        )
        resumed_at = max(p["passed_at"].timestamp() for p in stored_passages(stack, vid))
        wait_for(
            lambda: (
                len(
                    complete_loops(
                        loops(
                            [
                                p
                                for p in stored_passages(stack, vid)
                                if p["passed_at"].timestamp() >= resumed_at
                            ],
                            data,
                        )
                    )
                )
                >= 1
            ),
            3 * loop_s + 60,
            step_s=2,
            what="a complete loop after the restart",
        )
        after = stored_passages(stack, vid)
        # nothing that passed before the kill is lost, nothing is written twice
        assert {(p["run_id"], p["track_id"]) for p in before} <= {(p["run_id"], p["track_id"]) for p in after}
        # no truth vehicle counted twice in any loop (a replayed batch would add a second track):
        # all but one passage of a loop match a truth vehicle one to one. Not in the loop of the
        # kill (KNOWN LIMIT, README): the vehicles in the ROI then and in the backlog read while
        # Spark restarts are tracked on late frames, detected at LIVE_LATE_DETECT_HZ only, and come
        # out cut short, or twice; that loop holds at most as many more passages than vehicles as
        # the clip ever has in the ROI at once.
        by_loop = loops(after, data)
        # the loop(s) whose vehicles passed around the kill (the camera's clock: read times)
        cut = {
            k
            for k, ps in by_loop.items()
            if any(-2 <= p["passed_at"].timestamp() - killed_at <= 10 for p in ps)
        }
        at_once = max(
            sum(v["first_frame_in_roi"] <= f <= v["last_frame_in_roi"] for v in data["vehicles"])
            for f in range(data["frames"])
        )
        for k, ps in by_loop.items():
            from testing.synthetic import match_passages

            matched = sum(p is not None for p in match_passages(ps, data, MATCH_FRAMES).values())
            seen = "\n".join(
                f"  track {p['track_id']} {p['class_name']} frames {p['first_frame']}-{p['last_frame']} "
                f"{p['speed_kmh']} km/h passed {p['passed_at']:%H:%M:%S.%f}"
                for p in ps
            )
            want = "\n".join(
                f"  truth {v['class_name']} frames {v['first_frame_in_roi']}-{v['last_frame_in_roi']} "
                f"{v['speed_kmh']} km/h"
                for v in data["vehicles"]
            )
            why = f"loop {k} (killed {time.strftime('%H:%M:%S', time.localtime(killed_at))}):\n{seen}\n{want}"
            if k in cut:
                assert len(ps) <= len(data["vehicles"]) + at_once, why
                off = len(ps) - matched
                print(f"{victim} killed: {off} of {len(ps)} passages of loop {k} off the truth (known limit)")
                continue
            assert len(ps) <= len(data["vehicles"]) + 1, why
            assert matched >= len(ps) - 1, why
        later = loops([p for p in after if p["passed_at"].timestamp() >= resumed_at], data)
        print(f"after restarting {victim}:", check_loop(later[complete_loops(later)[0]], data))
    finally:
        status, _ = api.json("POST", f"/api/videos/{vid}/stream/stop")
    assert status == 202
    assert wait_dag_run(stack, run_id(run), 180) == "success"
