"""Helpers of the end-to-end tests and ``make bench-e2e``: the real stack on free ports, the
stack's REST and Airflow clients (``stack.rest_client``, ``stack.airflow_api``) on it, and a
WebSocket viewer that records what a browser would receive."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from contracts import streams
from contracts.assets import REPO_ROOT as REPO
from stack import airflow_api
from stack.infra import Infra
from stack.processes import Stack, stack_commands
from stack.rest_client import Api, processor_state, wait_http


def start_stack(
    data_dir: Path,
    names: list[str] | None = None,
    cores: int | None = None,
    *,
    spark_workers: int = 0,
    backends: int = 1,
) -> Stack:
    """The stack on free ports, once the backend answers, Airflow has the DAG and the processor
    is warm. ``cores``: every service (PostgreSQL, Redis, the Procfile's processes and all their
    children) confined to the first ``cores`` CPUs (the affinity of the starting thread, which
    the children inherit; this process gets its own back once they are started).
    ``spark_workers``: the application on a Spark standalone master with this many workers;
    ``backends``: this many backend instances behind the proxy (``stack.infra.Infra``)."""
    own = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, set(sorted(own)[:cores]) or own)
    try:
        infra = Infra(
            data_dir,
            pg_port=0,
            redis_port=0,
            backend_port=0,
            airflow_port=0,
            rtsp_port=0,
            spark_master_port=0,
            spark_workers=spark_workers,
            backends=backends,
        ).start()
        # make demo's own camera is not part of the tests' stack (they serve their own clips)
        names = names or [n for n in stack_commands(infra) if n != "rtsp-camera"]
        stack = Stack(infra, names).start_all()
    finally:
        os.sched_setaffinity(0, own)
    try:
        wait_http(f"{infra.env['BACKEND_URL']}/api/health", 90, stack.procs["backend"])
        if "airflow" in stack.procs:
            wait_airflow_dag(stack, timeout_s=300)
        if "spark" in stack.procs:
            wait_processor(stack, timeout_s=300)
    except Exception:
        for name in stack.procs:
            print(f"---- {name} ----\n{stack.log_tail(name)}")
        stack.stop_all()
        infra.stop()
        raise
    return stack


def stop_stack(stack: Stack) -> None:
    stack.stop_all()
    stack.infra.stop()


@dataclass
class Viewer:
    """A WebSocket client subscribed to both channels of one video, recording every message
    with its arrival time, until the end of stream has come on both channels (they travel on
    separate connections, so either may be first), or 5 s after it came on one, or ``stop()``.

    ``reconnect`` (opt-in, as the page does): when the connection closes before that, connect
    and subscribe again (every 0.2 s, for ``reconnect_timeout_s`` at most); ``disconnects`` has
    the wall-clock time of each loss, ``reconnects`` the seconds from each loss to both channels
    subscribed again. Without it a lost connection ends the viewer ("connection closed")."""

    ws_url: str
    video_id: int
    token: str  # an API token (the live stream needs a login)
    origin: str = "http://localhost:4200"
    frames: list[dict] = field(default_factory=list)
    analytics: list[dict] = field(default_factory=list)
    acks: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    reconnect: bool = False
    reconnect_timeout_s: float = 30.0
    disconnects: list[float] = field(default_factory=list)
    reconnects: list[float] = field(default_factory=list)

    def start(self) -> Viewer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self.ready.wait(30), f"viewer not subscribed: {self.errors}"
        return self

    async def _connect(self):  # noqa: ANN202 - tornado's WebSocketClientConnection
        return await connect_viewer(self.ws_url, self.origin, self.token, self.video_id)

    async def _run(self) -> None:
        eos: dict[str, float] = {}
        lost: float | None = None  # when the connection was lost (reconnect)
        try:
            while True:
                try:
                    conn = await self._connect()
                except Exception:
                    if lost is None or self.done.is_set() or time.time() - lost > self.reconnect_timeout_s:
                        raise
                    await asyncio.sleep(0.2)
                    continue
                finished = await self._read(conn, eos, lost)
                conn.close()
                if finished:
                    break
                lost = time.time()
                self.disconnects.append(lost)
            self.done.set()
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))
            self.ready.set()
            self.done.set()

    async def _read(self, conn, eos: dict[str, float], lost: float | None) -> bool:  # noqa: ANN001
        """Record what arrives on ``conn``; True when the viewer is finished, False when the
        connection was lost and ``reconnect`` is on."""
        acks = 0
        while not self.done.is_set():
            if len(eos) == 2 or (eos and time.time() - min(eos.values()) > 5):
                return True
            try:
                raw = await asyncio.wait_for(conn.read_message(), 0.5)
            except TimeoutError:
                continue
            if raw is None:
                if self.reconnect:
                    return False
                self.errors.append("connection closed")
                return True
            msg, now = json.loads(raw), time.time()
            if msg["type"] == "subscription_ack":
                self.acks.append(msg)
                acks += 1
                if acks == 2:
                    if lost is None:
                        self.ready.set()
                    else:
                        self.reconnects.append(now - lost)
            elif msg["type"] in ("frame", "analytics"):
                (self.frames if msg["type"] == "frame" else self.analytics).append(
                    {**msg["data"], "_arrived": now}
                )
                if msg["data"].get("end_of_stream"):
                    eos.setdefault(msg["type"], now)
            else:
                self.errors.append(str(msg))
        return True

    def wait(self, timeout_s: float) -> bool:
        return self.done.wait(timeout_s)

    def stop(self) -> None:
        self.done.set()


async def connect_viewer(ws_url: str, origin: str, token: str, video_id: int):  # noqa: ANN201
    """A client WebSocket (tornado's) subscribed to the video's frame and analytics channels, as
    the page opens it (its Origin, a bearer token)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(
        HTTPRequest(ws_url, headers={"Origin": origin, "Authorization": f"Bearer {token}"}),
        max_message_size=64 * 1024 * 1024,
    )
    for channel in (f"processed_frame_{video_id}", f"analytics_metrics_{video_id}"):
        await conn.write_message(json.dumps({"action": "subscribe", "channel": channel}))
    return conn


def decode_data_url(url: str) -> bytes:
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix), url[:40]
    return base64.b64decode(url[len(prefix) :])


