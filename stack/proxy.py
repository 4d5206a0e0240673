"""Several backend instances behind one address in the local run (issue 18): the instances'
commands and the proxy in front of them, Debian's nginx run as this user.

    STACK_BACKEND_PORTS=8701,8702 STACK_PROXY_PORT=8686 python -m stack.proxy

writes ``nginx.conf`` into ``STACK_PROXY_DIR`` (the data dir's ``proxy/``; its temp files there
too) and runs ``nginx -g 'daemon off;'`` in the foreground (supervisord restarts it). The
configuration mirrors compose's (``frontend/nginx.conf``), the public address being
``STACK_PROXY_HOST:STACK_PROXY_PORT`` (the backend's address of a one-instance run):

- HTTP and the client WebSocket go to any live instance, round robin; an instance that refuses
  or times out is skipped (``proxy_next_upstream error timeout``) and left alone for a few
  seconds, so that a killed instance's viewers reconnect straight to another one;
- uploads are streamed (``proxy_request_buffering off``, ``client_max_body_size`` the backend's
  ``MAX_UPLOAD_MB`` plus the multipart overhead); WebSocket upgrades pass with long timeouts;
- the original ``Host`` (with its port) goes to the backend, whose ``ALLOWED_HOSTS`` and Origin
  checks see what the browser sent; ``X-Forwarded-For`` / ``-Proto`` are set, never appended;
- ``/ws/backend/`` answers 404: the ingest is internal, the bridge writes to each instance at its
  own address (the Redis registry: ``backend.services.instances``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stack.infra import Infra

# What a multipart upload adds to the file (compose's nginx: 600m for MAX_UPLOAD_MB=500)
UPLOAD_MARGIN_MB = 100
# A failed instance is left out this long before nginx tries it again (a refused connection
# costs nothing: the request goes on to the next instance; while the instances start, all of
# them refuse and nginx answers 502 for this long)
FAIL_TIMEOUT_S = 2
NGINX_MISSING = (
    "nginx is not installed (needed for several backends behind one address): "
    "apt-get install -y nginx (Debian's package; it runs as this user, nothing starts as a service)"
)


def instance_command(name: str, port: int) -> str:
    """One backend instance: on loopback on its own port, registered under ``name`` with that
    address (the bridge's ingest), trusting the proxy's X-Forwarded-* (its only client apart
    from the bridge and local tools)."""
    env = {
        "BACKEND_HOST": "127.0.0.1",
        "BACKEND_PORT": str(port),
        "BACKEND_INSTANCE": name,
        "BACKEND_INGEST_URL": f"http://127.0.0.1:{port}",
        "TRUST_PROXY_HEADERS": "true",
    }
    return f"{_env(env)} .venv/bin/python -m backend.app"


def _env(env: dict[str, str]) -> str:
    return "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def backend_commands(infra: Infra) -> dict[str, str]:
    """``backend-2`` .. ``backend-N`` and ``proxy`` when ``infra.backends`` > 1 (and ``backend``,
    the first instance, with the same settings as the others: loopback, its own port)."""
    if infra.backends <= 1 or not infra.backend_ports:
        return {}
    if find_nginx() is None:  # fail at the start, not as a proxy that never comes up
        raise RuntimeError(NGINX_MISSING)
    names = ["backend", *(f"backend-{i}" for i in range(2, len(infra.backend_ports) + 1))]
    commands = {
        name: instance_command(name, port) for name, port in zip(names, infra.backend_ports, strict=True)
    }
    env = {
        "STACK_PROXY_HOST": infra.backend_host,
        "STACK_PROXY_PORT": str(infra.backend_port),
        "STACK_BACKEND_PORTS": ",".join(map(str, infra.backend_ports)),
        "STACK_PROXY_DIR": str(infra.data_dir / "proxy"),
    }
    commands["proxy"] = f"{_env(env)} .venv/bin/python -m stack.proxy"
    return commands


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def _listen(host: str, port: int) -> str:
    host = host or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def nginx_config(
    prefix: Path, ports: list[int], host: str, port: int, *, max_upload_mb: float = 500, as_root: bool = False
) -> str:
    """The proxy's whole ``nginx.conf`` (temp files and pid under ``prefix``, errors to stderr)."""
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s;" for p in ports
    )
    temp = {name: prefix / "tmp" / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    body_mb = int(max_upload_mb) + UPLOAD_MARGIN_MB
    # As root nginx's workers would run as "nobody", who cannot write the data dir (0700)
    user = "user root;\n" if as_root else ""
    headers = """            proxy_set_header Host $http_host;  # with its port: the backend's Origin check
            proxy_set_header X-Forwarded-For $remote_addr;  # replaced, never appended
            proxy_set_header X-Forwarded-Proto $scheme;"""
    return f"""# Written by stack.proxy: the local run's backend instances behind one address (issue 18).
# Mirrors compose's frontend/nginx.conf (its /api and /ws/ locations).
{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log stderr warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};

    upstream backends {{
{servers}
    }}

    server {{
        listen {_listen(host, port)};
        client_max_body_size {body_mb}m;  # uploads (MAX_UPLOAD_MB plus multipart overhead)
        # a dead instance (connection refused, or no answer) is skipped: the next one gets it
        proxy_next_upstream error timeout;
        proxy_connect_timeout 2s;

        # The bridge's ingest sockets are internal: it writes to each instance's own address.
        location /ws/backend/ {{
            return 404;
        }}

        location /ws/ {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
{headers}
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}

        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
{headers}
            proxy_request_buffering off;  # stream uploads to the backend (no temp copy)
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


def main() -> int:
    nginx = find_nginx()
    if nginx is None:
        print(f"[proxy] {NGINX_MISSING}", file=sys.stderr, flush=True)
        return 2
    try:
        ports = [int(p) for p in os.environ["STACK_BACKEND_PORTS"].split(",") if p.strip()]
        port = int(os.environ["STACK_PROXY_PORT"])
    except (KeyError, ValueError) as exc:
        print(f"[proxy] STACK_BACKEND_PORTS and STACK_PROXY_PORT are needed: {exc}", file=sys.stderr)
        return 2
    host = os.environ.get("STACK_PROXY_HOST", "127.0.0.1")
    prefix = Path(os.environ.get("STACK_PROXY_DIR", ".local/proxy")).resolve()
    for sub in ("tmp/client_body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "logs"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        nginx_config(
            prefix,
            ports,
            host,
            port,
            max_upload_mb=float(os.environ.get("MAX_UPLOAD_MB", "500")),
            as_root=os.geteuid() == 0,
        )
    )
    print(
        f"[proxy] nginx on {_listen(host, port)} -> backends on 127.0.0.1:{','.join(map(str, ports))}",
        flush=True,
    )
    # exec: supervisord's signals reach nginx itself (TERM: fast shutdown)
    os.execv(nginx, [nginx, "-e", "stderr", "-g", "daemon off;", "-p", str(prefix), "-c", str(conf)])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
