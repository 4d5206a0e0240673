"""``watch_processing``: follows one video through the Spark application (progress hash
written by the producer and the Spark sink) until its end of stream is processed.

The Spark application is a long-running service (Procfile / compose), not started here; it
is known to be alive by its progress on this video, and to be up at all by its heartbeat key
(``processor_heartbeat_key``: ``streams.PROCESSOR_HEARTBEAT_KEY``, kept with a short TTL while
its query runs). Fails on the application's ``fatal_error``, on a stall (``processed``
unchanged for PIPELINE_STALL_TIMEOUT_S while frames are pending; while no processor runs at
all, i.e. its heartbeat key is absent, up to PIPELINE_PROCESSOR_WAIT_S), when the producer stops beating
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

from .config import PipelineSettings, default_log


class ProcessingError(RuntimeError):
    """The processor reported that it cannot run (``fatal_error``)."""


class ProcessingStalled(RuntimeError):
    """No progress for too long while work is pending."""


def watch_processing(
    video_id: int,
    *,
    redis: Any,
    settings: PipelineSettings,
    run_id: str | None = None,
    start_timeout_s: float | None = None,
    poll_s: float = 1.0,
    log_every_s: float = 10.0,
    processor_heartbeat_key: str | None = None,
    stop_producer_on_failure: bool = True,
    drain: Callable[[], None] | None = None,
    tolerate_stalls: bool = False,
    log: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Block until ``eos_processed``; returns the final counters and summary.

    ``settings``: PIPELINE_STALL_TIMEOUT_S (the stall timeout, and the producer's start timeout
    unless ``start_timeout_s``) and PIPELINE_PROCESSOR_WAIT_S.
    ``processor_heartbeat_key``: the Spark application's heartbeat (the DAG passes
    ``streams.PROCESSOR_HEARTBEAT_KEY``); None: not consulted (a stall is a stall at once).
    ``tolerate_stalls``: a processor stall is logged, not fatal (a camera: its producer drops
    what the processor cannot take, and the stream goes on when the processor is back)."""
    watch = _Watch(
        video_id,
        redis=redis,
        run_id=run_id,
        stall_timeout_s=settings.PIPELINE_STALL_TIMEOUT_S,
        start_timeout_s=settings.PIPELINE_STALL_TIMEOUT_S if start_timeout_s is None else start_timeout_s,
        processor_heartbeat_key=processor_heartbeat_key,
        processor_wait_s=settings.PIPELINE_PROCESSOR_WAIT_S,
        log_every_s=log_every_s,
        stop_producer_on_failure=stop_producer_on_failure,
        tolerate_stalls=tolerate_stalls,
        log=default_log(log, __name__),
        clock=clock,
        wall=wall,
    )
    while True:
        if drain is not None:
            drain()
        result = watch.poll()
        if result is not None:
            return result
        sleep(poll_s)


