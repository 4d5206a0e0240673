"""CRUD functions: keyword arguments, one session each (CONVENTIONS.md, Database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from backend.db.models import SpeedingViolation, VehiclePassage, Video, VideoAnalytics
from contracts.messages import VideoStatus


def create_video(*, session: Session, name: str, file_path: str, **probe: Any) -> Video:
    video = Video(name=name, file_path=file_path, status=VideoStatus.UPLOADED, **probe)
    session.add(video)
    session.flush()
    session.refresh(video)
    return video


def get_video(*, session: Session, video_id: int) -> Video | None:
    return session.get(Video, video_id)


def list_videos(*, session: Session) -> list[Video]:
    return list(session.scalars(select(Video).order_by(Video.id)))


def list_cameras(*, session: Session) -> list[Video]:
    return list(session.scalars(select(Video).where(Video.source_kind == "camera").order_by(Video.id)))


def set_file_path(*, session: Session, video_id: int, file_path: str) -> Video:
    video = session.get_one(Video, video_id)
    video.file_path = file_path
    session.flush()
    session.refresh(video)
    return video


def update_calibration(
    *,
    session: Session,
    video_id: int,
    roi: list[list[float]],
    calibrate_coordinates: dict[str, Any],
    homography_matrix: list[list[float]],
) -> Video | None:
    video = session.get(Video, video_id)
    if video is None:
        return None
    video.roi = roi
    video.calibrate_coordinates = calibrate_coordinates
    video.homography_matrix = homography_matrix
    session.flush()
    session.refresh(video)
    return video


def delete_video(*, session: Session, video_id: int) -> tuple[Video, list[str]] | None:
    """Delete the row (analytics, violations and passages go with it: ON DELETE CASCADE); returns
    the deleted video (its ``file_path``) and the snapshot files its violations named, None when
    there was none."""
    video = session.get(Video, video_id)
    if video is None:
        return None
    snapshots = violation_snapshot_paths(session=session, video_id=video_id)
    session.delete(video)
    session.flush()
    return video, snapshots


def clear_results(*, session: Session, video_id: int) -> list[str]:
    """Forget a previous run's stored results (analytics, violations, passages) of the video;
    returns the snapshot files its violations named (the caller removes them)."""
    snapshots = violation_snapshot_paths(session=session, video_id=video_id)
    for model in (VideoAnalytics, SpeedingViolation, VehiclePassage):
        session.execute(delete(model).where(model.video_id == video_id))
    return snapshots


def set_status(*, session: Session, video_id: int, status: VideoStatus) -> None:
    video = session.get_one(Video, video_id)
    video.status = status


def get_analytics(*, session: Session, video_id: int) -> VideoAnalytics | None:
    return session.scalar(select(VideoAnalytics).where(VideoAnalytics.video_id == video_id))


def list_violations(*, session: Session, video_id: int) -> list[SpeedingViolation]:
    query = (
        select(SpeedingViolation)
        .where(SpeedingViolation.video_id == video_id)
        .order_by(SpeedingViolation.frame_number, SpeedingViolation.id)
    )
    return list(session.scalars(query))


def list_passages(*, session: Session, video_id: int) -> list[VehiclePassage]:
    query = (
        select(VehiclePassage)
        .where(VehiclePassage.video_id == video_id)
        .order_by(VehiclePassage.first_frame, VehiclePassage.track_id)
    )
    return list(session.scalars(query))


WINDOW_PASSAGE_COLUMNS = ("passed_at", "class_name", "direction", "speed_kmh")


def list_passages_between(
    *, session: Session, video_id: int, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The video's passages with ``passed_at`` in ``[start, end)`` (naive UTC; NULL never), by
    ``passed_at``: the columns the window report needs (``WINDOW_PASSAGE_COLUMNS``), as dicts."""
    query = (
        select(*(getattr(VehiclePassage, c) for c in WINDOW_PASSAGE_COLUMNS))
        .where(
            VehiclePassage.video_id == video_id,
            VehiclePassage.passed_at >= start,
            VehiclePassage.passed_at < end,
        )
        .order_by(VehiclePassage.passed_at, VehiclePassage.id)
    )
    return [dict(row) for row in session.execute(query).mappings()]


def get_violation(*, session: Session, violation_id: int) -> SpeedingViolation | None:
    return session.get(SpeedingViolation, violation_id)


def violation_snapshot_paths(*, session: Session, video_id: int) -> list[str]:
    """The snapshot files the video's stored violations name."""
    query = select(SpeedingViolation.snapshot_path).where(
        SpeedingViolation.video_id == video_id, SpeedingViolation.snapshot_path.is_not(None)
    )
    return [p for p in session.scalars(query) if p]
