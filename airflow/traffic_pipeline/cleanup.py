"""``cleanup``: the end of every run (also after a failure or a stop), idempotent.

The final summary is the progress hash's ``summary`` (final, or the latest partial one after a
stop or failure), else ``analytics:video:{id}``'s; the final status is ``final_status``'s. Then,
in this order:

1. The last continuous results (``results.drain_results``): the passages and violations still in
   Redis, and the summary's vehicles still tracked at the end, into ``vehicle_passages`` and
   ``speeding_violations`` in one transaction (a vehicle already stored is skipped; the lists are
   trimmed only after commit), violations with their JPEG crop (``results.SnapshotWriter``).
2. In a second transaction, ``video_analytics`` upserted from the summary (no summary: none written) and
   ``videos.status`` set to the final status (``VideoStatus``).
3. This video's entries removed from ``video-frames`` (but for an end of stream the processor
   has not handled yet) and ``processed-frames``; on ``processed-frames`` only those the Redis
   bridge's group has been delivered and acked (waiting up to ``delivery_wait_s`` for it; all of
   them when there is no such group), so that no browser misses the last frames.
4. Stop flag deleted, live analytics key deleted when a summary was stored, progress ``state``
   "done" with the final ``status`` (the hash stays, with its TTL, for the UI).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts import streams
from contracts.messages import (
    ProgressWriter,
    StreamProgress,
    StreamState,
    Summary,
    VideoStatus,
    field_text,
    write_progress,
)
from contracts.streams import parse_stream_id, text

from .config import PipelineSettings, default_log
from .results import Drained, SnapshotWriter, drain_results, session_factory


def final_status(progress: StreamProgress, *, tasks_ok: bool | None = None) -> VideoStatus:
    """ "stopped" when the producer was stopped, "completed" when the whole video went through,
    else "failed". ``tasks_ok=False`` (an upstream task failed) rules out "completed"."""
    if progress.state == StreamState.STOPPED and not progress.monitor_error:
        return VideoStatus.STOPPED
    complete = (
        progress.state == StreamState.PRODUCED
        and progress.eos_processed
        and not progress.fatal_error
        and not progress.monitor_error
    )
    if complete and tasks_ok is not False:
        return VideoStatus.COMPLETED
    return VideoStatus.FAILED


def cleanup(
    video_id: int,
    *,
    redis: Any,
    settings: PipelineSettings,
    engine: Any = None,
    tasks_ok: bool | None = None,
    delivery_wait_s: float = 10.0,
    scan_count: int = 500,
    log: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """``settings``: the database (``engine`` instead, when given) and VIDEO_STORAGE_PATH (where
    the uploaded videos are; snapshots go in its ``snapshots`` directory). ``now``: wall clock of
    violations without one."""
    log = default_log(log, __name__)
    # an unreadable summary: logged, None
    progress = StreamProgress.from_hash(redis.hgetall(streams.progress_key(video_id)))
    save_snapshot = SnapshotWriter(Path(settings.VIDEO_STORAGE_PATH), video_id, log, progress.run_id)
    summary, summary_source = _final_summary(redis, video_id, progress, log)
    status = final_status(progress, tasks_ok=tasks_ok)
    drained = _store(
        video_id,
        redis=redis,
        progress=progress,
        summary=summary,
        status=status,
        session_scope=session_factory(settings.DATABASE_URL, engine),
        save_snapshot=save_snapshot,
        now=now,
        log=log,
    )
    removed_frames, removed_processed, kept_processed = _remove_entries(
        redis,
        video_id,
        keep_end_of_stream=not progress.eos_processed,
        scan_count=scan_count,
        delivery_wait_s=delivery_wait_s,
        sleep=sleep,
        clock=clock,
    )
    _mark_done(redis, video_id, status, drop_analytics=summary is not None)
    result = {
        "video_id": video_id,
        "status": status.value,
        "summary": summary.model_dump(exclude={"vehicles"}) if summary else None,
        "summary_source": summary_source,
        "passages": drained.passages_added,
        "violations_read": drained.violations_read,
        "violations_added": drained.violations_added,
        "snapshots_written": save_snapshot.written,
        "removed_video_frames": removed_frames,
        "removed_processed_frames": removed_processed,
        "kept_processed_frames": kept_processed,
    }
    _log_done(log, result)
    return result


def _log_done(log: logging.Logger, result: dict[str, Any]) -> None:
    log.info(
        "video %d: cleanup done: status %s, analytics %s, %d passages and %d/%d violations added "
        "(%d snapshots), removed %d video-frames and %d processed-frames entries (%d not yet "
        "delivered, kept)",
        result["video_id"],
        result["status"],
        f"from {result['summary_source']}" if result["summary_source"] else "none",
        result["passages"],
        result["violations_added"],
        result["violations_read"],
        result["snapshots_written"],
        result["removed_video_frames"],
        result["removed_processed_frames"],
        result["kept_processed_frames"],
    )


def _final_summary(
    redis: Any, video_id: int, progress: StreamProgress, log: logging.Logger
) -> tuple[Summary | None, str | None]:
    """The progress hash's summary (final, or the latest partial one), else the live analytics
    key's; with where it came from ("progress", "analytics", None)."""
    if progress.summary is not None:
        return progress.summary, "progress"
    live = redis.get(streams.analytics_key(video_id))
    if live:
        try:
            return Summary.model_validate_json(live), "analytics"
        except ValueError as exc:
            log.warning("video %d: unreadable summary in analytics: %s", video_id, exc)
    return None, None


