"""Names shared by every process that touches Redis (DESIGN.md, Redis): streams, consumer
groups, keys and their TTLs, and the two decoding helpers of Redis replies (``text``,
``parse_stream_id``). Names only: no Redis import here.

The per-video progress hash (``progress_key``) is typed once, with its writers, as
``contracts.messages.StreamProgress``.
"""

from __future__ import annotations

from typing import Any

VIDEO_FRAMES = "video-frames"
PROCESSED_FRAMES = "processed-frames"
FRAME_PROCESSOR_GROUP = "frame-processor-group"
REDIS_CONSUMER_GROUP = "redis-consumer-group"

SUBSCRIPTION_TTL_S = 300

# Several backend instances behind one address (issue 18). Each backend registers here: ZSET
# member = its instance name (BACKEND_INSTANCE), score = the unix time its registration lapses
# (refreshed every BACKEND_HEARTBEAT_S, BACKEND_INSTANCE_TTL_S ahead), and its ingest address
# (BACKEND_INGEST_URL) in the hash; a clean stop removes both. The bridge delivers to the live
# instances (score > now) that have subscribers, at their own address.
BACKEND_INSTANCES_KEY = "backend:instances"
BACKEND_INSTANCE_URL_KEY = "backend:instance-url"
BACKEND_HEARTBEAT_S = 1.0
BACKEND_INSTANCE_TTL_S = 5.0
ANALYTICS_TTL_S = 3600
PROGRESS_TTL_S = 24 * 3600
# The Airflow DAG that runs one stream (its definition: airflow/dags/video_streaming_pipeline.py,
# kept free of imports beyond Airflow; airflow/tests/test_dag.py checks that the two agree).
DAG_ID = "video_streaming_pipeline"
# The stop flag (``stop_key``), raised by the backend (a stop) and by the monitor (a failed run):
# the producer sees it at its next frame and ``cleanup`` deletes it; the TTL only bounds a flag
# that no clean-up removed (a start clears it anyway).
STOP_FLAG_TTL_S = 3600

# Default of a knob; the Airflow tasks' ``PipelineSettings`` read the environment and override it.
# realtime=false: the producer waits while this many frames of its video are unprocessed (two
# Spark micro-batches' worth: one being processed, the next one ready).
MAX_BACKLOG_FRAMES = 256

# The Spark application, once its query runs, keeps this key (wall clock) with a short TTL:
# present = a processor is up (the backend's /api/health, the Airflow monitor and the test
# harness read it). The one name of the processor heartbeat.
PROCESSOR_HEARTBEAT_KEY = "spark:processor:heartbeat"
PROCESSOR_HEARTBEAT_TTL_S = 30

# The idempotent Spark sink stores the id of the last micro-batch it wrote here, in the same
# MULTI as the batch's entries: a replayed batch (id <= stored) is skipped.
SINK_LAST_BATCH_KEY = "spark:processed-frames:last-batch"

# Admission control of the Spark source: each live video's stateful stage keeps here (hash field
# = video id, value "rows wall-clock") how many of its entries one micro-batch should read at
# most; the source reads at most the sum of the fresh ones (spark/streaming/redis_source.py).
READ_LIMIT_KEY = "spark:video-frames:read-limit"
READ_LIMIT_FRESH_S = 10.0
# The stage's reading ahead (spark/streaming/stages.py ``_pull_ahead``): per video id, the last
# stream id it read ahead; the source hands Spark those entries without their JPEG (the stage
# skips them; replayed after a crash they are late and dropped), so no frame crosses the JVM twice.
PULLED_KEY = "spark:video-frames:pulled"


def text(value: Any) -> str:
    """A Redis reply value (bytes with a binary-safe client, str with ``decode_responses``) as
    text; anything else (an int of a pipeline reply) through ``str``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode()
    return value if isinstance(value, str) else str(value)


def parse_stream_id(stream_id: Any) -> tuple[int, int]:
    """A stream entry id ``"ms-seq"`` (bytes or str; ``"ms"`` alone means seq 0) -> (ms, seq),
    for ordering and comparing ids."""
    ms, _, seq = text(stream_id).partition("-")
    return int(ms), int(seq or 0)


def frame_subscription_key(video_id: int) -> str:
    """ZSET of the backend instances where someone watches ``processed_frame_{id}``: member = the
    instance name, score = the unix time it lapses (SUBSCRIPTION_TTL_S ahead, refreshed while
    subscribed; the key itself expires as well). One instance's last viewer leaving removes that
    instance only."""
    return f"websocket:subscription:video:{video_id}"


def analytics_subscription_key(video_id: int) -> str:
    """As ``frame_subscription_key``, for ``analytics_metrics_{id}``."""
    return f"websocket:analytics:video:{video_id}"


def analytics_key(video_id: int) -> str:
    """Live analytics snapshot, JSON ``Summary`` (TTL ANALYTICS_TTL_S)."""
    return f"analytics:video:{video_id}"


def stop_key(video_id: int) -> str:
    """ "1" asks the producer to stop streaming this video (set by the backend's stop)."""
    return f"stream:video:{video_id}:stop"


def progress_key(video_id: int) -> str:
    """Hash of the video's streaming progress: ``schemas.StreamProgress`` (TTL PROGRESS_TTL_S)."""
    return f"stream:video:{video_id}:progress"


def violations_key(video_id: int) -> str:
    """List of JSON ``Violation`` (RPUSH by the Spark sink; drained into PostgreSQL while the
    stream runs by the monitor, at its end by cleanup)."""
    return f"violations:video:{video_id}"


def passages_key(video_id: int) -> str:
    """List of JSON ``Passage``: the vehicles whose track ended (RPUSH by the Spark sink; drained
    into ``vehicle_passages`` as ``violations_key``)."""
    return f"passages:video:{video_id}"