def airflow_get(stack: Stack, path: str) -> dict:
    """GET on the stack's Airflow REST API (``stack.airflow_api``, the stack's own client)."""
    return airflow_api.airflow_get(stack.infra.env, path, timeout=10)


def wait_processor(stack: Stack, timeout_s: float) -> None:
    """Until the backend's health says the Spark application runs its query (its heartbeat)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.procs["spark"].poll() is not None:
            raise RuntimeError(f"spark exited:\n{stack.log_tail('spark')}")
        if processor_state(stack.infra.env["BACKEND_URL"]) == "ready":
            return
        time.sleep(1)
    raise TimeoutError(f"the Spark application was not ready within {timeout_s} s")


def wait_airflow_dag(stack: Stack, timeout_s: float, dag_id: str = streams.DAG_ID) -> None:
    """Until Airflow answers and has parsed the DAG (triggering before that is refused)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if stack.procs["airflow"].poll() is not None:
            raise RuntimeError(f"airflow exited:\n{stack.log_tail('airflow')}")
        try:
            airflow_get(stack, f"/api/v2/dags/{dag_id}")
            return
        except Exception as exc:  # not up yet / not parsed yet
            last = exc
        time.sleep(2)
    raise TimeoutError(f"Airflow has not parsed {dag_id} within {timeout_s} s: {last}")


def wait_dag_run(stack: Stack, dag_run_id: str, timeout_s: float, dag_id: str = streams.DAG_ID) -> str:
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        state = airflow_api.dag_run_state(stack.infra.env, dag_run_id, dag_id, timeout=10)
        if state in ("success", "failed"):
            return state
        time.sleep(2)
    return f"timeout ({state})"


# ---- CPU accounting (the stack's idle cost) ---------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
AIRFLOW_COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    ticks: int  # utime + stime: its own CPU (all threads)
    child_ticks: int  # cutime + cstime: its children that ended and were waited for
    cmdline: str = ""
    start: int = 0  # start time (ticks after boot): tells a reused pid

    @property
    def total(self) -> int:
        return self.ticks + self.child_ticks


def parse_stat(pid: int, text: str, cmdline: str = "") -> ProcStat:
    """One ``/proc/<pid>/stat`` line (fields after the command name, which may hold spaces)."""
    rest = text.rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17, starttime 22
    return ProcStat(
        pid,
        int(rest[1]),
        int(rest[11]) + int(rest[12]),
        int(rest[13]) + int(rest[14]),
        cmdline,
        int(rest[19]),
    )


