"""A tiny stand-in for Airflow 3's REST API: /auth/token and the dagRuns endpoints."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import tornado.web

TOKEN = "fake-jwt"


class FakeAirflowState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, dict[str, Any]] = {}
        self.token_requests = 0
        self.triggers = 0
        # Seconds each dagRuns request (list, trigger) takes before it is answered: a slow Airflow,
        # so that concurrent starts really overlap (the fake runs on the backend's own IOLoop)
        self.delay_s = 0.0

    def set_state(self, run_id: str, state: str) -> None:
        with self.lock:
            self.runs[run_id]["state"] = state

    def finish_all(self) -> None:
        with self.lock:
            for run in self.runs.values():
                run["state"] = "success"


class _Base(tornado.web.RequestHandler):
    def initialize(self, state: FakeAirflowState) -> None:
        self.state = state

    def authorized(self) -> bool:
        if self.request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.set_status(401)
            self.finish({"detail": "Not authenticated"})
            return False
        return True


class TokenHandler(_Base):
    def post(self) -> None:
        body = json.loads(self.request.body)
        self.state.token_requests += 1
        if body != {"username": "admin", "password": "secret"}:
            self.set_status(401)
            self.finish({"detail": "Invalid credentials"})
            return
        self.set_status(201)
        self.finish({"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600})


class DagRunsHandler(_Base):
    async def get(self, dag_id: str) -> None:
        if not self.authorized():
            return
        if self.state.delay_s > 0:
            await asyncio.sleep(self.state.delay_s)
        states = self.get_query_arguments("state")
        with self.state.lock:
            runs = [
                r
                for r in self.state.runs.values()
                if r["dag_id"] == dag_id and (not states or r["state"] in states)
            ]
        self.finish({"dag_runs": runs, "total_entries": len(runs)})

    async def post(self, dag_id: str) -> None:
        if not self.authorized():
            return
        if self.state.delay_s > 0:
            await asyncio.sleep(self.state.delay_s)
        body = json.loads(self.request.body)
        run_id = body["dag_run_id"]
        with self.state.lock:
            if run_id in self.state.runs:
                self.set_status(409)
                self.finish({"detail": "exists"})
                return
            run = {"dag_run_id": run_id, "dag_id": dag_id, "state": "queued", "conf": body.get("conf") or {}}
            self.state.runs[run_id] = run
            self.state.triggers += 1
        self.finish(run)


class DagRunHandler(_Base):
    def get(self, dag_id: str, run_id: str) -> None:
        if not self.authorized():
            return
        run = self.state.runs.get(run_id)
        if run is None:
            self.set_status(404)
            self.finish({"detail": "not found"})
            return
        self.finish(run)


def make_app(state: FakeAirflowState) -> tornado.web.Application:
    kw = {"state": state}
    return tornado.web.Application(
        [
            (r"/auth/token", TokenHandler, kw),
            (r"/api/v2/dags/([^/]+)/dagRuns", DagRunsHandler, kw),
            (r"/api/v2/dags/([^/]+)/dagRuns/([^/]+)", DagRunHandler, kw),
        ]
    )
