"""SQLAlchemy 2 models: ``videos`` and ``video_analytics`` as in the seed, plus ``speeding_violations``
and ``vehicle_passages``. The rows only: the REST bodies and CSV columns built from them are the
services' (``services.videos.video_out``, ``services.results``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from contracts.messages import VideoStatus, Violation


class Base(DeclarativeBase):
    pass


# The video's speed limit lives in its calibration (``calibrate_coordinates`` JSONB, next to the
# point pairs), so that ``videos`` keeps the seed's columns.
SPEED_LIMIT_KEY = "speed_limit_kmh"


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (CheckConstraint("source_kind IN ('file', 'camera')", name="videos_source_kind_check"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    file_path: Mapped[str] = mapped_column(String(500), nullable=False)
    # a ``VideoStatus`` value (stored as its text)
    status: Mapped[str | None] = mapped_column(String(50), server_default=text(f"'{VideoStatus.UPLOADED}'"))
    fps: Mapped[float | None] = mapped_column(Float)
    frame_count: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    roi: Mapped[Any | None] = mapped_column(JSONB)
    calibrate_coordinates: Mapped[Any | None] = mapped_column(JSONB)
    homography_matrix: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[datetime | None] = mapped_column(DateTime, server_default=func.current_timestamp())
    updated_at: Mapped[datetime | None] = mapped_column(
        DateTime, server_default=func.current_timestamp(), onupdate=func.current_timestamp()
    )
    # A source is an uploaded file (``file_path``) or a camera (``source_url``, credentials
    # included: never in a response or a log line, ``services.cameras.redact``; its
    # ``file_path`` is the last snapshot grabbed from it).
    source_kind: Mapped[str] = mapped_column(String(16), nullable=False, server_default=text("'file'"))
    source_url: Mapped[str | None] = mapped_column(Text)

    @property
    def speed_limit_kmh(self) -> float | None:
        """The limit set with the calibration, None when none was set."""
        coords = self.calibrate_coordinates
        value = coords.get(SPEED_LIMIT_KEY) if isinstance(coords, dict) else None
        return float(value) if isinstance(value, (int, float)) and value > 0 else None


class VideoAnalytics(Base):
    __tablename__ = "video_analytics"
    __table_args__ = (UniqueConstraint("video_id", name="video_analytics_video_id_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("videos.id", ondelete="CASCADE"), index=True, nullable=True
    )
    total_vehicles_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    avg_dwell_time: Mapped[float | None] = mapped_column(Float, server_default=text("0"))
    vehicle_type_distribution: Mapped[Any | None] = mapped_column(JSONB)
    speeding_count: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime | None] = mapped_column(DateTime, server_default=func.current_timestamp())


class SpeedingViolation(Base):
    """A stored ``contracts.messages.Violation``: the same names, column for field (the row of
    one: ``violation_row``)."""

    __tablename__ = "speeding_violations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("videos.id", ondelete="CASCADE"), index=True, nullable=False
    )
    track_id: Mapped[int] = mapped_column(Integer, nullable=False)
    vehicle_class: Mapped[str | None] = mapped_column(String(50))
    speed_kmh: Mapped[float] = mapped_column(Float, nullable=False)
    frame_number: Mapped[int] = mapped_column(Integer, nullable=False)
    video_time_s: Mapped[float | None] = mapped_column(Float)
    # UTC (naive): the wall clock the processor flagged the vehicle at (the clean-up time for an
    # older processor's message); the server default only for rows written otherwise.
    detected_at: Mapped[datetime | None] = mapped_column(DateTime, server_default=func.current_timestamp())
    # The JPEG crop: <VIDEO_STORAGE_PATH>/snapshots/<video_id>/<track_id>.jpg, written by the clean-up
    snapshot_path: Mapped[str | None] = mapped_column(String(500))
    # The stream run that flagged it ('' for rows of older versions): a camera's track ids start
    # again with each run, so a vehicle is (video_id, run_id, track_id).
    run_id: Mapped[str] = mapped_column(String(250), nullable=False, server_default=text("''"))

    __table_args__ = (
        UniqueConstraint(
            "video_id", "run_id", "track_id", name="speeding_violations_video_id_run_id_track_id_key"
        ),
    )


def violation_row(
    video_id: int,
    violation: Violation,
    *,
    default_detected_at: float | None = None,
    snapshot_path: str | None = None,
) -> SpeedingViolation:
    """The (unsaved) ``speeding_violations`` row of a ``contracts.messages.Violation``: ``run_id``
    '' for a message without one; ``detected_at`` the violation's wall clock, else
    ``default_detected_at`` (Unix epoch s, for an older processor's message; None: left empty),
    as naive UTC."""
    detected = violation.detected_at if violation.detected_at is not None else default_detected_at
    return SpeedingViolation(
        video_id=video_id,
        run_id=violation.run_id or "",
        track_id=violation.track_id,
        vehicle_class=violation.vehicle_class,
        speed_kmh=violation.speed_kmh,
        frame_number=violation.frame_number,
        video_time_s=violation.video_time_s,
        detected_at=None if detected is None else utc_datetime(detected),
        snapshot_path=snapshot_path,
    )


def utc_datetime(epoch_s: float) -> datetime:
    """Unix epoch seconds -> the naive UTC datetime stored in ``speeding_violations.detected_at``."""
    return datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None)


class VehiclePassage(Base):
    """One counted vehicle of a stream (its passage through the ROI), written as its track ends
    (continuous results: the monitor drains the processor's passages while the stream runs, the
    clean-up the rest at its end); the traffic report is computed from these."""

    __tablename__ = "vehicle_passages"
    __table_args__ = (
        UniqueConstraint(
            "video_id", "run_id", "track_id", name="vehicle_passages_video_id_run_id_track_id_key"
        ),
        Index("ix_vehicle_passages_video_id_passed_at", "video_id", "passed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    video_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("videos.id", ondelete="CASCADE"), index=True, nullable=False
    )
    track_id: Mapped[int] = mapped_column(Integer, nullable=False)
    class_name: Mapped[str] = mapped_column(String(50), nullable=False)
    first_frame: Mapped[int] = mapped_column(Integer, nullable=False)
    last_frame: Mapped[int] = mapped_column(Integer, nullable=False)
    first_time_s: Mapped[float] = mapped_column(Float, nullable=False)
    last_time_s: Mapped[float] = mapped_column(Float, nullable=False)
    dwell_time_s: Mapped[float] = mapped_column(Float, nullable=False)
    speed_kmh: Mapped[float | None] = mapped_column(Float)  # representative: median in the ROI
    max_speed_kmh: Mapped[float | None] = mapped_column(Float)
    speeding: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    run_id: Mapped[str] = mapped_column(String(250), nullable=False, server_default=text("''"))
    # UTC (naive): the wall clock of its last frame in the ROI; None for rows of older versions
    passed_at: Mapped[datetime | None] = mapped_column(DateTime)
    direction: Mapped[str | None] = mapped_column(String(20))  # schemas.DIRECTIONS
