"""Small Airflow 3 REST client (``/api/v2``, JWT from ``/auth/token``) with timeouts and retries.

Only what the backend needs: list this video's active DAG runs and trigger one. Connection
failures, timeouts and 5xx are retried with backoff and end in ``AirflowUnavailable`` (the API
answers 503 and changes nothing). A trigger carries a fresh ``dag_run_id``, so a retry after a
lost response finds Airflow's 409 for that id and returns the run instead of starting a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError

from contracts import streams

log = logging.getLogger("backend.airflow")

ACTIVE_STATES = ("queued", "running")


class AirflowUnavailable(Exception):
    """Airflow could not be reached or kept failing (5xx, timeouts)."""


class AirflowError(Exception):
    """Airflow answered with an unexpected client error."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Airflow answered {status}: {body[:300]}")
        self.status = status


class AirflowClient:
    def __init__(
        self,
        base_url: str,
        *,
        username: str,
        password: str,
        dag_id: str = streams.DAG_ID,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.dag_id = dag_id
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._token: str | None = None
        self._token_expires = 0.0

    async def _send(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        """One attempt. Returns (status, parsed JSON); raises on network errors."""
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {await self._get_token()}"
        request = HTTPRequest(
            self.base_url + path,
            method=method,
            headers=headers,
            body=None if body is None else json.dumps(body),
            connect_timeout=min(self.timeout_s, 5.0),
            request_timeout=self.timeout_s,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, StreamClosedError, HTTPClientError, TimeoutError) as exc:
            raise ConnectionError(str(exc)) from exc
        if response.code == 599:  # tornado's code for timeouts / network errors
            raise ConnectionError(str(response.error))
        text = response.body.decode("utf-8", "replace") if response.body else ""
        try:
            data = json.loads(text) if text else None
        except json.JSONDecodeError:
            data = text
        return response.code, data

    async def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        last: Exception | None = None
        refreshed = False
        attempt = 0
        while attempt < self.retries:
            try:
                status, data = await self._send(method, path, body, auth)
            except ConnectionError as exc:
                last = exc
            else:
                if status == 401 and auth and not refreshed:  # token expired or revoked
                    self._token = None
                    refreshed = True
                    continue
                if status < 500:
                    return status, data
                last = AirflowError(status, str(data))
            attempt += 1
            if attempt < self.retries:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        log.warning("Airflow %s %s failed after %d attempts: %s", method, path, self.retries, last)
        raise AirflowUnavailable(f"Airflow at {self.base_url} is unavailable: {last}")

    async def _get_token(self) -> str:
        if self._token and time.monotonic() < self._token_expires:
            return self._token
        status, data = await self._request(
            "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
        )
        if status not in (200, 201) or not isinstance(data, dict) or "access_token" not in data:
            raise AirflowError(status, str(data))
        self._token = data["access_token"]
        self._token_expires = time.monotonic() + float(data.get("expires_in", 600)) * 0.8
        return self._token

    async def health(self) -> bool:
        try:
            status, _ = await self._request("GET", "/api/v2/monitor/health", auth=False)
        except AirflowUnavailable:
            return False
        return status == 200

    async def active_runs(self, video_id: int) -> list[dict[str, Any]]:
        """Queued or running runs of the DAG whose conf names this video."""
        query = urlencode([("state", s) for s in ACTIVE_STATES] + [("limit", "100")])
        status, data = await self._request("GET", f"/api/v2/dags/{self.dag_id}/dagRuns?{query}")
        if status == 404:  # DAG not (yet) parsed: nothing can be running
            return []
        if status != 200 or not isinstance(data, dict):
            raise AirflowError(status, str(data))
        return [
            run
            for run in data.get("dag_runs", [])
            if run.get("state") in ACTIVE_STATES and (run.get("conf") or {}).get("video_id") == video_id
        ]

    async def trigger(self, video_id: int, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        run_id = f"video_{video_id}__{uuid.uuid4().hex[:12]}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": {"video_id": video_id, **(conf or {})}}
        path = f"/api/v2/dags/{self.dag_id}/dagRuns"
        status, data = await self._request("POST", path, body)
        if status == 409:  # a retried POST whose first attempt got through
            status, data = await self._request("GET", f"{path}/{run_id}")
        if status not in (200, 201) or not isinstance(data, dict):
            raise AirflowError(status, str(data))
        return data
