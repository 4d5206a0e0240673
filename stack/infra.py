"""PostgreSQL and Redis of the local run, the ports of every service and the environment each
service gets (``Infra``): the secrets generated once and kept in ``DATA_DIR/secrets``, the
migrations, the ``admin`` account and the admin API token of the stack's own REST calls,
``DATA_DIR/stack.env``."""

from __future__ import annotations

import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from contracts.assets import REPO_ROOT as REPO


def create_database(port: int, name: str, password: str | None = None) -> None:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", password=password, dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


# The secrets of the local run: the environment's value when set, else generated once and kept
# in DATA_DIR/secrets/<file> (0600, the folder 0700; contracts.settings.ensure_secret),
# the same at every start. The PostgreSQL password is always the kept one: the cluster has it.
SECRETS = {
    "INTERNAL_TOKEN": "internal_token",
    "REDIS_PASSWORD": "redis_password",
    "AIRFLOW_PASSWORD": "airflow_password",
    "RTSP_DEMO_PASSWORD": "rtsp_demo_password",
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def stack_secrets(secrets_dir: Path) -> dict[str, str]:
    """name -> value of SECRETS (and ``POSTGRES_PASSWORD``); an example value or a short
    INTERNAL_TOKEN in the environment is refused (ValueError), as the services would."""
    from contracts.settings import ensure_secret, resolve_token, weak_secret

    values = {"POSTGRES_PASSWORD": ensure_secret(secrets_dir, "postgres_password")}
    for name, file in SECRETS.items():
        given = os.environ.get(name, "").strip()
        if name == "INTERNAL_TOKEN":
            values[name] = resolve_token(name, given, secrets_dir)
            continue
        if given and (problem := weak_secret(given)):
            raise ValueError(f"{name} {problem}: set a long random value, or unset it to have one generated")
        values[name] = given or ensure_secret(secrets_dir, file)
    return values


# The ports of the local run (DESIGN.md, Services) and the address each server listens on.
DEFAULT_PORTS = {
    "postgres": 5432,
    "redis": 6379,
    "backend": 8686,
    "airflow": 8080,
    "spark-ui": 4040,
    "airflow-worker-logs": 8793,  # Airflow's log servers (scheduler / LocalExecutor, triggerer)
    "airflow-trigger-logs": 8794,
}


@dataclass
class Infra:
    """PostgreSQL + Redis for the stack, the ports of every service, and the environment every
    service gets. A port is kept when it is free (TIME_WAIT counts as free), else the next free
    one above it is taken and ``moved`` says so; 0: any free port (the tests)."""

    data_dir: Path
    pg_port: int = 5432
    redis_port: int = 6379
    backend_port: int = 8686
    airflow_port: int = 8080
    spark_ui_port: int = 4040
    airflow_worker_log_port: int = 8793
    airflow_trigger_log_port: int = 8794
    rtsp_port: int = 8554  # the demo camera (stack/demo_camera.py)
    # Scaled out (make demo CLUSTER=2 BACKENDS=2, the cluster tests): a Spark standalone master
    # and this many workers on loopback (0: Spark in local mode), and this many backend instances
    # behind a proxy on backend_port (1: the backend itself on backend_port).
    spark_workers: int = 0
    backends: int = 1
    spark_master_port: int = 7077
    # the internal ports of the backend instances (backends > 1), picked on start
    backend_ports: list[int] = field(default_factory=list)
    # True (make demo): PostgreSQL and Redis in sessions of their own, so that a Ctrl-C on the
    # terminal reaches stack.run only, which stops them after their clients.
    detach: bool = False
    # The backend's address (--host): loopback unless asked; every other server is on loopback
    backend_host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    moved: list[str] = field(default_factory=list)  # "port 8686 is taken ...; backend on 8687"
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    admin_password: str | None = None  # generated on the first start (shown once)

    def _pick_ports(self) -> None:
        from backend.embedded import pick_port

        taken: set[int] = set()
        for attr, service, host in (
            ("pg_port", "PostgreSQL", "127.0.0.1"),
            ("redis_port", "Redis", "127.0.0.1"),
            ("backend_port", "backend", self.backend_host),
            ("airflow_port", "Airflow", "127.0.0.1"),
            ("spark_ui_port", "Spark UI", "127.0.0.1"),  # SPARK_LOCAL_IP below
            # Airflow's log servers: on loopback too (traffic_pipeline.loopback)
            ("airflow_worker_log_port", "Airflow worker log server", "127.0.0.1"),
            ("airflow_trigger_log_port", "Airflow triggerer log server", "127.0.0.1"),
            ("rtsp_port", "the demo camera's RTSP server", "127.0.0.1"),
        ):
            wanted = getattr(self, attr)
            got = pick_port(wanted, exclude=taken, host=host)
            taken.add(got)
            setattr(self, attr, got)
            if wanted and got != wanted:
                self.moved.append(f"port {wanted} is taken by another program; {service} on {got}")
        if self.spark_workers:
            self.spark_master_port = pick_port(self.spark_master_port, exclude=taken, host="127.0.0.1")
            taken.add(self.spark_master_port)
        # The backend instances behind the proxy: internal ports on loopback, any free ones
        self.backend_ports = []
        for _ in range(self.backends if self.backends > 1 else 0):
            port = pick_port(0, exclude=taken, host="127.0.0.1")
            taken.add(port)
            self.backend_ports.append(port)

    def _backend_address(self) -> str:
        """Where the other services reach the backend: loopback unless it listens on one
        address only (``--host 192.168.1.5``)."""
        host = self.backend_host
        if host in ("0.0.0.0", "::", "", *LOOPBACK):
            return "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    def start(self) -> Infra:
        sys.path.insert(0, str(REPO))
        from backend.db.migrate import migrate
        from backend.embedded import EmbeddedPostgres, EmbeddedRedis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # tokens, passwords, databases: this user's only
        secrets_dir = self.data_dir / "secrets"
        secret = stack_secrets(secrets_dir)
        self._pick_ports()
        self.pg = EmbeddedPostgres(
            self.data_dir / "postgres",
            port=self.pg_port,
            new_session=self.detach,
            password=secret["POSTGRES_PASSWORD"],
        )
        self.pg.start()
        self.redis = EmbeddedRedis(
            self.data_dir / "redis",
            port=self.redis_port,
            new_session=self.detach,
            password=secret["REDIS_PASSWORD"],
        )
        self.redis.start()
        migrate(self.pg.url)
        # the admin's generated password: set on the first start only, shown once in the banner
        self.admin_password, api_token = bootstrap_accounts(self.pg.url)
        create_database(self.pg.port, "airflow", self.pg.password)  # Airflow's own metadata, same server
        spark_conf = self.data_dir / "spark-conf"
        spark_conf.mkdir(exist_ok=True)
        (spark_conf / "spark-defaults.conf").write_text(
            "# Written by stack.run: the Spark UI on its port, on loopback (SPARK_LOCAL_IP), no kill.\n"
            f"spark.ui.port {self.spark_ui_port}\n"
            "spark.ui.killEnabled false\n"
            "spark.driver.bindAddress 127.0.0.1\n"
            "spark.driver.host 127.0.0.1\n"
        )
        token = secret["INTERNAL_TOKEN"]
        self.env = {
            "DATABASE_URL": self.pg.url,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.redis.port),
            "REDIS_PASSWORD": secret["REDIS_PASSWORD"],
            "SECRETS_DIR": str(secrets_dir),
            "BACKEND_HOST": self.backend_host,
            "BACKEND_PORT": str(self.backend_port),
            "BACKEND_URL": f"http://{self._backend_address()}:{self.backend_port}",
            "INTERNAL_TOKEN": token,
            # the camera routes' bearer token: generated when unset, read from stack.env
            # an admin API token of stack.run's own REST calls (a new one each start)
            "TRAFFIC_API_TOKEN": api_token,
            "VIDEO_STORAGE_PATH": str(self.data_dir / "video_storage"),
            "AIRFLOW_PORT": str(self.airflow_port),
            "AIRFLOW_API_URL": f"http://127.0.0.1:{self.airflow_port}",
            "AIRFLOW_USERNAME": os.environ.get("AIRFLOW_USERNAME", "admin"),
            "AIRFLOW_PASSWORD": secret["AIRFLOW_PASSWORD"],
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.pg.url.rsplit("/", 1)[0] + "/airflow",
            "AIRFLOW_HOME": str(self.data_dir / "airflow"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.airflow_worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.airflow_trigger_log_port),
            # The api-server's graceful shutdown waits this long for a lingering connection
            # (and it is its keep-alive): 120 s by default, the demo's stop waited for it.
            "AIRFLOW__API__WORKER_TIMEOUT": os.environ.get("AIRFLOW__API__WORKER_TIMEOUT", "5"),
            # the demo camera: the sample clip in a loop on a loopback RTSP server, its
            # password generated (stack/demo_camera.py)
            "RTSP_DEMO_PORT": str(self.rtsp_port),
            "RTSP_DEMO_USER": "demo",
            "RTSP_DEMO_PASSWORD": secret["RTSP_DEMO_PASSWORD"],
            "SPARK_CHECKPOINT_DIR": str(self.data_dir / "spark-checkpoint"),
            "SPARK_CONF_DIR": str(spark_conf),
            "SPARK_UI_PORT": str(self.spark_ui_port),
            # The Spark UI and the driver's ports on loopback (the UI binds SPARK_LOCAL_IP, else 0.0.0.0)
            "SPARK_LOCAL_IP": "127.0.0.1",
            "YOLO_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            # Marks every process of this run (found and ended by stack.run if one outlives it).
            "TRAFFIC_STACK_INSTANCE": self.instance,
        }
        if self.spark_workers:  # the application submitted to the standalone master
            self.env["SPARK_MASTER"] = f"spark://127.0.0.1:{self.spark_master_port}"
            self.env["SPARK_WORKERS"] = str(self.spark_workers)
            self.env["SPARK_WORKER_DIR_BASE"] = str(self.data_dir / "spark-workers")
            self.env["SPARK_DAEMON_CONF_DIR"] = str(spark_conf)
            self.env["SPARK_DAEMON_HOST"] = "127.0.0.1"
            # the per-video stateful stage spread over the workers: a partition per worker at least
            self.env["SHUFFLE_PARTITIONS"] = os.environ.get("SHUFFLE_PARTITIONS", str(self.spark_workers))
        if self.backend_ports:  # the first instance on its own port, the proxy on backend_port
            self.env["BACKEND_PORT"] = str(self.backend_ports[0])
            self.env["BACKEND_INSTANCE"] = "backend"
            self.env["STACK_BACKEND_PORTS"] = ",".join(map(str, self.backend_ports))
        return self

    def stop(self) -> None:
        for server in (getattr(self, "redis", None), getattr(self, "pg", None)):
            if server is not None:
                server.stop()

    def write_env(self, path: Path) -> Path:
        head = [
            f"# Written by stack.run ({time.strftime('%Y-%m-%d %H:%M:%S')}): the services' environment.\n"
        ]
        head += [f"# WARNING: {m}\n" for m in self.moved]
        if self.moved:
            self.env["STACK_PORT_WARNINGS"] = "; ".join(self.moved)
        text = "".join(head) + "".join(f"{k}={shlex.quote(v)}\n" for k, v in self.env.items())
        # It holds the tokens and passwords: 0600 from its creation, never readable by others.
        path.unlink(missing_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(text)
        return path


# The name of the stack's own API token (bootstrap_accounts: a new one each start)
STACK_TOKEN_NAME = "stack.run (make demo, tests)"


def bootstrap_accounts(database_url: str) -> tuple[str | None, str]:
    """First start: the ``admin`` account with a generated password (returned once, for the
    banner; None when users exist). Every start: a fresh admin API token for the stack's own REST
    calls (the sample, the demo camera, stopping streams, the e2e tests), in ``stack.env`` (0600);
    the previous start's one is revoked."""
    from sqlalchemy import create_engine, delete
    from sqlalchemy.orm import sessionmaker

    from backend.db.account_models import ApiToken, User
    from backend.services import accounts

    engine = create_engine(database_url)
    try:
        with sessionmaker(engine)() as session, session.begin():
            password = accounts.ensure_admin(session=session)
            session.execute(delete(ApiToken).where(ApiToken.name == STACK_TOKEN_NAME))
            admin = session.query(User).filter_by(role="admin", disabled=False).order_by(User.id).first()
            if admin is None:
                raise RuntimeError("no enabled admin account: `traffic-admin create-user NAME --role admin`")
            _, token = accounts.create_token(session=session, user_id=admin.id, name=STACK_TOKEN_NAME)
    finally:
        engine.dispose()
    return password, token
