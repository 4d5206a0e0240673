"""The console of ``make demo``: the useful lines of every service's log, prefixed with its name.

Each service writes its whole output to ``DATA_DIR/logs/<name>.log`` (supervisord). The
console follows those files and shows the lines a user needs (our services' own log lines,
warnings and errors, Airflow's start-up lines) and leaves out the chatter of third-party
libraries (access logs of health checks, Airflow's per-component INFO lines, Spark's JVM
INFO/WARN lines): the full logs stay in the files.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path


class Tail:
    """New lines of a file that keeps growing (and may be rotated: a new inode, or shorter)."""

    def __init__(self, path: Path, from_end: bool = True) -> None:
        self.path = path
        self.inode = None
        self.offset = 0
        self.partial = b""
        if from_end and path.exists():
            st = path.stat()
            self.inode, self.offset = st.st_ino, st.st_size

    def lines(self) -> list[str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        if st.st_ino != self.inode or st.st_size < self.offset:
            self.inode, self.offset, self.partial = st.st_ino, 0, b""
        if st.st_size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset)
        self.offset += len(data)
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in complete]


# A log line's level, in the formats of our services (logging's "%(levelname)s"), Airflow's
# structlog ("[warning  ]") and Spark's log4j ("WARN").
_LEVEL = re.compile(
    r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b|\[(debug|info|warning|error|critical)\s*\]"
)
# Lines of a stack trace (Python's and the JVM's): kept out of the console, which says once
# per trace where the log is.
_TRACE_START = re.compile(
    r"Traceback \(most recent call last\)|^Exception in thread|^[A-Za-z_][\w.$]*(Error|Exception)\b(:|$)"
)
_TRACE_MORE = re.compile(
    r"^(\s|During handling of|The above exception|Caused by:|Traceback |\.\.\. \d+ more)"
    r"|^[A-Za-z_][\w.$]*(Error|Exception|Exit|Interrupt)\b(:|$)"
)


def level_of(line: str) -> str | None:
    m = _LEVEL.search(line)
    if not m:
        return None
    level = (m.group(1) or m.group(2)).upper()
    return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)


def show_backend(line: str) -> bool:
    # Tornado's access log: only failed requests (the health watcher polls every 1-5 s).
    m = re.search(r"tornado\.access\S*:? (\d{3}) ", line) or re.search(
        r"^\S+ \S+ \w+ \S+ (\d{3}) [A-Z]+ ", line
    )
    if m:
        return int(m.group(1)) >= 500
    return level_of(line) != "DEBUG"


_last_totals: dict[str, str] = {}


def show_consumer(line: str) -> bool:
    # The bridge's totals every minute: only when they changed.
    m = re.search(r"\[REDIS-CONSUMER\] totals: (.*)", line)
    if m:
        if _last_totals.get("consumer") == m.group(1):
            return False
        _last_totals["consumer"] = m.group(1)
        return not m.group(1).startswith("0 frames, 0 analytics")
    return level_of(line) != "DEBUG"


def show_spark(line: str) -> bool:
    if "[SPARK-APP]" in line:
        return True
    # The JVM's log4j lines and Python workers' chatter: only errors.
    return level_of(line) in ("ERROR", "CRITICAL")


_AIRFLOW_KEEP = re.compile(
    r"Airflow standalone on|Airflow is ready|Login with username|Shutting down components|"
    r"standalone \| Complete|Database ready|created database"
)


def show_airflow(line: str) -> bool:
    if _AIRFLOW_KEEP.search(line):
        return True
    return level_of(line) in ("ERROR", "CRITICAL")


_CLUSTER_KEEP = re.compile(r"Starting Spark master at|Successfully registered with master|Registering worker")


def show_cluster(line: str) -> bool:
    """The standalone master and workers: that they are up and registered, and errors."""
    return bool(_CLUSTER_KEEP.search(line)) or level_of(line) in ("ERROR", "CRITICAL")


_NGINX_SERIOUS = re.compile(r"\[(emerg|alert|crit)\]")


def show_proxy(line: str) -> bool:
    """The proxy: its own lines and nginx's serious ones (a backend refusing a connection, at start
    or when it died, is said by supervisord's events; nginx tries the next one)."""
    return line.startswith("[proxy]") or bool(_NGINX_SERIOUS.search(line))


FILTERS: dict[str, Callable[[str], bool]] = {
    "backend": show_backend,
    "redis-consumer": show_consumer,
    "spark": show_spark,
    "airflow": show_airflow,
    "spark-master": show_cluster,
    "spark-worker": show_cluster,
    "proxy": show_proxy,
}


def console_filter(name: str) -> Callable[[str], bool]:
    """The filter of a service; a numbered instance (``backend-2``, ``spark-worker-1``) has its
    kind's; a service without one shows every line."""
    kind = re.sub(r"-\d+$", "", name)
    return FILTERS.get(name) or FILTERS.get(kind) or (lambda _line: True)


class Console:
    """Follows the services' logs (and supervisord's, through ``translate``) and prints the
    useful lines. ``verbose``: every line."""

    def __init__(
        self,
        logs: Path,
        names: list[str],
        translate: Callable[[str], str | None],
        verbose: bool = False,
        out=None,  # noqa: ANN001 - a text stream
    ) -> None:
        self.logs, self.names, self.translate, self.verbose = logs, names, translate, verbose
        self.out = out or sys.stdout
        self.lock = threading.Lock()
        self.tails = {name: Tail(logs / f"{name}.log") for name in names}
        self.supervisord = Tail(logs / "supervisord.log")
        self.width = max(len(n) for n in names) if names else 8
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_trace: dict[str, bool] = {}

    def print(self, text: str) -> None:
        with self.lock:
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()

    def poll(self) -> None:
        for line in self.supervisord.lines():
            said = self.translate(line)
            if said:
                self.print(said)
        for name, tail in self.tails.items():
            keep = console_filter(name)
            for line in tail.lines():
                if not line.strip():
                    continue
                if self.verbose or self._wanted(name, line, keep):
                    self.print(f"{name:<{self.width}} | {line}")

    def _wanted(self, name: str, line: str, keep: Callable[[str], bool]) -> bool:
        # A stack trace belongs in the log file; the console says where it is, once.
        if self._in_trace.get(name) and _TRACE_MORE.search(line):
            return False
        if _TRACE_START.search(line):
            self._in_trace[name] = True
            self.print(f"{name:<{self.width}} | (a stack trace: see {display(self.logs)}/{name}.log)")
            return False
        self._in_trace[name] = False
        return keep(line)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - the console never stops the stack
                self.print(f"[stack] console: {exc!r}")

    def start(self) -> Console:
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.poll()


def display(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (``.local/logs``)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)
