"""A loopback RTSP camera for tests and the demo: ``stack/rtsp_server.py`` (GStreamer's RTSP
server, run by the system Python) serving a clip in a loop, started, killed and restarted from
the project's venv.

    with RtspCamera(clip, user="op", password=secrets.token_urlsafe()) as cam:
        cam.url          # rtsp://op:...@127.0.0.1:PORT/cam
        cam.stop(); cam.start()   # an outage, then the same address again
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "stack" / "rtsp_server.py"
SYSTEM_PYTHON = os.environ.get("RTSP_SERVER_PYTHON", "/usr/bin/python3")
DEBIAN_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)


def server_available() -> str | None:
    """None when the RTSP server can run here, else what is missing (and how to install it)."""
    probe = (
        subprocess.run(
            [
                SYSTEM_PYTHON,
                "-c",
                "import gi; gi.require_version('GstRtspServer', '1.0');"
                "from gi.repository import GstRtspServer",
            ],
            capture_output=True,
            text=True,
        )
        if Path(SYSTEM_PYTHON).exists()
        else None
    )
    if probe is not None and probe.returncode == 0:
        return None
    return f"GStreamer's RTSP server is missing: make rtsp-deps (apt-get install {DEBIAN_PACKAGES})"


def transcode(
    src: Path, dst: Path, max_frames: int | None = None, size: tuple[int, int] | None = None
) -> Path:
    """``dst``: ``src`` re-encoded as H.264 without B-frames, a keyframe a second, at the source's
    frame rate (what the server streams as it is), with PyAV's bundled FFmpeg (libx264); scaled
    to ``size`` (width, height) when given."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = Fraction(vin.average_rate or 25)
        vout = out.add_stream("libx264", rate=rate)
        width, height = size or (vin.codec_context.width, vin.codec_context.height)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.codec_context.gop_size = max(1, round(float(rate)))
        vout.options = {"bf": "0", "preset": "veryfast"}
        for n, frame in enumerate(inp.decode(vin)):
            if max_frames is not None and n >= max_frames:
                break
            frame.pts, frame.time_base = n, Fraction(1) / rate
            for packet in vout.encode(frame.reformat(width=width, height=height, format="yuv420p")):
                out.mux(packet)
        for packet in vout.encode():
            out.mux(packet)
    return dst


class RtspCamera:
    """The server process for one clip on one port (chosen at the first start, kept across
    restarts so the camera's URL stays the same)."""

    def __init__(
        self,
        clip: Path,
        *,
        path: str = "/cam",
        user: str | None = None,
        password: str | None = None,
        audio_only: bool = False,
        log: Path | None = None,
    ) -> None:
        self.clip, self.path, self.user, self.password = Path(clip), path, user, password
        self.audio_only = audio_only
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = log or Path(tempfile.mkstemp(prefix="rtsp-", suffix=".log")[1])

    @property
    def address(self) -> str:
        """The URL without credentials."""
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    @property
    def url(self) -> str:
        """The URL a client connects with (credentials included when the server has them)."""
        if not self.user:
            return self.address
        creds = f"{quote(self.user, safe='')}:{quote(self.password or '', safe='')}@"
        return f"rtsp://{creds}127.0.0.1:{self.port}{self.path}"

    def start(self, timeout_s: float = 20.0) -> RtspCamera:
        missing = server_available()
        if missing:
            raise RuntimeError(missing)
        cmd = [SYSTEM_PYTHON, str(SERVER), str(self.clip), "--port", str(self.port), "--path", self.path]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password or ""]
        if self.audio_only:
            cmd.append("--audio-only")
        deadline = time.monotonic() + timeout_s
        while True:  # the port of a restart may still be in TIME_WAIT for a moment
            ready = self._spawn(cmd, deadline)
            if ready is not None:
                self.port = int(ready.rsplit(":", 1)[1].split("/", 1)[0])
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"RTSP server did not start: {self.log.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.3)

    def _spawn(self, cmd: list[str], deadline: float) -> str | None:
        logf = self.log.open("ab")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf, text=True, start_new_session=True)
        logf.close()
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(max(0.1, deadline - time.monotonic()))
        if line and line[0].startswith("READY "):
            self.proc = proc
            return line[0].split(" ", 1)[1].strip()
        proc.kill()
        proc.wait()
        return None

    def stop(self) -> None:
        """Kill the server (an outage as a camera's clients see it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> RtspCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
