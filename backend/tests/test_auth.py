"""Operator accounts and access rules (issue 17), against the real backend, PostgreSQL and Redis:
login and its cookie, logout, the failed-login limit, disabled users and revoked tokens, password
resets, the last admin, the roles of every route (taken from the application's own route table),
the audit log, the cross-site rules (Origin, CSRF, Host), the client WebSocket, the security
headers and the ``traffic-admin`` command line."""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler, websocket_connect

from backend import admin_cli
from backend.app import all_routes
from backend.db.account_models import ROLES
from backend.db.migrate import migrate
from backend.handlers.base import BaseHandler
from backend.services import accounts
from backend.tests.client import Response, bearer, multipart, post_json, put_json, request, upload
from backend.tests.conftest import ORIGIN, PASSWORD, count_videos, sole_admin, wait_until

LIMIT_KEY = "auth:login-failures:127.0.0.1"  # the login limiter's counter of the tests' address
JSON = {"Content-Type": "application/json"}
XHR = {"X-Requested-With": "XMLHttpRequest"}
EVIL = "http://evil.example"
PUBLIC = {("GET", "/api/health"), ("POST", "/api/auth/login"), ("POST", "/api/auth/logout")}
WRONG_LOGIN = {"error": {"code": "invalid_credentials", "message": "wrong username or password"}}
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
CALIBRATION = {
    "roi_polygon": [[5, 5], [90, 5], [90, 60], [5, 60]],
    "image_points": [[10, 10], [86, 10], [86, 58], [10, 58]],
    "world_points": [[0, 0], [3.5, 0], [3.5, 20], [0, 20]],
}


@pytest.fixture(autouse=True)
def no_login_failures(sync_redis) -> Iterator[None]:
    """Each test starts and ends with this address's failed-login count cleared (the limit is
    shared by every test of the session, all from 127.0.0.1)."""
    sync_redis.delete(LIMIT_KEY)
    yield
    sync_redis.delete(LIMIT_KEY)


# ---- helpers ------------------------------------------------------------------------------------


def login(port: int, username: str, password: str = PASSWORD) -> Response:
    body = json.dumps({"username": username, "password": password}).encode()
    return request(port, "POST", "/api/auth/login", body, JSON, auth=False)


def cookie_of(r: Response) -> dict[str, str]:
    """The session cookie a login set, as the header a browser sends back."""
    assert r.status == 200, r.body
    return {"Cookie": r.headers["Set-Cookie"].split(";", 1)[0]}


def me(port: int, headers: dict[str, str]) -> Response:
    return request(port, "GET", "/api/auth/me", headers=headers, auth=False)


def new_user(port: int, role: str, password: str = PASSWORD) -> tuple[str, int]:
    """A new user (created by the test admin): its name and id."""
    name = f"u-{role}-{uuid.uuid4().hex[:8]}"
    r = post_json(port, "/api/users", {"username": name, "password": password, "role": role})
    assert r.status == 201, r.body
    return name, r.json()["id"]


