"""The services of a run: the ``Procfile``'s commands (and the scaled-out ones), and ``Stack``,
which runs each of them on its own, without supervisord, for the end-to-end tests (each one
killable and restartable; stopped in ``make demo``'s order)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from contracts.assets import REPO_ROOT as REPO
from stack.infra import Infra


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
