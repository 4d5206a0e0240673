"""PostgreSQL access of the pipeline tasks, on the backend's SQLAlchemy models
(``backend.db.models``: videos, video_analytics, speeding_violations, vehicle_passages)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contracts.settings import sqlalchemy_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from contracts.messages import Passage, Summary, VideoStatus, Violation

_ENGINES: dict[str, Engine] = {}


def get_engine(db_url: str | None = None, engine: Engine | None = None) -> Engine:
    """``engine`` as given, else one engine per URL (``PipelineSettings.DATABASE_URL``)."""
    if engine is not None:
        return engine
    if not db_url:
        raise ValueError("neither a database URL nor an engine given")
    from sqlalchemy import create_engine

    url = sqlalchemy_url(db_url)
    if url not in _ENGINES:
        _ENGINES[url] = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
    return _ENGINES[url]


@contextmanager
def session_scope(db_url: str | None = None, engine: Engine | None = None) -> Iterator[Session]:
    from sqlalchemy.orm import Session

    with Session(get_engine(db_url, engine)) as session, session.begin():
        yield session


@dataclass(frozen=True)
class VideoRow:
    id: int
    file_path: str
    fps: float | None
    frame_count: int | None
    roi_polygon: list[list[float]] | None  # the ``videos.roi`` column, as [[x, y], ...]
    homography_matrix: list[list[float]] | None
    status: str | None
    speed_limit_kmh: float | None = None  # set with the calibration; None: SPEED_LIMIT_KMH
    source_kind: str = "file"  # "file" | "camera"
    source_url: str | None = None  # a camera's URL (credentials included: never log it as is)

    @property
    def is_camera(self) -> bool:
        return self.source_kind == "camera"


class VideoNotFound(LookupError):
    pass


def load_video(video_id: int, *, db_url: str | None = None, engine: Engine | None = None) -> VideoRow:
    from backend.db.models import Video

    with session_scope(db_url, engine) as session:
        video = session.get(Video, video_id)
        if video is None:
            raise VideoNotFound(f"video {video_id} does not exist")
        return VideoRow(
            id=video.id,
            file_path=video.file_path,
            fps=video.fps,
            frame_count=video.frame_count,
            roi_polygon=_polygon(video.roi),
            homography_matrix=video.homography_matrix,
            status=video.status,
            speed_limit_kmh=video.speed_limit_kmh,
            source_kind=video.source_kind,
            source_url=video.source_url,
        )


def _polygon(roi: Any) -> list[list[float]] | None:
    """The stored ROI as a list of [x, y].

    The backend writes one shape, ``[[x, y], ...]`` (upload's ``roi`` and calibration's
    ``roi_polygon``). Rows written by older versions may hold ``[{"x": .., "y": ..}, ...]`` or an
    object ``{"points" | "polygon" | "roi_polygon": <either list>}``: still read."""
    if not roi:
        return None
    if isinstance(roi, dict):
        roi = roi.get("points") or roi.get("polygon") or roi.get("roi_polygon")
        if not roi:
            return None
    points = []
    for p in roi:
        if isinstance(p, dict):
            points.append([float(p["x"]), float(p["y"])])
        else:
            points.append([float(p[0]), float(p[1])])
    return points


def set_status(session: Session, video_id: int, status: VideoStatus) -> None:
    from sqlalchemy import update

    from backend.db.models import Video

    session.execute(update(Video).where(Video.id == video_id).values(status=status))


def upsert_analytics(session: Session, video_id: int, summary: Summary) -> None:
    """One ``video_analytics`` row per video (UNIQUE(video_id)): insert or overwrite."""
    from sqlalchemy.dialects.postgresql import insert

    from backend.db.models import VideoAnalytics

    values = {
        "video_id": video_id,
        "total_vehicles_count": summary.total_vehicles_count,
        "avg_dwell_time": summary.avg_dwell_time,
        "vehicle_type_distribution": summary.vehicle_type_distribution,
        "speeding_count": summary.speeding_count,
    }
    stmt = insert(VideoAnalytics).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[VideoAnalytics.video_id],
        set_={k: stmt.excluded[k] for k in values if k != "video_id"},
    )
    session.execute(stmt)


def insert_violations(
    session: Session,
    video_id: int,
    violations: Iterable[Violation],
    *,
    now: Callable[[], float] = time.time,
    save_snapshot: Callable[[Violation], str | None] | None = None,
) -> int:
    """Insert the violations whose (video_id, run_id, track_id) is not stored yet; returns how
    many.

    The row is ``backend.db.models.violation_row``'s: ``detected_at`` the violation's (the wall
    clock the processor flagged it at), else ``now()`` (an older processor's message), as naive UTC.
    ``save_snapshot(violation)`` writes its JPEG crop and returns the path stored in
    ``snapshot_path`` (None: no snapshot); called for the inserted violations only."""
    from sqlalchemy import select

    from backend.db.models import SpeedingViolation, violation_row

    violations = list(violations)
    if not violations:
        return 0
    runs = {v.run_id or "" for v in violations}
    stored = set(
        session.execute(
            select(SpeedingViolation.run_id, SpeedingViolation.track_id).where(
                SpeedingViolation.video_id == video_id, SpeedingViolation.run_id.in_(runs)
            )
        ).tuples()
    )
    added = 0
    for v in violations:
        key = (v.run_id or "", v.track_id)
        if key in stored:
            continue
        stored.add(key)
        session.add(
            violation_row(
                video_id,
                v,
                default_detected_at=now() if v.detected_at is None else None,
                snapshot_path=save_snapshot(v) if save_snapshot is not None else None,
            )
        )
        added += 1
    session.flush()
    return added


def insert_passages(session: Session, video_id: int, passages: Iterable[Passage]) -> int:
    """Insert the passages whose (video_id, run_id, track_id) is not stored yet (one per track:
    the last given wins); returns how many rows were added."""
    from sqlalchemy.dialects.postgresql import insert

    from backend.db.models import VehiclePassage, utc_datetime

    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for p in passages:
        row = {"video_id": video_id, **p.model_dump(), "run_id": p.run_id or ""}
        row["passed_at"] = None if p.passed_at is None else utc_datetime(p.passed_at)
        rows[(row["run_id"], p.track_id)] = row
    if not rows:
        return 0
    stmt = insert(VehiclePassage).on_conflict_do_nothing(
        index_elements=[VehiclePassage.video_id, VehiclePassage.run_id, VehiclePassage.track_id]
    )
    result = session.execute(stmt.returning(VehiclePassage.id), list(rows.values()))
    return len(result.all())


def violations_follow_passages(session: Session, video_id: int, keys: set[tuple[str, int]]) -> None:
    """The violation rows of these vehicles ((run_id, track_id)) take their stored passage's
    representative speed and class: the speeding log and the passages agree."""
    from sqlalchemy import tuple_, update

    from backend.db.models import SpeedingViolation, VehiclePassage

    if not keys:
        return
    v, p = SpeedingViolation, VehiclePassage
    session.execute(
        update(v)
        .where(
            v.video_id == video_id,
            p.video_id == v.video_id,
            p.run_id == v.run_id,
            p.track_id == v.track_id,
            p.speed_kmh.is_not(None),
            tuple_(v.run_id, v.track_id).in_(sorted(keys)),
        )
        .values(speed_kmh=p.speed_kmh, vehicle_class=p.class_name)
        .execution_options(synchronize_session=False)
    )
