"""Security on the real stack (issue 17): the backend, PostgreSQL, Redis, the bridge, Spark and
Airflow started by the session, reached over HTTP as an attacker on the network would.

- every REST route and the client WebSocket, taken from the application's own route table (a new
  route cannot be forgotten), answers 401 without credentials, but the few public ones named here;
- a viewer gets 403 on every write;
- cross-site requests: a form post from another origin and a ``text/plain`` JSON post with the
  session cookie are refused; a foreign Host header is refused;
- the 11th wrong login within a minute gets 429;
- the ingest sockets refuse no token, a wrong one and ``change-me``; a backend given
  ``INTERNAL_TOKEN=change-me`` (or a short one) does not start;
- input and load: a clip of huge dimensions is refused within a second while /api/health answers,
  a 300-byte name gets 400 before the body is stored, 20 concurrent starts make one DAG run.
"""

from __future__ import annotations

import concurrent.futures
import http.client as httpclient
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from backend.app import all_routes
from backend.tests.client import multipart  # fields first (the name before the file), as the page
from contracts.assets import REPO_ROOT as REPO
from e2e.browser_run import make_account
from e2e.harness import Api, airflow_get, wait_dag_run
from testing.clips import declared_clip

pytestmark = pytest.mark.slow
PUBLIC = {("GET", "/api/health"), ("POST", "/api/auth/login"), ("POST", "/api/auth/logout")}
EVIL = "http://evil.example"


