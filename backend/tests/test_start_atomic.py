"""An atomic stream start (issue 17, Input and load): concurrent starts of one video create
exactly one DAG run, against a fake Airflow slow enough that the starts really overlap."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.embedded import free_port
from backend.services import streaming
from backend.tests.client import Response, request, upload

STARTS = 20


@pytest.fixture
def video(api, sample_video) -> dict:
    r = upload(api.port, {"name": "race"}, {"video": ("r.mp4", sample_video.read_bytes())})
    assert r.status == 201, r.body
    return r.json()


@pytest.fixture
def slow_airflow(api) -> Iterator[None]:
    """Each list and trigger of the fake Airflow takes 0.2 s: every start checks for active runs
    while the others are still at it."""
    api.airflow_state.delay_s = 0.2
    yield
    api.airflow_state.delay_s = 0.0


def runs_of(api, video_id: int) -> list[dict]:
    with api.airflow_state.lock:
        return [r for r in api.airflow_state.runs.values() if r["conf"].get("video_id") == video_id]


def start_together(api, video_id: int, n: int = STARTS) -> list[Response]:
    """``n`` POST .../stream/start from ``n`` threads released at once."""
    barrier = threading.Barrier(n)

    def start(_: int) -> Response:
        barrier.wait(10)
        return request(api.port, "POST", f"/api/videos/{video_id}/stream/start", b"", timeout=60)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(start, range(n)))


def test_twenty_concurrent_starts_create_exactly_one_run(api, video, slow_airflow, sync_redis):
    triggers = api.airflow_state.triggers
    answers = start_together(api, video["id"])
    statuses = Counter(r.status for r in answers)
    assert statuses == {201: 1, 409: STARTS - 1}, [(r.status, r.body[:120]) for r in answers]
    assert {r.error_code for r in answers if r.status == 409} == {"already_streaming"}
    started = next(r for r in answers if r.status == 201).json()["dag_run"]
    assert [r["dag_run_id"] for r in runs_of(api, video["id"])] == [started["dag_run_id"]]
    assert api.airflow_state.triggers == triggers + 1
    assert sync_redis.get(streaming.start_lock_key(video["id"])) is None  # released
    assert request(api.port, "GET", f"/api/videos/{video['id']}").json()["status"] == "processing"


def test_without_the_lock_the_same_starts_race(api, video, slow_airflow, monkeypatch):
    """What the lock prevents (so the test above is not passing by luck): with it gone, the
    slow fake Airflow lets several of the starts through, each with its own run."""

    @contextlib.asynccontextmanager
    async def no_lock(redis, video_id: int) -> AsyncIterator[None]:  # noqa: ANN001
        yield

    monkeypatch.setattr(streaming, "start_lock", no_lock)
    answers = start_together(api, video["id"], 5)
    assert sum(r.status == 201 for r in answers) > 1
    assert len(runs_of(api, video["id"])) > 1


def test_a_start_lock_held_elsewhere_refuses_and_is_left_to_its_holder(api, video, sync_redis):
    key = streaming.start_lock_key(video["id"])
    sync_redis.set(key, "another-start", px=10_000)
    try:
        r = request(api.port, "POST", f"/api/videos/{video['id']}/stream/start", b"")
        assert (r.status, r.error_code) == (409, "already_streaming"), r.body
        assert "being started" in r.json()["error"]["message"]
        assert sync_redis.get(key) == "another-start"  # not ours: never released by us
        assert runs_of(api, video["id"]) == []
    finally:
        sync_redis.delete(key)
    assert request(api.port, "POST", f"/api/videos/{video['id']}/stream/start", b"").status == 201


def test_the_lock_is_released_when_the_start_fails(api, video, sync_redis):
    original = api.app.airflow
    api.app.airflow = api.airflow_client(f"http://127.0.0.1:{free_port()}")  # Airflow down
    try:
        r = request(api.port, "POST", f"/api/videos/{video['id']}/stream/start", b"")
    finally:
        api.app.airflow = original
    assert r.status == 503, r.body
    assert sync_redis.get(streaming.start_lock_key(video["id"])) is None
    assert request(api.port, "POST", f"/api/videos/{video['id']}/stream/start", b"").status == 201
    # ... and a second start is refused by the active run, the lock free again
    r = request(api.port, "POST", f"/api/videos/{video['id']}/stream/start", b"")
    assert (r.status, r.error_code) == (409, "already_streaming")
    assert "already being streamed" in r.json()["error"]["message"]
    assert sync_redis.get(streaming.start_lock_key(video["id"])) is None
