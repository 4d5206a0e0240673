"""Real PostgreSQL (migrated with Alembic) and Redis for the pipeline tests, as in the backend's
test session (``backend.embedded``), plus small generated videos registered in ``videos``."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text

AIRFLOW_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = AIRFLOW_DIR.parent
for _path in (AIRFLOW_DIR, REPO_ROOT):  # traffic_pipeline without `pip install -e airflow`; testing
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from traffic_pipeline.config import PipelineSettings  # noqa: E402

from backend.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: E402
from testing import fixtures  # noqa: E402

# The session's PostgreSQL, Redis and scratch directory: the fixtures shared with backend/tests.
workdir, postgres, redis_server = fixtures.workdir, fixtures.postgres, fixtures.redis_server

ROI = [[0.0, 0.0], [95.0, 0.0], [95.0, 63.0], [0.0, 63.0]]
HOMOGRAPHY = [[0.05, 0.0, 0.0], [0.0, 0.05, 0.0], [0.0, 0.0, 1.0]]


@pytest.fixture
def settings(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, workdir: Path) -> PipelineSettings:
    """The tasks' settings on the test servers (the environment still read, no .env file)."""
    return PipelineSettings(
        _env_file=None,
        DATABASE_URL=postgres.url,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=redis_server.port,
        VIDEO_STORAGE_PATH=workdir / "video_storage",
    )


@pytest.fixture
def r(redis_server: EmbeddedRedis) -> Iterator[redis_lib.Redis]:
    """Binary-safe client on an empty Redis."""
    client = redis_lib.Redis(port=redis_server.port)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def engine(postgres: EmbeddedPostgres):
    eng = create_engine(postgres.url)
    yield eng
    eng.dispose()


def make_video(path: Path, frames: int = 20, fps: float = 20.0, size: tuple[int, int] = (96, 64)) -> Path:
    """A small mp4: a bright square moving over grey."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    w, h = size
    for i in range(frames):
        img = np.full((h, w, 3), 90, np.uint8)
        x = (i * 3) % (w - 10)
        img[20:30, x : x + 10] = 255
        writer.write(img)
    writer.release()
    return path


@pytest.fixture
def add_video(engine, workdir: Path) -> Callable[..., int]:
    """Writes a video file and its ``videos`` row; returns the id."""
    counter = iter(range(1_000_000))

    def add(
        frames: int = 20, fps: float = 20.0, *, file_path: str | None = None, calibrated: bool = True
    ) -> int:
        path = make_video(workdir / f"video_{next(counter)}_{time.monotonic_ns()}.mp4", frames, fps)
        import json

        with engine.begin() as conn:
            return conn.execute(
                text(
                    "INSERT INTO videos (name, file_path, status, fps, frame_count, width, height, roi, "
                    "homography_matrix) VALUES (:name, :path, 'uploaded', :fps, :frames, 96, 64, "
                    "CAST(:roi AS JSONB), CAST(:h AS JSONB)) RETURNING id"
                ),
                {
                    "name": path.name,
                    "path": file_path or str(path),
                    "fps": fps,
                    "frames": frames,
                    "roi": json.dumps(ROI) if calibrated else None,
                    "h": json.dumps(HOMOGRAPHY) if calibrated else None,
                },
            ).scalar_one()

    return add


class Background:
    """Runs ``fn`` on a thread; ``result()`` re-raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def result(self, timeout: float = 30.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.value


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
