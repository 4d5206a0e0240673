"""``make demo``'s stack as a user runs it: ``python -m stack.run`` from the working tree with a
fresh data dir (new PostgreSQL, Redis, Airflow database, Spark checkpoint), on its own base
ports so that it never meets a developer's running demo.

1. It comes up and says "ready", with the demo camera registered; the sample clip (registered by
   the stack) streams live to a
   WebSocket viewer; mid-stream the bridge (redis-consumer) and then the Spark application are
   ``kill -9``-ed: supervisord restarts each (the console says so, with a new pid), and the
   stream completes with every frame delivered once (the analytics channel, never thinned for a
   slow client, has each frame exactly once; the frame channel none twice, in order). Ctrl-C
   (SIGINT) then stops it: exit code 0, no process of the run left, its ports free, and no stack
   trace on the console nor in the logs written while it stopped.
2. Started again on the same data dir, it finds its ports free (their old connections are in
   TIME_WAIT) and the backend is on the same port; stopped while the rest is still starting, it
   again leaves nothing behind and no stack trace.

Console, logs and timings land in ``e2e/artifacts/demo/``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.embedded import port_is_free
from e2e.harness import REPO, Api, Viewer
from stack.infra import DEFAULT_PORTS
from stack.supervise import service_pids

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "e2e" / "artifacts" / "demo"
# Far from the defaults: a developer's `make demo` may be running.
BASE_PORTS = {name: 10000 + port for name, port in DEFAULT_PORTS.items()}
SAMPLE_FRAMES = 1190  # urban_cctv_640x360_25fps.mp4
BOOT_TIMEOUT_S = 480
STREAM_TIMEOUT_S = 420
STACK_TRACE = re.compile(r"Traceback \(most recent call last\)|Exception in thread|\bat org\.apache\.")


class Demo:
    """``python -m stack.run`` as a subprocess; its console captured line by line."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.data_dir, self.name = data_dir, name
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.cond = threading.Condition()

    def start(self) -> Demo:
        args = [sys.executable, "-m", "stack.run", "--data-dir", str(self.data_dir)]
        for name, port in BASE_PORTS.items():
            args += [f"--{name}-port", str(port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    @property
    def _proc(self) -> subprocess.Popen:
        assert self.proc is not None, "not started"
        return self.proc

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern: str, timeout_s: float, after: int = 0) -> re.Match:
        """The first console line from index ``after`` on matching ``pattern``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        seen = after
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                if (
                    self._proc.poll() is not None
                    and self._proc.stdout is not None
                    and self._proc.stdout.closed
                ):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 1.0))
        raise AssertionError(f"no console line matching {pattern!r} within {timeout_s:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.lines[-n:])

    def env(self) -> dict[str, str]:
        return read_env(self.data_dir / "stack.env")

    def interrupt(self, timeout_s: float = 120) -> tuple[int, float]:
        """Ctrl-C: SIGINT, as the terminal sends it; (exit code, seconds to exit)."""
        t = time.monotonic()
        self._proc.send_signal(signal.SIGINT)
        rc = self._proc.wait(timeout_s)
        took = time.monotonic() - t
        time.sleep(0.2)  # the reader thread drains the pipe
        return rc, took

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.interrupt(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def save(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{self.name}.console.txt").write_text("\n".join(self.lines) + "\n")


def read_env(path: Path) -> dict[str, str]:
    """``stack.env``: KEY=shell-quoted value lines, # comments."""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = shlex.split(value)[0] if value else ""
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc's parent pids)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stack_pids(record: dict) -> list[int]:
    """The processes of a run (``stack.pid``: its mark and its sessions) still alive."""
    from stack.pidfiles import leftover_processes

    return leftover_processes(record["instance"], record["sessions"])


def _loopback(addr_hex: str) -> bool:
    """An address of /proc/net/tcp{,6} (words in host order, little-endian) on loopback."""
    if len(addr_hex) == 8:
        return addr_hex[6:8] == "7F"  # 127.x.x.x
    if addr_hex == "0" * 24 + "01000000":  # ::1
        return True
    return addr_hex[:16] == "0" * 16 and addr_hex[16:24] == "FFFF0000" and addr_hex[30:32] == "7F"


def listening_off_loopback(pids: list[int]) -> list[str]:
    """The TCP sockets of ``pids`` that listen on another address than loopback."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, port = fields[1].split(":")
            if fields[3] == "0A" and fields[9] in inodes and not _loopback(addr):  # 0A: LISTEN
                pid = inodes[fields[9]]
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
                except OSError:
                    cmd = "?"
                found.append(f"{addr}:{int(port, 16)} pid {pid} {cmd}")
    return found


def run_record(data_dir: Path) -> dict:
    return json.loads((data_dir / "stack.pid").read_text())


def log_sizes(data_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in (data_dir / "logs").glob("*.log")}


def written_since(sizes: dict[Path, int], data_dir: Path) -> dict[str, str]:
    out = {}
    for p in (data_dir / "logs").glob("*.log"):
        with open(p, "rb") as f:
            f.seek(sizes.get(p, 0))
            out[p.name] = f.read().decode(errors="replace")
    return out


def wait_until(predicate, timeout_s: float, what: str, step: float = 0.2):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def results() -> Iterator[dict]:
    data: dict = {}
    yield data
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "result.json").write_text(json.dumps(data, indent=2))
    print(f"\ndemo timings: {json.dumps(data)}")


def test_demo_restarts_crashed_workers_and_stops_clean(demo_dir, results):
    demo = Demo(demo_dir, "first-run").start()
    try:
        m = demo.wait_for(r"\[stack\] up in ([\d.]+) s", BOOT_TIMEOUT_S)
        results["first_boot_up_s"] = float(m.group(1))
        m = demo.wait_for(r"\[stack\] ready in ([\d.]+) s", BOOT_TIMEOUT_S)
        results["first_boot_ready_s"] = float(m.group(1))
        env = demo.env()
        record = run_record(demo_dir)
        assert len(record["sessions"]) == 3  # PostgreSQL, Redis, supervisord
        backend_port = int(env["BACKEND_PORT"])
        results["backend_port"] = backend_port
        ports = {k: int(v) for k, v in env.items() if k in ("BACKEND_PORT", "REDIS_PORT", "AIRFLOW_PORT")}
        pg_port = re.search(r":(\d+)/", env["DATABASE_URL"])
        assert pg_port is not None, env["DATABASE_URL"]
        ports["POSTGRES"] = int(pg_port.group(1))
        ports["SPARK_UI"] = int(env["SPARK_UI_PORT"])
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['SPARK_UI']}/", timeout=10) as r:
            assert r.status == 200  # the Spark UI on the port the banner names
        # Service secrets and exposure: every server of the run on loopback (the backend too,
        # without --host; Spark's UI and driver, Airflow's api-server and log servers), passwords
        # on PostgreSQL and Redis, stack.env and the kept secrets readable by this user only.
        assert not listening_off_loopback(stack_pids(record)), listening_off_loopback(stack_pids(record))
        assert env["BACKEND_HOST"] == "127.0.0.1" and env["REDIS_PASSWORD"] and env["INTERNAL_TOKEN"]
        assert (demo_dir / "stack.env").stat().st_mode & 0o777 == 0o600
        assert (demo_dir / "secrets").stat().st_mode & 0o777 == 0o700
        kept = {p.name: p for p in (demo_dir / "secrets").iterdir()}
        assert {"internal_token", "postgres_password", "redis_password", "airflow_password"} <= set(kept)
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in kept.values())
        assert f"postgres:{kept['postgres_password'].read_text().strip()}@" in env["DATABASE_URL"]
        assert env["AIRFLOW_PASSWORD"] == kept["airflow_password"].read_text().strip() != "admin"
        # The Spark UI: no kill buttons, and none of the secrets on its pages (environment, plans)
        spark_api = f"http://127.0.0.1:{ports['SPARK_UI']}/api/v1/applications"
        with urllib.request.urlopen(spark_api, timeout=10) as r:
            spark_api += "/" + json.load(r)[0]["id"]
        with urllib.request.urlopen(f"{spark_api}/environment", timeout=10) as r:
            environment = r.read().decode()
        assert ["spark.ui.killEnabled", "false"] in json.loads(environment)["sparkProperties"]
        with urllib.request.urlopen(f"{spark_api}/sql?details=true&planDescription=true", timeout=10) as r:
            plans = r.read().decode()
        for name in ("internal_token", "postgres_password", "redis_password"):
            value = kept[name].read_text().strip()
            assert value not in environment and value not in plans, f"{name} shown by the Spark UI"
        api = Api(f"http://127.0.0.1:{backend_port}", env["TRAFFIC_API_TOKEN"])
        status, body = api.call("GET", "/api/videos")
        assert status == 200 and body["videos"], body
        video_id = next(v["id"] for v in body["videos"] if v["source_kind"] == "file")
        # the demo camera (the sample clip on a loopback RTSP server) is registered, its
        # password nowhere in the answer, and idle until started
        cams = [v for v in body["videos"] if v["source_kind"] == "camera"]
        assert len(cams) == 1 and cams[0]["health"]["state"] == "idle", cams
        assert env["RTSP_DEMO_PASSWORD"] not in json.dumps(body)
        assert any(f"Demo camera   id {cams[0]['id']}:" in line for line in demo.lines), "no demo camera line"

        # The first stream after boot, live, as the dashboard starts it.
        viewer = Viewer(
            f"ws://127.0.0.1:{backend_port}/ws/client/stream", video_id, env["TRAFFIC_API_TOKEN"]
        ).start()
        t0 = time.time()
        status, run = api.json("POST", f"/api/videos/{video_id}/stream/start", {"realtime": True})
        assert status == 201, run  # the contract: 201 with the Airflow run
        wait_until(lambda: viewer.frames, 60, "the first frame")
        results["first_stream_first_frame_s"] = round(viewer.frames[0]["_arrived"] - t0, 2)

        # kill -9 the bridge mid-stream: restarted by supervisord, with a new pid.
        wait_until(lambda: len(viewer.analytics) >= 100, 120, "100 frames")
        latency = sorted(f["_arrived"] - f["produced_at"] for f in viewer.frames if f.get("produced_at"))
        if latency:  # the first 100 frames of the first stream, before any kill
            results["first_stream_latency_p50_s"] = round(latency[len(latency) // 2], 2)
            results["first_stream_latency_p95_s"] = round(latency[int(0.95 * (len(latency) - 1))], 2)
        before = service_pids(demo_dir)
        os.kill(before["redis-consumer"], signal.SIGKILL)
        mark = len(demo.lines)
        demo.wait_for(r"\[stack\] redis-consumer exited \(killed by SIGKILL, rc=-9\), restarting", 30, mark)
        m = demo.wait_for(r"\[stack\] redis-consumer restarted \(pid (\d+), restart 1\)", 30, mark)
        assert int(m.group(1)) != before["redis-consumer"]
        wait_until(lambda: service_pids(demo_dir)["redis-consumer"] == int(m.group(1)), 10, "new bridge pid")
        seen = len(viewer.analytics)
        wait_until(lambda: len(viewer.analytics) >= seen + 50, 120, "frames through the new bridge")

        # kill -9 the Spark application (its driver) mid-stream: restarted, warms up, goes on.
        spark_pid = service_pids(demo_dir)["spark"]
        spark_family = descendants(spark_pid)
        assert len(spark_family) >= 1, "the Spark driver has no JVM child?"
        os.kill(spark_pid, signal.SIGKILL)
        mark = len(demo.lines)
        demo.wait_for(r"\[stack\] spark exited \(killed by SIGKILL, rc=-9\), restarting", 30, mark)
        m = demo.wait_for(r"\[stack\] spark restarted \(pid (\d+), restart 1\)", 30, mark)
        assert int(m.group(1)) != spark_pid
        results["restart_lines"] = [
            line for line in demo.lines if re.search(r"\[stack\] \S+ (exited|restarted)", line)
        ]

        assert viewer.wait(STREAM_TIMEOUT_S), (
            f"no end of stream: {len(viewer.frames)} frames, {viewer.errors}"
        )
        assert not viewer.errors, viewer.errors
        frames = [f["frame_number"] for f in viewer.frames if not f["end_of_stream"]]
        updates = [a["frame_number"] for a in viewer.analytics if not a.get("end_of_stream")]
        assert len(frames) == len(set(frames)), "a frame arrived twice"
        assert frames == sorted(frames), "frames out of order"
        assert viewer.frames[-1]["end_of_stream"]
        assert len(updates) == len(set(updates)), "an analytics update arrived twice"
        # Live: a frame is either delivered or, already older than the latency budget when the
        # processor reached it (the backlog of Spark's restart), dropped and counted; never lost
        # silently. (A frame delivered before the kill and replayed after it may be both.)
        dropped = max((f.get("dropped_frames", 0) for f in viewer.frames), default=0)
        assert set(updates) <= set(range(SAMPLE_FRAMES))
        assert len(updates) + dropped >= SAMPLE_FRAMES, (
            f"{len(updates)} frames delivered + {dropped} dropped < {SAMPLE_FRAMES}"
        )
        results["frames_dropped"] = dropped
        results["frames_shown"] = len(frames)
        results["frames_delivered"] = len(updates)
        final = [a for a in viewer.analytics if a.get("end_of_stream") and a.get("summary")]
        assert final, "no final summary"
        counted = final[-1]["summary"]["total_vehicles_count"]

        def stored():  # noqa: ANN202 - the DAG's cleanup stored the run's totals
            status, body = api.call("GET", f"/api/videos/{video_id}/analytics")
            return body if status == 200 and body.get("total_vehicles_count") is not None else None

        row = wait_until(stored, 120, "the stored analytics", step=1)
        assert row["total_vehicles_count"] == counted
        results["vehicles_counted"] = counted
        # The killed driver's JVM and Python workers went with it (no orphan left running).
        orphans = [pid for pid in spark_family if _alive(pid)]
        assert not orphans, f"processes of the killed Spark driver still run: {orphans}"

        # Ctrl-C: orderly stop, nothing left, ports free, no stack trace.
        sizes = log_sizes(demo_dir)
        mark = len(demo.lines)
        rc, took = demo.interrupt()
        results["first_stop_s"] = round(took, 1)
        assert rc == 0, demo.tail()
        m = demo.wait_for(r"\[stack\] stopped in ([\d.]+) s", 5, mark)
        results["first_stop_reported_s"] = float(m.group(1))
        stop_lines = demo.lines[mark:]
        order = [
            next(i for i, line in enumerate(stop_lines) if line.startswith(f"[stack] stopped {name}"))
            for name in ("airflow", "redis-consumer", "backend", "Redis and PostgreSQL")
        ]
        assert order == sorted(order), stop_lines
        assert not stack_pids(record), f"processes left: {stack_pids(record)}"
        assert not (demo_dir / "stack.pid").exists()
        assert not any(p and _alive(p) for p in service_pids_seen(demo)), "a service pid is alive"
        taken = [name for name, port in ports.items() if not port_is_free(port)]
        assert not taken, f"ports still taken after the stop: {taken}"
        traces = [line for line in demo.lines if STACK_TRACE.search(line)]
        assert not traces, traces
        for name, text in written_since(sizes, demo_dir).items():
            assert not STACK_TRACE.search(text), f"stack trace in {name} during the stop:\n{text[-3000:]}"
        assert not any("left behind" in line or "stack trace" in line for line in stop_lines), stop_lines
    finally:
        demo.kill()
        demo.save()
        (ARTIFACTS / "first-run.logs").mkdir(parents=True, exist_ok=True)
        for p in (demo_dir / "logs").glob("*.log"):
            (ARTIFACTS / "first-run.logs" / p.name).write_bytes(p.read_bytes()[-2_000_000:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def service_pids_seen(demo: Demo) -> list[int]:
    return [int(m.group(1)) for line in demo.lines if (m := re.search(r"\(pid (\d+)", line))]


def test_demo_restarted_keeps_its_ports(demo_dir, results):
    """Stop, start again: every port is the same as in the first run (the backend's above all:
    the README's curl lines and bookmarks go there), although the first run's connections left
    them in TIME_WAIT. Stopped again while the other services are still starting (Spark warming
    up, Airflow importing or migrating): still no stack trace, nothing left behind."""
    first = demo_dir / "stack.env"
    assert first.exists(), "the first run did not get far enough"
    before = read_env(first)
    demo = Demo(demo_dir, "second-run").start()
    try:
        m = demo.wait_for(r"\[stack\] up in ([\d.]+) s", BOOT_TIMEOUT_S)
        results["second_boot_up_s"] = float(m.group(1))
        after = demo.env()
        for key in ("BACKEND_PORT", "REDIS_PORT", "AIRFLOW_PORT", "SPARK_UI_PORT", "DATABASE_URL"):
            assert after[key] == before[key], (key, before[key], after[key])
        for key in ("INTERNAL_TOKEN", "REDIS_PASSWORD", "AIRFLOW_PASSWORD", "RTSP_DEMO_PASSWORD"):
            assert after[key] == before[key], f"{key} not kept in the data dir"  # generated once
        assert int(after["BACKEND_PORT"]) == results.get("backend_port", BASE_PORTS["backend"])
        assert "STACK_PORT_WARNINGS" not in after
        assert not any("WARNING: port" in line for line in demo.lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{after['BACKEND_PORT']}/api/health", timeout=10) as r:
            assert r.status == 200
        record = run_record(demo_dir)
        sizes = log_sizes(demo_dir)
        mark = len(demo.lines)
        rc, took = demo.interrupt()
        results["second_stop_s"] = round(took, 1)
        assert rc == 0, demo.tail()
        assert not stack_pids(record), f"processes left: {stack_pids(record)}"
        assert not [line for line in demo.lines if STACK_TRACE.search(line)]
        stop_lines = demo.lines[mark:]
        assert not any("left behind" in line or "stack trace" in line for line in stop_lines), stop_lines
        for name, text in written_since(sizes, demo_dir).items():
            assert not STACK_TRACE.search(text), f"stack trace in {name} during the stop:\n{text[-3000:]}"
    finally:
        demo.kill()
        demo.save()
