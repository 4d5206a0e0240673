"""A run's marks on this machine: ``DATA_DIR/stack.pid`` (its pid, ``TRAFFIC_STACK_INSTANCE``
and sessions) while it is up, the processes of a run found from /proc, and a previous run that
was not stopped ended before a new one starts on its data dir."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Collection
from pathlib import Path

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
