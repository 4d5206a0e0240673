"""Airflow's REST API as the stack and the end-to-end tests call it (a token of the simple auth
manager's user from a run's environment: ``AIRFLOW_API_URL``, ``AIRFLOW_USERNAME``,
``AIRFLOW_PASSWORD``), and the streams in flight stopped before the services stop."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Mapping

from contracts.streams import DAG_ID
from stack.rest_client import Api


def airflow_token(env: Mapping[str, str], timeout: float = 5) -> str:
    """An access token of the run's Airflow user (``POST /auth/token``)."""
    req = urllib.request.Request(
        f"{env['AIRFLOW_API_URL']}/auth/token",
        method="POST",
        data=json.dumps({"username": env["AIRFLOW_USERNAME"], "password": env["AIRFLOW_PASSWORD"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)["access_token"]


def airflow_get(env: Mapping[str, str], path: str, timeout: float = 5) -> dict:
    """GET on Airflow's REST API with a token of the simple auth manager's user."""
    req = urllib.request.Request(
        f"{env['AIRFLOW_API_URL']}{path}", headers={"Authorization": f"Bearer {airflow_token(env, timeout)}"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def airflow_dag_ready(env: Mapping[str, str], dag_id: str = DAG_ID) -> bool:
    """Airflow answers and has parsed the DAG (a stream can be started)."""
    try:
        airflow_get(env, f"/api/v2/dags/{dag_id}")
        return True
    except (OSError, ValueError, KeyError):
        return False


def dag_run_state(env: Mapping[str, str], dag_run_id: str, dag_id: str = DAG_ID, timeout: float = 5) -> str:
    """``queued``, ``running``, ``success``, ``failed`` ... of one run of the DAG."""
    return airflow_get(env, f"/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", timeout)["state"]


def active_dag_runs(env: Mapping[str, str]) -> list[dict] | None:
    """Queued or running runs of the DAG; None when Airflow does not answer."""
    try:
        data = airflow_get(env, f"/api/v2/dags/{DAG_ID}/dagRuns?state=queued&state=running&limit=100")
    except (OSError, ValueError, KeyError):
        return None
    return [r for r in data.get("dag_runs", []) if r.get("state") in ("queued", "running")]


def warm_airflow(env: Mapping[str, str]) -> None:
    """One request to Airflow's execution API: its app (cadwyn) builds its versioned routes on
    the first request, seconds of CPU that would otherwise delay the first task of the first
    stream (its "task started" call)."""
    try:
        with urllib.request.urlopen(f"{env['AIRFLOW_API_URL']}/execution/health", timeout=60) as r:
            r.read()
    except (OSError, ValueError):
        pass


def stop_streams(env: Mapping[str, str], say: Callable[[str], None], timeout_s: float = 45.0) -> None:
    """Before the services stop: each stream in flight is stopped through the API, as the stop
    button does (its partial results are stored by the DAG's cleanup), and its DAG run is
    waited for. A run cut by the stop of Airflow itself would be found orphaned at the next
    start and run again from frame 0."""
    runs = active_dag_runs(env)
    if not runs:
        return
    videos = sorted({int(v) for r in runs if (v := (r.get("conf") or {}).get("video_id")) is not None})
    api = Api.of_env(env)
    for video_id in videos:
        say(f"[stack] stopping the stream of video {video_id} (its results so far are stored)")
        try:  # 409: it ended meanwhile; the backend down: nothing to do
            api.call("POST", f"/api/videos/{video_id}/stream/stop", timeout=10)
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = active_dag_runs(env)
        if not runs:
            return
        time.sleep(0.5)
    say(f"[stack] {len(runs or [])} stream(s) still running after {timeout_s:.0f} s: stopping anyway")
