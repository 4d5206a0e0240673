"""Airflow's log servers on loopback (the local run: ``airflow/run_standalone.sh``).

The scheduler (LocalExecutor) and the triggerer each start a log server that the api-server asks
for a running task's log, and Airflow binds it on every interface (``uvicorn.run(host="")``, no
setting). ``run_standalone.sh`` points Airflow's logging configuration here
(``AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS=traffic_pipeline.loopback.LOGGING_CONFIG``, imported by
every Airflow process before it starts anything): Airflow's own configuration, unchanged, and in
the scheduler and the triggerer the log server bound on ``AIRFLOW_LOG_SERVER_HOST`` (default
127.0.0.1). ``hostname`` (``AIRFLOW__CORE__HOSTNAME_CALLABLE``) makes the api-server look for the
log there: a task's host name would otherwise be the machine's, which may not be loopback.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

from airflow.config_templates.airflow_local_settings import DEFAULT_LOGGING_CONFIG

LOGGING_CONFIG = DEFAULT_LOGGING_CONFIG
HOST = os.environ.get("AIRFLOW_LOG_SERVER_HOST") or "127.0.0.1"
# The Airflow commands that start a log server
SERVING = ("scheduler", "triggerer")


def hostname() -> str:
    """The address a task's log is served from (Airflow's ``hostname_callable``)."""
    return HOST


def serve_logs_on_loopback() -> None:
    """Airflow's ``serve_logs`` with its uvicorn server bound on HOST (its port, app and options
    are Airflow's)."""
    from airflow.utils import serve_logs as package
    from airflow.utils.serve_logs import core

    original = core.serve_logs
    if getattr(original, "on_loopback", False):
        return

    def serve_logs(port: int | None = None) -> Any:
        import uvicorn

        def run(app: Any, **kwargs: Any) -> Any:
            kwargs["host"] = HOST
            return uvicorn.run(app, **kwargs)

        core.uvicorn = types.SimpleNamespace(run=run)
        return original(port)

    serve_logs.on_loopback = True  # type: ignore[attr-defined]
    core.serve_logs = serve_logs
    package.serve_logs = serve_logs


if any(arg in SERVING for arg in sys.argv[1:2]):
    serve_logs_on_loopback()
