"""POST /api/videos/upload: success and every rejected input, with nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.tests import client
from backend.tests.client import multipart, raw_exchange, request, upload
from backend.tests.conftest import SHARED_VIDEO, count_videos, make_video


def stored_files(api) -> set[str]:
    return {p.name for p in api.storage.iterdir()} if api.storage.exists() else set()


@pytest.fixture
def nothing_stored(api, db_engine):
    """Asserts the test leaves no new row and no new file."""
    rows, files = count_videos(db_engine), stored_files(api)
    yield
    assert count_videos(db_engine) == rows
    assert stored_files(api) == files


def test_upload_success(api, sample_video: Path, db_engine):
    before = count_videos(db_engine)
    roi = [[0, 0], [95, 0], [95, 63], [0, 63]]
    r = upload(
        api.port,
        {"name": "cam 1", "roi": json.dumps(roi)},
        {"video": ("clip.MP4", sample_video.read_bytes())},
    )
    assert r.status == 201, r.body
    video = r.json()
    assert video["name"] == "cam 1"
    assert video["status"] == "uploaded"
    assert (video["fps"], video["frame_count"], video["width"], video["height"]) == (10.0, 30, 96, 64)
    assert video["duration"] == pytest.approx(3.0)
    assert video["roi"] == roi
    stored = Path(video["file_path"])
    assert stored.name == f"{video['id']}.mp4"  # server-chosen name
    assert stored.parent == api.storage
    assert stored.read_bytes() == sample_video.read_bytes()
    assert count_videos(db_engine) == before + 1
    assert not list(api.storage.glob(".upload-*"))


def test_upload_fps_override(api, sample_video: Path):
    r = upload(api.port, {"name": "x", "fps": "25"}, {"video": ("a.mp4", sample_video.read_bytes())})
    assert r.status == 201
    assert r.json()["fps"] == 25.0


def test_upload_shared_asset_streamed_in_chunks(api):
    data = SHARED_VIDEO.read_bytes()
    body, content_type = multipart({"name": "urban"}, {"video": ("urban.mp4", data)})
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    r = request(api.port, "POST", "/api/videos/upload", chunks, {"Content-Type": content_type})
    assert r.status == 201, r.body
    assert (r.json()["width"], r.json()["height"], r.json()["frame_count"]) == (640, 360, 1190)


@pytest.mark.parametrize(
    "fields, files, status, code",
    [
        (
            {"name": "x"},
            {"video": ("notes.mp4", b"this is plain text, not a video\n" * 100)},
            400,
            "invalid_video",
        ),
        ({"name": "x"}, {"video": ("empty.mp4", b"")}, 400, "empty_file"),
        ({"name": "x"}, {"video": ("../../etc/evil.mp4", b"\x00" * 100)}, 400, "invalid_filename"),
        ({"name": "x"}, {"video": ("..\\evil.mp4", b"\x00" * 100)}, 400, "invalid_filename"),
        ({"name": "x"}, {"video": ("script.sh", b"#!/bin/sh\n")}, 415, "unsupported_type"),
        ({"name": "x"}, {}, 400, "missing_field"),
        ({}, {"video": ("a.mp4", b"VIDEO")}, 400, "missing_field"),
        ({"name": "   "}, {"video": ("a.mp4", b"VIDEO")}, 400, "missing_field"),
        ({"name": "x", "roi": "[[0,0],[10,0]"}, {"video": ("a.mp4", b"V")}, 400, "invalid_roi"),
        ({"name": "x", "roi": "[[0,0],[10,0]]"}, {"video": ("a.mp4", b"V")}, 400, "invalid_roi"),
        ({"name": "x", "roi": '{"a": 1}'}, {"video": ("a.mp4", b"V")}, 400, "invalid_roi"),
        ({"name": "x", "fps": "fast"}, {"video": ("a.mp4", b"V")}, 400, "invalid_fps"),
        ({"name": "x", "fps": "-3"}, {"video": ("a.mp4", b"V")}, 400, "invalid_fps"),
    ],
)
def test_upload_rejects(api, nothing_stored, fields, files, status, code):
    r = upload(api.port, fields, files)
    assert r.status == status, r.body
    assert r.error_code == code
    assert r.json()["error"]["message"]


def test_upload_rejects_an_roi_outside_the_frame(api, nothing_stored, sample_video: Path):
    roi = [[0, 0], [95, 0], [135, 63], [0, 63]]  # the sample is 96x64
    r = upload(
        api.port, {"name": "cam", "roi": json.dumps(roi)}, {"video": ("v.mp4", sample_video.read_bytes())}
    )
    assert r.status == 400 and r.error_code == "invalid_roi", r.body
    assert r.json()["error"]["message"] == "roi[2] = (135, 63) is outside the 96x64 frame"
    assert r.json()["error"]["field"] == "roi"  # the form's field


def test_upload_rejects_truncated_mp4(api, nothing_stored, workdir):
    data = SHARED_VIDEO.read_bytes()
    r = upload(api.port, {"name": "cut"}, {"video": ("cut.mp4", data[: len(data) // 2])})
    assert r.status == 400, r.body
    assert r.error_code == "invalid_video"


def test_upload_rejects_truncated_generated_mp4(api, nothing_stored, workdir):
    data = make_video(workdir / "long.mp4", frames=60).read_bytes()
    r = upload(api.port, {"name": "cut"}, {"video": ("cut.mp4", data[: len(data) * 2 // 3])})
    assert r.status == 400, r.body
    assert r.error_code == "invalid_video"


def test_upload_rejects_non_multipart(api, nothing_stored):
    r = request(api.port, "POST", "/api/videos/upload", b"{}", {"Content-Type": "application/json"})
    assert r.status == 400
    assert r.error_code == "invalid_multipart"


def test_upload_rejects_body_ending_inside_the_file(api, nothing_stored, sample_video):
    body, content_type = multipart({"name": "x"}, {"video": ("a.mp4", sample_video.read_bytes())})
    r = request(api.port, "POST", "/api/videos/upload", body[:-200], {"Content-Type": content_type})
    assert r.status == 400
    assert r.error_code == "invalid_multipart"


def test_upload_over_limit_streamed_gets_413(api, nothing_stored):
    """3 MB sent chunked (no Content-Length) against a 1 MB limit: 413, nothing kept."""
    api.configure(MAX_UPLOAD_MB=1)
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n\r\n'
    ).encode()
    sent = 0

    def body():
        nonlocal sent
        yield head
        for _ in range(48):  # 48 x 64 KiB = 3 MiB
            sent += 65536
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = request(
        api.port,
        "POST",
        "/api/videos/upload",
        body(),
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status == 413, r.body
    assert r.error_code == "payload_too_large"
    assert sent == 3 * 1024 * 1024


def test_upload_over_limit_by_content_length_answers_before_the_body(api, nothing_stored):
    api.configure(MAX_UPLOAD_MB=1)
    head = (
        "POST /api/videos/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in client.DEFAULT_AUTH.items())
        + "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {3 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    answer = raw_exchange(api.port, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"payload_too_large"' in answer
