"""Shared by the streaming tests: a real Redis, the short truth clip, the Spark app as a process.
Imported first by each test module: puts the repository root on sys.path for ``spark.streaming``
(no conftest.py here: spark/tests/conftest.py is imported by name by the other tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def start_redis(tmp: Path):
    from backend.embedded import EmbeddedRedis

    return EmbeddedRedis(tmp / "redis").start()


def short_scenario():
    """Three cars in 4 s at 20 fps (80 frames): 110 and 90 km/h (speeding) and 45 km/h."""
    from testing.synthetic import Scenario, VehicleSpec

    lanes = (-3.5, 0.0, 3.5)
    return Scenario(
        vehicles=[
            VehicleSpec("car_rear_white", lanes[0], 110, 0.0, 1),
            VehicleSpec("car_rear_dark", lanes[1], 45, 0.0, 1),
            VehicleSpec("car_front", lanes[2], 90, 0.3, -1),
        ],
        duration_s=4.0,
        fps=20.0,
    )


class SparkApp:
    """``python spark/streaming/app.py`` in its own process group (kill -9 takes the JVM and
    the Python workers with it)."""

    def __init__(self, redis_port: int, checkpoint: Path, log_path: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis_port),
            "SPARK_CHECKPOINT_DIR": str(checkpoint),
            "SPARK_UI": "false",
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> SparkApp:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [PYTHON, str(REPO / "spark" / "streaming" / "app.py")],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""
