"""Video rows and their files: look-up, the REST body of a row, calibration, thumbnail, snapshots,
deletion.

A file's thumbnail (its first frame, the picture the calibration editor draws on) is made once,
at upload (``services.uploads``), and kept beside it as ``{id}.thumb.jpg``; a request reads the
file (the file pool), and makes it once (the video pool) only for a video uploaded before
thumbnails were kept. A camera's thumbnail is its snapshot (``services.cameras``), a JPEG
written when it is grabbed.

Keyword-argument functions over the application's services (database, Redis, Airflow, the storage
directory), called by the REST handlers; failures are ``ServiceError`` (the API's JSON errors).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from traffic_processing.calibration import CalibrationError, fit_homography
from traffic_processing.roi import RoiError, parse_polygon
from traffic_processing.video import VideoError, first_frame
from traffic_processing.visualize import encode_jpeg

from backend.db import crud
from backend.db.models import SPEED_LIMIT_KEY, Video
from backend.db.session import Database
from backend.schemas import CalibrationIn, CameraHealth, VideoOut
from backend.services import streaming
from backend.services.airflow_client import AirflowClient
from backend.services.errors import ServiceError, not_found, video_not_found
from backend.services.redact import redact
from backend.services.storage import read_snapshot, remove_snapshots, remove_stored_file

log = logging.getLogger("backend.videos")

THUMBNAIL_QUALITY = 85
# Thumbnails being made for older rows, by path: a second request waits for the first one's
_making: dict[str, asyncio.Future[bytes]] = {}


async def get_video(*, db: Database, video_id: int) -> Video:
    video = await db.run(lambda s: crud.get_video(session=s, video_id=video_id))
    if video is None:
        raise video_not_found(video_id)
    return video


async def list_videos(*, db: Database) -> list[Video]:
    return await db.run(lambda s: crud.list_videos(session=s))


def video_out(video: Video, *, default_limit_kmh: float, health: CameraHealth | None = None) -> VideoOut:
    """The row as the API shows it: ``speed_limit_kmh`` the calibration's, else the default given
    (the backend's ``SPEED_LIMIT_KMH``); a camera's URL without its credentials."""
    limit = video.speed_limit_kmh
    return VideoOut.model_validate(
        {
            "id": video.id,
            "name": video.name,
            "file_path": video.file_path,
            "status": video.status,
            "fps": video.fps,
            "frame_count": video.frame_count,
            "width": video.width,
            "height": video.height,
            "duration": video.duration,
            "roi": video.roi,
            "calibrate_coordinates": video.calibrate_coordinates,
            "homography_matrix": video.homography_matrix,
            "speed_limit_kmh": limit if limit is not None else default_limit_kmh,
            "source_kind": video.source_kind or "file",
            "source_url": redact(video.source_url) if video.source_url else None,
            "created_at": video.created_at.isoformat() if video.created_at else None,
            "updated_at": video.updated_at.isoformat() if video.updated_at else None,
            "health": health,
        }
    )


def outside_frame(name: str, points: list[list[float]], width: int | None, height: int | None) -> str | None:
    """The message naming the first point outside a ``width`` x ``height`` frame, None when all
    are inside (0 <= x <= width, 0 <= y <= height: the border is inside) or the size is unknown."""
    if not width or not height:  # not probed (an old row): nothing to check against
        return None
    for i, (x, y) in enumerate(points):
        if not (0 <= x <= width and 0 <= y <= height):
            return f"{name}[{i}] = ({x:g}, {y:g}) is outside the {width}x{height} frame"
    return None


def _check_inside_frame(name: str, points: list[list[float]], video: Video, code: str) -> None:
    message = outside_frame(name, points, video.width, video.height)
    if message is not None:
        raise ServiceError(400, code, message, field=name)


async def calibrate(*, db: Database, video: Video, body: CalibrationIn) -> tuple[Video, float]:
    """Check the points against the frame, fit the homography (metres) and store ROI, points,
    matrix and the speed limit. Returns the updated row and the reprojection error (m)."""
    _check_inside_frame("roi_polygon", body.roi_polygon, video, "invalid_roi")
    _check_inside_frame("image_points", body.image_points, video, "invalid_calibration")
    try:
        roi = parse_polygon(body.roi_polygon)
    except RoiError as exc:
        raise ServiceError(400, "invalid_roi", str(exc), field="roi_polygon") from exc
    assert roi is not None  # None only for no polygon: the model requires one
    try:
        homography = fit_homography(body.image_points, body.world_points)
    except CalibrationError as exc:
        # the point pairs: named by their image side (the editor shows them together)
        raise ServiceError(422, "degenerate_calibration", str(exc), field="image_points") from exc
    points: dict[str, Any] = {"image_points": body.image_points, "world_points": body.world_points}
    if body.speed_limit_kmh is not None:
        points[SPEED_LIMIT_KEY] = body.speed_limit_kmh
    video_id = video.id
    updated = await db.run(
        lambda s: crud.update_calibration(
            session=s,
            video_id=video_id,
            roi=roi.tolist(),
            calibrate_coordinates=points,
            homography_matrix=homography.matrix.tolist(),
        )
    )
    if updated is None:  # deleted meanwhile
        raise video_not_found(video_id)
    return updated, homography.reprojection_error_m


def thumbnail_path(video_file: str | Path, video_id: int) -> Path:
    """Where an uploaded video's thumbnail is kept: ``{id}.thumb.jpg`` beside the video."""
    return Path(video_file).with_name(f"{video_id}.thumb.jpg")


def thumbnail_file(video: Video) -> Path:
    """The file a video's thumbnail is read from (a camera's: its last snapshot)."""
    if video.source_kind == "camera":
        return Path(video.file_path)
    return thumbnail_path(video.file_path, video.id)


def make_thumbnail(frame: np.ndarray, quality: int = THUMBNAIL_QUALITY) -> bytes:
    """A frame as the thumbnail's JPEG (full size: the calibration editor's points are pixels)."""
    return encode_jpeg(frame, quality)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a reader never sees half a JPEG; a full disk leaves
    nothing behind)."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VideoError(f"cannot read {path.name}: {exc.strerror}") from exc


