"""What ``make demo`` registers once the backend answers: the sample video (the urban clip with
its calibration) and the demo camera (``stack/demo_camera.py``'s RTSP server), through the REST
API with the stack's own token."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from contracts.assets import REPO_ROOT as REPO
from contracts.assets import SAMPLE_VIDEO
from stack.rest_client import Api

SAMPLE_CALIBRATION = REPO / "calibrations" / "urban_cctv_640x360_25fps.json"
DEMO_CAMERA = "Demo camera (RTSP, sample clip in a loop)"

__all__ = ["DEMO_CAMERA", "SAMPLE_CALIBRATION", "SAMPLE_VIDEO", "register_demo_camera", "register_sample"]


def register_sample(api: Api) -> int | None:
    """Upload the urban clip with its calibration unless a video is already registered."""
    listing = api.expect("GET", "/api/videos", timeout=10)
    videos = [v for v in listing["videos"] if v.get("source_kind", "file") == "file"]
    if videos:
        return videos[0]["id"]
    if not SAMPLE_VIDEO.exists():
        print(f"[stack] sample video {SAMPLE_VIDEO} not found: upload one yourself", flush=True)
        return None
    video_id = api.upload(SAMPLE_VIDEO, "Urban CCTV (sample)")["id"]
    api.calibrate(video_id, json.loads(SAMPLE_CALIBRATION.read_text()))
    return video_id


def register_demo_camera(env: dict[str, str], timeout_s: float = 60.0) -> int | None:
    """Add the demo camera (``stack/demo_camera.py``'s server) through ``POST /api/cameras``, with
    the sample's calibration, unless it is registered already; None when its server is not up
    in ``timeout_s`` (GStreamer's RTSP server missing: ``make rtsp-deps``)."""
    api = Api.of_env(env)
    for cam in api.expect("GET", "/api/cameras", timeout=10)["videos"]:
        if cam["name"] == DEMO_CAMERA:
            return cam["id"]
    creds = f"{quote(env['RTSP_DEMO_USER'], safe='')}:{quote(env['RTSP_DEMO_PASSWORD'], safe='')}"
    url = f"rtsp://{creds}@127.0.0.1:{env['RTSP_DEMO_PORT']}/demo"
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = api.json("POST", "/api/cameras", {"name": DEMO_CAMERA, "url": url}, timeout=30)
        if status == 201:
            camera_id = body["id"]
            break
        if status != 422 or time.monotonic() > deadline:  # 422: the server is not up yet
            return None
        time.sleep(2)
    api.calibrate(camera_id, json.loads(SAMPLE_CALIBRATION.read_text()))
    return camera_id