class Http:
    """Raw HTTP to the stack's backend: any header (Host, Origin, Cookie), nothing added."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


def code_of(body: bytes) -> str | None:
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def concrete(pattern: str, video_id: int) -> str:
    """A route's regex with its groups filled in (an existing video's id)."""
    return re.sub(r"\([^)]*\)", str(video_id), pattern).rstrip("$")


def rules() -> list[tuple[str, str, str]]:
    """(method, path pattern, rule) of every method every handler of the route table declares."""
    out = []
    for pattern, handler in all_routes():
        for method, rule in getattr(handler, "access", {}).items():
            out.append((method, pattern, rule))
    return out


@pytest.fixture(scope="module")
def http(stack) -> Http:
    return Http(stack.infra.backend_port)


@pytest.fixture(scope="module")
def api(stack) -> Api:
    return Api.of(stack)


@pytest.fixture(scope="module")
def video_id(api, truth) -> int:
    clip, calib, _ = truth
    video = api.upload(clip, "security")
    api.calibrate(video["id"], calib)
    return video["id"]


def login(http: Http, name: str, password: str) -> str:
    """The session cookie (``traffic_session=...``) of a fresh login."""
    status, headers, body = http(
        "POST",
        "/api/auth/login",
        json.dumps({"username": name, "password": password}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    return cookie.split(";", 1)[0]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_and_the_websocket_need_a_login(http, video_id):
    table = rules()
    assert len(table) >= 25, table  # the whole route table, not a hand-kept list
    public = set()
    for method, pattern, rule in table:
        path = concrete(pattern, video_id)
        if rule == "public":
            public.add((method, path))
            continue
        body = b"{}" if method in ("POST", "PUT") else None
        status, _, answer = http(method, path, body, {"Content-Type": "application/json"})
        assert (status, code_of(answer)) == (401, "unauthorized"), (method, path, answer[:200])
    assert public == PUBLIC
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Origin": f"http://127.0.0.1:{http.port}",
    }
    status, _, answer = http("GET", "/ws/client/stream", None, upgrade)
    assert (status, code_of(answer)) == (401, "unauthorized")
    # a forged cookie is no login either
    status, _, _ = http("GET", "/ws/client/stream", None, {**upgrade, "Cookie": "traffic_session=2|1:0|x"})
    assert status == 401


def test_a_viewer_reads_but_gets_403_on_every_write(http, api, video_id):
    account = make_account(api, "viewer")
    name, password = account["username"], account["password"]
    cookie = login(http, name, password)
    headers = {"Cookie": cookie, "Content-Type": "application/json"}
    writes = [(m, p) for m, p, rule in rules() if rule in ("operator", "admin")]
    assert {m for m, _ in writes} >= {"POST", "PUT", "DELETE"}
    for method, pattern in writes:
        path = concrete(pattern, video_id)
        status, _, answer = http(method, path, b"{}" if method != "DELETE" else None, headers)
        assert (status, code_of(answer)) == (403, "forbidden"), (method, path, answer[:200])
    status, _, answer = http("GET", f"/api/videos/{video_id}", None, {"Cookie": cookie})
    assert status == 200 and json.loads(answer)["id"] == video_id
    # the video is untouched: still there, still calibrated, not streaming
    status, video = api.json("GET", f"/api/videos/{video_id}")
    assert status == 200 and video["status"] != "processing"


def test_cross_site_requests_and_foreign_hosts_are_refused(http, api, stack, video_id):
    account = make_account(api, "operator")
    name, password = account["username"], account["password"]
    cookie = login(http, name, password)
    start = f"/api/videos/{video_id}/stream/start"
    form = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    # a form on another site posting to the backend with the operator's cookie
    status, _, answer = http("POST", start, b"realtime=true", {**form, "Origin": EVIL})
    assert (status, code_of(answer)) == (403, "origin_refused")
    # the same form without an Origin (an old browser): not JSON, no custom header -> refused
    status, _, answer = http("POST", start, b"realtime=true", form)
    assert (status, code_of(answer)) == (403, "csrf_refused")
    # JSON sent as text/plain (no CORS preflight) with the cookie: refused, never parsed
    plain = {"Cookie": cookie, "Content-Type": "text/plain"}
    status, _, answer = http("POST", start, b'{"realtime": true}', plain)
    assert (status, code_of(answer)) == (403, "csrf_refused")
    # ... and with a token (no ambient credential) it is still not read as JSON
    token_headers = {**bearer(api.token), "Content-Type": "text/plain"}
    status, _, answer = http("POST", start, b'{"realtime": true}', token_headers)
    assert (status, code_of(answer)) == (415, "unsupported_media_type")
    assert not active_runs(stack, video_id)  # nothing was started by any of them
    # DNS rebinding: the attacker's name in Host
    status, _, answer = http("GET", "/api/videos", None, {**bearer(api.token), "Host": "evil.example"})
    assert (status, code_of(answer)) == (400, "host_not_allowed")
    status, _, answer = http("GET", "/", None, {"Host": "evil.example:8686"})
    assert status == 400
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Cookie": cookie,
    }
    status, _, _ = http("GET", "/ws/client/stream", None, {**upgrade, "Host": "evil.example"})
    assert status == 400
    status, _, _ = http("GET", "/ws/client/stream", None, {**upgrade, "Origin": EVIL})
    assert status == 403
    status, _, _ = http(
        "GET", "/ws/client/stream", None, {**upgrade, "Origin": f"http://127.0.0.1:{http.port}"}
    )
    assert status == 101
    # the page's security headers
    status, headers, _ = http("GET", "/")
    assert status == 200 and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def active_runs(stack, video_id: int) -> list[dict]:
    """The video's queued or running DAG runs, from Airflow itself."""
    runs = airflow_get(
        stack, "/api/v2/dags/video_streaming_pipeline/dagRuns?state=queued&state=running&limit=100"
    )
    return [r for r in runs["dag_runs"] if (r.get("conf") or {}).get("video_id") == video_id]


