"""Stream start/stop through Airflow (DESIGN.md, Data flow 3-4).

Start: one at a time per video: a short lock in Redis (``SET NX PX``, released with a token check)
is held around the active-runs check, the trigger and the status update, so that concurrent
starts of one video create exactly one DAG run (the others get 409 ``already_streaming``).
Refuse while a run of the video is queued or running (409); clear the video's stop flag,
progress hash, violations list and live analytics snapshot in Redis so that a rerun starts clean;
trigger DAG ``video_streaming_pipeline`` with conf ``{"video_id", "realtime"}``; then, for a file,
forget the stored results of a previous run (analytics, violations and their snapshot files,
passages), and mark the video ``processing``. A camera starts the same way, always live
(``realtime`` false is refused, 400 ``invalid_realtime``: a camera cannot be read faster than it
sends), and keeps its stored results: its passages and violations accumulate over its runs (their
``run_id`` tells the runs apart). Stop: raise the stop flag the producer polls (``cleanup`` still
runs) and mark the video ``stopping``; 409 when nothing runs. Airflow failures are answered as
``errors.airflow_failure`` says (503 unreachable, 502 unexpected answer) and change nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.orm import Session

from backend.db import crud
from backend.db.models import Video
from backend.db.session import Database
from backend.services.airflow_client import AirflowClient, AirflowError, AirflowUnavailable
from backend.services.errors import ServiceError, airflow_failure
from backend.services.storage import remove_snapshots
from contracts import streams
from contracts.messages import STREAMING_VIDEO_STATUSES, VideoStatus

log = logging.getLogger("backend.streaming")

# How long a start lock outlives a backend that died holding it; a start releases it at once
# (it takes at most Airflow's timeout x retries for each of its two requests)
START_LOCK_TTL_S = 120
# Delete the key only while it still holds our token (an expired lock another start has taken
# since is not ours to release)
RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def start_lock_key(video_id: int) -> str:
    return f"stream:video:{video_id}:starting"


@asynccontextmanager
async def start_lock(redis: aioredis.Redis, video_id: int) -> AsyncIterator[None]:
    """Hold the video's start lock, else 409 ``already_streaming`` (another start is at it)."""
    key, token = start_lock_key(video_id), uuid.uuid4().hex
    if not await redis.set(key, token, nx=True, px=START_LOCK_TTL_S * 1000):
        raise ServiceError(409, "already_streaming", f"video {video_id} is being started by another request")
    try:
        yield
    finally:
        try:
            await redis.eval(RELEASE_LOCK, 1, key, token)
        except Exception as exc:  # it expires on its own
            log.warning("video %d: start lock not released: %r", video_id, exc)


def stream_keys(video_id: int) -> list[str]:
    """The video's per-run Redis keys: stop flag, progress, live violations, live analytics."""
    return [
        streams.stop_key(video_id),
        streams.progress_key(video_id),
        streams.violations_key(video_id),
        streams.analytics_key(video_id),
    ]


async def clear_keys(redis: aioredis.Redis, video_id: int) -> None:
    await redis.delete(*stream_keys(video_id))


async def active_runs(*, airflow: AirflowClient, video_id: int) -> list[dict[str, Any]]:
    """The video's queued or running DAG runs; Airflow failures as API errors."""
    try:
        return await airflow.active_runs(video_id)
    except (AirflowUnavailable, AirflowError) as exc:
        raise airflow_failure(exc) from exc


async def start(
    *,
    db: Database,
    redis: aioredis.Redis,
    airflow: AirflowClient,
    storage: Path,
    video: Video,
    realtime: bool,
) -> dict[str, Any]:
    """Trigger the video's stream; returns Airflow's DAG run."""
    camera = video.source_kind == "camera"
    if camera and not realtime:
        raise ServiceError(
            400,
            "invalid_realtime",
            f"video {video.id} is a camera: it streams live only (realtime true), it cannot be read "
            "faster than it sends",
        )

    def started(session: Session) -> list[str]:
        # a camera's results accumulate over its runs; a file's rerun replaces them
        snapshots = [] if camera else crud.clear_results(session=session, video_id=video.id)
        crud.set_status(session=session, video_id=video.id, status=VideoStatus.PROCESSING)
        return snapshots

    async with start_lock(redis, video.id):
        if await active_runs(airflow=airflow, video_id=video.id):
            raise ServiceError(409, "already_streaming", f"video {video.id} is already being streamed")
        await clear_keys(redis, video.id)
        try:
            run = await airflow.trigger(video.id, {"realtime": realtime})
        except (AirflowUnavailable, AirflowError) as exc:
            raise airflow_failure(exc) from exc
        snapshots = await db.run(started)
    if not camera:  # (a camera's violation snapshots stay with its violations)
        await db.run_file(remove_snapshots, video.id, snapshots, storage)
    log.info("video %d: triggered run %s", video.id, run.get("dag_run_id"))
    return run


async def stop(
    *, db: Database, redis: aioredis.Redis, airflow: AirflowClient, video: Video
) -> list[str | None]:
    """Raise the video's stop flag; returns the ids of the runs asked to stop."""
    runs = await active_runs(airflow=airflow, video_id=video.id)
    if not runs:
        raise ServiceError(409, "not_streaming", f"video {video.id} is not being streamed")
    await redis.set(streams.stop_key(video.id), "1", ex=streams.STOP_FLAG_TTL_S)
    await db.run(lambda s: crud.set_status(session=s, video_id=video.id, status=VideoStatus.STOPPING))
    return [r.get("dag_run_id") for r in runs]


async def ensure_not_streaming(*, airflow: AirflowClient, video: Video) -> None:
    """409 ``video_streaming`` when the video streams: its status is processing/stopping and
    Airflow has an active run of it, or cannot be asked (then it may well still run: deleting it
    under a running pipeline is refused rather than guessed)."""
    if video.status not in STREAMING_VIDEO_STATUSES:
        return
    try:
        runs = await airflow.active_runs(video.id)
    except (AirflowUnavailable, AirflowError) as exc:
        raise ServiceError(
            409,
            "video_streaming",
            f"video {video.id} is {video.status} and Airflow cannot confirm that it ended ({exc}); "
            "stop it or try again later",
        ) from exc
    if runs:
        raise ServiceError(
            409, "video_streaming", f"video {video.id} is being streamed: stop it before deleting it"
        )
