"""A Spark standalone daemon, master or worker, for the local run and for compose (issue 18).

    python -m spark.streaming.standalone master     # SPARK_MASTER=spark://host:7077
    python -m spark.streaming.standalone worker     # registers with SPARK_MASTER

pip's ``pyspark`` has no ``sbin`` start scripts: each daemon is ``spark-class
org.apache.spark.deploy.master.Master`` / ``...deploy.worker.Worker spark://...`` in the
foreground (supervisord or compose restarts it), as the standalone documentation describes for a
manual start. Every connection between the master, the workers, the executors and the driver is
authenticated with one shared secret (``spark.authenticate``): ``SPARK_AUTH_SECRET``, else the one
kept in ``SECRETS_DIR/spark_auth_secret`` (generated once), written to a 0600 properties file of
this daemon (never on its command line). The master's REST submission server is off.

Settings (environment): ``SPARK_MASTER``; ``SPARK_DAEMON_HOST`` (the address it binds and
advertises: 127.0.0.1 locally; unset, this machine's address); ``SPARK_MASTER_UI_PORT``;
``SPARK_WORKER_CORES`` / ``SPARK_WORKER_MEMORY``: what a worker offers; ``SPARK_WORKER_DIR``: its
work folder (executors' logs, the application's files).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def auth_secret(env: dict[str, str]) -> str:
    from contracts.settings import resolve_token

    return resolve_token(
        "SPARK_AUTH_SECRET", env.get("SPARK_AUTH_SECRET", ""), env.get("SECRETS_DIR", ".local/secrets")
    )


def properties(secret: str) -> str:
    return (
        "spark.authenticate true\n"
        f"spark.authenticate.secret {secret}\n"
        "spark.master.rest.enabled false\n"
        "spark.ui.killEnabled false\n"
    )


def write_properties(folder: Path, secret: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="standalone-", suffix=".conf", dir=folder)  # 0600
    with os.fdopen(fd, "w") as f:
        f.write(properties(secret))
    return Path(name)


def daemon_argv(role: str, env: dict[str, str], props: Path) -> list[str]:
    master = env["SPARK_MASTER"]
    # the address it binds and advertises: set by the local run (127.0.0.1); else this machine's
    # own address (a container's, in compose: each scaled worker has its own)
    host = env.get("SPARK_DAEMON_HOST") or socket.gethostbyname(socket.gethostname())
    spark_class = str(spark_home() / "bin" / "spark-class")
    if role == "master":
        port = master.rsplit(":", 1)[1]
        return [
            spark_class,
            MASTER_CLASS,
            "--host",
            host,
            "--port",
            port,
            "--webui-port",
            env.get("SPARK_MASTER_UI_PORT", "0"),
            "--properties-file",
            str(props),
        ]
    work = Path(env.get("SPARK_WORKER_DIR", ".local/spark-worker"))
    work.mkdir(parents=True, exist_ok=True)
    return [
        spark_class,
        WORKER_CLASS,
        "--host",
        host,
        "--cores",
        env.get("SPARK_WORKER_CORES", "1"),
        "--memory",
        env.get("SPARK_WORKER_MEMORY", "6g"),
        "--work-dir",
        str(work),
        "--webui-port",
        "0",
        "--properties-file",
        str(props),
        master,
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    env = dict(os.environ)
    if args not in (["master"], ["worker"]):
        print("usage: python -m spark.streaming.standalone master | worker", file=sys.stderr)
        return 2
    if not env.get("SPARK_MASTER", "").startswith("spark://"):
        print("spark.streaming.standalone: set SPARK_MASTER=spark://host:port", file=sys.stderr)
        return 2
    props = write_properties(
        Path(env.get("SPARK_DAEMON_CONF_DIR") or tempfile.gettempdir()), auth_secret(env)
    )
    env["SPARK_HOME"] = str(spark_home())
    cmd = daemon_argv(args[0], env, props)
    os.execve(cmd[0], cmd, env)  # the JVM in this process: the supervisor's signals reach it


if __name__ == "__main__":
    sys.exit(main())
