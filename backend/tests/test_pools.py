"""Separate bounded pools and thumbnails made once (issue 17, Input and load): database work,
video work (probing, decoding) and file work each on their own threads, so ``/api/health`` and
the thumbnails answer while every video worker is busy; a thumbnail is made at upload and served
as a file, made once for an older row, and removed with its video."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.db.session import Database
from backend.services import videos
from backend.tests.client import request, upload


@pytest.fixture
def video(api, sample_video) -> Iterator[dict]:
    r = upload(api.port, {"name": "pools"}, {"video": ("p.mp4", sample_video.read_bytes())})
    assert r.status == 201, r.body
    yield r.json()
    request(api.port, "DELETE", f"/api/videos/{r.json()['id']}")


def thumb_of(video: dict) -> Path:
    return Path(video["file_path"]).with_name(f"{video['id']}.thumb.jpg")


def test_each_kind_of_work_has_its_own_bounded_pool(api):
    db: Database = api.app.db

    def name() -> str:
        return threading.current_thread().name

    assert api.loop.call(lambda: db.run(lambda session: name())).startswith("db")
    assert api.loop.call(lambda: db.run_video(name)).startswith("video")
    assert api.loop.call(lambda: db.run_file(name)).startswith("file")
    assert db._video_executor._max_workers == 2  # a burst of uploads takes two cores at most
    assert db._executor._max_workers == 4


def test_health_and_thumbnails_answer_while_every_video_worker_is_busy(api, video):
    db: Database = api.app.db
    release = threading.Event()
    held: list[asyncio.Future] = []
    try:
        for _ in range(db._video_executor._max_workers + 2):  # every worker held, more queued
            held.append(api.loop.call(lambda: asyncio.ensure_future(db.run_video(release.wait, 30))))
        time.sleep(0.2)
        assert not any(future.done() for future in held)
        for path in ("/api/health", f"/api/videos/{video['id']}/thumbnail", f"/api/videos/{video['id']}"):
            t0 = time.monotonic()
            r = request(api.port, "GET", path, timeout=10)
            elapsed = time.monotonic() - t0
            assert r.status == 200, (path, r.body)
            assert elapsed < 1.0, (path, elapsed)
    finally:
        release.set()

    async def drained() -> None:
        await asyncio.gather(*held)

    api.loop.call(drained)


def test_the_thumbnail_is_made_at_upload_and_served_as_a_file(api, video, monkeypatch):
    thumb = thumb_of(video)
    assert thumb.is_file()
    image = cv2.imdecode(np.frombuffer(thumb.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (64, 96, 3)  # the first frame, full size (the calibration editor's)

    def no_decoding(path):  # noqa: ANN001, ANN202
        raise AssertionError("the thumbnail request decoded the video")

    monkeypatch.setattr(videos, "first_frame", no_decoding)
    r = request(api.port, "GET", f"/api/videos/{video['id']}/thumbnail")
    assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert r.body == thumb.read_bytes()


def test_an_older_video_without_one_gets_it_made_once(api, video, monkeypatch):
    thumb = thumb_of(video)
    thumb.unlink()  # as for a row uploaded before thumbnails were kept
    decoded: list[str] = []
    original = videos.first_frame

    def counting(path):  # noqa: ANN001, ANN202
        decoded.append(path)
        time.sleep(0.3)  # the concurrent requests below arrive while it is made
        return original(path)

    monkeypatch.setattr(videos, "first_frame", counting)
    with ThreadPoolExecutor(5) as pool:
        answers = list(
            pool.map(lambda _: request(api.port, "GET", f"/api/videos/{video['id']}/thumbnail"), range(5))
        )
    assert [r.status for r in answers] == [200] * 5
    assert len({r.body for r in answers}) == 1
    assert thumb.is_file() and thumb.read_bytes() == answers[0].body
    assert request(api.port, "GET", f"/api/videos/{video['id']}/thumbnail").status == 200
    assert len(decoded) == 1  # made once, then read from the file


def test_the_thumbnail_goes_with_its_video(api, sample_video):
    r = upload(api.port, {"name": "gone"}, {"video": ("g.mp4", sample_video.read_bytes())})
    assert r.status == 201
    thumb = thumb_of(r.json())
    assert thumb.is_file()
    assert request(api.port, "DELETE", f"/api/videos/{r.json()['id']}").status == 204
    assert not thumb.exists() and not Path(r.json()["file_path"]).exists()
    assert not list(thumb.parent.glob(f".{thumb.name}.*"))  # no temporary file either
