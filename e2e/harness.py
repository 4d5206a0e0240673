"""Helpers of the end-to-end tests and ``make bench-e2e``: the real stack on free ports, a REST
client, and a WebSocket viewer that records what a browser would receive."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from stack.run import REPO, Infra, Stack, calibrate_video, processor_state, upload_video, wait_http


def start_stack(data_dir: Path, names: list[str] | None = None) -> Stack:
    infra = Infra(data_dir, pg_port=0, redis_port=0, backend_port=0, airflow_port=0).start()
    stack = Stack(infra, names).start_all()
    try:
        wait_http(f"{infra.env['BACKEND_URL']}/api/health", 90, stack.procs["backend"])
        if "airflow" in stack.procs:
            wait_airflow_dag(stack, timeout_s=300)
        if "spark" in stack.procs:
            wait_processor(stack, timeout_s=300)
    except Exception:
        for name in stack.procs:
            print(f"---- {name} ----\n{stack.log_tail(name)}")
        stack.stop_all()
        infra.stop()
        raise
    return stack


def stop_stack(stack: Stack) -> None:
    stack.stop_all()
    stack.infra.stop()


class Api:
    """The backend's REST API, as the dashboard uses it."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def json(self, method: str, path: str, payload: dict | None = None) -> tuple[int, dict]:
        body = None if payload is None else json.dumps(payload).encode()
        return self.call(method, path, body, {"Content-Type": "application/json"})

    def upload(self, path: Path, name: str) -> dict:
        return upload_video(self.base, path, name)

    def calibrate(self, video_id: int, calib: dict) -> dict:
        return calibrate_video(self.base, video_id, calib)


@dataclass
class Viewer:
    """A WebSocket client subscribed to both channels of one video, recording every message
    with its arrival time, until the end of stream has come on both channels (they travel on
    separate connections, so either may be first), or 5 s after it came on one, or ``stop()``."""

    ws_url: str
    video_id: int
    origin: str = "http://localhost:4200"
    frames: list[dict] = field(default_factory=list)
    analytics: list[dict] = field(default_factory=list)
    acks: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Viewer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self.ready.wait(30), f"viewer not subscribed: {self.errors}"
        return self

    async def _run(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        try:
            conn = await websocket_connect(
                HTTPRequest(self.ws_url, headers={"Origin": self.origin}), max_message_size=64 * 1024 * 1024
            )
            for channel in (f"processed_frame_{self.video_id}", f"analytics_metrics_{self.video_id}"):
                await conn.write_message(json.dumps({"action": "subscribe", "channel": channel}))
            eos: dict[str, float] = {}
            while not self.done.is_set():
                if len(eos) == 2 or (eos and time.time() - min(eos.values()) > 5):
                    break
                try:
                    raw = await asyncio.wait_for(conn.read_message(), 0.5)
                except TimeoutError:
                    continue
                if raw is None:
                    self.errors.append("connection closed")
                    break
                msg, now = json.loads(raw), time.time()
                if msg["type"] == "subscription_ack":
                    self.acks.append(msg)
                    if len(self.acks) == 2:
                        self.ready.set()
                elif msg["type"] in ("frame", "analytics"):
                    (self.frames if msg["type"] == "frame" else self.analytics).append(
                        {**msg["data"], "_arrived": now}
                    )
                    if msg["data"].get("end_of_stream"):
                        eos.setdefault(msg["type"], now)
                else:
                    self.errors.append(str(msg))
            conn.close()
            self.done.set()
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))
            self.ready.set()
            self.done.set()

    def wait(self, timeout_s: float) -> bool:
        return self.done.wait(timeout_s)

    def stop(self) -> None:
        self.done.set()


def decode_data_url(url: str) -> bytes:
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix), url[:40]
    return base64.b64decode(url[len(prefix) :])


def airflow_token(stack: Stack) -> str:
    env = stack.infra.env
    req = urllib.request.Request(
        f"{env['AIRFLOW_API_URL']}/auth/token",
        method="POST",
        data=json.dumps({"username": env["AIRFLOW_USERNAME"], "password": env["AIRFLOW_PASSWORD"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["access_token"]


def airflow_get(stack: Stack, path: str) -> dict:
    req = urllib.request.Request(
        f"{stack.infra.env['AIRFLOW_API_URL']}{path}",
        headers={"Authorization": f"Bearer {airflow_token(stack)}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def wait_processor(stack: Stack, timeout_s: float) -> None:
    """Until the backend's health says the Spark application runs its query (its heartbeat)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.procs["spark"].poll() is not None:
            raise RuntimeError(f"spark exited:\n{stack.log_tail('spark')}")
        if processor_state(stack.infra.env["BACKEND_URL"]) == "ready":
            return
        time.sleep(1)
    raise TimeoutError(f"the Spark application was not ready within {timeout_s} s")


def wait_airflow_dag(stack: Stack, timeout_s: float, dag_id: str = "video_streaming_pipeline") -> None:
    """Until Airflow answers and has parsed the DAG (triggering before that is refused)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if stack.procs["airflow"].poll() is not None:
            raise RuntimeError(f"airflow exited:\n{stack.log_tail('airflow')}")
        try:
            airflow_get(stack, f"/api/v2/dags/{dag_id}")
            return
        except Exception as exc:  # not up yet / not parsed yet
            last = exc
        time.sleep(2)
    raise TimeoutError(f"Airflow has not parsed {dag_id} within {timeout_s} s: {last}")


def wait_dag_run(
    stack: Stack, dag_run_id: str, timeout_s: float, dag_id: str = "video_streaming_pipeline"
) -> str:
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        state = airflow_get(stack, f"/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}")["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(2)
    return f"timeout ({state})"


__all__ = ["REPO", "Api", "Viewer", "start_stack", "stop_stack", "decode_data_url", "wait_dag_run"]
