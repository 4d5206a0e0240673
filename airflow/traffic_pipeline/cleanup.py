"""``cleanup``: the end of every run (also after a failure or a stop), idempotent.

1. ``video_analytics`` upserted from the progress hash's ``summary`` (final, or the latest
   partial one after a stop or failure), else from ``analytics:video:{id}``.
2. The last continuous results (``results.drain_results``): the passages and violations still in
   Redis, and the summary's vehicles still tracked at the end, into ``vehicle_passages`` and
   ``speeding_violations`` (a vehicle already stored is skipped; the lists are trimmed only after
   commit), violations with their JPEG crop (``results.SnapshotWriter``).
3. This video's entries removed from ``video-frames`` (but for an end of stream the processor
   has not handled yet) and ``processed-frames``; on
   ``processed-frames`` only those the Redis bridge's group has been delivered and acked
   (waiting up to ``delivery_wait_s`` for it), so that no browser misses the last frames.
4. Stop flag deleted, live analytics key deleted once stored, progress ``state`` "done" with
   the final ``status`` (the hash stays, with its TTL, for the UI), ``videos.status`` set
   (``VideoStatus``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.messages import ProgressWriter, StreamProgress, StreamState, VideoStatus, field_text
from contracts.streams import parse_stream_id, text

from .config import default_log
from .results import SnapshotWriter


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
    video_storage_path: str | Path,
    db_url: str | None = None,
    engine: Any = None,
    tasks_ok: bool | None = None,
    delivery_wait_s: float = 10.0,
    scan_count: int = 500,
    log: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """``video_storage_path``: where the uploaded videos are (``VIDEO_STORAGE_PATH``; snapshots
    go in its ``snapshots`` directory). ``db_url`` (``DATABASE_URL``) or ``engine``: the
    database. ``now``: wall clock of violations without one."""
    from contracts import streams
    from contracts.messages import Summary

    from .db import session_scope, set_status, upsert_analytics
    from .results import drain_results, session_factory

    log = default_log(log, __name__)
    pkey = streams.progress_key(video_id)
    akey = streams.analytics_key(video_id)
    progress = StreamProgress.from_hash(redis.hgetall(pkey))  # an unreadable summary: logged, None
    save_snapshot = SnapshotWriter(Path(video_storage_path), video_id, log, progress.run_id)

    summary: Summary | None = progress.summary
    summary_source = "progress" if summary is not None else None
    live = redis.get(akey) if summary is None else None
    if live:
        try:
            summary = Summary.model_validate_json(live)
            summary_source = "analytics"
        except ValueError as exc:
            log.warning("video %d: unreadable summary in analytics: %s", video_id, exc)

    # What is still in the lists, and the vehicles still tracked at the end (the summary's).
    drained = drain_results(
        video_id,
        redis=redis,
        run_id=progress.run_id,
        session_scope=session_factory(db_url, engine),
        save_snapshot=save_snapshot,
        extra_passages=(summary.vehicles or []) if summary is not None else [],
        now=now,
        log=log,
    )
    status = final_status(progress, tasks_ok=tasks_ok)
    with session_scope(db_url, engine) as session:
        if summary is not None:
            upsert_analytics(session, video_id, summary)
        set_status(session, video_id, status)

    # An end of stream the processor has not handled yet stays: when it comes back (restart from
    # its checkpoint) it still drops the video's state on it.
    removed_frames = _delete_video_entries(
        redis,
        streams.VIDEO_FRAMES,
        video_id,
        scan_count=scan_count,
        keep_end_of_stream=not progress.eos_processed,
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

    pipe = redis.pipeline(transaction=True)
    pipe.delete(streams.stop_key(video_id))
    if summary is not None:
        pipe.delete(akey)
    pipe.hset(
        pkey,
        mapping=StreamProgress.update(
            ProgressWriter.CLEANUP, state=StreamState.DONE, status=status, cleaned_at=time.time()
        ),
    )
    pipe.expire(pkey, streams.PROGRESS_TTL_S)
    pipe.execute()

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
    log.info(
        "video %d: cleanup done: status %s, analytics %s, %d passages and %d/%d violations added "
        "(%d snapshots), removed %d video-frames and %d processed-frames entries (%d not yet "
        "delivered, kept)",
        video_id,
        status,
        f"from {summary_source}" if summary else "none",
        drained.passages_added,
        drained.violations_added,
        drained.violations_read,
        save_snapshot.written,
        removed_frames,
        removed_processed,
        kept_processed,
    )
    return result


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
