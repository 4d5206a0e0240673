"""``cleanup``: the end of every run (also after a failure or a stop), idempotent.

1. ``video_analytics`` upserted from the progress hash's ``summary`` (final, or the latest
   partial one after a stop or failure), else from ``analytics:video:{id}``.
2. Speeding violations drained from ``violations:video:{id}`` into ``speeding_violations``
   (a (video_id, track_id) already stored is skipped; the list is trimmed only after commit):
   the processor's ``new_violations``, one per vehicle it flagged, with the wall clock it flagged
   them at (``detected_at``; the clean-up's own time for an older message without it) and their
   JPEG crop written to ``<VIDEO_STORAGE_PATH>/snapshots/<video_id>/<track_id>.jpg`` (the path in
   ``snapshot_path``; a crop that cannot be written is logged and left out, the row is still
   stored). ``vehicle_passages`` become
   the summary's per-vehicle records (``Summary.vehicles``; untouched when it has none), in the
   same transaction.
3. This video's entries removed from ``video-frames`` (but for an end of stream the processor
   has not handled yet) and ``processed-frames``; on
   ``processed-frames`` only those the Redis bridge's group has been delivered and acked
   (waiting up to ``delivery_wait_s`` for it), so that no browser misses the last frames.
4. Stop flag deleted, live analytics key deleted once stored, progress ``state`` "done" with
   the final ``status`` (the hash stays, with its TTL, for the UI), ``videos.status`` set
   (``VideoStatus``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traffic_processing.schemas import ProgressWriter, StreamProgress, StreamState, VideoStatus, field_text
from traffic_processing.streams import parse_stream_id, text

from .config import default_log


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
    from traffic_processing import streams
    from traffic_processing.schemas import Summary, Violation

    from .db import insert_violations, replace_passages, session_scope, set_status, upsert_analytics

    log = default_log(log, __name__)
    save_snapshot = SnapshotWriter(Path(video_storage_path), video_id, log)
    pkey = streams.progress_key(video_id)
    vkey = streams.violations_key(video_id)
    akey = streams.analytics_key(video_id)
    progress = StreamProgress.from_hash(redis.hgetall(pkey))  # an unreadable summary: logged, None

    summary: Summary | None = progress.summary
    summary_source = "progress" if summary is not None else None
    live = redis.get(akey) if summary is None else None
    if live:
        try:
            summary = Summary.model_validate_json(live)
            summary_source = "analytics"
        except ValueError as exc:
            log.warning("video %d: unreadable summary in analytics: %s", video_id, exc)

    raw_violations = redis.lrange(vkey, 0, -1)
    violations = []
    for raw in raw_violations:
        try:
            violations.append(Violation.model_validate_json(raw))
        except ValueError as exc:
            log.warning("video %d: skipping unreadable violation %r: %s", video_id, raw[:200], exc)

    # A violation is flagged live on the estimates so far (a fast vehicle in a short zone may have
    # one or two); the stored row takes the vehicle's final representative speed and class, those
    # of its passage in the summary, when there is one: the speeding log and the passages agree.
    final = {p.track_id: p for p in (summary.vehicles or [])} if summary is not None else {}
    for i, v in enumerate(violations):
        p = final.get(v.track_id)
        if p is not None and p.speed_kmh is not None:
            violations[i] = v.model_copy(update={"speed_kmh": p.speed_kmh, "vehicle_class": p.class_name})

    status = final_status(progress, tasks_ok=tasks_ok)
    passages = None
    with session_scope(db_url, engine) as session:
        if summary is not None:
            upsert_analytics(session, video_id, summary)
            if summary.vehicles is not None:
                passages = replace_passages(session, video_id, summary.vehicles)
        added = insert_violations(session, video_id, violations, now=now, save_snapshot=save_snapshot)
        set_status(session, video_id, status)
    # Committed: now drop what was read (entries RPUSHed meanwhile stay for a later cleanup).
    if raw_violations:
        redis.ltrim(vkey, len(raw_violations), -1)

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
        "passages": passages,
        "violations_read": len(raw_violations),
        "violations_added": added,
        "snapshots_written": save_snapshot.written,
        "removed_video_frames": removed_frames,
        "removed_processed_frames": removed_processed,
        "kept_processed_frames": kept_processed,
    }
    log.info(
        "video %d: cleanup done: status %s, analytics %s, %s passages, %d/%d violations added "
        "(%d snapshots), removed %d video-frames and %d processed-frames entries (%d not yet "
        "delivered, kept)",
        video_id,
        status,
        f"from {summary_source}" if summary else "none",
        "no" if passages is None else passages,
        added,
        len(raw_violations),
        save_snapshot.written,
        removed_frames,
        removed_processed,
        kept_processed,
    )
    return result


def snapshot_path(video_storage_path: Path, video_id: int, track_id: int) -> Path:
    """``<VIDEO_STORAGE_PATH>/snapshots/<video_id>/<track_id>.jpg`` (absolute)."""
    return video_storage_path.resolve() / "snapshots" / str(video_id) / f"{track_id}.jpg"


class SnapshotWriter:
    """Writes a violation's JPEG crop next to the uploaded videos; returns the path to store, None
    when the violation has no crop or it cannot be written (logged: the row is stored without)."""

    def __init__(self, video_storage_path: Path, video_id: int, log: logging.Logger) -> None:
        self.storage = video_storage_path
        self.video_id = video_id
        self.log = log
        self.written = 0

    def __call__(self, violation: Any) -> str | None:
        jpeg = violation.snapshot_jpeg
        if not jpeg:
            return None
        if not jpeg.startswith(b"\xff\xd8"):
            self.log.warning(
                "video %d: the snapshot of track %d is not a JPEG: left out",
                self.video_id,
                violation.track_id,
            )
            return None
        path = snapshot_path(self.storage, self.video_id, violation.track_id)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(jpeg)
            os.replace(tmp, path)
        except OSError as exc:
            self.log.warning(
                "video %d: snapshot of track %d not written to %s: %s",
                self.video_id,
                violation.track_id,
                path,
                exc,
            )
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            return None
        self.written += 1
        return str(path)


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
