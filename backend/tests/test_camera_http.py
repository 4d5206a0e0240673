"""The other camera kinds of the issue, each against a real server on loopback: an HTTP MJPEG
stream (``multipart/x-mixed-replace``, as IP cameras serve it) and an HLS playlist (``.m3u8`` and
its MPEG-TS segments, written with PyAV's HLS muxer), both behind HTTP basic auth. Adding one
grabs a frame through the same PyAV path as RTSP; a wrong password is a clear 422 and the
password appears in no answer."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
import pytest

from backend.tests.client import post_json

USER, PASSWORD = "viewer", "h" + secrets.token_hex(6)


def frames(n: int = 50) -> list[np.ndarray]:
    """A moving square on grey, 320x180."""
    out = []
    for i in range(n):
        img = np.full((180, 320, 3), 90, np.uint8)
        cv2.rectangle(img, (10 + 4 * i, 60), (50 + 4 * i, 100), (30, 200, 240), -1)
        out.append(img)
    return out


def write_hls(directory: Path) -> Path:
    import av

    directory.mkdir(parents=True, exist_ok=True)
    playlist = directory / "cam.m3u8"
    with av.open(str(playlist), "w", format="hls", options={"hls_time": "1", "hls_list_size": "0"}) as out:
        stream = out.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for n, img in enumerate(frames()):
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts, frame.time_base = n, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return playlist


class Server(ThreadingHTTPServer):
    daemon_threads = True
    hls_dir: Path


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _authorised(self) -> bool:
        want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") == want:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._authorised():
            return
        if self.path == "/video.mjpg":
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for img in frames() * 4:
                    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpeg)).encode()
                        + b"\r\n\r\n"
                        + jpeg
                        + b"\r\n"
                    )
                    time.sleep(0.04)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        path = self.server.hls_dir / self.path.lstrip("/")
        if self.path.startswith("/hls/") and path.is_file():
            body = path.read_bytes()
            self.send_response(200)
            kind = "application/vnd.apple.mpegurl" if path.suffix == ".m3u8" else "video/mp2t"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def http_camera(tmp_path_factory) -> Iterator[str]:
    """http://127.0.0.1:PORT serving /video.mjpg and /hls/cam.m3u8 with basic auth."""
    root = tmp_path_factory.mktemp("http-camera")
    write_hls(root / "hls")
    server = Server(("127.0.0.1", 0), Handler)
    server.hls_dir = root
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def url(address: str, path: str, password: str = PASSWORD) -> str:
    return f"http://{USER}:{quote(password, safe='')}@{address}{path}"


@pytest.mark.parametrize("path", ["/video.mjpg", "/hls/cam.m3u8"])
def test_mjpeg_and_hls_cameras_are_added_with_a_grabbed_frame(api, http_camera, path):
    r = post_json(
        api.port,
        "/api/cameras",
        {"name": f"http {path}", "url": url(http_camera, path)},
        api.accounts["operator"].auth,
    )
    assert r.status == 201, r.body
    cam = r.json()
    assert (cam["width"], cam["height"]) == (320, 180)
    assert cam["source_url"] == f"http://***@{http_camera}{path}"
    assert PASSWORD not in r.body.decode()


@pytest.mark.parametrize("path", ["/video.mjpg", "/hls/cam.m3u8"])
def test_a_wrong_password_on_an_http_camera_is_a_clear_error(api, http_camera, path):
    wrong = "x" + PASSWORD[1:]
    r = post_json(
        api.port,
        "/api/cameras",
        {"name": "wrong", "url": url(http_camera, path, wrong)},
        api.accounts["operator"].auth,
    )
    assert r.status == 422, r.body
    assert r.json()["error"]["code"] == "camera_auth_failed"
    assert wrong not in r.body.decode()