def _store(
    video_id: int,
    *,
    redis: Any,
    progress: StreamProgress,
    summary: Summary | None,
    status: VideoStatus,
    session_scope: Callable[[], Any],
    save_snapshot: SnapshotWriter,
    now: Callable[[], float],
    log: logging.Logger,
) -> Drained:
    """Into PostgreSQL: what is still in the result lists and the vehicles still tracked at the
    end (the summary's), then ``video_analytics`` and ``videos.status``."""
    from .db import set_status, upsert_analytics

    drained = drain_results(
        video_id,
        redis=redis,
        run_id=progress.run_id,
        session_scope=session_scope,
        save_snapshot=save_snapshot,
        extra_passages=(summary.vehicles or []) if summary is not None else [],
        now=now,
        log=log,
    )
    with session_scope() as session:
        if summary is not None:
            upsert_analytics(session, video_id, summary)
        set_status(session, video_id, status)
    return drained


def _remove_entries(
    redis: Any,
    video_id: int,
    *,
    keep_end_of_stream: bool,
    scan_count: int,
    delivery_wait_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> tuple[int, int, int]:
    """The video's entries off ``video-frames`` and (those delivered to the bridge) off
    ``processed-frames``: (removed video-frames, removed processed-frames, kept processed-frames).

    An end of stream the processor has not handled yet stays (``keep_end_of_stream``): when it
    comes back (restart from its checkpoint) it still drops the video's state on it."""
    removed_frames = _delete_video_entries(
        redis, streams.VIDEO_FRAMES, video_id, scan_count=scan_count, keep_end_of_stream=keep_end_of_stream
    )
    removed_processed, kept_processed = _delete_delivered_entries(
        redis,
        streams.PROCESSED_FRAMES,
        streams.REDIS_CONSUMER_GROUP,
        video_id,
        scan_count=scan_count,
        wait_s=delivery_wait_s,
        sleep=sleep,
        clock=clock,
    )
    return removed_frames, removed_processed, kept_processed


def _mark_done(redis: Any, video_id: int, status: VideoStatus, *, drop_analytics: bool) -> None:
    """Stop flag deleted, the live analytics key too once stored (``drop_analytics``), progress
    ``state`` "done" with the final ``status``."""
    pipe = redis.pipeline(transaction=True)
    pipe.delete(streams.stop_key(video_id))
    if drop_analytics:
        pipe.delete(streams.analytics_key(video_id))
    write_progress(
        pipe, video_id, ProgressWriter.CLEANUP, state=StreamState.DONE, status=status, cleaned_at=time.time()
    )
    pipe.execute()


def _scan_video_ids(
    redis: Any, stream: str, video_id: int, scan_count: int, *, skip_end_of_stream: bool = False
) -> list[bytes | str]:
    """Ids of the stream entries whose ``video_id`` field is ``video_id`` (XRANGE pages)."""
    wanted = str(video_id)
    ids: list[bytes | str] = []
    start: bytes | str = "-"
    while True:
        page = redis.xrange(stream, min=start, max="+", count=scan_count)
        if not page:
            break
        for entry_id, fields in page:
            if field_text(fields, "video_id") != wanted:
                continue
            if skip_end_of_stream and field_text(fields, "end_of_stream") == "1":
                continue
            ids.append(entry_id)
        if len(page) < scan_count:
            break
        start = "(" + text(page[-1][0])
    return ids


def _xdel(redis: Any, stream: str, ids: list[Any], batch: int = 500) -> int:
    removed = 0
    for i in range(0, len(ids), batch):
        removed += int(redis.xdel(stream, *ids[i : i + batch]))
    return removed


def _delete_video_entries(
    redis: Any, stream: str, video_id: int, *, scan_count: int, keep_end_of_stream: bool = False
) -> int:
    ids = _scan_video_ids(redis, stream, video_id, scan_count, skip_end_of_stream=keep_end_of_stream)
    return _xdel(redis, stream, ids)


def _delete_delivered_entries(
    redis: Any,
    stream: str,
    group: str,
    video_id: int,
    *,
    scan_count: int,
    wait_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> tuple[int, int]:
    """XDEL this video's entries that ``group`` has been delivered and has acked; without the
    group (no bridge) all of them. Returns (removed, kept)."""
    deadline = clock() + wait_s
    while True:
        ids = _scan_video_ids(redis, stream, video_id, scan_count)
        if not ids:
            return 0, 0
        info = _group_info(redis, stream, group)
        if info is None:
            return _xdel(redis, stream, ids), 0
        last_delivered = parse_stream_id(info["last-delivered-id"])
        pending = _pending_ids(redis, stream, group, ids)
        done = [i for i in ids if parse_stream_id(i) <= last_delivered and parse_stream_id(i) not in pending]
        if len(done) == len(ids) or clock() >= deadline:
            return _xdel(redis, stream, done), len(ids) - len(done)
        sleep(0.2)


def _group_info(redis: Any, stream: str, group: str) -> dict[str, Any] | None:
    try:
        groups = redis.xinfo_groups(stream)
    except Exception:  # noqa: BLE001 - no such stream
        return None
    for g in groups:
        info = {text(k): v for k, v in g.items()}
        if text(info.get("name")) == group:
            return info
    return None


def _pending_ids(redis: Any, stream: str, group: str, ids: list[Any]) -> set[tuple[int, int]]:
    lo, hi = min(ids, key=parse_stream_id), max(ids, key=parse_stream_id)
    out: set[tuple[int, int]] = set()
    start = text(lo)
    while True:
        page = redis.xpending_range(stream, group, min=start, max=text(hi), count=1000)
        if not page:
            return out
        for p in page:
            out.add(parse_stream_id(p["message_id"]))
        if len(page) < 1000:
            return out
        start = "(" + text(page[-1]["message_id"])
