"""``airflow standalone`` (``airflow/run_standalone.sh``) as a service of the local run, with a
clean stop on SIGTERM.

    python -m stack.airflow_service

``airflow standalone`` stops well on SIGINT once it runs its components (it sends each one
SIGTERM and waits for them), but not before: while it imports Airflow or migrates its database,
SIGINT ends it with a KeyboardInterrupt traceback, and SIGTERM (no handler) ends it at once,
leaving the components it already started behind. Signalling the whole group is no better: each
component then gets two signals (SIGINT, then the standalone's SIGTERM), and on the second the
scheduler exits without ending its LocalExecutor workers, which keep the standalone's output
pipe open and it waits for them. Here SIGTERM becomes SIGINT for the standalone once its
components run, and SIGTERM for every process below us (still starting: none handles it yet,
each ends without a word) before that.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(stat.parent.name))
    return out


def _descendants(pid: int) -> list[int]:
    children, out, todo = _children(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _is_standalone(pid: int) -> bool:
    try:
        return b"standalone" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def main() -> int:
    # run_standalone.sh ends with `exec python airflow/standalone.py` (`airflow standalone`
    # without the triggerer): same pid once it got there.
    child = subprocess.Popen(["bash", str(REPO / "airflow" / "run_standalone.sh")], cwd=REPO)
    stopping: list[bool] = []

    def on_term(_signum: int, _frame: object) -> None:
        if stopping:
            return
        stopping.append(True)
        if _is_standalone(child.pid) and _children().get(child.pid):
            child.send_signal(signal.SIGINT)  # its components run: it stops them and waits
            return
        for pid in _descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    rc = child.wait()
    return 0 if stopping else rc


if __name__ == "__main__":
    sys.exit(main())
