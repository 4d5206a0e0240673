"""``watch_processing``: follows one video through the Spark application (progress hash
written by the producer and the Spark sink) until its end of stream is processed.

The Spark application is a long-running service (Procfile / compose), not started here; it
is known to be alive by its progress on this video, and to be up at all by its heartbeat key
(``processor_heartbeat_key``: ``streams.PROCESSOR_HEARTBEAT_KEY``, kept with a short TTL while
its query runs). Fails on the application's ``fatal_error``, on a stall (``processed``
unchanged for ``stall_timeout_s`` while frames are pending; while no processor runs at all,
i.e. its heartbeat key is absent, up to ``processor_wait_s``), when the producer stops beating
without having finished, or when this run's producer never starts. On failure it sets the
stop flag so that the producer ends promptly (the DAG run never hangs) and records
``monitor_error`` in the hash (``StreamProgress``).

While it watches, it stores the continuous results (``drain``: ``results.Drainer``, the passages
and violations the processor pushed, every second): a vehicle that passed is in PostgreSQL
seconds later, whatever dies afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from contracts import streams
from contracts.messages import ProgressWriter, StreamProgress, StreamState

from .config import default_log


class ProcessingError(RuntimeError):
    """The processor reported that it cannot run (``fatal_error``)."""


class ProcessingStalled(RuntimeError):
    """No progress for too long while work is pending."""


def watch_processing(
    video_id: int,
    *,
    redis: Any,
    run_id: str | None = None,
    stall_timeout_s: float = 60.0,
    start_timeout_s: float | None = None,
    poll_s: float = 1.0,
    log_every_s: float = 10.0,
    processor_heartbeat_key: str | None = None,
    processor_wait_s: float = 300.0,
    stop_producer_on_failure: bool = True,
    drain: Callable[[], None] | None = None,
    tolerate_stalls: bool = False,
    log: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Block until ``eos_processed``; returns the final counters and summary.

    ``processor_heartbeat_key``: the Spark application's heartbeat (the DAG passes
    ``streams.PROCESSOR_HEARTBEAT_KEY``); None: not consulted (a stall is a stall at once).
    ``tolerate_stalls``: a processor stall is logged, not fatal (a camera: its producer drops
    what the processor cannot take, and the stream goes on when the processor is back)."""
    log = default_log(log, __name__)
    pkey = streams.progress_key(video_id)
    start_timeout_s = stall_timeout_s if start_timeout_s is None else start_timeout_s
    started = clock()
    last_marker: tuple[Any, ...] | None = None
    last_change = clock()
    last_log = -float("inf")
    seen_start = False
    waiting_logged = False

    def fail(exc: Exception) -> Exception:
        log.error("video %d: %s", video_id, exc)
        try:
            redis.hset(
                pkey,
                mapping=StreamProgress.update(
                    ProgressWriter.MONITOR, monitor_error=str(exc)[:1000], updated_at=wall()
                ),
            )
            if stop_producer_on_failure:
                redis.set(streams.stop_key(video_id), "1", ex=streams.STOP_FLAG_TTL_S)
        except Exception:  # noqa: BLE001 - the original error matters more
            log.exception("video %d: could not record the failure in Redis", video_id)
        return exc

    while True:
        if drain is not None:
            drain()
        progress = StreamProgress.from_hash(redis.hgetall(pkey))
        now = clock()
        mine = _belongs_to_run(progress, run_id)
        if not mine:
            if now - started > start_timeout_s:
                raise fail(
                    ProcessingStalled(
                        f"the producer of this run did not start within {start_timeout_s:.0f} s"
                    )
                )
            sleep(poll_s)
            continue
        if not seen_start:
            seen_start = True
            last_change = now
            log.info("video %d: producer started (run %s), watching the processor", video_id, progress.run_id)

        if progress.fatal_error:
            raise fail(ProcessingError(f"processor error: {progress.fatal_error}"))

        produced = progress.produced or 0
        processed = progress.processed or 0
        produce_done = bool(progress.produce_done)
        if progress.eos_processed:
            result = _result(video_id, progress)
            log.info(
                "video %d: end of stream processed: %d/%d frames (skipped %d, errors %d), producer %s",
                video_id,
                processed,
                produced,
                result["skipped"],
                result["frame_errors"],
                result["producer_state"],
            )
            return result

        if now - last_log >= log_every_s:
            last_log = now
            log.info(
                "video %d: produced %d/%s, processed %d (last frame %s, skipped %s, errors %s), producer %s",
                video_id,
                produced,
                "?" if progress.frames_total is None else progress.frames_total,
                processed,
                "-" if progress.processed_last_frame is None else progress.processed_last_frame,
                progress.skipped or 0,
                progress.frame_errors or 0,
                progress.state,
            )

        # Work is pending while frames wait for the processor, or the end of stream does.
        pending = processed < produced or produce_done
        marker = (processed, progress.processed_last_frame, progress.skipped, progress.frame_errors)
        if marker != last_marker or not pending:
            last_marker, last_change = marker, now
            waiting_logged = False
        elif now - last_change > stall_timeout_s and _processor_starting(
            redis, processor_heartbeat_key, now - last_change, processor_wait_s
        ):
            if not waiting_logged:
                waiting_logged = True
                log.warning(
                    "video %d: no processor running (no %s); waiting up to %.0f s for it to start",
                    video_id,
                    processor_heartbeat_key,
                    processor_wait_s,
                )
        elif now - last_change > stall_timeout_s and tolerate_stalls:
            if not waiting_logged:
                waiting_logged = True
                log.warning(
                    "video %d: processor made no progress for %.0f s (processed %d/%d); waiting for it",
                    video_id,
                    stall_timeout_s,
                    processed,
                    produced,
                )
        elif now - last_change > stall_timeout_s:
            what = "end of stream" if processed >= produced else f"{produced - processed} frames"
            raise fail(
                ProcessingStalled(
                    f"processor made no progress for {stall_timeout_s:.0f} s with {what} pending "
                    f"(processed {processed}/{produced}); is the Spark application running?"
                )
            )

        if not produce_done:
            beat = progress.producer_heartbeat or progress.started_at
            if beat is not None and wall() - beat > stall_timeout_s:
                raise fail(ProcessingStalled(f"the producer has not reported for {wall() - beat:.0f} s"))

        sleep(poll_s)


def _processor_starting(
    redis: Any, processor_heartbeat_key: str | None, idle_s: float, wait_s: float
) -> bool:
    """No processor is up yet (its heartbeat key is absent) and we have not waited ``wait_s``:
    a stream started while the Spark application still boots is not a stall."""
    return bool(processor_heartbeat_key) and idle_s <= wait_s and not redis.exists(processor_heartbeat_key)


def _belongs_to_run(progress: StreamProgress, run_id: str | None) -> bool:
    """The hash was written by this run's producer (not a previous run's leftover)."""
    if progress.state is None:
        return False
    if run_id is not None:
        return progress.run_id == run_id
    return progress.state != StreamState.DONE


def _result(video_id: int, progress: StreamProgress) -> dict[str, Any]:
    return {
        "video_id": video_id,
        "produced": progress.produced or 0,
        "processed": progress.processed or 0,
        "skipped": progress.skipped or 0,
        "frame_errors": progress.frame_errors or 0,
        "producer_state": None if progress.state is None else progress.state.value,
        # without the passages: cleanup stores them; the XCom stays small
        "summary": None if progress.summary is None else progress.summary.model_dump(exclude={"vehicles"}),
    }
