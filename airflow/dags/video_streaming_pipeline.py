"""Streams one stored video or a camera through Redis and the Spark application (DESIGN.md,
Data flow 4). A camera's run lasts until stopped: no task has an execution timeout.

Triggered by the backend's ``POST /api/videos/{id}/stream/start`` with conf
``{"video_id": N, "realtime": true}``. ``produce_frames`` and ``process_frames`` run side by
side (processing starts with the first frame); ``cleanup`` runs after both, also when one
failed, and ``fail_run`` then marks the run failed (a stop is not a failure).

Thin on purpose: the work lives in ``traffic_pipeline`` (airflow/traffic_pipeline, tested).
Settings: ``traffic_pipeline.config.PipelineSettings``, read from the environment once at each
task's start (DATABASE_URL, REDIS_HOST, REDIS_PORT, SPEED_LIMIT_KMH, VIDEO_STORAGE_PATH,
PIPELINE_STALL_TIMEOUT_S, PIPELINE_PROCESSOR_WAIT_S, PIPELINE_JPEG_QUALITY, MAX_BACKLOG_FRAMES).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

# traffic_pipeline.capacity.STREAM_POOL (created by the Airflow service before its scheduler
# starts; a task of a pool that does not exist is never scheduled)
STREAM_POOL = "stream_producers"


def _conf() -> tuple[int, bool, str, object]:
    """(video_id, realtime, run_id, task logger) of the running task."""
    import logging

    context = get_current_context()
    params = context["params"]
    video_id = params.get("video_id")
    if video_id is None:
        raise ValueError('conf must name the video: {"video_id": N}')
    return (
        int(video_id),
        bool(params.get("realtime", True)),
        context["run_id"],
        logging.getLogger("traffic_pipeline"),
    )


@dag(
    dag_id="video_streaming_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Many videos and cameras stream at once (docs/scaling-streams.md). max_active_runs is left
    # to [core] max_active_runs_per_dag, = MAX_STREAMS (traffic_pipeline.capacity, set by the
    # Airflow service): a stream beyond waits as a queued run. Each run holds produce_frames and
    # process_frames for as long as it streams (a camera's: until stopped), both in the pool
    # STREAM_POOL (2 x MAX_STREAMS slots), so that they never take the executor slots the
    # clean-ups need. max_active_tasks counts per run in Airflow 3: a run has four tasks.
    max_active_tasks=4,
    params={
        "video_id": Param(None, type=["null", "integer"], description="videos.id to stream"),
        "realtime": Param(True, type="boolean", description="pace at the video's fps (false: all frames)"),
    },
    tags=["traffic", "streaming"],
    doc_md=__doc__,
)
def video_streaming_pipeline():
    # produce/process are not retried: a retry would stream the video a second time.
    @task(retries=0, pool=STREAM_POOL)
    def produce_frames() -> dict:
        from traffic_pipeline.config import PipelineSettings
        from traffic_pipeline.producer import produce_frames as produce

        video_id, realtime, run_id, log = _conf()
        settings = PipelineSettings()
        return produce(
            video_id, redis=settings.redis(), settings=settings, realtime=realtime, run_id=run_id, log=log
        )

    @task(retries=0, pool=STREAM_POOL)
    def process_frames() -> dict:
        from traffic_pipeline.config import PipelineSettings
        from traffic_pipeline.db import load_video
        from traffic_pipeline.monitor import watch_processing
        from traffic_pipeline.results import Drainer

        from contracts import streams

        video_id, _, run_id, log = _conf()
        settings = PipelineSettings()
        redis = settings.redis()
        camera = load_video(video_id, db_url=settings.DATABASE_URL).is_camera
        return watch_processing(
            video_id,
            redis=redis,
            settings=settings,
            drain=Drainer.for_run(video_id, run_id, redis=redis, settings=settings, log=log),
            tolerate_stalls=camera,  # a camera's run outlives a processor restart
            log_every_s=60.0 if camera else 10.0,  # a camera's task log for days stays small
            run_id=run_id,
            processor_heartbeat_key=streams.PROCESSOR_HEARTBEAT_KEY,
            log=log,
        )

    @task(trigger_rule="all_done", retries=2, retry_delay=timedelta(seconds=5))
    def cleanup(produced: dict | None, processed: dict | None) -> dict:
        from traffic_pipeline.cleanup import cleanup as run_cleanup
        from traffic_pipeline.config import PipelineSettings

        video_id, _, _, log = _conf()
        settings = PipelineSettings()
        # A failed upstream task leaves no return value (None here).
        return run_cleanup(
            video_id,
            redis=settings.redis(),
            settings=settings,
            tasks_ok=produced is not None and processed is not None,
            log=log,
        )

    @task(trigger_rule="one_failed", retries=0)
    def fail_run() -> None:
        """The run's state follows its leaves; cleanup succeeds after a failure, so this one
        (skipped when nothing failed) marks the run failed."""
        raise RuntimeError("produce_frames or process_frames failed: see their logs")

    produced, processed = produce_frames(), process_frames()
    cleanup(produced, processed)
    [produced, processed] >> fail_run()


video_streaming_pipeline()
