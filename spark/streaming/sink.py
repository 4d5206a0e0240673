"""The idempotent ``foreachBatch`` sink: one micro-batch's results -> Redis in ONE MULTI/EXEC.

In the transaction: XADD each result to ``processed-frames`` (per video in stream order; not
the live frames the stage already published, ``published``, nor the dropped ones), the
progress hash fields the Spark side owns (``StreamProgress``, writer ``processor``), RPUSH of
new violations, the live analytics snapshot, and ``SINK_LAST_BATCH_KEY = batch_id``. The key is
WATCHed and read first: a batch whose id is not above the stored one was already written (a
replay after a crash) and is skipped, so a restart never duplicates an entry. No Spark import
here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.messages import ProcessedFrame, ProgressWriter, StreamProgress, Summary, write_progress
from contracts.streams import (
    ANALYTICS_TTL_S,
    PROCESSED_FRAMES,
    SINK_LAST_BATCH_KEY,
    analytics_key,
    parse_stream_id,
    passages_key,
    progress_key,
    violations_key,
)

from .stages import DROPPED, EOS, ERROR, FATAL, OK, SKIPPED

log = logging.getLogger("traffic_streaming.sink")


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return bytes(value)


def write_batch(client: Any, rows: list[dict], batch_id: int, now: Callable[[], float] = time.time) -> bool:
    """Write one micro-batch; False when it was already written (batch id not above the stored
    one). ``rows`` are dicts of the stateful stage's OUTPUT_SCHEMA."""
    import redis

    rows = sorted(rows, key=lambda r: (int(r["video_id"]), parse_stream_id(r["stream_id"])))
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(SINK_LAST_BATCH_KEY)
                last = pipe.get(SINK_LAST_BATCH_KEY)
                if last is not None and int(last) >= batch_id:
                    pipe.unwatch()
                    log.warning(
                        "[SPARK-APP] batch %s already written (last %s): skipped", batch_id, int(last)
                    )
                    return False
                pipe.multi()
                _queue_batch(pipe, rows, now())
                pipe.set(SINK_LAST_BATCH_KEY, batch_id)
                pipe.execute()
                return True
            except redis.WatchError:  # another writer moved the key: check again
                continue


@dataclass
class _VideoBatch:
    """What one micro-batch did for one video: the progress hash fields of the processor."""

    processed: int = 0
    detected: int = 0
    skipped: int = 0
    dropped: int = 0
    errors: int = 0
    stride: int | None = None
    detect_hz: float | None = None
    degraded: bool | None = None
    last: int | None = None
    eos: bool = False
    summary: Summary | None = None
    fatal: str | None = None


def _queue_batch(pipe: Any, rows: list[dict], stamp: float) -> None:
    per_video: dict[int, _VideoBatch] = {}
    for row in rows:
        video_id = int(row["video_id"])
        pf = ProcessedFrame.model_validate_json(row["message"])
        pf.processed_frame = _bytes(row.get("processed_frame"))
        status = row["status"]
        # A live frame published by the stage itself is not written again; a dropped one never.
        if status != DROPPED and not row.get("published"):
            pipe.xadd(PROCESSED_FRAMES, pf.to_fields())
        # Continuous results, stamped with the run (a camera's track ids start again with each
        # run); the Airflow monitor drains both lists into PostgreSQL while the stream runs.
        for violation in pf.new_violations:
            pipe.rpush(
                violations_key(video_id), violation.model_copy(update={"run_id": pf.run_id}).model_dump_json()
            )
        for passage in pf.passages:
            pipe.rpush(
                passages_key(video_id), passage.model_copy(update={"run_id": pf.run_id}).model_dump_json()
            )
        agg = per_video.setdefault(video_id, _VideoBatch())
        if status != EOS:
            agg.processed += 1
            agg.last = int(row["frame_number"])
        if status == SKIPPED:
            agg.skipped += 1
        if status == OK:
            agg.detected += 1
        if status == DROPPED:
            agg.dropped += 1
        if status in (OK, SKIPPED, DROPPED):
            agg.stride = pf.detect_stride
            agg.detect_hz = pf.detect_hz
            agg.degraded = pf.degraded
        if status in (ERROR, FATAL):
            agg.errors += 1
        if status == FATAL:
            agg.fatal = pf.error or "fatal error"
        if row.get("summary"):
            try:
                agg.summary = Summary.model_validate_json(row["summary"])
            except ValueError as exc:  # never fail the query for it: the next batch has one again
                log.error("[SPARK-APP] unreadable summary of video %s skipped: %s", video_id, exc)
        if row.get("end_of_stream"):
            agg.eos = True
            if pf.summary is not None:
                agg.summary = pf.summary
    for video_id, agg in per_video.items():
        key = progress_key(video_id)
        counts = StreamProgress.increments(
            ProgressWriter.PROCESSOR,
            processed=agg.processed,
            skipped=agg.skipped,
            detected=agg.detected,
            dropped=agg.dropped,
            frame_errors=agg.errors,
        )
        for name, amount in counts.items():
            pipe.hincrby(key, name, amount)
        if agg.fatal:
            log.error("[SPARK-APP] FATAL for video %s: %s", video_id, agg.fatal)
        write_progress(
            pipe,
            video_id,
            ProgressWriter.PROCESSOR,
            processed_last_frame=agg.last if agg.processed else None,
            stride=agg.stride,
            detect_hz=agg.detect_hz,
            degraded=agg.degraded,
            fatal_error=agg.fatal,
            summary=agg.summary,
            eos_processed=True if agg.eos else None,
            updated_at=stamp,
        )
        if agg.summary is not None:
            pipe.set(analytics_key(video_id), agg.summary.model_dump_json(), ex=ANALYTICS_TTL_S)


def reset_if_fresh_checkpoint(client: Any, checkpoint_dir: str | Path) -> bool:
    """A new checkpoint numbers its batches from 0 again: forget the stored last batch id, else
    every batch would look like a replay. True when reset."""
    commits = Path(checkpoint_dir) / "commits"
    if commits.is_dir() and any(p.name.isdigit() for p in commits.iterdir()):
        return False
    client.delete(SINK_LAST_BATCH_KEY)
    return True


class BatchSink:
    """The ``foreachBatch`` callable: collects the micro-batch on the driver and writes it."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        on_batch: Callable[[int, int, float], None] | None = None,
        *,
        log_timing: bool = False,
    ):
        """``log_timing``: a ``[TIMING]`` line per batch (the application's LOG_TIMING)."""
        self.client_factory = client_factory
        self.client: Any = None
        self.on_batch = on_batch
        self.log_timing = log_timing

    def __call__(self, df: Any, batch_id: int) -> None:
        start = time.perf_counter()
        rows = [r.asDict() for r in df.collect()]
        if self.client is None:
            self.client = self.client_factory()
        collected = time.perf_counter()
        written = write_batch(self.client, rows, batch_id)
        if self.log_timing:
            log.info(
                "[TIMING] sink batch %s: collect %.0f ms, write %.0f ms, %s rows",
                batch_id,
                (collected - start) * 1000,
                (time.perf_counter() - collected) * 1000,
                len(rows),
            )
        if self.on_batch is not None:
            self.on_batch(batch_id, len(rows) if written else 0, time.perf_counter() - start)
