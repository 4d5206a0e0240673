"""Input limits of an upload (issue 17, Input and load): the header probe (a subprocess with a
timeout and a memory cap) refuses what a clip declares beyond the pixel, frame-rate and duration
limits before anything decodes it; the name is checked as soon as its part ends; a full disk is a
507 with nothing left; a body that does not arrive in time is cut off."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from tornado.httpserver import HTTPServer

import backend.app as app_module
from backend.embedded import free_port
from backend.services import probe, uploads
from backend.settings import Settings
from backend.tests import client
from backend.tests.client import multipart, raw_exchange, request, upload
from backend.tests.conftest import SHARED_VIDEO, count_videos
from testing.clips import declared_clip


def stored_files(api) -> set[str]:
    return {p.name for p in api.storage.iterdir()} if api.storage.exists() else set()


@pytest.fixture
def nothing_stored(api, db_engine):
    """Asserts the test leaves no new row and no new file (no thumbnail, no partial upload)."""
    rows, files = count_videos(db_engine), stored_files(api)
    yield
    assert count_videos(db_engine) == rows
    assert stored_files(api) == files


class HealthPoller:
    """GET /api/health every 50 ms on a thread: every answer's status and latency."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.results: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            status = request(self.port, "GET", "/api/health", timeout=10).status
            self.results.append((status, time.monotonic() - t0))
            self._stop.wait(0.05)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    @property
    def worst_s(self) -> float:
        return max(latency for _, latency in self.results)


@pytest.mark.parametrize("suffix", [".mkv", ".avi"])
def test_a_clip_declaring_16000x16000_is_refused_within_a_second_while_health_answers(
    api, nothing_stored, workdir, suffix
):
    clip = declared_clip(workdir / f"huge{suffix}", 16000, 16000)
    assert clip.stat().st_size < 200_000  # headers only: nothing to decode
    with HealthPoller(api.port) as health:
        time.sleep(0.1)
        t0 = time.monotonic()
        r = upload(api.port, {"name": "huge"}, {"video": (f"huge{suffix}", clip.read_bytes())})
        elapsed = time.monotonic() - t0
        time.sleep(0.2)
    assert (r.status, r.error_code) == (422, "video_too_large"), r.body
    message = r.json()["error"]["message"]
    assert "16000x16000" in message and "33177600" in message and "MAX_VIDEO_PIXELS" in message
    assert elapsed < 1.5, f"refused after {elapsed:.2f} s"
    assert health.results and all(status == 200 for status, _ in health.results)
    assert health.worst_s < 1.0, health.results