def proc_table(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    table = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            pid = int(stat.parent.name)
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            table[pid] = parse_stat(pid, stat.read_text(), cmdline.strip())
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    return table


def _children(table: dict[int, ProcStat]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for st in table.values():
        children.setdefault(st.ppid, []).append(st.pid)
    return children


def descendants(table: dict[int, ProcStat], root: int) -> list[int]:
    children, out, todo = _children(table), [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree(table: dict[int, ProcStat], root: int, exclude: Collection[int] = ()) -> dict[int, ProcStat]:
    """``root`` and every live process below it, the subtrees rooted at ``exclude`` left out."""
    children, out, todo = _children(table), {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in exclude:
            out[pid] = table[pid]
            todo.extend(children.get(pid, []))
    return out


def window_ticks(before: dict[int, ProcStat], after: dict[int, ProcStat]) -> int:
    """CPU ticks a process tree burnt between two snapshots of it (pid -> ProcStat): what each
    process added (one born since: all of it), its waited-for children included. A process that
    ended meanwhile shows up in its parent's children time with its whole life: the part before
    the first snapshot is taken off again. One reaped by nobody (its parent ignores SIGCHLD, as
    PySpark's daemon does) leaves no trace: its last moments are missed, not its whole life
    subtracted."""
    same = {pid for pid, st in after.items() if pid in before and before[pid].start == st.start}
    total = sum(st.total - (before[pid].total if pid in same else 0) for pid, st in after.items())
    absorbed = {
        pid: after[pid].child_ticks - before[pid].child_ticks for pid in same
    }  # children's time that arrived in each survivor
    for pid, st in sorted(before.items()):
        if pid in same:
            continue
        parent = st.ppid
        while parent in before and parent not in same:  # the nearest ancestor still there
            parent = before[parent].ppid
        if absorbed.get(parent, 0) >= st.total:
            absorbed[parent] -= st.total
            total -= st.total
    return max(total, 0)


def airflow_component(cmdline: str) -> str | None:
    """``scheduler`` for ``.../airflow scheduler`` (a component that ``airflow standalone`` runs)."""
    words = cmdline.split()
    for i, word in enumerate(words[:-1]):
        # the api-server renames itself "airflow api_server -- host:... port:..."
        name = words[i + 1].replace("_", "-")
        if word.endswith("airflow") and name in AIRFLOW_COMPONENTS:
            return name
    return None


Roots = dict[str, tuple[int, frozenset[int]]]


def service_roots(stack: Stack, table: dict[int, ProcStat]) -> Roots:
    """label -> (root pid, subtrees left out) for every service of ``stack``; Airflow split into
    its components (each with its children: the scheduler's task processes, ...) and the rest,
    ``airflow (standalone)`` (our wrapper, ``airflow standalone`` itself)."""
    roots: Roots = {}
    for label, server in (("postgres", "pg"), ("redis", "redis")):
        proc = getattr(getattr(stack.infra, server, None), "proc", None)
        if proc is not None:
            roots[label] = (proc.pid, frozenset())
    for name, proc in stack.procs.items():
        if name != "airflow":
            roots[name] = (proc.pid, frozenset())
            continue
        components = {}
        for pid in descendants(table, proc.pid):
            comp = airflow_component(table[pid].cmdline)
            parent = table.get(table[pid].ppid)
            if comp and not (parent and airflow_component(parent.cmdline)):
                components[pid] = comp
        roots["airflow (standalone)"] = (proc.pid, frozenset(components))
        for pid, comp in components.items():
            roots[f"airflow {comp}"] = (pid, frozenset())
    return roots


Snapshot = tuple[float, dict[str, dict[int, ProcStat]]]


def cpu_snapshot(stack: Stack, roots: Roots | None = None) -> tuple[Snapshot, Roots]:
    """((monotonic time, label -> its processes), the roots used)."""
    table = proc_table()
    roots = roots or service_roots(stack, table)
    return (time.monotonic(), {label: tree(table, pid, ex) for label, (pid, ex) in roots.items()}), roots


def cpu_share(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """% of one core per label between two snapshots, and ``total``."""
    (t0, a), (t1, b) = before, after
    span = max(t1 - t0, 1e-9)
    out = {
        label: 100.0 * window_ticks(a.get(label, {}), procs) / CLK_TCK / span for label, procs in b.items()
    }
    out["total"] = sum(out.values())
    return out


def measure_idle(stack: Stack, seconds: float = 45.0, settle_s: float = 5.0) -> dict[str, float]:
    """% of one core each service of the idle stack burns over ``seconds`` (after ``settle_s``)."""
    time.sleep(settle_s)
    before, roots = cpu_snapshot(stack)
    time.sleep(seconds)
    after, _ = cpu_snapshot(stack, roots)
    return cpu_share(before, after)


def format_idle(share: dict[str, float]) -> str:
    parts = [f"{k} {v:.1f}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]) if k != "total"]
    return f"{share['total']:.1f}% of one core: " + ", ".join(parts)


__all__ = ["REPO", "Api", "Viewer", "start_stack", "stop_stack", "decode_data_url", "wait_dag_run"]
