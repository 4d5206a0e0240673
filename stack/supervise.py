"""The services of the local run under supervisord (PyPI ``supervisor``): a crashed service is
restarted, with a growing delay while it keeps failing at start, and only Ctrl-C stops the stack.

``stack.run`` writes ``DATA_DIR/supervisord.conf`` from the ``Procfile`` and the table below,
starts ``supervisord`` in a session of its own (a Ctrl-C on the terminal reaches ``stack.run``
only, which then stops the services in order through supervisord's XML-RPC interface), and
turns supervisord's log into the ``[stack]`` lines of the console (``Events``).

While the stack runs: ``.venv/bin/supervisorctl -c .local/supervisord.conf status`` (or
``restart spark``, ``stop airflow``, ``tail -f backend``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast


@dataclass(frozen=True)
class Supervision:
    """How supervisord runs one service. ``priority``: start order (lower first); the stop
    order is ``STOP_ORDER``. ``startsecs``: a service that exits sooner failed to start and
    is retried after 1 s, 2 s, 3 s, ... (supervisord's backoff); one that ran longer is
    restarted at once. ``stopsignal`` goes to the service's whole process group
    (``stopasgroup``: its children too, e.g. Airflow's components) or to the service's own
    process only; whatever is left of the group after ``stopwaitsecs`` is killed."""

    priority: int
    startsecs: int
    stopsignal: str = "TERM"
    stopwaitsecs: int = 20
    stopasgroup: bool = True


SUPERVISION: dict[str, Supervision] = {
    "backend": Supervision(priority=10, startsecs=3),
    "redis-consumer": Supervision(priority=20, startsecs=3),
    # SIGTERM to the driver only: stack/spark_service.py stops the streaming query and the
    # session, the JVM and its Python workers follow. Signalling the whole group would kill the
    # Python reader of the Redis source under the running query first: the JVM then logs the
    # query's failure with a Java stack trace.
    "spark": Supervision(priority=30, startsecs=10, stopwaitsecs=30, stopasgroup=False),
    # SIGTERM to stack/airflow_service.py only, which stops `airflow standalone` the way that
    # works at the stage it is at.
    "airflow": Supervision(priority=40, startsecs=10, stopwaitsecs=30, stopasgroup=False),
    # the demo camera's RTSP server (the transcode of its clip on the first start takes a few s)
    "rtsp-camera": Supervision(priority=5, startsecs=2),
    # several backends (stack/proxy.py): nginx in front of them; TERM is its fast shutdown (QUIT
    # would wait for every WebSocket to end)
    "proxy": Supervision(priority=15, startsecs=1, stopwaitsecs=5),
}
DEFAULT_SUPERVISION = Supervision(priority=50, startsecs=5)

# Workers first (each step waits for its services to be gone), the backend last; Redis and
# PostgreSQL after all of them (stack.run).
# A name stands for itself and its numbered instances ("backend-2", "spark-worker-1").
STOP_ORDER: list[list[str]] = [
    ["airflow", "spark"],
    ["redis-consumer", "spark-worker"],
    ["spark-master", "proxy"],
    ["backend"],
    ["rtsp-camera"],
]


def _listed(name: str, entry: str) -> bool:
    return name == entry or (name.startswith(entry + "-") and name[len(entry) + 1 :].isdigit())


def supervision(name: str) -> Supervision:
    """The service's supervision (a numbered instance has its kind's)."""
    for entry, how in SUPERVISION.items():
        if _listed(name, entry):
            return how
    return DEFAULT_SUPERVISION


# A service that gave up (FATAL: failed at start too often in a row) is tried again this often.
FATAL_RETRY_S = 60.0
START_RETRIES = 10
# After a service stopped, the rest of its process group gets this long to end by itself.
GROUP_GRACE_S = 10.0


def stop_order(names: list[str]) -> list[list[str]]:
    """``STOP_ORDER`` restricted to ``names``; services it does not list go first."""

    def listed(name: str) -> bool:
        return any(_listed(name, entry) for step in STOP_ORDER for entry in step)

    steps = [[n for n in names if not listed(n)]] + [
        [n for entry in step for n in names if _listed(n, entry)] for step in STOP_ORDER
    ]
    return [step for step in steps if step]


def socket_path(data_dir: Path) -> Path:
    """The control socket: in the data dir unless its path is too long for AF_UNIX."""
    path = data_dir / "supervisor.sock"
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"traffic-stack-{digest}.sock"


def _ini(value: str) -> str:
    return value.replace("%", "%%")


def write_config(data_dir: Path, commands: dict[str, str], cwd: Path) -> Path:
    """``DATA_DIR/supervisord.conf`` for ``commands`` (name -> shell command, the Procfile)."""
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sock = socket_path(data_dir)
    bash = shutil.which("bash") or "/bin/bash"
    lines = [
        "; Written by stack.run at every start (edits are lost): the services of `make demo`.",
        "[supervisord]",
        "nodaemon=true",
        "silent=true",
        f"logfile={_ini(str(logs / 'supervisord.log'))}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        "loglevel=info",
        f"pidfile={_ini(str(data_dir / 'supervisord.pid'))}",
        f"childlogdir={_ini(str(logs))}",
        f"directory={_ini(str(cwd))}",
        "strip_ansi=true",
        "",
        "[unix_http_server]",
        f"file={_ini(str(sock))}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_ini(str(sock))}",
        "",
    ]
    for name, command in commands.items():
        s = supervision(name)
        lines += [
            f"[program:{name}]",
            f"command={_ini(bash)} -c {_ini(shlex.quote('exec ' + command))}",
            f"directory={_ini(str(cwd))}",
            f"priority={s.priority}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={s.startsecs}",
            f"startretries={START_RETRIES}",
            f"stopsignal={s.stopsignal}",
            f"stopwaitsecs={s.stopwaitsecs}",
            f"stopasgroup={str(s.stopasgroup).lower()}",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_ini(str(logs / f'{name}.log'))}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
            "",
        ]
    path = data_dir / "supervisord.conf"
    path.write_text("\n".join(lines))
    return path


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__()
        self.path, self.timeout = str(path), timeout

    def make_connection(self, host):  # noqa: ANN001, ANN201
        import http.client
        import socket

        path, timeout = self.path, self.timeout

        class Connection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)

        return Connection("localhost", timeout=timeout)


def rpc(data_dir: Path, timeout: float = 10.0) -> xmlrpc.client.ServerProxy:
    """supervisord's XML-RPC interface (``.supervisor.getAllProcessInfo()``, ...)."""
    return xmlrpc.client.ServerProxy(
        "http://localhost", transport=_UnixTransport(socket_path(data_dir), timeout)
    )


def process_infos(server: xmlrpc.client.ServerProxy) -> list[dict[str, Any]]:
    """``supervisor.getAllProcessInfo()``: name, statename, pid, ... of each service."""
    return cast("list[dict[str, Any]]", server.supervisor.getAllProcessInfo())


def service_pids(data_dir: Path) -> dict[str, int]:
    """name -> pid of each running service (0: not running), as supervisord knows them."""
    return {p["name"]: int(p["pid"]) for p in process_infos(rpc(data_dir))}


class Supervisord:
    """One supervisord for the stack's services."""

    def __init__(self, data_dir: Path, commands: dict[str, str], env: dict[str, str], cwd: Path) -> None:
        self.data_dir, self.commands, self.env, self.cwd = data_dir, commands, env, cwd
        self.proc: subprocess.Popen | None = None
        self.leftovers: dict[str, list[str]] = {}  # name -> processes its stop had to kill

    def start(self, timeout_s: float = 30.0) -> Supervisord:
        conf = write_config(self.data_dir, self.commands, self.cwd)
        sock = socket_path(self.data_dir)
        sock.unlink(missing_ok=True)
        out = open(self.data_dir / "logs" / "supervisord.out", "ab")  # noqa: SIM115 - lives with it
        self.proc = proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            cwd=self.cwd,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches stack.run only, which stops us in order
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                rpc(self.data_dir).supervisor.getState()
                return self
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.data_dir / "logs" / "supervisord.out").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"supervisord did not start:\n{tail}") from None
                time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def info(self) -> dict[str, dict]:
        return {p["name"]: p for p in process_infos(rpc(self.data_dir))}

    def start_service(self, name: str) -> None:
        rpc(self.data_dir).supervisor.startProcess(name, False)

    def stop_services(self, names: list[str], timeout_s: float = 60.0) -> dict[str, float]:
        """Stop ``names`` together and wait until all are gone, with the processes they
        started (their process groups: given ``GROUP_GRACE_S`` to follow, e.g. Spark's JVM
        after its driver, then killed and listed in ``leftovers``); name -> seconds it took."""
        server = rpc(self.data_dir, timeout=timeout_s)
        started = time.monotonic()
        groups = {p["name"]: int(p["pid"]) for p in process_infos(server) if p["pid"]}
        for name in names:
            try:
                server.supervisor.stopProcess(name, False)
            except xmlrpc.client.Fault:  # NOT_RUNNING: nothing to stop
                pass
        took: dict[str, float] = {}
        stopped_at: dict[str, float] = {}
        deadline = started + timeout_s
        while len(took) < len(names) and time.monotonic() < deadline:
            states = {p["name"]: p["statename"] for p in process_infos(server)}
            for name in names:
                if name in took or states.get(name) not in ("STOPPED", "EXITED", "FATAL", "BACKOFF"):
                    continue
                now = stopped_at.setdefault(name, time.monotonic())
                pgid = groups.get(name)
                if pgid and group_alive(pgid):
                    if time.monotonic() - now < GROUP_GRACE_S:
                        continue
                    self.leftovers[name] = self.end_groups([pgid])
                took[name] = time.monotonic() - started
            time.sleep(0.1)
        return took

    def end_groups(self, pids: list[int]) -> list[str]:
        """SIGKILL what is left of these process groups; the command lines it found."""
        found = []
        for pgid in pids:
            for pid in group_members(pgid):
                found.append(f"{pid} {cmdline(pid)}")
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return found

    def shutdown(self, timeout_s: float = 30.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            rpc(self.data_dir).supervisor.shutdown()
        except (OSError, xmlrpc.client.Error):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill_all(self) -> None:
        """Second Ctrl-C: SIGKILL every service's process group and supervisord."""
        try:
            for p in self.info().values():
                if p["pid"]:
                    try:
                        os.killpg(p["pid"], signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        except (OSError, xmlrpc.client.Error):
            pass
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(stat.parent.name))
    return out


def group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return "?"


_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<msg>.*)$")
_SPAWNED = re.compile(r"^spawned: '(?P<name>[^']+)' with pid (?P<pid>\d+)")
_SUCCESS = re.compile(r"^success: (?P<name>\S+) entered RUNNING state")
_EXITED = re.compile(r"^exited: (?P<name>\S+) \((?P<why>.*); (?P<expected>not expected|expected)\)")
_GAVE_UP = re.compile(r"^gave up: (?P<name>\S+) entered FATAL state")
_STOPPED = re.compile(r"^stopped: (?P<name>\S+) \((?P<why>.*)\)")
_SPAWNERR = re.compile(r"^spawnerr: (?P<msg>.*)")


