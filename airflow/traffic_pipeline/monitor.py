"""``watch_processing``: follows one video through the Spark application (progress hash
written by the producer and the Spark sink) until its end of stream is processed.

The Spark application is a long-running service (Procfile / compose), not started here; it
is known to be alive by its progress on this video (and, when ``heartbeat_key`` is given, by
that key holding a recent wall-clock time). Fails on the application's ``fatal_error``, on a
stall (``processed`` unchanged for ``stall_timeout_s`` while frames are pending; while no
processor runs at all, i.e. ``processor_key`` is absent, up to ``processor_wait_s``), when the
producer stops beating without having finished, or when this run's producer never starts. On
failure it sets the stop flag so that the producer ends promptly (the DAG run never hangs)
and records ``monitor_error`` in the hash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .config import default_log, hash_text, text


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
    heartbeat_key: str | None = None,
    processor_key: str | None = None,
    processor_wait_s: float = 300.0,
    stop_producer_on_failure: bool = True,
    log: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Block until ``eos_processed`` == "1"; returns the final counters and summary."""
    from traffic_processing import streams

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
            redis.hset(pkey, mapping={"monitor_error": str(exc)[:1000], "updated_at": repr(wall())})
            if stop_producer_on_failure:
                redis.set(streams.stop_key(video_id), "1", ex=streams.PROGRESS_TTL_S)
        except Exception:  # noqa: BLE001 - the original error matters more
            log.exception("video %d: could not record the failure in Redis", video_id)
        return exc

    while True:
        fields = hash_text(redis.hgetall(pkey))
        now = clock()
        mine = _belongs_to_run(fields, run_id)
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
            log.info(
                "video %d: producer started (run %s), watching the processor", video_id, fields.get("run_id")
            )

        if fields.get("fatal_error"):
            raise fail(ProcessingError(f"processor error: {fields['fatal_error']}"))

        produced = int(fields.get("produced") or 0)
        processed = int(fields.get("processed") or 0)
        produce_done = fields.get("produce_done") == "1"
        if fields.get("eos_processed") == "1":
            result = _result(video_id, fields)
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
                fields.get("frames_total", "?"),
                processed,
                fields.get("processed_last_frame", "-"),
                fields.get("skipped", "0"),
                fields.get("frame_errors", "0"),
                fields.get("state"),
            )

        # Work is pending while frames wait for the processor, or the end of stream does.
        pending = processed < produced or produce_done
        marker = (
            processed,
            fields.get("processed_last_frame"),
            fields.get("skipped"),
            fields.get("frame_errors"),
        )
        if marker != last_marker or not pending:
            last_marker, last_change = marker, now
        elif now - last_change > stall_timeout_s and _processor_starting(
            redis, processor_key, now - last_change, processor_wait_s
        ):
            if not waiting_logged:
                waiting_logged = True
                log.warning(
                    "video %d: no processor running (no %s); waiting up to %.0f s for it to start",
                    video_id,
                    processor_key,
                    processor_wait_s,
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
            beat = _float(fields.get("producer_heartbeat") or fields.get("started_at"))
            if beat is not None and wall() - beat > stall_timeout_s:
                raise fail(ProcessingStalled(f"the producer has not reported for {wall() - beat:.0f} s"))

        if heartbeat_key and pending:
            beat = _float(text(redis.get(heartbeat_key)))
            if beat is None or wall() - beat > stall_timeout_s:
                raise fail(
                    ProcessingStalled(f"no Spark heartbeat in {heartbeat_key} for {stall_timeout_s:.0f} s")
                )

        sleep(poll_s)


def _processor_starting(redis: Any, processor_key: str | None, idle_s: float, wait_s: float) -> bool:
    """No processor is up yet (its heartbeat key is absent) and we have not waited ``wait_s``:
    a stream started while the Spark application still boots is not a stall."""
    return bool(processor_key) and idle_s <= wait_s and not redis.exists(processor_key)


def _belongs_to_run(fields: dict[str, str], run_id: str | None) -> bool:
    """The hash was written by this run's producer (not a previous run's leftover)."""
    if not fields or not fields.get("state"):
        return False
    if run_id is not None:
        return fields.get("run_id") == run_id
    return fields.get("state") != "done"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _result(video_id: int, fields: dict[str, str]) -> dict[str, Any]:
    import json

    summary = json.loads(fields["summary"]) if fields.get("summary") else None
    if isinstance(summary, dict):
        summary.pop("vehicles", None)  # the passages: cleanup stores them; the XCom stays small
    return {
        "video_id": video_id,
        "produced": int(fields.get("produced") or 0),
        "processed": int(fields.get("processed") or 0),
        "skipped": int(fields.get("skipped") or 0),
        "frame_errors": int(fields.get("frame_errors") or 0),
        "producer_state": fields.get("state"),
        "summary": summary,
    }
