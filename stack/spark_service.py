"""The Spark application (``spark/streaming/app.py``) as a service of the local run, with a clean
stop on SIGTERM.

    python -m stack.spark_service

Without this, a stop ends the application in the middle of what it does: SIGTERM ends the
Python driver at once (its JVM then fails the running query), a signal to the whole process
group kills the Python reader of the Redis source under the running query, and SIGINT makes
PySpark cancel jobs from inside the blocked ``awaitTermination`` call (a re-entrant Py4J call).
Each of them leaves a stack trace in the log. Here SIGTERM stops the streaming query from a
thread of its own (``StreamingQuery.stop()``: the current micro-batch is interrupted, its
offsets are not committed, the next start replays it idempotently), then the SparkSession,
and the process exits with 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("traffic_streaming.service")
STOP_GRACE_S = 20.0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _source_runners() -> list[int]:
    """The Python processes that read the Redis source for the JVM (PySpark's
    ``python_streaming_source_runner``, one per query)."""
    found = []
    for pid in _descendants(os.getpid()):
        try:
            if b"python_streaming_source_runner" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _stop() -> None:
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        session = SparkSession._instantiatedSession
        queries = session.streams.active if session is not None and SparkContext._active_spark_context else []
        if not queries:
            # Still starting (the JVM coming up, the warm-up job loading the models): nothing of
            # the stream's state is open yet. Stopping the context under the warm-up's tasks would
            # make the JVM log errors; ending the JVM and its workers at once says nothing.
            _signal(_descendants(os.getpid()), signal.SIGKILL)
            log.info("[SPARK-APP] stopped while starting")
            return
        # The source's reader process only ends on end of file: when the query's stop closes its
        # socket it prints an EOFError/BrokenPipeError traceback, unless the JVM's SIGTERM came
        # first (a race). Frozen during the stop and killed after it, it says nothing.
        runners = _source_runners()
        _signal(runners, signal.SIGSTOP)
        try:
            for query in queries:
                query.stop()
        finally:
            _signal(runners, signal.SIGKILL)
        log.info("[SPARK-APP] stopped the streaming query")
        session.stop()
    except Exception as exc:  # noqa: BLE001 - we exit anyway
        log.warning("[SPARK-APP] stop: %s", exc)
    finally:
        logging.shutdown()
        os._exit(0)


def main() -> int:
    sys.path.insert(0, str(REPO))
    from spark.streaming import app

    stopping = threading.Event()

    def on_term(_signum: int, _frame: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info("[SPARK-APP] SIGTERM: stopping")
        threading.Thread(target=_stop, name="stop", daemon=True).start()
        # Whatever happens, gone before supervisord's SIGKILL.
        timer = threading.Timer(STOP_GRACE_S, lambda: os._exit(0))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_term)
    try:
        rc = app.main()
    except BaseException:
        if not stopping.is_set():
            raise
        rc = 0  # the stop cancelled what the main thread was doing: not an error
    if stopping.is_set():
        threading.Event().wait(STOP_GRACE_S)  # _stop ends the process once Spark has stopped
    return rc


if __name__ == "__main__":
    sys.exit(main())
