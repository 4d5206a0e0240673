"""The Airflow tasks' settings (DESIGN.md, Configuration): one pydantic-settings class on the
shared ``CommonSettings`` (DATABASE_URL, REDIS_HOST, REDIS_PORT, VIDEO_STORAGE_PATH,
SPEED_LIMIT_KMH ... with the same defaults as every service), read once at a task's entry and
passed down."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field

from contracts import streams
from contracts.settings import CommonSettings


class PipelineSettings(CommonSettings):
    """The tasks' own names: ``PIPELINE_*`` and the producer's backpressure bound."""

    # process_frames: no progress for this long while work is pending is a stall
    PIPELINE_STALL_TIMEOUT_S: float = Field(default=60.0, gt=0)
    # produce_frames: JPEG quality of the frames (at 85 compression artefacts split one track of
    # the truth clip in two)
    PIPELINE_JPEG_QUALITY: int = Field(default=90, ge=1, le=100)
    # process_frames: how long to wait for a Spark application that is not up yet
    PIPELINE_PROCESSOR_WAIT_S: float = Field(default=300.0, ge=0)
    # produce_frames with realtime=false: wait while this many frames of the video are unprocessed
    MAX_BACKLOG_FRAMES: int = Field(default=streams.MAX_BACKLOG_FRAMES, ge=1)

    # a camera's producer: no frame for this long (or a failed read) -> reconnect
    CAMERA_STALL_S: float = Field(default=5.0, gt=0)
    # reconnection backoff: first wait, doubled up to the max (a permanent refusal waits the max)
    CAMERA_BACKOFF_S: float = Field(default=0.5, gt=0)
    CAMERA_BACKOFF_MAX_S: float = Field(default=5.0, gt=0)
    # hold back while more than this many seconds of the camera's frames wait for the processor
    CAMERA_MAX_BACKLOG_S: float = Field(default=4.0, gt=0)
    # decoded frames kept while held back; the oldest is dropped beyond
    CAMERA_BUFFER_FRAMES: int = Field(default=4, ge=1)
    # process_frames: how often the passages and violations are stored while the stream runs
    RESULTS_DRAIN_S: float = Field(default=1.0, gt=0)
    # streams Airflow runs at once (more wait as queued runs): sizes its parallelism, the DAG's
    # max_active_runs and the pool of the stream tasks (traffic_pipeline.capacity, applied by the
    # Airflow service at its start)
    MAX_STREAMS: int = Field(default=8, ge=1)

    def redis(self) -> Any:
        """A binary-safe client (no response decoding: frames are raw JPEG)."""
        import redis

        return redis.Redis(
            host=self.REDIS_HOST,
            port=self.REDIS_PORT,
            password=self.REDIS_PASSWORD or None,
            socket_timeout=30,
            health_check_interval=30,
        )


def default_log(log: logging.Logger | None, name: str) -> logging.Logger:
    return log if log is not None else logging.getLogger(name)
