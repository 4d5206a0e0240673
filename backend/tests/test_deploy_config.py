"""The deployment's exposure (issue 17), read from the files (no Docker engine needed): compose
publishes the dashboard's nginx only, with passwords on Redis and PostgreSQL; every image runs as
a non-root user; nginx keeps the ingest sockets and the metrics off the public port and sends the
page's security headers; the built dashboard runs under that Content-Security-Policy."""

from __future__ import annotations

import re
import shutil
import subprocess
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
    found = re.finditer(r'location\s+((?:"[^"]*"|[^{"])+)\{([^}]*)\}', conf)
    return {m.group(1).strip(): m.group(2) for m in found}


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


def test_nginx_reaches_every_backend_replica():
    """``--scale backend=2``: nginx resolves the service name at request time through Docker's
    DNS (every replica), skips a replica that refuses or times out, and passes the Host with its
    port (the backend's own-origin check)."""
    assert re.search(r"(?m)^\s*resolver 127\.0\.0\.11\b", NGINX)
    assert "set $backend http://backend:8686;" in NGINX
    assert "proxy_next_upstream error timeout;" in NGINX
    locations = _locations(NGINX)
    for arg in ("/api/", "/ws/"):
        assert "proxy_pass $backend;" in locations[arg], arg
        assert "proxy_set_header Host $http_host;" in locations[arg], arg
    assert "proxy_request_buffering off;" in locations["/api/"]
    assert 'proxy_set_header Connection "upgrade";' in locations["/ws/"]
    backend = SERVICES["backend"]
    assert "container_name" not in backend and not backend.get("ports")  # scalable
    env = {**COMPOSE["x-app-env"], **backend["environment"]}
    # each replica registers its own name and address (the defaults: hostname, container IP)
    assert "BACKEND_INSTANCE" not in env and "BACKEND_INGEST_URL" not in env
    assert env["BACKEND_HOST"] == "0.0.0.0"


def test_the_local_proxy_mirrors_compose():
    """stack/proxy.py's nginx (the local run with several backends) proxies as compose's does."""
    from stack.proxy import nginx_config

    local = re.sub(r"#[^\n]*", "", nginx_config(Path("/tmp/p"), [9001, 9002], "127.0.0.1", 9000))
    mine = _locations(local)
    assert "return 404;" in mine["/ws/backend/"]
    assert local.index("location /ws/backend/") < local.index("location /ws/ ")
    assert "proxy_next_upstream error timeout;" in local
    assert "server 127.0.0.1:9001" in local and "server 127.0.0.1:9002" in local
    assert "listen 127.0.0.1:9000;" in local
    body = re.search(r"client_max_body_size (\d+)m;", NGINX)
    assert body and f"client_max_body_size {body.group(1)}m;" in local  # MAX_UPLOAD_MB 500 both
    for arg in ("/ws/", "/"):
        for line in (
            "proxy_set_header Host $http_host;",
            "proxy_set_header X-Forwarded-For $remote_addr;",
            "proxy_set_header X-Forwarded-Proto $scheme;",
            "proxy_http_version 1.1;",
        ):
            assert line in mine[arg], (arg, line)
    assert "proxy_request_buffering off;" in mine["/"]
    assert "proxy_set_header Upgrade $http_upgrade;" in mine["/ws/"]


def test_the_local_run_starts_every_instance_and_the_proxy(tmp_path, monkeypatch, capsys):
    """``stack.proxy.backend_commands``: with two backends, ``backend`` and ``backend-2`` on their
    loopback ports, registered under their names at their own address, and ``proxy`` on the
    public address; one backend: nothing (the Procfile's). Without nginx: a clear error."""
    from types import SimpleNamespace

    from stack import proxy

    infra = SimpleNamespace(
        backends=2, backend_ports=[9101, 9102], backend_host="127.0.0.1", backend_port=9100, data_dir=tmp_path
    )
    monkeypatch.setattr(proxy, "find_nginx", lambda: "/usr/sbin/nginx")
    commands = proxy.backend_commands(infra)  # type: ignore[arg-type]
    assert list(commands) == ["backend", "backend-2", "proxy"]
    for name, port in (("backend", 9101), ("backend-2", 9102)):
        command = commands[name]
        assert command.endswith(".venv/bin/python -m backend.app")
        for setting in (
            f"BACKEND_PORT={port}",
            f"BACKEND_INSTANCE={name}",
            f"BACKEND_INGEST_URL=http://127.0.0.1:{port}",
            "BACKEND_HOST=127.0.0.1",
        ):
            assert setting in command.split(), (name, setting)
    assert (
        "STACK_PROXY_PORT=9100" in commands["proxy"] and "STACK_BACKEND_PORTS=9101,9102" in commands["proxy"]
    )
    assert proxy.backend_commands(SimpleNamespace(backends=1, backend_ports=[])) == {}  # type: ignore[arg-type]

    monkeypatch.setattr(proxy, "find_nginx", lambda: None)
    assert proxy.main() == 2
    assert "apt-get install -y nginx" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="apt-get install -y nginx"):
        proxy.backend_commands(infra)  # type: ignore[arg-type]


def test_compose_nginx_config_passes_nginx_t(tmp_path):
    """The compose page server's configuration as nginx itself reads it (``nginx -t``), with the
    image's paths pointed at the repository's files."""
    server = NGINX.replace(
        "/etc/nginx/security-headers.conf", str(REPO / "frontend" / "security-headers.conf")
    )
    server = server.replace("/usr/share/nginx/html", str(tmp_path))
    (tmp_path / "server.conf").write_text(server)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n"
        f" include {tmp_path}/server.conf;\n}}\n"
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"  # make proxy-deps (make test) installs it
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
