"""Start/stop through Airflow's REST API (a fake Airflow on loopback; 'down' = a closed port)."""

from __future__ import annotations

import pytest

from backend.embedded import free_port
from backend.tests.client import request, upload


@pytest.fixture
def video(api, sample_video) -> dict:
    r = upload(api.port, {"name": "stream"}, {"video": ("s.mp4", sample_video.read_bytes())})
    assert r.status == 201
    return r.json()


def status_of(api, vid: int) -> str:
    return request(api.port, "GET", f"/api/videos/{vid}").json()["status"]


def test_start_then_start_again_then_stop(api, video, sync_redis):
    vid = video["id"]
    r = request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"")
    assert r.status == 201, r.body
    run = r.json()["dag_run"]
    assert run["conf"] == {"video_id": vid}
    assert run["dag_id"] == "video_streaming_pipeline"
    assert status_of(api, vid) == "processing"
    triggers = api.airflow_state.triggers

    r = request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"")
    assert r.status == 409
    assert r.error_code == "already_streaming"
    assert api.airflow_state.triggers == triggers  # nothing triggered the second time

    api.airflow_state.set_state(run["dag_run_id"], "running")
    r = request(api.port, "POST", f"/api/videos/{vid}/stream/stop", b"")
    assert r.status == 202, r.body
    assert r.json()["dag_run_ids"] == [run["dag_run_id"]]
    assert sync_redis.get(f"stream:video:{vid}:stop") == "1"
    assert status_of(api, vid) == "stopping"


def test_other_videos_runs_do_not_block(api, video, sample_video):
    other = upload(api.port, {"name": "other"}, {"video": ("o.mp4", sample_video.read_bytes())}).json()
    assert request(api.port, "POST", f"/api/videos/{other['id']}/stream/start", b"").status == 201
    assert request(api.port, "POST", f"/api/videos/{video['id']}/stream/start", b"").status == 201


def test_stop_when_idle_is_409(api, video, sync_redis):
    r = request(api.port, "POST", f"/api/videos/{video['id']}/stream/stop", b"")
    assert r.status == 409
    assert r.error_code == "not_streaming"
    assert sync_redis.get(f"stream:video:{video['id']}:stop") is None
    assert status_of(api, video["id"]) == "uploaded"


def test_start_after_finished_run(api, video):
    vid = video["id"]
    assert request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"").status == 201
    api.airflow_state.finish_all()
    assert request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"").status == 201


@pytest.mark.parametrize("action", ["start", "stop"])
def test_airflow_down_is_503_and_changes_nothing(api, video, sync_redis, action):
    original = api.app.airflow
    api.app.airflow = api.airflow_client(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    triggers = api.airflow_state.triggers
    try:
        r = request(api.port, "POST", f"/api/videos/{video['id']}/stream/{action}", b"")
    finally:
        api.app.airflow = original
    assert r.status == 503, r.body
    assert r.error_code == "airflow_unavailable"
    assert status_of(api, video["id"]) == "uploaded"
    assert sync_redis.get(f"stream:video:{video['id']}:stop") is None
    assert api.airflow_state.triggers == triggers


def test_airflow_token_is_reused(api, video, sample_video):
    before = api.airflow_state.token_requests
    assert request(api.port, "POST", f"/api/videos/{video['id']}/stream/start", b"").status == 201
    other = upload(api.port, {"name": "again"}, {"video": ("o.mp4", sample_video.read_bytes())}).json()
    assert request(api.port, "POST", f"/api/videos/{other['id']}/stream/start", b"").status == 201
    assert api.airflow_state.token_requests - before <= 1
