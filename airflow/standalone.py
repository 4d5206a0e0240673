"""``airflow standalone`` without the triggerer, unless ``AIRFLOW_TRIGGERER=true``.

    python airflow/standalone.py      (airflow/run_standalone.sh execs it)

The triggerer only runs deferred tasks (deferrable operators, sensors in deferrable mode); the
pipeline's DAG has none, so on an idle stack it only polls its database and heartbeats: about
1 % of a core on the 2-core machine (``make bench-e2e``'s idle line), taken from detection. This
is ``airflow standalone`` as the CLI runs it (its api-server, scheduler and dag-processor, same
output, same stop on SIGINT), with the triggerer left out and "ready" no longer waiting for it.
Set ``AIRFLOW_TRIGGERER=true`` for a DAG that defers. Before it starts: Airflow sized for
MAX_STREAMS streams at once and the stream tasks' pool created (``traffic_pipeline.capacity``).
"""

from __future__ import annotations

import os
import sys
import threading

TRUE = ("1", "true", "yes", "on")


class _Absent(threading.Thread):
    """Stands in for the triggerer's ``SubCommand``: starts nothing, stops at once."""

    def __init__(self, parent: object, name: str, command: list[str], env: dict[str, str]) -> None:
        super().__init__(name=name, daemon=True)
        self.process = None

    def run(self) -> None:
        pass

    def stop(self) -> None:
        pass


def without_triggerer() -> None:
    from airflow.cli.commands import standalone_command as sc
    from airflow.jobs.dag_processor_job_runner import DagProcessorJobRunner
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    sub_command = sc.SubCommand

    def make(parent: object, name: str, command: list[str], env: dict[str, str]) -> threading.Thread:
        return (_Absent if name == "triggerer" else sub_command)(parent, name, command, env)

    def is_ready(self: sc.StandaloneCommand) -> bool:
        return bool(self.job_running(SchedulerJobRunner) and self.job_running(DagProcessorJobRunner))

    sc.SubCommand = make  # type: ignore[assignment,misc]
    sc.StandaloneCommand.is_ready = is_ready  # type: ignore[method-assign]


def with_stream_capacity() -> None:
    """Airflow sized for MAX_STREAMS streams at once (``traffic_pipeline.capacity``): its settings
    in the environment before Airflow reads its configuration (the components inherit them), and
    the stream tasks' pool created once the database is migrated, before the scheduler starts."""
    from traffic_pipeline import capacity

    streams = capacity.max_streams()
    capacity.apply(os.environ, streams)

    from airflow.cli.commands import standalone_command as sc

    initialize = sc.StandaloneCommand.initialize_database

    def initialize_database(self: sc.StandaloneCommand) -> None:
        initialize(self)
        capacity.ensure_pool(streams)
        self.print_output(
            "standalone",
            f"Pool {capacity.STREAM_POOL}: {capacity.pool_slots(streams)} slots, parallelism "
            f"{os.environ['AIRFLOW__CORE__PARALLELISM']}, max_active_runs_per_dag "
            f"{os.environ['AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG']} (MAX_STREAMS={streams})",
        )

    sc.StandaloneCommand.initialize_database = initialize_database  # type: ignore[method-assign]


def main() -> None:
    # Run as a script, this file's folder (the repository's airflow/) would come first on the path.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    with_stream_capacity()
    if os.environ.get("AIRFLOW_TRIGGERER", "false").strip().lower() not in TRUE:
        without_triggerer()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "standalone"]
    airflow_main()


if __name__ == "__main__":
    main()
