"""A video's results: analytics (final row or live snapshot), speeding violations (stored rows or
the live list), passages and the traffic report, as the REST models of ``backend.schemas`` (built
from the rows here: ``analytics_out``, ``violation_out``, ``passage_of``), and the CSV columns of
the violations and passages (the JSON fields, in order)."""

from __future__ import annotations

import json
import logging
from datetime import UTC
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError

from backend.db import crud
from backend.db.models import SpeedingViolation, VehiclePassage, Video, VideoAnalytics, violation_row
from backend.db.session import Database
from backend.schemas import (
    FinalAnalyticsOut,
    LiveAnalyticsOut,
    ReportOut,
    ViolationListOut,
    ViolationOut,
    WindowReportOut,
)
from backend.services.errors import not_found
from backend.services.formatting import utc_iso
from backend.services.report import Window, traffic_report, window_report
from contracts import streams
from contracts.messages import Passage, Violation

log = logging.getLogger("backend.results")

VIOLATION_CSV_COLUMNS = tuple(ViolationOut.model_fields)
PASSAGE_CSV_COLUMNS = tuple(Passage.model_fields)


def snapshot_url(violation_id: int) -> str:
    """The route that serves a stored violation's JPEG crop."""
    return f"/api/violations/{violation_id}/snapshot"


def analytics_out(row: VideoAnalytics) -> FinalAnalyticsOut:
    return FinalAnalyticsOut(
        source="final",
        video_id=row.video_id,
        total_vehicles_count=row.total_vehicles_count,
        avg_dwell_time=row.avg_dwell_time,
        vehicle_type_distribution=row.vehicle_type_distribution,
        speeding_count=row.speeding_count,
        created_at=row.created_at.isoformat() if row.created_at else None,
    )


def violation_out(row: SpeedingViolation) -> ViolationOut:
    """A ``speeding_violations`` row (stored, or unsaved for a live entry: no ``id``): ``detected_at``
    (stored in UTC) as ISO 8601 with its offset, ``snapshot_url`` the route that serves the JPEG
    crop (None without one)."""
    return ViolationOut(
        id=row.id,
        video_id=row.video_id,
        track_id=row.track_id,
        vehicle_class=row.vehicle_class,
        speed_kmh=row.speed_kmh,
        frame_number=row.frame_number,
        video_time_s=row.video_time_s,
        detected_at=utc_iso(row.detected_at),
        snapshot_path=row.snapshot_path,
        snapshot_url=snapshot_url(row.id) if row.snapshot_path else None,
    )


def passage_of(row: VehiclePassage) -> Passage:
    """A ``vehicle_passages`` row as the ``Passage`` it stores (``passed_at`` as Unix epoch s)."""
    fields = {name: getattr(row, name) for name in Passage.model_fields}
    if row.passed_at is not None:
        fields["passed_at"] = row.passed_at.replace(tzinfo=UTC).timestamp()
    return Passage.model_validate(fields)


async def analytics(
    *, db: Database, redis: aioredis.Redis, video_id: int
) -> FinalAnalyticsOut | LiveAnalyticsOut:
    """The stored ``video_analytics`` row, else the live snapshot ``analytics:video:{id}`` in
    Redis (``streams.analytics_key``) without its passages; 404 ``analytics_not_found``."""
    row = await db.run(lambda s: crud.get_analytics(session=s, video_id=video_id))
    if row is not None:
        return analytics_out(row)
    key = streams.analytics_key(video_id)
    live = await redis.get(key)
    if live:
        try:
            snapshot = json.loads(live)
            snapshot.pop("vehicles", None)  # the passages: GET .../passages once stored
            return LiveAnalyticsOut.model_validate({"source": "live", "video_id": video_id, **snapshot})
        except (json.JSONDecodeError, TypeError, AttributeError, ValidationError):
            log.warning("%s holds no analytics snapshot", key)
    raise not_found("analytics_not_found", f"no analytics yet for video {video_id}")


async def violations(*, db: Database, redis: aioredis.Redis, video_id: int) -> ViolationListOut:
    """The stored ``speeding_violations`` rows; while none are stored (a stream runs: the cleanup
    stores them at its end), the live list the processor appends to in Redis
    (``streams.violations_key``), one entry per track, without ``id`` or snapshot. ``source``
    says which."""
    rows = await db.run(lambda s: crud.list_violations(session=s, video_id=video_id))
    items = [violation_out(r) for r in rows]
    source = "stored"
    if not items:
        items = await live_violations(redis=redis, video_id=video_id)
        source = "live" if items else "stored"
    return ViolationListOut(video_id=video_id, source=source, violations=items)


async def live_violations(*, redis: aioredis.Redis, video_id: int) -> list[ViolationOut]:
    key = streams.violations_key(video_id)
    seen: dict[int, ViolationOut] = {}
    for raw in await redis.lrange(key, 0, -1):
        try:
            v = Violation.model_validate_json(raw)
        except ValueError:
            log.warning("%s holds an unreadable entry", key)
            continue
        if v.track_id in seen:
            continue
        seen[v.track_id] = violation_out(violation_row(video_id, v))
    return sorted(seen.values(), key=lambda r: (r.frame_number, r.track_id))


async def passages(*, db: Database, video_id: int) -> list[Passage]:
    """Every counted vehicle of the last stream, by first frame."""
    rows = await db.run(lambda s: crud.list_passages(session=s, video_id=video_id))
    return [passage_of(r) for r in rows]


async def report(*, db: Database, video: Video, default_limit_kmh: float) -> ReportOut:
    """The traffic report from the passages, against the video's limit (else the default)."""
    items = await passages(db=db, video_id=video.id)
    body: dict[str, Any] = traffic_report(
        video.id, [p.model_dump() for p in items], speed_limit(video, default_limit_kmh)
    )
    return ReportOut.model_validate(body)


async def report_window(
    *, db: Database, video: Video, window: Window, default_limit_kmh: float
) -> WindowReportOut:
    """The traffic study over ``window`` from the passages with ``passed_at`` in it, against the
    video's limit (else the default); computed off the IOLoop (a camera's window can hold days
    of passages)."""
    rows = await db.run(
        lambda s: crud.list_passages_between(session=s, video_id=video.id, start=window.start, end=window.end)
    )
    body = await db.run_file(window_report, video.id, rows, window, speed_limit(video, default_limit_kmh))
    return WindowReportOut.model_validate(body)


def speed_limit(video: Video, default_limit_kmh: float) -> float:
    limit = video.speed_limit_kmh
    return limit if limit is not None else default_limit_kmh
