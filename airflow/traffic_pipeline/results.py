"""Continuous results: the processor's passages and violations drained from Redis into
PostgreSQL while a stream runs (the monitor, every second) and at its end (the clean-up).

The Spark sink RPUSHes each vehicle whose track ended (``streams.passages_key``) and each vehicle
flagged (``streams.violations_key``), once per micro-batch even when a batch is replayed. Here a
drain reads both lists, inserts the rows (a vehicle is ``(video_id, run_id, track_id)``: a row
already stored is skipped, so a drain that dies between the commit and the trim repeats nothing),
commits, and only then trims what it read: a killed service loses nothing already passed.

A violation is flagged on the estimates so far; once its vehicle's passage is stored, the
violation row takes the passage's representative speed and class, so that the speeding log and
the passages agree.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts import streams
from contracts.messages import Passage, Violation

if TYPE_CHECKING:
    from .config import PipelineSettings


@dataclass
class Drained:
    """What one drain read and stored."""

    passages_read: int = 0
    passages_added: int = 0
    violations_read: int = 0
    violations_added: int = 0


def drain_results(
    video_id: int,
    *,
    redis: Any,
    run_id: str | None,
    session_scope: Callable[[], Any],
    save_snapshot: Callable[[Violation], str | None] | None = None,
    extra_passages: Iterable[Passage] = (),
    now: Callable[[], float] = time.time,
    log: logging.Logger,
) -> Drained:
    """Store what the lists hold (and ``extra_passages``: the end-of-stream summary's vehicles
    still tracked then); ``run_id`` for messages of an older processor without one.
    ``session_scope()``: a transaction (``db.session_scope`` bound to the database)."""
    from .db import insert_passages, insert_violations, violations_follow_passages

    pkey, vkey = streams.passages_key(video_id), streams.violations_key(video_id)
    pipe = redis.pipeline(transaction=True)
    pipe.lrange(pkey, 0, -1)
    pipe.lrange(vkey, 0, -1)
    raw_passages, raw_violations = pipe.execute()
    passages = _parse(Passage, raw_passages, video_id, run_id, log)
    passages += [p if p.run_id else p.model_copy(update={"run_id": run_id}) for p in extra_passages]
    violations = _parse(Violation, raw_violations, video_id, run_id, log)
    out = Drained(passages_read=len(raw_passages), violations_read=len(raw_violations))
    if not passages and not violations:
        return out
    with session_scope() as session:
        out.violations_added = insert_violations(
            session, video_id, violations, now=now, save_snapshot=save_snapshot
        )
        out.passages_added = insert_passages(session, video_id, passages)
        violations_follow_passages(
            session,
            video_id,
            {(p.run_id or "", p.track_id) for p in passages}
            | {(v.run_id or "", v.track_id) for v in violations},
        )
    # Committed: now drop what was read (entries pushed meanwhile stay for the next drain).
    pipe = redis.pipeline(transaction=True)
    if raw_passages:
        pipe.ltrim(pkey, len(raw_passages), -1)
    if raw_violations:
        pipe.ltrim(vkey, len(raw_violations), -1)
    pipe.execute()
    return out


def _parse(model: Any, raws: list[Any], video_id: int, run_id: str | None, log: logging.Logger) -> list[Any]:
    out = []
    for raw in raws:
        try:
            item = model.model_validate_json(raw)
        except ValueError as exc:
            log.warning("video %d: skipping unreadable %s %r: %s", video_id, model.__name__, raw[:200], exc)
            continue
        out.append(item if item.run_id else item.model_copy(update={"run_id": run_id}))
    return out


class Drainer:
    """The monitor's periodic drain: at most every ``every_s``; a failure (database down) is
    logged and retried at the next call (the lists keep everything meanwhile)."""

    def __init__(
        self,
        drain: Callable[[], Drained],
        *,
        every_s: float,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.drain, self.every_s, self.log, self.clock = drain, every_s, log, clock
        self.last = -float("inf")
        self.passages = self.violations = 0
        self.failing = False

    @classmethod
    def for_run(
        cls, video_id: int, run_id: str | None, *, redis: Any, settings: PipelineSettings, log: logging.Logger
    ) -> Drainer:
        """The drain of one stream run (the database and VIDEO_STORAGE_PATH of ``settings``,
        every RESULTS_DRAIN_S)."""
        scope = session_factory(settings.DATABASE_URL)
        snapshots = SnapshotWriter(Path(settings.VIDEO_STORAGE_PATH), video_id, log, run_id)
        return cls(
            lambda: drain_results(
                video_id, redis=redis, run_id=run_id, session_scope=scope, save_snapshot=snapshots, log=log
            ),
            every_s=settings.RESULTS_DRAIN_S,
            log=log,
        )

    def __call__(self, force: bool = False) -> None:
        if not force and self.clock() - self.last < self.every_s:
            return
        self.last = self.clock()
        try:
            done = self.drain()
        except Exception as exc:  # noqa: BLE001 - kept in Redis; the next call (or cleanup) stores it
            if not self.failing:
                self.log.warning("results not stored yet (kept in Redis, retried): %s", exc)
            self.failing = True
            return
        if self.failing:
            self.log.info("results stored again")
        self.failing = False
        self.passages += done.passages_added
        self.violations += done.violations_added


def session_factory(db_url: str | None = None, engine: Any = None) -> Callable[[], Any]:
    from .db import session_scope

    def scope() -> Any:
        return session_scope(db_url, engine)

    return scope


def snapshot_path(video_storage_path: Path, video_id: int, track_id: int, run_id: str | None = None) -> Path:
    """``<VIDEO_STORAGE_PATH>/snapshots/<video_id>/[<run>/]<track_id>.jpg`` (absolute; the run's
    directory, its id made file-safe, when there is one: a camera's track ids start again with
    each run)."""
    directory = video_storage_path.resolve() / "snapshots" / str(video_id)
    if run_id:
        directory /= re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:200]
    return directory / f"{track_id}.jpg"


class SnapshotWriter:
    """Writes a violation's JPEG crop next to the uploaded videos; returns the path to store, None
    when the violation has no crop or it cannot be written (logged: the row is stored without)."""

    def __init__(
        self, video_storage_path: Path, video_id: int, log: logging.Logger, run_id: str | None = None
    ) -> None:
        self.storage = video_storage_path
        self.video_id = video_id
        self.run_id = run_id  # of violations without their own
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
        path = snapshot_path(self.storage, self.video_id, violation.track_id, violation.run_id or self.run_id)
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
