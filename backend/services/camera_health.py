"""A camera's health (``schemas.CameraHealth``) from its ``videos`` row and the progress hash its
producer writes while it streams (``StreamProgress``: ``camera_state``, ``last_frame_at``,
``input_fps``, ``reconnects``, ``camera_error``, ``camera_dropped``).

One computation for every route that shows a camera (``health_of``) and for ``/metrics``:

- ``idle``: the camera is not streaming: its status is not processing/stopping, or there is no
  progress hash of a running run (none, or the producer ended: produced, stopped, cleaned up);
- otherwise the producer's ``camera_state`` (``connecting`` until it wrote one); a producer that
  failed as a whole is ``failed``;
- a ``live`` camera whose last frame is older than ``STALE_AFTER_S`` is reported
  ``reconnecting``: the producer may be dead and cannot say so itself.

The error text is the producer's, passed through ``redact_text`` with the camera URL's secrets
anyway: a producer that forgot to redact must not leak them through the API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from backend.db import crud
from backend.db.models import Video
from backend.db.session import Database
from backend.schemas import CameraHealth
from backend.services.formatting import utc_iso
from backend.services.metrics import CameraSample
from backend.services.redact import redact_text, url_secrets
from contracts import streams
from contracts.messages import (
    STREAMING_VIDEO_STATUSES,
    CameraState,
    StreamProgress,
    StreamState,
)

log = logging.getLogger("backend.camera_health")

STALE_AFTER_S = 5.0  # a live camera without a frame for longer is reported reconnecting
MAX_ERROR_CHARS = 1000
# The producer's states once it stopped reading the camera (the run ends or ended).
_ENDED = frozenset({StreamState.PRODUCED, StreamState.STOPPED, StreamState.DONE})

IDLE = CameraHealth(
    state="idle",
    last_frame_at=None,
    last_frame_age_s=None,
    input_fps=None,
    reconnects=0,
    last_error=None,
    dropped_frames=0,
)


def is_camera(video: Video) -> bool:
    return video.source_kind == "camera"


def streaming(video: Video) -> bool:
    """Whether the row says the camera streams (its progress hash is worth reading)."""
    return is_camera(video) and video.status in STREAMING_VIDEO_STATUSES


def compute(video: Video, progress: StreamProgress | None, now: float) -> CameraHealth:
    """The health of camera ``video`` given its progress hash (None: none) at wall clock ``now``."""
    if not streaming(video) or progress is None or progress.state in _ENDED:
        return IDLE
    if progress.state is None and not progress.model_fields_set:
        return IDLE  # an empty hash: nothing of a run
    state: str = (progress.camera_state or CameraState.CONNECTING).value
    error = progress.camera_error
    if progress.state == StreamState.FAILED:  # the producer gave up: it reads nothing any more
        state = CameraState.FAILED.value
        error = error or progress.producer_error
    age: float | None = None
    if progress.last_frame_at is not None:
        age = round(max(0.0, now - progress.last_frame_at), 3)
    if state == CameraState.LIVE:
        seen = progress.last_frame_at if progress.last_frame_at is not None else progress.updated_at
        if seen is None or now - seen > STALE_AFTER_S:
            state = CameraState.RECONNECTING.value
    return CameraHealth(
        state=state,
        last_frame_at=utc_iso(progress.last_frame_at),
        last_frame_age_s=age,
        input_fps=round(progress.input_fps, 2) if progress.input_fps is not None else None,
        reconnects=max(0, progress.reconnects or 0),
        last_error=_redacted(error, video.source_url),
        dropped_frames=max(0, progress.camera_dropped or 0),
    )


def _redacted(error: str | None, url: str | None) -> str | None:
    if not error:
        return None
    text = redact_text(error, *(url_secrets(url) if url else ()))
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


async def read_progress(redis: aioredis.Redis, video_ids: Sequence[int]) -> list[StreamProgress | None]:
    """The progress hashes of ``video_ids`` (None where there is none), in one round trip."""
    if not video_ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for video_id in video_ids:
        pipe.hgetall(streams.progress_key(video_id))
    replies = await pipe.execute()
    return [StreamProgress.from_hash(raw) if raw else None for raw in replies]


async def health_of(
    redis: aioredis.Redis, videos: Iterable[Video], now: float | None = None
) -> dict[int, CameraHealth | None]:
    """The health of each camera among ``videos`` by id (files are left out). Only streaming
    cameras need Redis; when it cannot be read their health is None (unknown), logged."""
    cameras = [v for v in videos if is_camera(v)]
    out: dict[int, CameraHealth | None] = {v.id: IDLE for v in cameras if not streaming(v)}
    live = [v for v in cameras if streaming(v)]
    if not live:
        return out
    try:
        hashes = await read_progress(redis, [v.id for v in live])
    except (RedisError, OSError) as exc:
        log.warning("camera health: the progress of cameras %s cannot be read: %r", [v.id for v in live], exc)
        out.update({v.id: None for v in live})
        return out
    when = time.time() if now is None else now
    for video, progress in zip(live, hashes, strict=True):
        out[video.id] = compute(video, progress, when)
    return out


async def camera_samples(*, db: Database, redis: aioredis.Redis) -> list[CameraSample]:
    """Every camera and its health now, for a /metrics scrape (none when the database cannot be
    read: logged, the scrape still answers)."""
    try:
        cameras = await db.run(lambda s: crud.list_cameras(session=s))
    except SQLAlchemyError as exc:
        log.warning("camera metrics: the cameras cannot be read: %r", exc)
        return []
    health = await health_of(redis, cameras)
    return [CameraSample(video_id=v.id, name=v.name, health=health.get(v.id)) for v in cameras]