@pytest.mark.parametrize(
    "limits, fields, code, names",
    [
        ({"MAX_VIDEO_PIXELS": 96 * 64 - 1}, {}, "video_too_large", ("96x64", "MAX_VIDEO_PIXELS")),
        ({"MAX_VIDEO_FPS": 9.5}, {}, "frame_rate_too_high", ("10 frames/s", "MAX_VIDEO_FPS")),
        ({"MAX_VIDEO_DURATION_S": 2.5}, {}, "video_too_long", ("3 s", "MAX_VIDEO_DURATION_S")),
        # the form's rate counts too: past the limit, or stretching the clip past the duration
        ({}, {"fps": "500"}, "frame_rate_too_high", ("500 frames/s", "240")),
        ({"MAX_VIDEO_DURATION_S": 60}, {"fps": "0.1"}, "video_too_long", ("300 s", "60 s")),
    ],
)
def test_limits_on_a_real_clip(api, nothing_stored, sample_video, limits, fields, code, names):
    api.configure(**limits)
    r = upload(api.port, {"name": "over", **fields}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert (r.status, r.error_code) == (422, code), r.body
    message = r.json()["error"]["message"]
    assert all(name in message for name in names), message


def test_a_clip_exactly_at_the_limits_is_accepted(api, sample_video):
    api.configure(MAX_VIDEO_PIXELS=96 * 64, MAX_VIDEO_FPS=10, MAX_VIDEO_DURATION_S=3)
    r = upload(api.port, {"name": "at the limits"}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert r.status == 201, r.body
    assert request(api.port, "DELETE", f"/api/videos/{r.json()['id']}").status == 204


def test_a_probe_that_hangs_is_killed_at_the_timeout_while_health_answers(
    api, nothing_stored, sample_video, workdir, monkeypatch
):
    pid_file = workdir / "probe.pid"
    pid_file.unlink(missing_ok=True)
    hang = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    monkeypatch.setattr(probe, "probe_command", lambda path, limits: [sys.executable, "-c", hang])
    api.configure(PROBE_TIMEOUT_S=1.0)
    with HealthPoller(api.port) as health:
        t0 = time.monotonic()
        r = upload(api.port, {"name": "slow"}, {"video": ("v.mp4", sample_video.read_bytes())})
        elapsed = time.monotonic() - t0
    assert (r.status, r.error_code) == (422, "probe_timeout"), r.body
    assert "PROBE_TIMEOUT_S" in r.json()["error"]["message"]
    assert 1.0 <= elapsed < 3.0, elapsed
    assert len(health.results) >= 5 and all(status == 200 for status, _ in health.results)
    assert health.worst_s < 0.5, health.results  # the loop never waited on the probe
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


def test_the_probe_runs_under_a_memory_cap(api, nothing_stored, sample_video):
    # the child itself: FFmpeg's libraries cannot even be mapped in 64 MB
    child = subprocess.run(
        [sys.executable, "-m", "backend.services.probe", str(sample_video), "--memory-mb", "64"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=probe.REPO_ROOT,
    )
    assert '"oom": true' in child.stdout, (child.stdout, child.stderr)
    # ... and under the backend: a probe that ran out of memory is a video too large to take
    api.configure(PROBE_MEMORY_MB=64)
    r = upload(api.port, {"name": "x"}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert (r.status, r.error_code) == (422, "video_too_large"), r.body
    assert "PROBE_MEMORY_MB" in r.json()["error"]["message"]


def test_what_the_headers_of_a_real_clip_say(sample_video):
    info = asyncio.run(probe.probe_headers(sample_video, probe.VideoLimits()))
    assert (info.width, info.height, info.fps, info.frames) == (96, 64, 10.0, 30)
    assert info.duration_s == pytest.approx(3.0)
    with pytest.raises(probe.ProbeFailed) as failed:
        asyncio.run(probe.probe_headers(Path(__file__), probe.VideoLimits()))
    assert failed.value.kind == "invalid"
    assert __file__ not in str(failed.value)  # the server's paths are not shown


# ---- the name ---------------------------------------------------------------------------------


@pytest.fixture
def file_opened(monkeypatch) -> list[Path]:
    """The temporary files the upload opened for writing."""
    opened: list[Path] = []
    original = uploads.FileTarget.on_start

    def on_start(self: uploads.FileTarget) -> None:
        opened.append(self.path)
        original(self)

    monkeypatch.setattr(uploads.FileTarget, "on_start", on_start)
    return opened


def test_a_300_byte_name_is_refused_before_the_file_is_stored(api, nothing_stored, file_opened):
    data = SHARED_VIDEO.read_bytes()
    body, content_type = multipart({"name": "n" * 300}, {"video": ("v.mp4", data)})  # name first
    assert body.index(b'name="name"') < body.index(b'name="video"')
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    r = request(api.port, "POST", "/api/videos/upload", chunks, {"Content-Type": content_type})
    assert (r.status, r.error_code) == (400, "invalid_name"), r.body
    assert r.json()["error"]["message"] == "the name is 300 characters; at most 255 characters"
    assert file_opened == []  # the file part was never written, not even to a temporary file


def test_a_long_name_after_the_file_removes_the_file(api, nothing_stored, file_opened, sample_video):
    body, content_type = multipart({}, {"video": ("v.mp4", sample_video.read_bytes())})
    boundary = content_type.split("boundary=")[1]
    name = f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{"n" * 300}\r\n'
    body = body.replace(f"--{boundary}--".encode(), name.encode() + f"--{boundary}--".encode())
    r = request(api.port, "POST", "/api/videos/upload", body, {"Content-Type": content_type})
    assert (r.status, r.error_code) == (400, "invalid_name"), r.body
    assert len(file_opened) == 1 and not file_opened[0].exists()


@pytest.mark.parametrize("name, status", [("é" * 255, 201), ("é" * 256, 400), ("x" * 5000, 400)])
def test_the_name_limit_counts_characters(api, sample_video, name, status):
    r = upload(api.port, {"name": name}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert r.status == status, r.body
    if status == 201:
        assert r.json()["name"] == name
        assert request(api.port, "DELETE", f"/api/videos/{r.json()['id']}").status == 204
    else:
        assert r.error_code == "invalid_name"


# ---- a full disk ------------------------------------------------------------------------------

Usage = namedtuple("Usage", "total used free")


def test_a_body_larger_than_the_free_space_is_507_before_it_is_sent(api, nothing_stored, monkeypatch):
    monkeypatch.setattr(uploads.shutil, "disk_usage", lambda path: Usage(2**30, 2**30 - 2**20, 2**20))
    auth = "".join(f"{k}: {v}\r\n" for k, v in client.DEFAULT_AUTH.items())
    head = (
        f"POST /api/videos/upload HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n{auth}"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {3 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    answer = raw_exchange(api.port, head)
    assert answer.startswith(b"HTTP/1.1 507"), answer[:300]
    assert b'"insufficient_storage"' in answer
    assert b"the upload is 3.0 MB, 1.0 MB are free" in answer


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_disk_full_while_writing_is_507_with_nothing_left(api, nothing_stored, monkeypatch, code):
    written: list[int] = []
    original = uploads.FileTarget._write

    def write(self: uploads.FileTarget, chunk: bytes) -> None:
        if written:  # the first chunk reaches the file: a partial file exists
            raise OSError(code, os.strerror(code))
        original(self, chunk)
        assert self._file is not None
        self._file.flush()
        written.append(len(chunk))

    monkeypatch.setattr(uploads.FileTarget, "_write", write)
    data = SHARED_VIDEO.read_bytes()
    body, content_type = multipart({"name": "full"}, {"video": ("v.mp4", data)})
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    r = request(api.port, "POST", "/api/videos/upload", chunks, {"Content-Type": content_type})
    assert (r.status, r.error_code) == (507, "insufficient_storage"), r.body
    assert written


def test_a_disk_full_on_the_last_flush_is_507(api, nothing_stored, monkeypatch, sample_video):
    class FullOnClose:
        def __init__(self, path: Any, mode: str) -> None:
            self._file = open(path, mode)  # noqa: SIM115

        def write(self, data: bytes) -> int:
            return self._file.write(data)

        def close(self) -> None:
            self._file.close()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(uploads, "open", FullOnClose, raising=False)
    r = upload(api.port, {"name": "full"}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert (r.status, r.error_code) == (507, "insufficient_storage"), r.body


def test_a_full_disk_for_the_thumbnail_is_507(api, nothing_stored, monkeypatch, sample_video):
    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(uploads, "write_atomically", full)
    r = upload(api.port, {"name": "full"}, {"video": ("v.mp4", sample_video.read_bytes())})
    assert (r.status, r.error_code) == (507, "insufficient_storage"), r.body


# ---- the body timeout -------------------------------------------------------------------------


def test_serve_sets_the_body_timeout(monkeypatch):
    seen: dict[str, Any] = {}

    class Started(Exception):
        pass

    class Recorder:
        def __init__(self, app: Any, **kwargs: Any) -> None:
            seen.update(kwargs)
            raise Started

    async def nothing(app: Any) -> None:
        return None

    monkeypatch.setattr(app_module, "build_app", lambda config: object())
    monkeypatch.setattr(app_module, "bootstrap_admin", nothing, raising=False)
    monkeypatch.setattr(app_module, "HTTPServer", Recorder)
    config = Settings(_env_file=None, BODY_TIMEOUT_S=1234, INTERNAL_TOKEN=uuid.uuid4().hex * 2)
    with pytest.raises(Started):
        asyncio.run(app_module.serve(config))
    assert seen["body_timeout"] == 1234
    assert Settings.model_fields["BODY_TIMEOUT_S"].default == 3600


def test_an_upload_whose_body_stalls_is_cut_off_and_removed(api, nothing_stored, file_opened):
    port = free_port()

    async def listen() -> HTTPServer:
        server = HTTPServer(api.app, max_body_size=16 * 1024 * 1024, body_timeout=0.5)
        server.listen(port, address="127.0.0.1")
        return server

    server = api.loop.call(listen)
    try:
        body, content_type = multipart({"name": "slow"}, {"video": ("v.mp4", b"\x00" * 200_000)})
        sent = body[: len(body) // 2]  # the name and half the file, then nothing
        auth = "".join(f"{k}: {v}\r\n" for k, v in client.DEFAULT_AUTH.items())
        head = (
            f"POST /api/videos/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            t0 = time.monotonic()
            sock.sendall(head + sent)
            try:
                closed = sock.recv(65536) == b""
            except ConnectionResetError:
                closed = True
            elapsed = time.monotonic() - t0
        assert closed and elapsed < 5, elapsed
        assert len(file_opened) == 1
        deadline = time.monotonic() + 5
        while file_opened[0].exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not file_opened[0].exists()  # the partial file went with the connection
    finally:
        api.loop.call(server.stop)
