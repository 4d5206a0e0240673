"""The deployment's exposure (issue 17), read from the files (no Docker engine needed): compose
publishes the dashboard's nginx only, with passwords on Redis and PostgreSQL; every image runs as
a non-root user; nginx keeps the ingest sockets and the metrics off the public port and sends the
page's security headers; the built dashboard runs under that Content-Security-Policy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
NGINX = re.sub(r"#[^\n]*", "", (REPO / "frontend" / "nginx.conf").read_text())  # comments out
HEADERS = (REPO / "frontend" / "security-headers.conf").read_text()
DOCKERFILES = ["backend/Dockerfile", "spark/Dockerfile", "airflow/Dockerfile", "frontend/Dockerfile"]


def test_only_nginx_publishes_a_port():
    published = {name: svc["ports"] for name, svc in SERVICES.items() if svc.get("ports")}
    assert list(published) == ["frontend"], published
    for name, svc in SERVICES.items():  # nothing else reaches the host, not even on loopback
        assert not svc.get("expose") or name == "frontend"
        assert svc.get("network_mode") != "host", name


def test_every_image_runs_as_a_non_root_user():
    for path in DOCKERFILES:
        text = (REPO / path).read_text()
        final = re.split(r"(?m)^FROM\s", text)[-1]  # the last stage: what runs
        users = re.findall(r"(?m)^USER\s+(\S+)", final)
        assert users, f"{path}: no USER in its final stage"
        assert users[-1] not in ("root", "0", "0:0"), f"{path} runs as {users[-1]}"
    built = {
        svc["build"]["dockerfile"]
        if isinstance(svc.get("build"), dict) and "dockerfile" in svc["build"]
        else None
        for svc in SERVICES.values()
        if svc.get("build")
    }
    assert built - {None} <= set(DOCKERFILES)
    for name, svc in SERVICES.items():
        assert str(svc.get("user", "")).split(":")[0] not in ("root", "0"), name
        assert not svc.get("privileged"), name


def test_redis_and_postgres_ask_for_passwords():
    env = COMPOSE["x-app-env"]
    assert env["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    assert "--requirepass ${REDIS_PASSWORD:?" in command
    assert "REDISCLI_AUTH" in redis["environment"]  # its healthcheck's redis-cli authenticates
    assert "PONG" in " ".join(redis["healthcheck"]["test"])  # a NOAUTH answer is not healthy
    assert "password=os.environ['REDIS_PASSWORD']" in " ".join(SERVICES["spark"]["healthcheck"]["test"])
    pg = SERVICES["postgres"]["environment"]
    assert pg["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "--auth-host=scram-sha-256" in pg["POSTGRES_INITDB_ARGS"]
    for name in ("INTERNAL_TOKEN", "AIRFLOW_PASSWORD"):
        assert env[name].startswith(f"${{{name}:?"), f"{name} must be required, never defaulted"
    assert "ENVIRONMENT" not in env  # no switch that turns the secrets check off


def _locations(conf: str) -> dict[str, str]:
    """``location`` argument -> its body (nginx.conf's locations are not nested)."""
    return {m.group(1).strip(): m.group(2) for m in re.finditer(r"location\s+([^{]+)\{([^}]*)\}", conf)}


def test_nginx_keeps_the_ingest_sockets_and_metrics_off_the_public_port():
    locations = _locations(NGINX)
    assert "return 404;" in locations["/ws/backend/"]
    assert "return 404;" in locations["= /metrics"]
    assert NGINX.index("location /ws/backend/") < NGINX.index("location /ws/ ")
    proxied = [arg for arg, body in locations.items() if "proxy_pass" in body]
    assert sorted(proxied) == ["/api/", "/ws/"], proxied
    for arg in proxied:
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in locations[arg]
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in locations[arg]


def test_nginx_sends_the_security_headers_everywhere():
    csp = re.search(r'Content-Security-Policy "([^"]+)" always;', HEADERS)
    assert csp is not None
    directives = {d.split()[0]: d.split()[1:] for d in csp.group(1).split("; ")}
    assert directives["default-src"] == ["'self'"]
    assert "script-src" not in directives  # scripts: files of this origin only (default-src)
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["connect-src"] == ["'self'", "ws:", "wss:"]
    for header in (
        'X-Content-Type-Options "nosniff"',
        'Referrer-Policy "same-origin"',
        'X-Frame-Options "DENY"',
    ):
        assert header in HEADERS
    server_level = NGINX.split("location", 1)[0]
    assert "include /etc/nginx/security-headers.conf;" in server_level
    # nginx drops the server's add_header in a location that has one of its own
    for arg, body in _locations(NGINX).items():
        if "add_header" in body:
            assert "include /etc/nginx/security-headers.conf;" in body, arg
    dockerfile = (REPO / "frontend" / "Dockerfile").read_text()
    assert "COPY security-headers.conf /etc/nginx/security-headers.conf" in dockerfile


def test_the_built_dashboard_needs_no_inline_script():
    """Under ``default-src 'self'`` an inline <script> or on*= handler would not run (Angular's
    inlined critical CSS adds onload="this.media='all'": angular.json turns it off)."""
    index = REPO / "frontend" / "dist" / "traffic-dashboard" / "browser" / "index.html"
    if not index.exists():
        pytest.skip("the dashboard is not built (make frontend)")
    html = index.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script> in index.html"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler in index.html"
