"""The backend's REST API as the stack and the end-to-end tests call it: ``Api`` (an API token,
the dashboard's requests), and the unauthenticated waits on an address and on the processor."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stack.processes import Stack


class ApiError(OSError):
    """An answer other than the one the call expects (``Api.expect``, ``upload``, ``calibrate``)."""

    def __init__(self, method: str, path: str, status: int, body: dict) -> None:
        super().__init__(f"{method} {path} answered {status}: {body}")
        self.status, self.body = status, body


class Api:
    """The backend's REST API, as the dashboard uses it, with an API token (issue 17)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = base_url
        self.token = token

    @classmethod
    def of_env(cls, env: Mapping[str, str]) -> Api:
        """The API of a run's environment (``Infra.env``, ``stack.env``) with the admin token
        ``stack.run`` made for its own calls."""
        return cls(env["BACKEND_URL"], env["TRAFFIC_API_TOKEN"])

    @classmethod
    def of(cls, stack: Stack) -> Api:
        """The API of a test's ``Stack``, with the stack's admin token."""
        return cls.of_env(stack.infra.env)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict]:
        """(status, JSON body) of any answer, an error status included."""
        status, raw = self.request(method, path, body, headers, timeout)
        return status, json.loads(raw or b"{}")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 60,
    ) -> tuple[int, bytes]:
        """(status, body as sent) of any answer, an error status included."""
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def read(self, path: str, timeout: float = 60) -> bytes:
        """The body of ``GET path`` as sent (a CSV download byte for byte); any status but 200
        raises ApiError."""
        status, raw = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ApiError("GET", path, status, {"body": raw.decode(errors="replace")})
        return raw

    def json(
        self, method: str, path: str, payload: dict | None = None, timeout: float = 60
    ) -> tuple[int, dict]:
        body = None if payload is None else json.dumps(payload).encode()
        return self.call(method, path, body, {"Content-Type": "application/json"}, timeout)

    def expect(
        self, method: str, path: str, payload: dict | None = None, status: int = 200, timeout: float = 60
    ) -> dict:
        """The JSON body of an answer with ``status``; any other raises ApiError."""
        got, body = self.json(method, path, payload, timeout)
        if got != status:
            raise ApiError(method, path, got, body)
        return body

    def upload(self, path: Path, name: str, timeout: float = 120) -> dict:
        """``POST /api/videos/upload`` (multipart, as the dashboard sends it); the new video row."""
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="video"; filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, video = self.call("POST", "/api/videos/upload", body, headers, timeout)
        if status != 201:
            raise ApiError("POST", "/api/videos/upload", status, video)
        return video

    def calibrate(self, video_id: int, calib: dict, timeout: float = 30) -> dict:
        """``PUT /api/videos/{id}/calibration`` with a CALIB.json's ROI, point pairs and speed limit."""
        keys = ("roi_polygon", "image_points", "world_points", "speed_limit_kmh")
        payload = {k: calib[k] for k in keys if calib.get(k) is not None}
        return self.expect("PUT", f"/api/videos/{video_id}/calibration", payload, 200, timeout)


def processor_state(base_url: str) -> str:
    """``ready`` / ``not running`` (the backend's health reads the Spark heartbeat), ``unknown``."""
    try:
        with urllib.request.urlopen(f"{base_url}/api/health", timeout=5) as r:
            return json.loads(r.read()).get("processor", "unknown")
    except (OSError, ValueError):
        return "unknown"


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Until ``url`` answers below 500; RuntimeError when ``proc`` exits first, TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except (urllib.error.URLError, OSError, ConnectionError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)