def _render_and_keep(video_file: str, target: Path | None) -> bytes:
    """The first frame as JPEG, kept at ``target`` when given (video work: the video pool)."""
    jpeg = make_thumbnail(first_frame(video_file))
    if target is not None:
        try:
            write_atomically(target, jpeg)
        except OSError as exc:  # served all the same; made again next time
            log.warning("thumbnail %s not kept: %s", target, exc)
    return jpeg


async def thumbnail(*, db: Database, video: Video, storage: Path | None = None) -> bytes:
    """The thumbnail's JPEG: the file made at upload (a camera's snapshot); for a video uploaded
    before thumbnails were kept, made once from its first frame and kept (inside ``storage``)."""
    path = thumbnail_file(video)
    try:
        jpeg = await db.run_file(_read_file, path)
    except VideoError as exc:
        raise not_found("thumbnail_unavailable", f"cannot read the thumbnail: {exc}") from exc
    if jpeg is not None:
        return jpeg
    if video.source_kind == "camera":
        raise not_found("thumbnail_unavailable", f"no snapshot of camera {video.id}: grab one")
    keep = storage is None or path.resolve().is_relative_to(storage.resolve())
    key = str(path)
    making = _making.get(key)
    if making is None:
        target = path if keep else None
        making = asyncio.ensure_future(db.run_video(_render_and_keep, video.file_path, target))
        _making[key] = making
        making.add_done_callback(lambda _done: _making.pop(key, None))
    try:
        return await asyncio.shield(making)
    except VideoError as exc:
        raise not_found("thumbnail_unavailable", f"cannot read the video file: {exc}") from exc


async def delete_video(
    *, db: Database, redis: aioredis.Redis, airflow: AirflowClient, storage: Path, video: Video
) -> None:
    """The row (analytics, violations and passages cascade), the video file, its violations'
    snapshots and the video's Redis keys go. 409 while it streams (``streaming.ensure_not_streaming``)."""
    await streaming.ensure_not_streaming(airflow=airflow, video=video)
    deleted = await db.run(lambda s: crud.delete_video(session=s, video_id=video.id))
    if deleted is None:
        raise video_not_found(video.id)
    await db.run_file(remove_stored_file, video.file_path, storage)
    if video.source_kind != "camera":  # (a camera's thumbnail is its snapshot, file_path)
        await db.run_file(remove_stored_file, str(thumbnail_path(video.file_path, video.id)), storage)
    await db.run_file(remove_snapshots, video.id, deleted[1], storage)
    try:
        await streaming.clear_keys(redis, video.id)
    except Exception as exc:  # keys expire on their own; the video is gone already
        log.warning("video %d deleted, its Redis keys not cleared: %r", video.id, exc)
    log.info("deleted video %d (%s, %s)", video.id, video.name, video.file_path)


async def violation_snapshot(*, db: Database, storage: Path, violation_id: int) -> bytes:
    """The JPEG crop of a violation; 404 ``violation_not_found`` for an unknown id,
    ``snapshot_not_found`` without one (none stored, or its file is gone)."""
    row = await db.run(lambda s: crud.get_violation(session=s, violation_id=violation_id))
    if row is None:
        raise not_found("violation_not_found", f"no violation with id {violation_id}")
    if not row.snapshot_path:
        raise not_found("snapshot_not_found", f"violation {violation_id} has no snapshot")
    jpeg = await db.run_file(read_snapshot, row.snapshot_path, storage)
    if jpeg is None:
        raise not_found("snapshot_not_found", f"the snapshot file of violation {violation_id} is missing")
    return jpeg
