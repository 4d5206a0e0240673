"""The demo camera of ``make demo``: the sample clip served in a loop at
rtsp://demo:PASSWORD@127.0.0.1:RTSP_DEMO_PORT/demo by GStreamer's RTSP server (``stack/rtsp_server.py``,
Debian's packages, ``make rtsp-deps``), run under supervisord as the Procfile's ``rtsp-camera``.

The clip is transcoded once (H.264 without B-frames, what the server streams as it is) into the
data directory; then this process becomes the server (``exec``), so that supervisord stops and
restarts the server itself. Without GStreamer's RTSP server it says how to install it and waits
(the rest of the demo runs without the camera)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from contracts.assets import SAMPLE_VIDEO
from stack.rtsp import SERVER, SYSTEM_PYTHON, server_available, transcode


def main() -> int:
    missing = server_available()
    if missing:
        print(f"[rtsp-camera] no demo camera: {missing}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        return 0
    if not SAMPLE_VIDEO.exists():
        print(f"[rtsp-camera] no demo camera: {SAMPLE_VIDEO} not found", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        return 0
    data = Path(os.environ["VIDEO_STORAGE_PATH"]).parent
    clip = data / "demo-camera.mp4"
    if not clip.exists():
        tmp = clip.with_suffix(".tmp.mp4")
        transcode(SAMPLE_VIDEO, tmp)
        tmp.replace(clip)
    argv = [
        SYSTEM_PYTHON,
        str(SERVER),
        str(clip),
        "--port",
        os.environ["RTSP_DEMO_PORT"],
        "--path",
        "/demo",
        "--user",
        os.environ["RTSP_DEMO_USER"],
        # one argument: a generated password may start with "-"
        f"--password={os.environ['RTSP_DEMO_PASSWORD']}",
    ]
    sys.stdout.flush()
    os.execv(SYSTEM_PYTHON, argv)  # noqa: S606 - the server replaces this process


if __name__ == "__main__":
    sys.exit(main())
