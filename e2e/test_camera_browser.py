"""A live camera in a real browser against the real stack (the session's ``stack``).

Debian's Chromium (headless) is driven by ``e2e/browser/camera.spec.mjs`` (playwright-core, as
``e2e/test_dashboard_browser.py``). The ground-truth clip is served in a loop by a real RTSP
server on loopback with a user and password (``stack/rtsp.py``, as ``e2e/test_camera_live.py``).
The page is used as an operator would: the add-camera form (name, the URL with its credentials,
the admin token, "Test and add"), the camera in the list, "Start live" and frames in the live view;
the RTSP server is killed: the page shows "Reconnecting to the camera…", and once the server is
back, the banner goes and new frames come in the same document; then the report over the last
15 minutes (a row per interval, the chart by direction, the window's CSV link). The camera's
password never shows in the page once sent.

The script and this test talk through the script's stdout (``CAMERA:ADDED <id>``: the camera is
calibrated here through REST, the page's calibration editor being another test's; ``CAMERA:STOP``:
the server is killed, then started again once the page showed the banner and at least
``OUTAGE_S`` later) and answer files in a control folder. The stream is stopped through REST at
the end and its DAG run waited for: the session's stack is left idle for the next tests.
Screenshots land in ``e2e/artifacts/camera/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from e2e.browser_run import SpecRun, audit_entries, make_account, run_spec
from e2e.harness import REPO, Api, wait_dag_run

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "e2e" / "artifacts" / "camera"
USER, PASSWORD = "e2e-browser", "cam-" + secrets.token_hex(8)
OUTAGE_S = 8.0  # the server stays down at least this long...
OUTAGE_MAX_S = 60.0  # ...and until the page showed the banner, or this long
RECONNECTING = "Reconnecting to the camera…"


@pytest.fixture(scope="module")
def browser_camera(truth, tmp_path_factory):
    """The truth clip (8 vehicles, 9 s at 30 fps) as H.264 in a loop, with basic auth."""
    from stack.rtsp import RtspCamera, server_available, transcode

    missing = server_available()
    assert missing is None, missing  # .ci/run installs it (make rtsp-deps): never skipped
    clip, _, _ = truth
    out = tmp_path_factory.mktemp("browser-camera")
    h264 = transcode(clip, out / "truth.mp4")
    with RtspCamera(h264, user=USER, password=PASSWORD, log=out / "rtsp.log") as cam:
        yield cam


class Side:
    """The test's side of the script's ``CAMERA:`` lines, one at a time on a worker thread (so
    that the script's output keeps being read): each answers with a file in ``control``
    (``<name>.error`` when it failed)."""

    def __init__(self, stack, camera, calib: dict, control: Path) -> None:
        self.stack, self.camera, self.calib, self.control = stack, camera, calib, control
        self.api = Api.of(stack)
        self.video_id: int | None = None
        self.events: list[tuple[float, str, str]] = []
        self.outage: dict = {}
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []

    def on(self, line: str) -> None:
        command, _, arg = line.removeprefix("CAMERA:").strip().partition(" ")
        handler = {"ADDED": self.added, "STOP": self.stop}.get(command)
        if handler is None:
            self.errors.append(f"unknown command {line!r}")
            return
        thread = threading.Thread(target=self._run, args=(command, handler, arg), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _run(self, command: str, handler, arg: str) -> None:
        self.events.append((time.time(), command, arg))
        try:
            handler(arg)
        except Exception as exc:  # answered to the script, and asserted by the test
            name = {"ADDED": "calibrated", "STOP": "started"}[command]
            self.errors.append(f"{command}: {exc!r}")
            (self.control / f"{name}.error").write_text(repr(exc))

    def answer(self, name: str, body: dict) -> None:
        tmp = self.control / f".{name}"
        tmp.write_text(json.dumps(body))
        tmp.rename(self.control / name)  # whole, never half-written
        self.events.append((time.time(), "answer", name))

    def added(self, arg: str) -> None:
        self.video_id = int(arg)
        out = self.api.calibrate(self.video_id, self.calib)
        self.answer("calibrated", {"reprojection_error_m": out.get("reprojection_error_m")})

    def health(self) -> dict:
        status, video = self.api.json("GET", f"/api/videos/{self.video_id}")
        return (video.get("health") or {}) if status == 200 else {}

    def stop(self, _: str) -> None:
        self.camera.stop()
        stopped_at = time.monotonic()
        self.outage["stopped_at"] = time.time()
        self.answer("stopped", {})
        states: list[str] = []
        while True:
            elapsed = time.monotonic() - stopped_at
            state = self.health().get("state")
            if not states or states[-1] != state:
                states.append(state)
            if elapsed >= OUTAGE_MAX_S or (elapsed >= OUTAGE_S and (self.control / "banner-seen").exists()):
                break
            time.sleep(0.5)
        self.outage["health_states_while_down"] = states
        self.outage["down_s"] = round(time.monotonic() - stopped_at, 1)
        self.camera.start()
        self.outage["started_at"] = time.time()
        self.answer("started", {"down_s": self.outage["down_s"], "health_states_while_down": states})


def summary(run: SpecRun, side: Side) -> str:
    notes = [f"  outage (test side): {side.outage}"]
    if side.errors:
        notes.append(f"  test side errors: {side.errors}")
    return run.summary("camera", name_width=12, seen_chars=6000, notes=notes)


def stop_stream(stack, api: Api, video_id: int) -> list[str]:
    """Stops the camera's stream through REST and waits for its DAG runs: the states."""
    status, body = api.json("POST", f"/api/videos/{video_id}/stream/stop")
    if status == 409:  # nothing runs
        return []
    assert status in (200, 202), body
    return [wait_dag_run(stack, run, 180) for run in body.get("dag_run_ids") or []]


def test_a_camera_added_watched_through_an_outage_and_reported_in_chromium(
    dashboard_built,
    stack,
    truth,
    browser_camera,
    tmp_path,
):
    _, calib, data = truth
    base = f"http://127.0.0.1:{stack.infra.backend_port}"
    api = Api.of(stack)
    operator = make_account(api, "operator")
    control = tmp_path / "control"
    control.mkdir()
    side = Side(stack, browser_camera, calib, control)
    config = {
        "base_url": base,
        "camera_name": "Browser camera",
        "fps": data["fps"],
        "vehicles": len(data["vehicles"]),
    }
    env = {
        **os.environ,
        "CAMERA_URL": browser_camera.url,
        "CAMERA_PASSWORD": PASSWORD,
        "OPERATOR_USER": operator["username"],
        "OPERATOR_PASSWORD": operator["password"],
        "CAMERA_CONTROL": str(control),
    }
    stream_runs: list[str] = []

    def on_line(line: str) -> None:
        if line.startswith("CAMERA:"):
            side.on(line)

    def cleanup() -> None:
        for thread in side.threads:
            thread.join(OUTAGE_MAX_S + 30)
        if browser_camera.proc is None:  # the script died during the outage
            browser_camera.start()
        if side.video_id is not None:  # the session's stack left idle for the next tests
            stream_runs.extend(stop_stream(stack, api, side.video_id))

    run = run_spec("camera.spec.mjs", config, tmp_path, ARTIFACTS, env=env, on_line=on_line, cleanup=cleanup)
    result = run.result
    print("\n" + summary(run, side))
    run.assert_steps_ok(stack, side.errors)
    seen = result["seen"]
    vid = seen["video_id"]
    assert vid == side.video_id

    # the stream stopped, its run over: the stack is idle again
    assert stream_runs and all(s == "success" for s in stream_runs), stream_runs
    status, video = api.json("GET", f"/api/videos/{vid}")
    assert video["status"] == "stopped" and (video["health"] or {}).get("state") == "idle", video

    # added through the form: in the list as a camera, the URL field emptied when sent, and the
    # password nowhere in the page (text, HTML, fields, address, storage), on any page after
    assert seen["list_item"]["kind"] == "camera" and seen["list_item"]["badge"] == "camera", seen["list_item"]
    assert seen["list_item"]["name"] == "Browser camera", seen["list_item"]
    assert seen["url_field_after"] == "", "the URL field kept the credentials"
    assert set(seen["password_shown"]) == {"videos", "live", "live-after-restart", "report"}
    assert not any(seen["password_shown"].values()), seen["password_shown"]
    assert not any(seen["token_shown"].values()), seen["token_shown"]
    assert PASSWORD not in json.dumps(video)
    assert video["source_kind"] == "camera", video
    # the operator's actions of this journey, under its name, in the audit log
    assert seen["session"] == {"user": operator["username"], "role": "operator"}, seen.get("session")
    done = {(e["action"], e["outcome"]) for e in audit_entries(api, operator["username"])}
    for action in ("login", "camera_add", "start"):
        assert (action, "ok") in done, (action, done)

    # live: frames drawn, the counter rises, the picture changes
    frames = seen["frames"]
    assert frames["drawn"][1] > frames["drawn"][0] >= 5, frames
    assert frames["frame_number"][1] > frames["frame_number"][0], frames
    assert frames["change_between"] > 0.2 and frames["painted"] > 0.9, frames

    # the outage: the banner, in a status region, with the contract's text, while down
    outage = seen["outage"]
    assert outage["banner"]["state"] in ("reconnecting", "connecting"), outage
    assert outage["banner"]["text"] == RECONNECTING, outage
    assert outage["banner_role"] == "status", outage
    banners = seen["camera_banners"]
    window_ms = (side.outage["stopped_at"] * 1000, side.outage["started_at"] * 1000)
    down = [b for b in banners if window_ms[0] <= b["t"] <= window_ms[1]]
    assert any(b["state"] in ("reconnecting", "connecting") and b["status_region"] for b in down), banners
    # back: the banner gone and new frames (new frame numbers) in the same document
    resume = seen["resume"]
    assert banners[-1]["state"] is None, banners
    assert resume["drawn"][2] >= resume["drawn"][0] + 10, resume
    assert len(set(resume["frame_number"])) == 3, resume
    assert resume["frame_number"][2] > resume["frame_number"][1], resume
    assert seen["health_states"][-1]["state"] == "live", seen["health_states"]
    reconnects = re.search(r"(\d+) reconnects?", resume["health_facts"] or "")
    assert reconnects and int(reconnects.group(1)) >= 1, resume["health_facts"]

    # the report over the last 15 minutes: rows, the chart by direction, the window's CSV link
    report = seen["report"]
    assert report["preset"] == "last15m", report
    query = {k: v[0] for k, v in parse_qs(urlsplit(report["csv_href"]).query).items()}
    assert {"from", "to", "interval"} <= set(query), report["csv_href"]
    start, end = (datetime.fromisoformat(query[k].replace("Z", "+00:00")) for k in ("from", "to"))
    assert (end - start).total_seconds() == 900, query
    assert query.get("format") == "csv", query
    assert abs(end.timestamp() - time.time()) < 600, query  # ends at "now" (when asked)
    assert len(report["rows"]) >= 1, report
    assert report["total_volume"] >= 1, report
    assert sum(r["volume"] for r in report["rows"]) == report["total_volume"], report
    assert report["chart"] and report["chart"]["bars"] >= 1 and report["chart"]["segments"] >= 1, report
    assert report["csv"]["status"] == 200 and report["csv"]["lines"] >= 2, report["csv"]
    # the page shows the server's window (passages drained while streaming: by now, at least
    # as many have their passage in it), and every passage of the stream is in that window
    later = api.expect("GET", f"/api/videos/{vid}/report?from={query['from']}&to={query['to']}&interval=15m")
    passages = api.expect("GET", f"/api/videos/{vid}/passages")["passages"]
    print(
        f"  window: {report['total_volume']} vehicles in the page, {later['total']['volume']} in the same"
        f" window after the stop, {len(passages)} passages stored"
    )
    assert report["total_volume"] <= later["total"]["volume"] <= len(passages), (report, later["total"])

    # accessibility: no serious or critical axe-core violation on the pages seen; no uncaught
    # exception in the page
    run.assert_page_clean(
        {"videos", "live", "live-reconnecting", "report"},
        ARTIFACTS,
        ("02-camera-added", "03-live-frames", "04-camera-reconnecting", "06-report-15-minutes"),
    )