def test_the_eleventh_wrong_login_in_a_minute_gets_429(http, stack):
    r = redis_lib.Redis(
        port=int(stack.infra.env["REDIS_PORT"]), password=stack.infra.env.get("REDIS_PASSWORD") or None
    )
    key = "auth:login-failures:127.0.0.1"
    r.delete(key)
    try:
        answers = []
        for i in range(11):
            user = "admin" if i % 2 else f"nobody-{i}"  # a wrong password and an unknown user alike
            status, headers, body = http(
                "POST",
                "/api/auth/login",
                json.dumps({"username": user, "password": "wrong password"}).encode(),
                {"Content-Type": "application/json"},
            )
            answers.append((status, code_of(body), headers.get("retry-after"), body))
        assert [a[:2] for a in answers[:10]] == [(401, "invalid_credentials")] * 10
        assert len({a[3] for a in answers[:10]}) == 1  # the same answer for a wrong user or password
        assert answers[10][:2] == (429, "too_many_attempts") and int(answers[10][2]) > 0
    finally:
        r.delete(key)  # the browser suite logs in from this address too
        r.close()


def test_ingest_refuses_missing_wrong_and_example_tokens(http, stack):
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    good = stack.infra.env["INTERNAL_TOKEN"]
    for path in ("/ws/backend/processed", "/ws/backend/analytics"):
        for token in (None, good + "x", "change-me"):
            headers = dict(upgrade) if token is None else {**upgrade, **bearer(token)}
            status, _, _ = http("GET", path, None, headers)
            assert status == 401, (path, token)
        status, _, _ = http("GET", path, None, {**upgrade, **bearer(good)})
        assert status == 101  # the bridge's own token is let in
    # a backend configured with the example value (or a short one) refuses to start at all
    for bad in ("change-me", "short-token"):
        env = {**os.environ, **stack.infra.env, "INTERNAL_TOKEN": bad, "BACKEND_PORT": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "backend.app"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0 and "INTERNAL_TOKEN" in proc.stderr, proc.stderr[-500:]


def storage_files(stack) -> set[str]:
    root = Path(stack.infra.env["VIDEO_STORAGE_PATH"])
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_huge_clips_and_long_names_are_refused_early_while_health_answers(http, api, stack, tmp_path):
    clip = declared_clip(tmp_path / "huge.mkv", 16000, 16000)  # its headers say 16000 x 16000
    body, kind = multipart({"name": "huge"}, {"video": ("huge.mkv", clip.read_bytes())})
    headers = {**bearer(api.token), "Content-Type": kind}
    health: list[float] = []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        t0 = time.monotonic()
        upload = pool.submit(http, "POST", "/api/videos/upload", body, headers)
        while not upload.done():
            h0 = time.monotonic()
            status, _, _ = http("GET", "/api/health")
            assert status == 200
            health.append(time.monotonic() - h0)
        status, _, answer = upload.result()
        took = time.monotonic() - t0
    assert status in (400, 413, 422) and "16000" in answer.decode(), answer[:300]
    assert took < 1.0 + 1.0, f"refused after {took:.2f} s"  # within a second (+1 s of slack on CI)
    assert health and max(health) < 1.0, health
    # a 300-byte name: refused when the name part ends, before the video part is stored
    before = storage_files(stack)
    long_body, kind = multipart({"name": "n" * 300}, {"video": ("clip.mp4", b"\0" * 4_000_000)})
    status, _, answer = http(
        "POST", "/api/videos/upload", long_body, {**bearer(api.token), "Content-Type": kind}
    )
    assert status == 400, answer
    assert storage_files(stack) == before


def test_twenty_concurrent_starts_make_exactly_one_run(stack, api, video_id):
    def start(_: int) -> int:
        return api.json("POST", f"/api/videos/{video_id}/stream/start", {"realtime": True})[0]

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(start, range(20)))
    assert sorted(statuses) == [201] + [409] * 19, statuses
    runs = active_runs(stack, video_id)
    assert len(runs) == 1, runs
    status, _ = api.json("POST", f"/api/videos/{video_id}/stream/stop")
    assert status == 202
    assert wait_dag_run(stack, runs[0]["dag_run_id"], 300) == "success"
