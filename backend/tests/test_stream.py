"""Start/stop through Airflow's REST API (a fake Airflow on loopback; 'down' = a closed port)."""

from __future__ import annotations

import pytest

from backend.embedded import free_port
from backend.services.airflow_client import AirflowClient, AirflowError, AirflowUnavailable
from backend.services.errors import airflow_failure
from backend.tests.client import request, upload
from contracts import streams
from contracts.messages import StreamProgress, StreamState

JSON = {"Content-Type": "application/json"}


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
    assert run["conf"] == {"video_id": vid, "realtime": True}  # empty body: live stream
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
    # the same lifetime as the monitor's stop of a failed run (streams.STOP_FLAG_TTL_S)
    assert streams.STOP_FLAG_TTL_S - 5 < sync_redis.ttl(f"stream:video:{vid}:stop") <= streams.STOP_FLAG_TTL_S
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


def test_start_realtime_false_goes_into_the_conf(api, video):
    vid = video["id"]
    r = request(api.port, "POST", f"/api/videos/{vid}/stream/start", b'{"realtime": false}', JSON)
    assert r.status == 201, r.body
    assert r.json()["dag_run"]["conf"] == {"video_id": vid, "realtime": False}
    api.airflow_state.finish_all()
    r = request(api.port, "POST", f"/api/videos/{vid}/stream/start", b'{"realtime": true}', JSON)
    assert r.json()["dag_run"]["conf"] == {"video_id": vid, "realtime": True}
    api.airflow_state.finish_all()
    r = request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"{}", JSON)
    assert r.json()["dag_run"]["conf"] == {"video_id": vid, "realtime": True}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b'{"realtime": "no"}', "invalid_body"),
        (b'{"realtime": 0}', "invalid_body"),
        (b'{"realtime": true, "fast": 1}', "invalid_body"),
        (b"[true]", "invalid_body"),
    ],
)
def test_start_bad_body_is_400_and_triggers_nothing(api, video, body, code):
    triggers = api.airflow_state.triggers
    r = request(api.port, "POST", f"/api/videos/{video['id']}/stream/start", body, JSON)
    assert r.status == 400, r.body
    assert r.error_code == code
    assert api.airflow_state.triggers == triggers
    assert status_of(api, video["id"]) == "uploaded"


def test_start_clears_the_previous_runs_keys(api, video, sync_redis):
    vid = video["id"]
    keys = [
        streams.stop_key(vid),
        streams.progress_key(vid),
        streams.violations_key(vid),
        streams.analytics_key(vid),
    ]
    sync_redis.set(streams.stop_key(vid), "1")
    done = StreamProgress(state=StreamState.DONE, processed=30)
    sync_redis.hset(streams.progress_key(vid), mapping=done.to_hash())
    sync_redis.rpush(streams.violations_key(vid), '{"track_id": 1}')
    sync_redis.set(streams.analytics_key(vid), "{}")
    other = [streams.progress_key(vid + 1000), streams.violations_key(vid + 1000)]
    sync_redis.hset(other[0], mapping=StreamProgress(state=StreamState.PRODUCING).to_hash())
    sync_redis.rpush(other[1], "x")
    try:
        assert request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"").status == 201
        assert sync_redis.exists(*keys) == 0
        assert sync_redis.exists(*other) == 2  # other videos untouched
    finally:
        sync_redis.delete(*other)


def test_start_while_running_keeps_the_runs_keys(api, video, sync_redis):
    vid = video["id"]
    assert request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"").status == 201
    sync_redis.hset(streams.progress_key(vid), mapping=StreamProgress(produced=5).to_hash())
    assert request(api.port, "POST", f"/api/videos/{vid}/stream/start", b"").status == 409
    assert StreamProgress.from_hash(sync_redis.hgetall(streams.progress_key(vid))).produced == 5
    sync_redis.delete(streams.progress_key(vid))


def test_airflow_failures_map_to_one_status_each():
    """``errors.airflow_failure``: the one mapping of Airflow failures to API statuses."""
    unavailable = airflow_failure(AirflowUnavailable("Airflow at http://x is unavailable: refused"))
    assert (unavailable.status, unavailable.code) == (503, "airflow_unavailable")
    refused = airflow_failure(AirflowError(401, '{"detail": "Invalid credentials"}'))
    assert (refused.status, refused.code) == (502, "airflow_error")
    assert "401" in refused.message


@pytest.mark.parametrize("action", ["start", "stop"])
def test_airflow_refusing_the_login_is_502_and_changes_nothing(api, video, sync_redis, action):
    original = api.app.airflow
    api.app.airflow = AirflowClient(
        f"http://127.0.0.1:{api.airflow_port}", username="admin", password="wrong", retries=1
    )
    triggers = api.airflow_state.triggers
    try:
        r = request(api.port, "POST", f"/api/videos/{video['id']}/stream/{action}", b"")
    finally:
        api.app.airflow = original
    assert r.status == 502, r.body
    assert r.error_code == "airflow_error"
    assert status_of(api, video["id"]) == "uploaded"
    assert sync_redis.get(f"stream:video:{video['id']}:stop") is None
    assert api.airflow_state.triggers == triggers
