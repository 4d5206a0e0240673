"""Names shared by every process that touches Redis (DESIGN.md, Redis): streams, consumer
groups, keys and their TTLs, the per-video progress hash. Names only: no Redis import here.

Progress hash ``stream:video:{id}:progress`` (field -> writer):
    state            producer: "producing", "produced" (EOS written), "stopped"; cleanup: "done"
    frames_total     producer: frame count of the video file
    produced         producer: frames XADDed so far
    produce_done     producer: "1" once the end-of-stream entry is written
    processed        Spark sink: frames of this video written to processed-frames (skipped ones too)
    processed_last_frame  Spark sink: frame_number of the last one
    skipped          Spark sink: live frames not detected (drawn with predicted tracks)
    detected         Spark sink: frames detected
    stride           Spark sink: live detection stride now (every stride-th frame detected)
    frame_errors     Spark sink: frames that failed (their entry carries ``error``)
    eos_processed    Spark sink: "1" once the video's end of stream went through (summary written)
    summary          Spark sink: JSON ``Summary``, latest (final after eos_processed)
    fatal_error      Spark app: the processor cannot run at all (e.g. the model is missing)
    updated_at       every writer: wall clock seconds
"""

from __future__ import annotations

import os

VIDEO_FRAMES = "video-frames"
PROCESSED_FRAMES = "processed-frames"
FRAME_PROCESSOR_GROUP = "frame-processor-group"
REDIS_CONSUMER_GROUP = "redis-consumer-group"

SUBSCRIPTION_TTL_S = 300
ANALYTICS_TTL_S = 3600
PROGRESS_TTL_S = 24 * 3600

# A live (realtime) stream whose newest frame is older than this raises its detection stride
# (see spark/streaming/stages.py). realtime=false processes every frame.
MAX_LIVE_DELAY_S = float(os.environ.get("MAX_LIVE_DELAY_S", "2.0"))
# realtime=false: the producer waits while this many frames of its video are unprocessed (two
# Spark micro-batches' worth: one being processed, the next one ready).
MAX_BACKLOG_FRAMES = int(os.environ.get("MAX_BACKLOG_FRAMES", "256"))

# The Spark application, once its query runs, keeps this key (wall clock) with a short TTL:
# present = a processor is up (the backend's /api/health and the test harness read it).
PROCESSOR_HEARTBEAT_KEY = "spark:processor:heartbeat"
PROCESSOR_HEARTBEAT_TTL_S = 30

# The idempotent Spark sink stores the id of the last micro-batch it wrote here, in the same
# MULTI as the batch's entries: a replayed batch (id <= stored) is skipped.
SINK_LAST_BATCH_KEY = "spark:processed-frames:last-batch"


def frame_subscription_key(video_id: int) -> str:
    """ "true" while someone watches ``processed_frame_{id}`` (TTL SUBSCRIPTION_TTL_S)."""
    return f"websocket:subscription:video:{video_id}"


def analytics_subscription_key(video_id: int) -> str:
    """ "true" while someone watches ``analytics_metrics_{id}`` (TTL SUBSCRIPTION_TTL_S)."""
    return f"websocket:analytics:video:{video_id}"


def analytics_key(video_id: int) -> str:
    """Live analytics snapshot, JSON ``Summary`` (TTL ANALYTICS_TTL_S)."""
    return f"analytics:video:{video_id}"


def stop_key(video_id: int) -> str:
    """ "1" asks the producer to stop streaming this video (set by the backend's stop)."""
    return f"stream:video:{video_id}:stop"


def progress_key(video_id: int) -> str:
    """Hash of the video's streaming progress (fields in the module docstring)."""
    return f"stream:video:{video_id}:progress"


def violations_key(video_id: int) -> str:
    """List of JSON ``Violation`` (RPUSH by the Spark sink, drained into PostgreSQL by cleanup)."""
    return f"violations:video:{video_id}"
