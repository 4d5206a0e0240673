"""How many streams Airflow runs at once, and the Airflow settings that follow from it.

Each stream (a video or a camera) is one run of ``video_streaming_pipeline`` that holds two
long-running tasks for as long as it streams (a camera's: until stopped): ``produce_frames`` and
``process_frames``. Both take a slot of the pool ``STREAM_POOL``; ``cleanup`` and ``fail_run``
(short) run in ``default_pool``. From ``MAX_STREAMS`` (``PipelineSettings``, default 8):

- ``[core] max_active_runs_per_dag`` = MAX_STREAMS (the DAG takes its ``max_active_runs`` from
  it): a stream beyond waits as a *queued* run, whole (never a producer without its watcher), and
  starts as soon as one ends;
- the pool ``stream_producers`` = 2 x MAX_STREAMS slots: the stream tasks never take more of the
  executor than that, whatever else runs;
- ``[core] parallelism`` = 3 x MAX_STREAMS: the pool's slots plus MAX_STREAMS for the clean-ups
  (each stores a stream's results: they must never wait behind streams that run for days) and
  anything else. On the LocalExecutor this is also the number of worker processes it forks.
- ``[celery] worker_concurrency`` (CeleryExecutor only): the same 3 x MAX_STREAMS, MAX_STREAMS
  being then what one worker machine takes.

An ``AIRFLOW__*`` variable already in the environment wins over the value derived here.

    python -m traffic_pipeline.capacity env          the derived settings, NAME=value lines
    python -m traffic_pipeline.capacity pool         create / resize the pool (a migrated DB)
    python -m traffic_pipeline.capacity exec CMD...  CMD with the derived settings (e.g. a
                                                     Celery worker or a scheduler of its own)

``airflow/standalone.py`` (the local run and the Airflow image) applies the settings before
Airflow reads its configuration and creates the pool right after the database is migrated,
before the scheduler starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

STREAM_POOL = "stream_producers"
# produce_frames and process_frames: the tasks of a run that last as long as its stream
LONG_TASKS_PER_STREAM = 2
# parallelism = (LONG_TASKS_PER_STREAM + 1) x MAX_STREAMS: one more slot a stream for its clean-up
SLOTS_PER_STREAM = LONG_TASKS_PER_STREAM + 1


def pool_slots(max_streams: int) -> int:
    return LONG_TASKS_PER_STREAM * max_streams


def airflow_settings(max_streams: int) -> dict[str, str]:
    """Airflow's configuration (``AIRFLOW__SECTION__KEY``) for ``max_streams`` streams at once."""
    if max_streams < 1:
        raise ValueError(f"MAX_STREAMS must be >= 1, not {max_streams}")
    slots = str(SLOTS_PER_STREAM * max_streams)
    return {
        "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": str(max_streams),
        "AIRFLOW__CORE__PARALLELISM": slots,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": slots,
    }


def max_streams() -> int:
    """``MAX_STREAMS`` from the environment (and ``.env``), as every task setting is read."""
    from traffic_pipeline.config import PipelineSettings

    return PipelineSettings().MAX_STREAMS


def apply(environ: MutableMapping[str, str], streams: int) -> dict[str, str]:
    """Set the derived settings in ``environ`` where it has none; the values in effect."""
    for name, value in airflow_settings(streams).items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in airflow_settings(streams)}


def ensure_pool(streams: int) -> None:
    """Create ``STREAM_POOL`` or set its slots (Airflow imported: its database is migrated). A task
    of a pool that does not exist is never scheduled, so this runs before the scheduler starts."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        Pool.create_or_update_pool(
            STREAM_POOL,
            slots=pool_slots(streams),
            description=f"produce_frames + process_frames of up to {streams} streams (MAX_STREAMS)",
            include_deferred=False,
            session=session,
        )


USAGE = "python -m traffic_pipeline.capacity env | pool | exec CMD [ARG...]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    streams = max_streams()
    if args[:1] == ["env"]:
        for name, value in apply(dict(os.environ), streams).items():
            print(f"{name}={value}")
        return 0
    if args[:1] == ["pool"]:
        apply(os.environ, streams)
        ensure_pool(streams)
        print(f"pool {STREAM_POOL}: {pool_slots(streams)} slots (MAX_STREAMS={streams})")
        return 0
    if args[:1] == ["exec"] and len(args) > 1:
        apply(os.environ, streams)
        os.execvp(args[1], args[1:])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
