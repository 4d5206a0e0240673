"""The DAG on a real Airflow 3 (``airflow/run_standalone.sh``: api-server, scheduler,
dag-processor, triggerer, LocalExecutor), triggered through the REST API v2 as the backend
does, against real PostgreSQL and Redis. A small fake processor stands in for the Spark
application (it counts frames into the progress hash and answers the end of stream)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import text

from backend.embedded import free_port
from contracts import streams
from contracts.messages import (
    ProcessedFrame,
    ProgressWriter,
    StreamProgress,
    StreamState,
    Summary,
    VideoFrame,
    VideoStatus,
    Violation,
)

AIRFLOW_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = AIRFLOW_DIR.parent
AIRFLOW_VENV = Path(os.environ.get("AIRFLOW_VENV", REPO_ROOT / ".airflow-venv"))
DAG = "video_streaming_pipeline"
PASSWORD = "test-airflow-password"

pytestmark = pytest.mark.slow


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""

    def call(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def login(self, username: str, password: str) -> None:
        status, data = self.call(
            "POST", "/auth/token", {"username": username, "password": password}, auth=False
        )
        assert status in (200, 201), data
        self.token = data["access_token"]

    def trigger(self, run_id: str, conf: dict) -> dict:
        status, data = self.call(
            "POST", f"/api/v2/dags/{DAG}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        )
        assert status == 200, data
        return data

    def wait_run(self, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, data = self.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}")
            assert status == 200, data
            if data["state"] in ("success", "failed"):
                return data["state"]
            time.sleep(1)
        raise AssertionError(f"run {run_id} still {data['state']} after {timeout} s")

    def tasks(self, run_id: str) -> dict[str, dict]:
        status, data = self.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances")
        assert status == 200, data
        return {t["task_id"]: t for t in data["task_instances"]}


@pytest.fixture(scope="module")
def airflow_api(postgres, redis_server, tmp_path_factory) -> Iterator[Api]:
    if not (AIRFLOW_VENV / "bin" / "airflow").exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Airflow venv at {AIRFLOW_VENV}: run bash airflow/install.sh")
        pytest.skip(f"no Airflow venv at {AIRFLOW_VENV} (bash airflow/install.sh)")
    home = tmp_path_factory.mktemp("airflow_home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "VIRTUAL_ENV"}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_PORT": str(port),
        "AIRFLOW_USERNAME": "admin",
        "AIRFLOW_PASSWORD": PASSWORD,
        "AIRFLOW_VENV": str(AIRFLOW_VENV),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "DATABASE_URL": postgres.url,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_server.port),
        "PIPELINE_STALL_TIMEOUT_S": "8",
        # No Spark here: without its heartbeat the monitor waits this long before calling a stall.
        "PIPELINE_PROCESSOR_WAIT_S": "12",
        # Airflow's metadata in its own database on the project's PostgreSQL (created by the script).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url.rsplit("/", 1)[0] + "/airflow_test",
    }
    log = open(home / "standalone.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        ["bash", str(AIRFLOW_DIR / "run_standalone.sh")],
        env=env,
        cwd=str(REPO_ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = Api(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (home / "standalone.log").read_text()[-4000:]
            assert time.monotonic() < deadline, (home / "standalone.log").read_text()[-4000:]
            try:
                status, _ = api.call("GET", "/api/v2/monitor/health", auth=False)
                if status == 200:
                    api.login("admin", PASSWORD)
                    if api.call("GET", f"/api/v2/dags/{DAG}")[0] == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(1)
        yield api
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


class FakeProcessor:
    """Reads ``video-frames`` like the Spark application would and writes its progress fields."""

    def __init__(self, port: int) -> None:
        self.r = redis_lib.Redis(port=port)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        last = "0-0"
        while not self.stop.is_set():
            for _, entries in self.r.xread({streams.VIDEO_FRAMES: last}, block=200, count=100) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self.handle(VideoFrame.from_fields(fields))

    def handle(self, e: VideoFrame) -> None:
        key = streams.progress_key(e.video_id)
        if not e.end_of_stream:
            out = ProcessedFrame(
                video_id=e.video_id,
                frame_number=e.frame_number,
                timestamp=e.timestamp,
                processed_frame=e.frame_data,
            )
            self.r.xadd(streams.PROCESSED_FRAMES, out.to_fields())
            for name, n in StreamProgress.increments(ProgressWriter.PROCESSOR, processed=1).items():
                self.r.hincrby(key, name, n)
            self.r.hset(
                key,
                mapping=StreamProgress.update(
                    ProgressWriter.PROCESSOR, processed_last_frame=e.frame_number, updated_at=time.time()
                ),
            )
            return
        summary = Summary(
            total_vehicles_count=e.video_id,
            avg_dwell_time=1.0,
            vehicle_type_distribution={"car": e.video_id},
            speeding_count=1,
        )
        violation = Violation(
            track_id=7, vehicle_class="car", speed_kmh=99.0, frame_number=3, video_time_s=0.15
        )
        self.r.rpush(streams.violations_key(e.video_id), violation.model_dump_json())
        end = ProcessedFrame(
            video_id=e.video_id,
            frame_number=e.frame_number,
            timestamp=e.timestamp,
            end_of_stream=True,
            summary=summary,
        )
        self.r.xadd(streams.PROCESSED_FRAMES, end.to_fields())
        self.r.hset(
            key,
            mapping=StreamProgress.update(
                ProgressWriter.PROCESSOR, summary=summary, eos_processed=True, updated_at=time.time()
            ),
        )

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.r.close()


def db_state(engine, vid: int) -> tuple[str, int | None, int]:
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM videos WHERE id = :v"), {"v": vid}).scalar_one()
        total = conn.execute(
            text("SELECT total_vehicles_count FROM video_analytics WHERE video_id = :v"), {"v": vid}
        ).scalar_one_or_none()
        violations = conn.execute(
            text("SELECT count(*) FROM speeding_violations WHERE video_id = :v"), {"v": vid}
        ).scalar_one()
    return status, total, violations


def test_two_videos_at_once_through_the_rest_api(airflow_api, r, engine, add_video, redis_server):
    live, batch = add_video(frames=40, fps=20.0), add_video(frames=60, fps=20.0)
    fake = FakeProcessor(redis_server.port)
    try:
        airflow_api.trigger(f"video_{live}__live", {"video_id": live})  # realtime by default
        airflow_api.trigger(f"video_{batch}__batch", {"video_id": batch, "realtime": False})
        assert airflow_api.wait_run(f"video_{live}__live") == "success"
        assert airflow_api.wait_run(f"video_{batch}__batch") == "success"
    finally:
        fake.close()
    for vid, run_id in ((live, f"video_{live}__live"), (batch, f"video_{batch}__batch")):
        tasks = airflow_api.tasks(run_id)
        states = {k: t["state"] for k, t in tasks.items()}
        assert states == {
            "produce_frames": "success",
            "process_frames": "success",
            "cleanup": "success",
            "fail_run": "skipped",
        }
        # Side by side: processing started before production ended.
        assert tasks["process_frames"]["start_date"] < tasks["produce_frames"]["end_date"]
        assert db_state(engine, vid) == (VideoStatus.COMPLETED, vid, 1)
        assert StreamProgress.from_hash(r.hgetall(streams.progress_key(vid))).state == StreamState.DONE
    assert r.xlen(streams.VIDEO_FRAMES) == 0 and r.xlen(streams.PROCESSED_FRAMES) == 0


def test_without_a_processor_the_run_fails_and_cleans_up(airflow_api, r, engine, add_video):
    vid = add_video(frames=20, fps=20.0)
    run_id = f"video_{vid}__noproc"
    airflow_api.trigger(run_id, {"video_id": vid, "realtime": False})
    assert airflow_api.wait_run(run_id) == "failed"
    states = {k: t["state"] for k, t in airflow_api.tasks(run_id).items()}
    assert states["process_frames"] == "failed" and states["cleanup"] == "success"
    assert states["fail_run"] == "failed"
    assert db_state(engine, vid) == (VideoStatus.FAILED, None, 0)
    # Only the end of stream stays, for the processor to drop the video's state when it is back.
    left = [VideoFrame.from_fields(f) for _, f in r.xrange(streams.VIDEO_FRAMES)]
    assert [(e.video_id, e.end_of_stream) for e in left] == [(vid, True)]
    assert r.get(streams.stop_key(vid)) is None


def test_bad_conf_is_refused(airflow_api):
    body = {"logical_date": None, "conf": {"video_id": 1, "realtime": "no"}}
    status, _ = airflow_api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", body)
    assert status == 400
