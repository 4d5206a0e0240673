"""``make demo``'s watching besides supervisord's: ``Watcher`` announces the stack (the banner,
then "ready") and reports the processor going away and coming back; ``ServerWatch`` starts
PostgreSQL or Redis again when one exits."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection

from stack.airflow_api import airflow_dag_ready, warm_airflow
from stack.banner import banner
from stack.infra import Infra
from stack.rest_client import Api, processor_state, wait_http
from stack.sample import register_demo_camera, register_sample

# Idle cost of make demo's own watching (README, Benchmarks): once ready, the processor's
# heartbeat (a key with a 30 s TTL) is asked for every 5 s (a health request to the backend,
# which asks PostgreSQL and Redis), not every 2 s.
WATCH_EVERY_S = 5.0


class Watcher:
    """Announces the stack (banner once the backend answers, 'ready' once the processor and
    Airflow are), then reports the processor going away and coming back. ``services``: those of
    the run (``--only``): the processor and Airflow are waited for when they are among them."""

    def __init__(
        self,
        infra: Infra,
        console,  # noqa: ANN001 - stack.console.Console
        sample: bool,
        data: str,
        started: float,
        services: Collection[str] = ("spark", "airflow", "rtsp-camera"),
    ) -> None:
        self.infra, self.console, self.sample, self.started = infra, console, sample, started
        self.services = set(services)
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
                video_id = register_sample(Api.of_env(self.infra.env))
            except (OSError, ValueError, KeyError) as exc:
                self.console.print(f"[stack] the sample video was not registered: {exc}")
        camera_id = None
        if self.sample and "rtsp-camera" in self.services:  # not with an --only that leaves it out
            try:
                camera_id = register_demo_camera(self.infra.env)
            except (OSError, ValueError, KeyError) as exc:
                self.console.print(f"[stack] the demo camera was not registered: {exc}")
            if camera_id is None:
                self.console.print(
                    f"[stack] the demo camera's RTSP server is not up: see {self.logs}/rtsp-camera.log"
                )
        self.console.print(banner(self.infra, video_id, self.data, self.started, camera_id, self.services))
        processor, airflow = "spark" not in self.services, "airflow" not in self.services
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
        warm = [
            said
            for name, said in (("spark", "processor (Spark) warm"), ("airflow", "Airflow has the DAG"))
            if name in self.services
        ]
        what = f"{', '.join(warm)}; " if warm else ""
        self.console.print(f"[stack] ready in {self.ready_after:.1f} s: {what}open {base}/")
        if "spark" not in self.services:
            return
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