class _Watch:
    """What ``watch_processing`` has seen of one run so far; ``poll`` reads the hash once."""

    def __init__(
        self,
        video_id: int,
        *,
        redis: Any,
        run_id: str | None,
        stall_timeout_s: float,
        start_timeout_s: float,
        processor_heartbeat_key: str | None,
        processor_wait_s: float,
        log_every_s: float,
        stop_producer_on_failure: bool,
        tolerate_stalls: bool,
        log: logging.Logger,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self.video_id, self.redis, self.run_id, self.log = video_id, redis, run_id, log
        self.stall_timeout_s, self.start_timeout_s = stall_timeout_s, start_timeout_s
        self.processor_heartbeat_key, self.processor_wait_s = processor_heartbeat_key, processor_wait_s
        self.log_every_s, self.stop_producer_on_failure = log_every_s, stop_producer_on_failure
        self.tolerate_stalls, self.clock, self.wall = tolerate_stalls, clock, wall
        self.pkey = streams.progress_key(video_id)
        self.started = clock()
        self.last_marker: tuple[Any, ...] | None = None
        self.last_change = clock()
        self.last_log = -float("inf")
        self.seen_start = False
        self.waiting_logged = False

    def poll(self) -> dict[str, Any] | None:
        """The result once the end of stream is processed, else None; raises on a failure."""
        progress = StreamProgress.from_hash(self.redis.hgetall(self.pkey))
        now = self.clock()
        if not _belongs_to_run(progress, self.run_id):
            if now - self.started > self.start_timeout_s:
                raise self.fail(
                    ProcessingStalled(
                        f"the producer of this run did not start within {self.start_timeout_s:.0f} s"
                    )
                )
            return None
        if not self.seen_start:
            self.seen_start = True
            self.last_change = now
            self.log.info(
                "video %d: producer started (run %s), watching the processor", self.video_id, progress.run_id
            )
        if progress.fatal_error:
            raise self.fail(ProcessingError(f"processor error: {progress.fatal_error}"))
        if progress.eos_processed:
            return self.done(progress)
        self.log_progress(progress, now)
        self.check_processor(progress, now)
        self.check_producer(progress)
        return None

    def done(self, progress: StreamProgress) -> dict[str, Any]:
        result = _result(self.video_id, progress)
        self.log.info(
            "video %d: end of stream processed: %d/%d frames (skipped %d, errors %d), producer %s",
            self.video_id,
            result["processed"],
            result["produced"],
            result["skipped"],
            result["frame_errors"],
            result["producer_state"],
        )
        return result

    def log_progress(self, progress: StreamProgress, now: float) -> None:
        """The counters, every ``log_every_s``."""
        if now - self.last_log < self.log_every_s:
            return
        self.last_log = now
        self.log.info(
            "video %d: produced %d/%s, processed %d (last frame %s, skipped %s, errors %s), producer %s",
            self.video_id,
            progress.produced or 0,
            "?" if progress.frames_total is None else progress.frames_total,
            progress.processed or 0,
            "-" if progress.processed_last_frame is None else progress.processed_last_frame,
            progress.skipped or 0,
            progress.frame_errors or 0,
            progress.state,
        )

    def check_processor(self, progress: StreamProgress, now: float) -> None:
        """A stall: no progress for ``stall_timeout_s`` while work is pending (frames wait for
        the processor, or the end of stream does). Waited for while no processor runs yet (up to
        ``processor_wait_s``) or when stalls are tolerated; else fatal."""
        produced, processed = progress.produced or 0, progress.processed or 0
        pending = processed < produced or bool(progress.produce_done)
        marker = (processed, progress.processed_last_frame, progress.skipped, progress.frame_errors)
        if marker != self.last_marker or not pending:
            self.last_marker, self.last_change = marker, now
            self.waiting_logged = False
            return
        idle = now - self.last_change
        if idle <= self.stall_timeout_s:
            return
        if _processor_starting(self.redis, self.processor_heartbeat_key, idle, self.processor_wait_s):
            self.warn_once(
                "video %d: no processor running (no %s); waiting up to %.0f s for it to start",
                self.video_id,
                self.processor_heartbeat_key,
                self.processor_wait_s,
            )
        elif self.tolerate_stalls:
            self.warn_once(
                "video %d: processor made no progress for %.0f s (processed %d/%d); waiting for it",
                self.video_id,
                self.stall_timeout_s,
                processed,
                produced,
            )
        else:
            what = "end of stream" if processed >= produced else f"{produced - processed} frames"
            raise self.fail(
                ProcessingStalled(
                    f"processor made no progress for {self.stall_timeout_s:.0f} s with {what} pending "
                    f"(processed {processed}/{produced}); is the Spark application running?"
                )
            )

    def check_producer(self, progress: StreamProgress) -> None:
        """The producer stopped beating without having finished."""
        if progress.produce_done:
            return
        beat = progress.producer_heartbeat or progress.started_at
        if beat is not None and self.wall() - beat > self.stall_timeout_s:
            raise self.fail(
                ProcessingStalled(f"the producer has not reported for {self.wall() - beat:.0f} s")
            )

    def warn_once(self, msg: str, *args: Any) -> None:
        """A warning once per wait (again after progress)."""
        if not self.waiting_logged:
            self.waiting_logged = True
            self.log.warning(msg, *args)

    def fail(self, exc: Exception) -> Exception:
        """Log ``exc``, record it (``monitor_error``) and set the stop flag (unless told not to);
        returns it to raise."""
        self.log.error("video %d: %s", self.video_id, exc)
        try:
            self.redis.hset(
                self.pkey,
                mapping=StreamProgress.update(
                    ProgressWriter.MONITOR, monitor_error=str(exc)[:1000], updated_at=self.wall()
                ),
            )
            if self.stop_producer_on_failure:
                self.redis.set(streams.stop_key(self.video_id), "1", ex=streams.STOP_FLAG_TTL_S)
        except Exception:  # noqa: BLE001 - the original error matters more
            self.log.exception("video %d: could not record the failure in Redis", self.video_id)
        return exc


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