def last_audit_id(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar_one()


def audit_rows(engine, after: int, action: str | None = None) -> list[dict[str, Any]]:
    query = "SELECT * FROM audit_log WHERE id > :after" + (" AND action = :action" if action else "")
    with engine.connect() as conn:
        rows = conn.execute(text(query + " ORDER BY id"), {"after": after, "action": action}).mappings()
        return [dict(row) for row in rows]


def concrete(pattern: str) -> str:
    """A path of the route ``pattern`` (its ids: 424242, a row that does not exist)."""
    return re.sub(r"\([^)]*\)", "424242", pattern)


# ---- login, logout, sessions ------------------------------------------------------------------


def test_login_sets_a_strict_httponly_cookie_and_me_answers_with_it(api):
    r = login(api.port, "test-operator")
    assert r.status == 200, r.body
    assert r.json()["user"]["username"] == "test-operator" and r.json()["user"]["role"] == "operator"
    attributes = [a.strip().lower() for a in r.headers["Set-Cookie"].split(";")]
    assert attributes[0].startswith("traffic_session=") and len(attributes[0]) > 40
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain HTTP here: a Secure cookie would never come back
    assert len(r.headers.get_all("Set-Cookie")) == 1
    answer = me(api.port, cookie_of(r))
    assert answer.status == 200
    assert answer.json() == {"id": r.json()["user"]["id"], "username": "test-operator", "role": "operator"}
    # an API token names its user too; nothing names nobody
    assert me(api.port, api.accounts["viewer"].auth).json()["username"] == "test-viewer"
    assert me(api.port, {}).status == 401
    # a cookie not signed by the backend is nobody's
    forged = {"Cookie": "traffic_session=" + cookie_of(r)["Cookie"].split("=", 1)[1][:-4] + "AAAA"}
    assert me(api.port, forged).status == 401
    # the username is not case-sensitive; the password is
    assert login(api.port, "TEST-Operator").status == 200
    assert login(api.port, "test-operator", PASSWORD.upper()).status == 401


def test_wrong_password_and_unknown_user_get_the_same_answer(api):
    wrong_password = login(api.port, "test-admin", "not the password at all")
    unknown_user = login(api.port, f"nobody-{uuid.uuid4().hex[:6]}", "not the password at all")
    for r in (wrong_password, unknown_user):
        assert r.status == 401 and r.json() == WRONG_LOGIN
        assert "Set-Cookie" not in r.headers
    assert wrong_password.body == unknown_user.body
    malformed = request(api.port, "POST", "/api/auth/login", b'{"username": "x"}', JSON, auth=False)
    assert (malformed.status, malformed.error_code) == (400, "invalid_body")


def test_logout_ends_the_session(api, db_engine):
    cookie = cookie_of(login(api.port, "test-viewer"))
    other = cookie_of(login(api.port, "test-viewer"))  # a second browser
    assert me(api.port, cookie).status == 200
    r = request(api.port, "POST", "/api/auth/logout", headers=cookie, auth=False)
    assert r.status == 204 and r.body == b""
    cleared = r.headers["Set-Cookie"].lower()
    assert cleared.startswith("traffic_session=") and ("max-age=0" in cleared or "expires=" in cleared)
    assert me(api.port, cookie).status == 401  # the old cookie, replayed: its session is gone
    assert me(api.port, other).status == 200  # only that session ended
    # without a session (or with an ended one) a logout is a no-op
    assert request(api.port, "POST", "/api/auth/logout", auth=False).status == 204
    assert request(api.port, "POST", "/api/auth/logout", headers=cookie, auth=False).status == 204


def test_the_eleventh_failed_login_in_a_minute_is_refused_and_audited(api, db_engine, sync_redis):
    start = last_audit_id(db_engine)
    for _ in range(10):
        assert login(api.port, "test-viewer", "wrong password!").status == 401
    r = login(api.port, "test-viewer")  # the right password: refused all the same
    assert (r.status, r.error_code) == (429, "too_many_attempts")
    assert 0 < int(r.headers["Retry-After"]) <= 60
    assert "Set-Cookie" not in r.headers
    assert 0 < sync_redis.ttl(LIMIT_KEY) <= 60
    failed = audit_rows(db_engine, start, "login_failed")
    assert len(failed) == 11
    assert all(row["ip"] == "127.0.0.1" and row["outcome"] == "refused" for row in failed)
    assert failed[0]["username"] == "test-viewer"
    assert failed[-1]["detail"] == {"reason": "rate limited"}
    assert not audit_rows(db_engine, start, "login")
    sync_redis.delete(LIMIT_KEY)  # the minute over
    assert login(api.port, "test-viewer").status == 200


def test_a_disabled_user_and_a_revoked_token_get_401(api):
    name, uid = new_user(api.port, "operator")
    cookie = cookie_of(login(api.port, name))
    made = request(api.port, "POST", "/api/tokens", b'{"name": "script"}', {**cookie, **JSON}, auth=False)
    assert made.status == 201, made.body
    token, token_id = made.json()["token"], made.json()["id"]
    assert re.fullmatch(r"tms_[A-Za-z0-9_-]{43}", token) and made.json()["username"] == name
    assert me(api.port, bearer(token)).json()["username"] == name
    # revoked (by its owner, from the page: X-Requested-With): 401 from then on
    r = request(api.port, "DELETE", f"/api/tokens/{token_id}", headers={**cookie, **XHR}, auth=False)
    assert r.status == 204
    assert (me(api.port, bearer(token)).status, me(api.port, bearer(token)).error_code) == (
        401,
        "unauthorized",
    )
    assert me(api.port, bearer(token + "x")).status == 401
    assert me(api.port, {"Authorization": "Basic dXNlcjpwYXNz"}).status == 401

    second = request(api.port, "POST", "/api/tokens", b'{"name": "two"}', {**cookie, **JSON}, auth=False)
    token = second.json()["token"]
    r = put_json(api.port, f"/api/users/{uid}", {"disabled": True})
    assert r.status == 200 and r.json()["disabled"] is True
    assert me(api.port, cookie).status == 401  # its session ended
    assert me(api.port, bearer(token)).status == 401  # its tokens revoked
    refused = login(api.port, name)
    assert refused.status == 401 and refused.json() == WRONG_LOGIN  # no hint that it exists
    assert put_json(api.port, f"/api/users/{uid}", {"disabled": False}).json()["disabled"] is False
    assert me(api.port, bearer(token)).status == 401  # re-enabled: its old tokens stay revoked
    assert me(api.port, cookie_of(login(api.port, name))).status == 200
    assert request(api.port, "DELETE", f"/api/users/{uid}").status == 204
    assert login(api.port, name).json() == WRONG_LOGIN


def test_a_password_reset_ends_sessions(api):
    name, uid = new_user(api.port, "viewer")
    first, second = cookie_of(login(api.port, name)), cookie_of(login(api.port, name))
    new_password = "a brand new password " + uuid.uuid4().hex[:6]
    r = put_json(api.port, f"/api/users/{uid}", {"password": new_password})
    assert r.status == 200 and r.json()["role"] == "viewer"
    assert me(api.port, first).status == 401 and me(api.port, second).status == 401
    assert login(api.port, name).status == 401
    assert me(api.port, cookie_of(login(api.port, name, new_password))).json()["username"] == name
    short = put_json(api.port, f"/api/users/{uid}", {"password": "too short"})
    assert (short.status, short.error_code) == (400, "invalid_body")
    assert request(api.port, "DELETE", f"/api/users/{uid}").status == 204


# ---- one's own password ---------------------------------------------------------------------------


def change_password(port: int, headers: dict[str, str], current: str, new: str) -> Response:
    body = json.dumps({"current_password": current, "new_password": new}).encode()
    return request(port, "POST", "/api/auth/password", body, {**JSON, **headers}, auth=False)


def fresh_password() -> str:
    return "my own new password " + uuid.uuid4().hex[:6]


def test_a_user_changes_their_own_password_and_stays_logged_in_here_only(api, db_engine):
    port = api.port
    name, uid = new_user(port, "operator")
    here, elsewhere = cookie_of(login(port, name)), cookie_of(login(port, name))  # two browsers
    start = last_audit_id(db_engine)
    new_password = fresh_password()
    r = change_password(port, here, PASSWORD, new_password)
    assert r.status == 204 and r.body == b"", r.body
    attributes = [a.strip().lower() for a in r.headers["Set-Cookie"].split(";")]
    assert attributes[0].startswith("traffic_session=") and "httponly" in attributes
    assert "samesite=strict" in attributes and "path=/" in attributes
    fresh = {"Cookie": r.headers["Set-Cookie"].split(";", 1)[0]}
    assert fresh != here
    assert me(port, elsewhere).status == 401  # logged out everywhere else
    assert me(port, here).status == 401  # the old cookie of this client too: replaced
    assert me(port, fresh).json()["username"] == name  # this client stays logged in
    assert login(port, name).status == 401  # the old password is gone
    assert me(port, cookie_of(login(port, name, new_password))).json()["username"] == name
    rows = audit_rows(db_engine, start, "password_change")
    assert [(row["username"], row["outcome"], row["target"]) for row in rows] == [(name, "ok", name)]
    assert rows[0]["role"] == "operator" and rows[0]["detail"] == {"via": "session"}
    assert new_password not in json.dumps([str(v) for v in rows[0].values()])
    assert request(port, "DELETE", f"/api/users/{uid}").status == 204


def test_a_wrong_current_password_is_refused_counted_and_audited(api, db_engine, sync_redis):
    port = api.port
    name, uid = new_user(port, "viewer")
    cookie = cookie_of(login(port, name))
    start = last_audit_id(db_engine)
    r = change_password(port, cookie, "not my password", fresh_password())
    assert r.status == 401 and r.json() == {
        "error": {"code": "invalid_credentials", "message": "wrong password"}
    }
    assert "Set-Cookie" not in r.headers
    assert sync_redis.get(LIMIT_KEY) == "1"  # a failed login of the address
    assert me(port, cookie).json()["username"] == name  # nothing changed: still logged in
    assert login(port, name).status == 200  # the password unchanged
    rows = audit_rows(db_engine, start, "password_change")
    assert [(row["username"], row["outcome"]) for row in rows] == [(name, "refused")]
    assert rows[0]["detail"] == {"reason": "wrong password"} and rows[0]["ip"] == "127.0.0.1"
    # the same as the current one: 400, not counted
    same = change_password(port, cookie, PASSWORD, PASSWORD)
    assert (same.status, same.error_code) == (400, "invalid_body")
    assert sync_redis.get(LIMIT_KEY) == "1"
    # over the limit: 429, the right password refused all the same
    sync_redis.set(LIMIT_KEY, 10, ex=60)
    limited = change_password(port, cookie, PASSWORD, fresh_password())
    assert (limited.status, limited.error_code) == (429, "too_many_attempts")
    assert 0 < int(limited.headers["Retry-After"]) <= 60 and "Set-Cookie" not in limited.headers
    assert me(port, cookie).status == 200
    sync_redis.delete(LIMIT_KEY)
    assert login(port, name).status == 200
    assert request(port, "DELETE", f"/api/users/{uid}").status == 204


def test_a_token_changes_its_users_password(api):
    port = api.port
    name, uid = new_user(port, "operator")
    cookie = cookie_of(login(port, name))
    made = request(port, "POST", "/api/tokens", b'{"name": "script"}', {**cookie, **JSON}, auth=False)
    token = bearer(made.json()["token"])
    new_password = fresh_password()
    r = change_password(port, token, PASSWORD, new_password)
    assert r.status == 204 and "Set-Cookie" not in r.headers  # no session asked for, none opened
    assert me(port, cookie).status == 401  # the user's sessions ended
    assert me(port, token).json()["username"] == name  # its API tokens stay
    assert login(port, name).status == 401
    assert login(port, name, new_password).status == 200
    assert request(port, "DELETE", f"/api/users/{uid}").status == 204


def test_a_viewer_changes_their_password_and_a_short_one_is_refused(api):
    port = api.port
    name, uid = new_user(port, "viewer")
    cookie = cookie_of(login(port, name))
    short = change_password(port, cookie, PASSWORD, "too short")
    assert (short.status, short.error_code) == (400, "invalid_body")
    assert "new_password" in short.json()["error"]["message"]
    assert short.json()["error"]["field"] == "new_password"
    missing = request(
        port,
        "POST",
        "/api/auth/password",
        b'{"new_password": "long enough, surely"}',
        {**cookie, **JSON},
        auth=False,
    )
    assert (missing.status, missing.error_code) == (400, "invalid_body")
    assert login(port, name).status == 200  # unchanged
    new_password = fresh_password()
    r = change_password(port, cookie, PASSWORD, new_password)
    assert r.status == 204
    assert me(port, {"Cookie": r.headers["Set-Cookie"].split(";", 1)[0]}).json()["role"] == "viewer"
    assert login(port, name, new_password).status == 200
    # nobody's: 401 unauthorized, before the body is read
    anonymous = change_password(port, {}, new_password, fresh_password())
    assert (anonymous.status, anonymous.error_code) == (401, "unauthorized")
    assert request(port, "DELETE", f"/api/users/{uid}").status == 204


def test_the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted(api, db_engine):
    users = request(api.port, "GET", "/api/users").json()["users"]
    admin_id = next(u["id"] for u in users if u["username"] == "test-admin")
    with sole_admin(db_engine):
        for change in ({"role": "operator"}, {"disabled": True}, {"role": "viewer", "disabled": True}):
            r = put_json(api.port, f"/api/users/{admin_id}", change)
            assert (r.status, r.error_code) == (409, "last_admin"), change
        r = request(api.port, "DELETE", f"/api/users/{admin_id}")
        assert (r.status, r.error_code) == (409, "last_admin")
        # nothing changed: still the admin, its token still valid
        assert me(api.port, api.accounts["admin"].auth).json()["role"] == "admin"
        # a second admin: either may go now (not both)
        name, second = new_user(api.port, "admin")
        r = put_json(api.port, f"/api/users/{second}", {"role": "operator"})
        assert r.status == 200 and r.json()["role"] == "operator"
        assert put_json(api.port, f"/api/users/{second}", {"role": "admin"}).status == 200
        assert request(api.port, "DELETE", f"/api/users/{second}").status == 204
        assert request(api.port, "DELETE", f"/api/users/{admin_id}").error_code == "last_admin"
    assert me(api.port, api.accounts["admin"].auth).json()["username"] == "test-admin"


def test_users_are_validated_and_unique(api):
    name, uid = new_user(api.port, "viewer")
    for body, code in (
        ({"username": name, "password": PASSWORD, "role": "viewer"}, "user_exists"),
        ({"username": name.upper(), "password": PASSWORD, "role": "viewer"}, "user_exists"),
        ({"username": "has space", "password": PASSWORD, "role": "viewer"}, "invalid_body"),
        ({"username": "x" * 65, "password": PASSWORD, "role": "viewer"}, "invalid_body"),
        ({"username": "short-pw", "password": "eleven char", "role": "viewer"}, "invalid_body"),
        ({"username": "bad-role", "password": PASSWORD, "role": "root"}, "invalid_body"),
        ({"username": "extra", "password": PASSWORD, "role": "viewer", "admin": True}, "invalid_body"),
    ):
        r = post_json(api.port, "/api/users", body)
        assert (r.status, r.error_code) == ((409 if code == "user_exists" else 400), code), body
    assert request(api.port, "PUT", "/api/users/424242", b"{}", JSON).error_code == "user_not_found"
    assert request(api.port, "DELETE", "/api/users/abc").error_code == "user_not_found"
    listed = {u["username"]: u for u in request(api.port, "GET", "/api/users").json()["users"]}
    assert listed[name]["role"] == "viewer" and listed[name]["disabled"] is False
    assert "password_hash" not in listed[name] and "password" not in listed[name]
    assert request(api.port, "DELETE", f"/api/users/{uid}").status == 204


def test_role_checks_of_users_tokens_and_audit(api):
    port = api.port
    viewer, operator, admin = (api.accounts[r].auth for r in ("viewer", "operator", "admin"))
    for who in (viewer, operator):
        for method, path, body in (
            ("GET", "/api/users", None),
            ("POST", "/api/users", {"username": "sneaky", "password": PASSWORD, "role": "admin"}),
            ("PUT", "/api/users/1", {"role": "admin"}),
            ("DELETE", "/api/users/1", None),
            ("GET", "/api/audit", None),
        ):
            data = None if body is None else json.dumps(body).encode()
            r = request(port, method, path, data, {**JSON, **who}, auth=False)
            assert (r.status, r.error_code) == (403, "forbidden"), (method, path, r.body)
            assert "admin" in r.json()["error"]["message"]
    # everyone has their own tokens; an admin sees and revokes everyone's
    mine = post_json(port, "/api/tokens", {"name": "viewer's"}, viewer)
    assert mine.status == 201 and mine.json()["username"] == "test-viewer"
    theirs = post_json(port, "/api/tokens", {"name": "operator's"}, operator).json()
    listed = request(port, "GET", "/api/tokens", headers=viewer).json()["tokens"]
    assert {t["username"] for t in listed} == {"test-viewer"}
    assert mine.json()["id"] in {t["id"] for t in listed}
    assert all("token" not in t and t["prefix"].startswith("tms_") for t in listed)
    everyone = request(port, "GET", "/api/tokens", headers=admin).json()["tokens"]
    assert {"test-viewer", "test-operator", "test-admin"} <= {t["username"] for t in everyone}
    # another user's token: not found for a viewer (its existence not shown), revoked by an admin
    r = request(port, "DELETE", f"/api/tokens/{theirs['id']}", headers=viewer)
    assert (r.status, r.error_code) == (404, "token_not_found")
    assert me(port, bearer(theirs["token"])).status == 200
    assert request(port, "DELETE", f"/api/tokens/{theirs['id']}", headers=admin).status == 204
    assert me(port, bearer(theirs["token"])).status == 401
    assert request(port, "DELETE", f"/api/tokens/{mine.json()['id']}", headers=viewer).status == 204
    # the audit log: an admin's
    r = request(port, "GET", "/api/audit?limit=3", headers=admin)
    assert r.status == 200 and len(r.json()["entries"]) == 3
    too_many = request(port, "GET", "/api/audit?limit=1001")
    assert too_many.error_code == "invalid_limit" and too_many.json()["error"]["field"] == "limit"
    assert request(port, "GET", "/api/audit?before=x").error_code == "invalid_before"


def test_actions_are_audited(api, db_engine, sample_video):
    port, start = api.port, last_audit_id(db_engine)
    operator = api.accounts["operator"].auth
    assert login(api.port, "test-operator").status == 200
    assert login(api.port, "test-operator", "not my password").status == 401
    body, content_type = multipart({"name": "audited"}, {"video": ("a.mp4", sample_video.read_bytes())})
    r = request(
        port, "POST", "/api/videos/upload", body, {"Content-Type": content_type, **operator}, auth=False
    )
    assert r.status == 201, r.body
    vid = r.json()["id"]
    assert put_json(port, f"/api/videos/{vid}/calibration", CALIBRATION, operator).status == 200
    started = request(port, "POST", f"/api/videos/{vid}/stream/start", b"", operator, auth=False)
    assert started.status == 201
    assert request(port, "POST", f"/api/videos/{vid}/stream/stop", b"", operator, auth=False).status == 202
    api.airflow_state.finish_all()
    assert request(port, "POST", f"/api/videos/{vid}/stream/stop", b"", operator, auth=False).status == 409
    viewer = api.accounts["viewer"].auth
    assert request(port, "DELETE", f"/api/videos/{vid}", headers=viewer).status == 403
    assert request(port, "DELETE", f"/api/videos/{vid}").status == 204
    token = post_json(port, "/api/tokens", {"name": "audited"}, operator).json()
    name, uid = new_user(port, "viewer")

    expected = {
        ("login", "test-operator", "ok"),
        ("login_failed", "test-operator", "refused"),
        ("upload", "test-operator", "ok"),
        ("calibrate", "test-operator", "ok"),
        ("start", "test-operator", "ok"),
        ("stop", "test-operator", "ok"),
        ("stop", "test-operator", "refused"),  # a refused action is logged too
        ("delete", "test-viewer", "refused"),  # and one refused for the role
        ("delete", "test-admin", "ok"),
        ("token_create", "test-operator", "ok"),
        ("user_create", "test-admin", "ok"),
    }

    def logged() -> set[tuple[str, str, str]]:
        return {(r["action"], r["username"], r["outcome"]) for r in audit_rows(db_engine, start)}

    assert wait_until(lambda: expected <= logged(), timeout=10), expected - logged()
    rows = {(r["action"], r["outcome"]): r for r in audit_rows(db_engine, start)}
    assert rows[("upload", "ok")]["target"] == f"/api/videos/{vid}"
    assert rows[("upload", "ok")]["role"] == "operator" and rows[("upload", "ok")]["ip"] == "127.0.0.1"
    assert rows[("upload", "ok")]["detail"] == {"status": 201, "method": "POST"}
    assert rows[("stop", "refused")]["detail"]["status"] == 409
    assert rows[("delete", "refused")]["detail"]["status"] == 403
    assert rows[("start", "ok")]["target"] == f"/api/videos/{vid}/stream/start"
    assert rows[("user_create", "ok")]["target"] == name
    assert token["prefix"] in rows[("token_create", "ok")]["target"]
    assert token["token"] not in json.dumps([str(v) for v in rows[("token_create", "ok")].values()])
    # what GET /api/audit shows (newest first)
    entries = request(port, "GET", "/api/audit?limit=1000").json()["entries"]
    ours = [e for e in entries if e["id"] > start]
    assert {(e["action"], e["username"], e["outcome"]) for e in ours} >= expected
    assert [e["id"] for e in ours] == sorted((e["id"] for e in ours), reverse=True)
    assert request(port, "DELETE", f"/api/users/{uid}").status == 204


# ---- the cross-site rules ---------------------------------------------------------------------


def test_csrf_a_cookie_request_must_be_json_or_carry_x_requested_with(api, sample_video, db_engine):
    port = api.port
    cookie = cookie_of(login(port, "test-operator"))
    vid = upload(port, {"name": "csrf"}, {"video": ("c.mp4", sample_video.read_bytes())}).json()["id"]
    start = f"/api/videos/{vid}/stream/start"
    triggers = api.airflow_state.triggers

    # a cross-site form can post text/plain without a preflight: never taken for JSON
    form = request(
        port, "POST", start, b'{"realtime": true}', {**cookie, "Content-Type": "text/plain"}, auth=False
    )
    assert (form.status, form.error_code) in ((403, "csrf_refused"), (415, "unsupported_media_type"))
    assert form.status == 403  # the cookie rule comes first
    with_xhr = {**cookie, **XHR, "Content-Type": "text/plain"}
    r = request(port, "POST", start, b'{"realtime": true}', with_xhr, auth=False)
    assert (r.status, r.error_code) == (415, "unsupported_media_type")
    # nor a body-less one (a form, an <img>-style POST) with the cookie alone
    r = request(port, "POST", start, b"", cookie, auth=False)
    assert (r.status, r.error_code) == (403, "csrf_refused")
    assert api.airflow_state.triggers == triggers  # nothing started
    assert request(port, "GET", f"/api/videos/{vid}").json()["status"] != "processing"

    # a multipart upload from the page must send X-Requested-With
    before = count_videos(db_engine)
    body, content_type = multipart({"name": "csrf"}, {"video": ("c.mp4", sample_video.read_bytes())})
    r = request(
        port, "POST", "/api/videos/upload", body, {**cookie, "Content-Type": content_type}, auth=False
    )
    assert (r.status, r.error_code) == (403, "csrf_refused")
    assert count_videos(db_engine) == before
    r = request(
        port, "POST", "/api/videos/upload", body, {**cookie, **XHR, "Content-Type": content_type}, auth=False
    )
    assert r.status == 201, r.body
    uploaded = r.json()["id"]

    # a foreign page's Origin is refused, whatever the credentials and the type
    for credentials in (cookie, api.accounts["operator"].auth):
        r = request(port, "POST", start, b"{}", {**credentials, **JSON, "Origin": EVIL}, auth=False)
        assert (r.status, r.error_code) == (403, "origin_refused")
    r = request(port, "POST", "/api/auth/login", b"{}", {**JSON, "Origin": EVIL}, auth=False)
    assert (r.status, r.error_code) == (403, "origin_refused")  # no login-CSRF either
    assert api.airflow_state.triggers == triggers

    # the same body-less start with a bearer token and no Origin passes (a script, not a browser)
    r = request(port, "POST", start, b"", api.accounts["operator"].auth, auth=False)
    assert r.status == 201, r.body
    stop = f"/api/videos/{vid}/stream/stop"
    # the page itself: JSON, or X-Requested-With; its own origin and the allowed ones pass
    assert request(port, "POST", stop, b"", {**cookie, **XHR, "Origin": ORIGIN}, auth=False).status == 202
    api.airflow_state.finish_all()
    own = f"http://127.0.0.1:{port}"
    r = request(port, "POST", start, b"{}", {**cookie, **JSON, "Origin": own}, auth=False)
    assert r.status == 201, r.body
    assert request(port, "POST", stop, b"{}", {**cookie, **JSON}, auth=False).status == 202
    api.airflow_state.finish_all()
    # reads are not state-changing: a foreign Origin gets the data only if CORS lets it read it
    r = request(port, "GET", "/api/videos", headers={**cookie, "Origin": EVIL}, auth=False)
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
    r = request(port, "GET", "/api/videos", headers={**cookie, "Origin": ORIGIN}, auth=False)
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    for video in (vid, uploaded):
        assert request(port, "DELETE", f"/api/videos/{video}").status == 204


def test_a_foreign_host_is_refused(api):
    """A DNS-rebinding page reaches the backend under a name of its own: 400, logged in or not."""
    for method, path in (("GET", "/api/videos"), ("GET", "/api/health"), ("POST", "/api/auth/login")):
        r = request(
            api.port, method, path, b"{}" if method == "POST" else None, {**JSON, "Host": "evil.example"}
        )
        assert (r.status, r.error_code) == (400, "host_not_allowed"), (method, path)
    r = request(api.port, "GET", "/api/no-such-route", headers={"Host": "evil.example:8686"})
    assert (r.status, r.error_code) == (400, "host_not_allowed")
    r = request(
        api.port, "GET", "/ws/client/stream", headers={**UPGRADE, "Origin": ORIGIN, "Host": "evil.example"}
    )
    assert (r.status, r.error_code) == (400, "host_not_allowed")
    for host in (f"localhost:{api.port}", f"127.0.0.1:{api.port}", "[::1]:8686", "LOCALHOST"):
        assert request(api.port, "GET", "/api/videos", headers={"Host": host}).status == 200, host


def websocket_status(url: str, headers: dict[str, str]) -> int:
    async def attempt() -> int:
        try:
            conn = await websocket_connect(HTTPRequest(url, headers=headers, connect_timeout=10))
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    return asyncio.run(attempt())


def test_the_client_websocket_needs_a_login_and_an_allowed_origin(api):
    url = f"{api.ws_url}/ws/client/stream"
    cookie = cookie_of(login(api.port, "test-viewer"))
    assert websocket_status(url, {"Origin": ORIGIN}) == 401
    assert websocket_status(url, {"Origin": ORIGIN, **bearer("tms_" + "x" * 43)}) == 401
    assert websocket_status(url, {"Origin": ORIGIN, **cookie}) == 101
    assert websocket_status(url, {"Origin": f"http://127.0.0.1:{api.port}", **cookie}) == 101  # its own page
    assert websocket_status(url, {"Origin": EVIL, **cookie}) == 403
    assert websocket_status(url, {"Origin": ORIGIN, **api.accounts["viewer"].auth}) == 101
    r = request(api.port, "GET", "/ws/client/stream", headers={**UPGRADE, "Origin": ORIGIN}, auth=False)
    assert (r.status, r.error_code) == (401, "unauthorized")
    request(api.port, "POST", "/api/auth/logout", headers=cookie, auth=False)
    assert websocket_status(url, {"Origin": ORIGIN, **cookie}) == 401  # logged out


# ---- every route, from the application's own table ----------------------------------------------


def route_methods() -> list[tuple[str, str, str | None, type]]:
    """(method, pattern, rule, handler) of every route and method its handler declares; the
    WebSocket endpoints (their own check before the upgrade) with rule None."""
    out: list[tuple[str, str, str | None, type]] = []
    for pattern, handler in all_routes():
        if issubclass(handler, BaseHandler):
            out += [(method, pattern, rule, handler) for method, rule in handler.access.items()]
        else:
            out.append(("GET", pattern, None, handler))
    return out


def test_every_handler_declares_a_rule_for_every_method_it_implements():
    """Fail closed: a method without a rule is refused at run time; here it is found first."""
    for pattern, handler in all_routes():
        if not issubclass(handler, BaseHandler):
            # a WebSocket endpoint: it checks its caller in its own get, before the upgrade
            assert issubclass(handler, WebSocketHandler), pattern
            assert handler.get is not WebSocketHandler.get, pattern
            continue
        implemented = {
            m
            for m in RequestHandler.SUPPORTED_METHODS
            if m != "OPTIONS" and getattr(handler, m.lower()) is not getattr(RequestHandler, m.lower())
        }
        assert implemented, pattern
        assert set(handler.access) == implemented, (pattern, handler.__name__, handler.access)
        assert set(handler.access.values()) <= {"public", *ROLES}, (pattern, handler.access)


def test_every_route_needs_credentials_unless_public(api):
    public = set()
    for method, pattern, rule, _ in route_methods():
        path = concrete(pattern)
        body = b"{}" if method in ("POST", "PUT") else None
        r = request(api.port, method, path, body, JSON, auth=False)
        if rule == "public":
            public.add((method, pattern))
            assert r.status != 401, (method, path, r.body)
        else:
            assert (r.status, r.error_code) == (401, "unauthorized"), (method, path, r.body)
    assert public == PUBLIC
    # a method no handler declares: 405, never its body
    r = request(api.port, "PATCH", "/api/videos/1", b"{}", JSON)
    assert (r.status, r.error_code) == (405, "method_not_allowed")


def test_a_viewer_gets_403_on_every_operator_and_admin_method(api):
    viewer, operator = api.accounts["viewer"].auth, api.accounts["operator"].auth
    checked = 0
    for method, pattern, rule, _ in route_methods():
        if rule not in ("operator", "admin"):
            continue
        body = b"{}" if method in ("POST", "PUT") else None
        for who, refused in ((viewer, True), (operator, rule == "admin")):
            r = request(api.port, method, concrete(pattern), body, {**JSON, **who}, auth=False)
            if refused:
                assert (r.status, r.error_code) == (403, "forbidden"), (method, pattern, r.body)
                assert f"needs the {rule} role" in r.json()["error"]["message"]
            else:
                assert r.status not in (401, 403), (method, pattern, r.body)
        checked += 1
    assert checked >= 10


def test_a_handler_without_a_rule_is_refused_before_it_runs(api):
    ran: list[str] = []

    class Forgotten(BaseHandler):
        access = {"GET": "viewer"}

        def get(self) -> None:
            ran.append("GET")
            self.send_json({})

        def post(self) -> None:  # no rule: never runs
            ran.append("POST")
            self.send_json({})

    path = f"/api/test-forgotten-{uuid.uuid4().hex[:8]}"
    api.loop.call(lambda: api.app.add_handlers(r".*", [(path, Forgotten)]))
    assert request(api.port, "GET", path).status == 200
    r = request(api.port, "POST", path, b"{}", JSON)
    assert (r.status, r.error_code) == (500, "internal_error") and "no access rule" in r.json()["error"][
        "message"
    ]
    assert ran == ["GET"]


# ---- headers ------------------------------------------------------------------------------------


def test_security_headers(api, db_engine, sample_video):
    vid = upload(api.port, {"name": "headers"}, {"video": ("h.mp4", sample_video.read_bytes())}).json()["id"]
    for r in (
        request(api.port, "GET", "/api/videos"),
        request(api.port, "GET", "/api/videos", auth=False),  # an error too
        request(api.port, "GET", "/api/nothing-here"),
        request(api.port, "GET", "/api/health", auth=False),
    ):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    snapshot = api.storage / "snapshots" / str(vid) / "1.jpg"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9")
    with db_engine.begin() as conn:
        violation = conn.execute(
            text(
                "INSERT INTO speeding_violations (video_id, track_id, vehicle_class, speed_kmh,"
                " frame_number, video_time_s, detected_at, snapshot_path)"
                " VALUES (:v, 1, 'car', 90, 3, 0.3, now(), :p) RETURNING id"
            ),
            {"v": vid, "p": str(snapshot)},
        ).scalar_one()
    for path in (f"/api/violations/{violation}/snapshot", f"/api/videos/{vid}/thumbnail"):
        r = request(api.port, "GET", path)
        assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg", path
        assert "private" in r.headers["Cache-Control"] and "public" not in r.headers["Cache-Control"], path
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert request(api.port, "GET", path, auth=False).status == 401
    assert request(api.port, "DELETE", f"/api/videos/{vid}").status == 204


# ---- traffic-admin ------------------------------------------------------------------------------


def cli(
    capsys, database_url: str, *args: str, stdin: str | None = None, monkeypatch=None
) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = admin_cli.main(["--database-url", database_url, *args])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_traffic_admin_manages_users_and_tokens(api, postgres, capsys, monkeypatch, db_engine):
    url, port = postgres.url, api.port
    name = f"cli-{uuid.uuid4().hex[:8]}"
    start = last_audit_id(db_engine)
    code, password, _ = cli(capsys, url, "create-user", name, "--role", "operator")
    assert code == 0 and len(password) >= 20
    assert login(port, name, password).json()["user"]["role"] == "operator"
    code, _, err = cli(capsys, url, "create-user", name, "--role", "viewer")
    assert code == 1 and "exists" in err
    code, _, err = cli(capsys, url, "create-user", "bad name", "--role", "viewer")
    assert code == 1 and "username" in err

    session = cookie_of(login(port, name, password))
    code, new_password, _ = cli(capsys, url, "reset-password", name)
    assert code == 0 and new_password != password
    assert me(port, session).status == 401  # logged out everywhere
    assert login(port, name, password).status == 401
    assert login(port, name, new_password).status == 200
    chosen = "chosen on stdin " + uuid.uuid4().hex[:6]
    code, printed, _ = cli(
        capsys, url, "reset-password", name, "--password-stdin", stdin=chosen + "\n", monkeypatch=monkeypatch
    )
    assert code == 0 and printed == chosen and login(port, name, chosen).status == 200
    assert cli(capsys, url, "reset-password", "nobody-" + uuid.uuid4().hex[:6])[0] == 1

    code, token, _ = cli(capsys, url, "create-token", name, "--token-name", "scripts")
    assert code == 0 and re.fullmatch(r"tms_[A-Za-z0-9_-]{43}", token)
    answer = me(port, bearer(token))
    assert answer.status == 200 and answer.json()["username"] == name and answer.json()["role"] == "operator"
    listed = {
        t["name"] for t in request(port, "GET", "/api/tokens").json()["tokens"] if t["username"] == name
    }
    assert listed == {"scripts"}

    code, table, _ = cli(capsys, url, "list-users")
    assert (
        code == 0 and f"{name}\toperator" in table.splitlines() and "test-admin\tadmin" in table.splitlines()
    )
    # users exist: ensure-admin creates nobody and prints nothing
    assert cli(capsys, url, "ensure-admin") == (0, "", "")
    actions = {(r["action"], r["username"], r["target"]) for r in audit_rows(db_engine, start)}
    assert {("user_create", "traffic-admin", name), ("user_update", "traffic-admin", name)} <= actions
    assert ("token_create", "traffic-admin", name) in actions
    user_id = next(
        u["id"] for u in request(port, "GET", "/api/users").json()["users"] if u["username"] == name
    )
    assert request(port, "DELETE", f"/api/users/{user_id}").status == 204
    assert me(port, bearer(token)).status == 401  # a deleted user's tokens go with it


def test_traffic_admin_ensure_admin_on_an_empty_database(postgres, capsys):
    name = f"cli_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    url = postgres.url.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url)
        code, password, _ = cli(capsys, url, "ensure-admin")
        assert code == 0 and len(password) >= 20
        assert cli(capsys, url, "ensure-admin") == (0, "", "")  # once only
        engine = create_engine(url)
        try:
            with sessionmaker(engine)() as session, session.begin():
                user = accounts.verify_login(session=session, username="admin", password=password)
                assert user is not None and user.role == "admin"
                assert (
                    accounts.verify_login(session=session, username="admin", password="x" + password) is None
                )
        finally:
            engine.dispose()
    finally:
        with postgres.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
