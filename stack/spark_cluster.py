"""The Spark standalone cluster of the local run (``make demo CLUSTER=N``, the cluster tests): a
master and N workers on loopback, each ``spark.streaming.standalone`` (the daemon compose runs
too) under supervisord. The streaming application (``stack/spark_service.py``) is then submitted
to ``SPARK_MASTER`` from this machine (standalone has no cluster deploy mode for Python)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stack.infra import Infra

DAEMON = ".venv/bin/python -m spark.streaming.standalone"


def cluster_commands(infra: Infra) -> dict[str, str]:
    """``spark-master`` and ``spark-worker-1`` .. ``spark-worker-N`` when ``infra.spark_workers``;
    each worker with its own work folder under ``SPARK_WORKER_DIR_BASE``."""
    if not infra.spark_workers:
        return {}
    commands = {"spark-master": f"{DAEMON} master"}
    for n in range(1, infra.spark_workers + 1):
        commands[f"spark-worker-{n}"] = (
            f'env SPARK_WORKER_DIR="$SPARK_WORKER_DIR_BASE/worker-{n}" {DAEMON} worker'
        )
    return commands
