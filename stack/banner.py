"""What ``make demo`` prints once the backend answers: every address, the login, the logs, and
the warnings (a port moved, a backend open to the network)."""

from __future__ import annotations

import os
import time
from collections.abc import Collection

from contracts.assets import REPO_ROOT as REPO
from stack.infra import LOOPBACK, Infra


def login_line(infra: Infra) -> str:
    if infra.admin_password:
        return f"user admin, password {infra.admin_password}   <- shown this once (stored hashed)"
    reset = "(set -a; . .local/stack.env; .venv/bin/traffic-admin reset-password admin)"
    return f"your accounts (admin's password forgotten? {reset})"


def scale_lines(infra: Infra) -> list[str]:
    """The banner's lines of a scaled-out run (README, Growing past one machine)."""
    lines = []
    if infra.spark_workers:
        lines.append(
            f"  Spark cluster {infra.env['SPARK_MASTER']}, {infra.spark_workers} workers "
            f"(shuffle partitions {infra.env['SHUFFLE_PARTITIONS']}; executors' logs in "
            f"{infra.env['SPARK_WORKER_DIR_BASE']})"
        )
    if infra.backend_ports:
        ports = ", ".join(str(p) for p in infra.backend_ports)
        lines.append(
            f"  Backends      {len(infra.backend_ports)} behind the proxy (nginx), on 127.0.0.1 ports {ports}"
        )
    return lines


def banner(
    infra: Infra,
    video_id: int | None,
    data: str,
    started: float,
    camera_id: int | None = None,
    services: Collection[str] = ("airflow", "spark"),
) -> str:
    """``services``: Airflow's and Spark's lines only when they are among the run's (``--only``)."""
    env, base = infra.env, infra.env["BACKEND_URL"]
    frontend = (
        REPO / os.environ.get("FRONTEND_DIST", "frontend/dist/traffic-dashboard/browser") / "index.html"
    )
    lines = [
        "",
        f"[stack] up in {time.monotonic() - started:.1f} s"
        + (" (the processor warms up: 'ready' follows)" if "spark" in services else ""),
        f"  Dashboard     {base}/   <- open this"
        + ("" if frontend.exists() else "   (not built: `make frontend`; / answers a JSON hint)"),
        f"  REST API      {base}/api/videos      OpenAPI: {base}/api/openapi.json",
        f"  Login         {login_line(infra)}",
        f"  WebSocket     ws://127.0.0.1:{infra.backend_port}/ws/client/stream",
        f"  Metrics       {base}/metrics   (Prometheus)",
        *(
            [
                f"  Airflow UI    {env['AIRFLOW_API_URL']}/   user {env['AIRFLOW_USERNAME']}, "
                f"password {env['AIRFLOW_PASSWORD']}   (generated, kept in {data}/secrets/)"
            ]
            if "airflow" in services
            else []
        ),
        *(
            [f"  Spark UI      http://127.0.0.1:{infra.spark_ui_port}/   (while the processor runs)"]
            if "spark" in services
            else []
        ),
        *scale_lines(infra),
        f"  PostgreSQL    postgresql://postgres@127.0.0.1:{infra.pg_port}/traffic    "
        f"Redis  redis://127.0.0.1:{infra.redis_port}   (passwords: {data}/stack.env)",
        f"  Logs          {data}/logs/<service>.log  (backend, redis-consumer, spark, airflow, supervisord),",
        f"                {data}/postgres/postgres.log, {data}/redis/redis.log",
        f"  Services      .venv/bin/supervisorctl -c {data}/supervisord.conf status  (restart NAME, ...)",
    ]
    if video_id:
        lines += [
            f'  Sample video  id {video_id}: curl -X POST -H "Authorization: Bearer $TOKEN" '
            f"{base}/api/videos/{video_id}/stream/start   (a token: the Account page)",
        ]
    if camera_id:
        lines += [
            f"  Demo camera   id {camera_id}: rtsp://127.0.0.1:{infra.rtsp_port}/demo (user demo, password "
            f"in {data}/stack.env); Start live on the dashboard",
        ]
    lines.append("  Stop          Ctrl-C")
    for moved in infra.moved:
        lines.append(f"  !!! WARNING: {moved} !!!")
    if infra.backend_host not in LOOPBACK:
        lines.append(
            f"  !!! WARNING: the backend listens on {infra.backend_host}: anyone on the network can reach "
            "its login page; set ALLOWED_HOSTS (and ALLOWED_ORIGINS) to the names they use !!!"
        )
    return "\n".join(lines) + "\n"