def _why(why: str) -> str:
    """supervisord's ``terminated by SIGKILL`` / ``exit status 1`` as the console says it."""
    m = re.match(r"terminated by (SIG\w+)", why)
    if m:
        number = getattr(signal, m.group(1), None)
        return f"killed by {m.group(1)}, rc=-{int(number)}" if number else why
    m = re.match(r"exit status (\d+)", why)
    return f"rc={m.group(1)}" if m else why


class Events:
    """Turns supervisord's log lines into the ``[stack]`` lines of the console, and counts
    each service's restarts (``restarts``) and pids (``pids``)."""

    def __init__(self, logs: str = ".local/logs") -> None:
        self.logs = logs  # as the console names the logs folder
        self.restarts: dict[str, int] = {}
        self.pids: dict[str, list[int]] = {}
        self.running: dict[str, bool] = {}
        self.failed_starts: dict[str, int] = {}
        self.stopping = False

    def translate(self, line: str) -> str | None:
        m = _LINE.match(line.strip())
        if not m:
            return None
        msg = m.group("msg")
        if (s := _SPAWNED.match(msg)) is not None:
            name, pid = s.group("name"), int(s.group("pid"))
            first = name not in self.pids
            self.pids.setdefault(name, []).append(pid)
            self.running[name] = False
            if first:
                return f"[stack] {name} started (pid {pid})"
            return f"[stack] {name} restarted (pid {pid}, restart {self.restarts.get(name, 0)})"
        if (s := _SUCCESS.match(msg)) is not None:
            self.running[s.group("name")] = True
            self.failed_starts[s.group("name")] = 0
            return None
        if (s := _EXITED.match(msg)) is not None:
            name, why = s.group("name"), _why(s.group("why"))
            if self.stopping:
                return f"[stack] {name} exited ({why})"
            n = self.restarts[name] = self.restarts.get(name, 0) + 1
            if self.running.get(name, False):
                when = "restarting now"
            else:  # failed at start: supervisord waits 1 s, 2 s, ... before the next try
                k = self.failed_starts[name] = self.failed_starts.get(name, 0) + 1
                when = f"failed at start, restarting in {k} s"
            return f"[stack] {name} exited ({why}), {when} (restart {n}); its log: {self.logs}/{name}.log"
        if (s := _GAVE_UP.match(msg)) is not None:
            name = s.group("name")
            return (
                f"[stack] WARNING: {name} failed at start {START_RETRIES} times in a row; trying again "
                f"every {FATAL_RETRY_S:.0f} s. See its log: {self.logs}/{name}.log"
            )
        if (s := _STOPPED.match(msg)) is not None:
            return None  # stack.run reports the stop of each step with its time
        if (s := _SPAWNERR.match(msg)) is not None:
            return f"[stack] could not start a service: {s.group('msg')}"
        # (not the notes that it runs as root, and that its socket has no password: 0700)
        if m.group("level") in ("ERRO", "CRIT") and not re.search(r"running as root|authentication", msg):
            return f"[stack] supervisord: {msg}"
        return None
