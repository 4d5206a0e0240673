"""Cameras as sources: the URL checked, a frame grabbed to test the connection (and to calibrate
on), the ``videos`` row created, renamed, re-pointed or its snapshot refreshed.

The decoder is PyAV (FFmpeg's libraries in a pip wheel): RTSP/RTSPS over TCP, HTTP(S) MJPEG and
HLS (``.m3u8``) open alike; its errors are typed (refused, 401/403, 404, timeouts), so that an
operator gets what went wrong, never the URL's credentials (``services.redact``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from traffic_processing import camera

from backend.db import crud
from backend.db.models import Video
from backend.db.session import Database
from backend.services.errors import ServiceError, video_not_found
from backend.services.redact import redact
from backend.services.videos import write_atomically

log = logging.getLogger("backend.cameras")

SCHEMES = ("rtsp", "rtsps", "http", "https")
MAX_URL = 2000
SNAPSHOT_QUALITY = 90


class CameraError(ServiceError):
    """The camera could not be read: 422 with one of ``camera_unreachable``,
    ``camera_auth_failed``, ``camera_not_found``, ``camera_no_video``,
    ``camera_unsupported_codec``, ``camera_timeout``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(422, code, message)


@dataclass(frozen=True)
class Grab:
    """One frame grabbed from a camera: the JPEG and what the stream says of itself."""

    jpeg: bytes
    width: int
    height: int
    fps: float | None
    codec: str
    seconds: float  # from opening to the first decoded frame


def check_url(url: object) -> str:
    """The URL stripped, or a 400 ``invalid_url`` naming what is wrong (never the URL itself)."""
    if not isinstance(url, str) or not url.strip():
        raise ServiceError(400, "invalid_url", "url must be a non-empty string")
    url = url.strip()
    if len(url) > MAX_URL:
        raise ServiceError(400, "invalid_url", f"url is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ServiceError(400, "invalid_url", f"url is malformed ({exc})") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ServiceError(
            400, "invalid_url", f"unsupported scheme {parts.scheme[:20]!r}: use {', '.join(SCHEMES)}"
        )
    if not parts.hostname:
        raise ServiceError(400, "invalid_url", "url has no host")
    if port == 0:
        raise ServiceError(400, "invalid_url", "url has port 0")
    return url


def classify(exc: BaseException, url: str, timed_out: bool = False) -> CameraError:
    """The API error for a decoder failure (``traffic_processing.camera.classify``)."""
    return CameraError(*camera.classify(exc, url, timed_out))


def grab(url: str, timeout_s: float = 5.0) -> Grab:
    """Open the camera and decode its first video frame (blocking: run it in a thread); a
    ``CameraError`` when that fails or takes longer than about ``timeout_s``."""
    import cv2

    started = time.monotonic()
    try:
        conn = camera.connect(url, timeout_s)
    except camera.CameraReadError as exc:
        raise CameraError(exc.code, str(exc)) from None
    try:
        for frame in conn.frames:
            ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
            if not ok:
                raise CameraError("camera_unsupported_codec", f"{redact(url)}: the frame cannot be encoded")
            height, width = frame.image.shape[:2]
            return Grab(jpeg.tobytes(), width, height, conn.fps, conn.codec, time.monotonic() - started)
            # (one frame is all a connection test needs)
        raise CameraError("camera_timeout", f"{redact(url)}: the stream ended before a frame was decoded")
    except camera.CameraReadError as exc:
        raise CameraError(exc.code, str(exc)) from None
    finally:
        conn.close()


def snapshot_path(storage: Path, video_id: int) -> Path:
    return storage / "cameras" / f"{video_id}.jpg"


async def _grab(db: Database, url: str, timeout_s: float) -> Grab:
    result = await db.run_video(grab, url, timeout_s)  # video work: never on the database's pool
    log.info(
        "camera %s: %dx%d %s in %.2f s",
        redact(url),
        result.width,
        result.height,
        result.codec,
        result.seconds,
    )
    return result


def _point_at(video: Video, url: str, result: Grab, storage: Path) -> None:
    """The row reads ``url``: its size and rate as grabbed, the grabbed frame as its snapshot
    (``file_path``; a camera has no frame count nor duration). The snapshot is the camera's
    thumbnail, made here once per grab and served as a file (``videos.thumbnail``): written
    whole or not at all, so a thumbnail read meanwhile never gets half a JPEG."""
    video.source_url = url
    video.width, video.height, video.fps = result.width, result.height, result.fps
    video.frame_count = video.duration = None
    path = snapshot_path(storage, video.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, result.jpeg)
    video.file_path = str(path)


async def create_camera(*, db: Database, storage: Path, name: str, url: str, timeout_s: float) -> Video:
    """Test the connection (a frame grabbed), then the row (``source_kind`` camera) and its
    snapshot; nothing is stored when the camera cannot be read."""
    url = check_url(url)
    result = await _grab(db, url, timeout_s)

    def store(session) -> Video:  # noqa: ANN001
        video = crud.create_video(session=session, name=name, file_path="")
        video.source_kind = "camera"
        _point_at(video, url, result, storage)
        session.flush()
        session.refresh(video)
        return video

    video = await db.run(store)
    log.info("camera %d (%s) added: %s", video.id, name, redact(url))
    return video


async def update_camera(
    *, db: Database, storage: Path, video: Video, name: str | None, url: str | None, timeout_s: float
) -> Video:
    """Rename, and/or point at another URL (tested first, its snapshot replacing the old one)."""
    result = await _grab(db, check_url(url), timeout_s) if url is not None else None

    def store(session) -> Video:  # noqa: ANN001
        row = crud.get_video(session=session, video_id=video.id)
        if row is None:
            raise video_not_found(video.id)
        if name is not None:
            row.name = name
        if result is not None and url is not None:
            _point_at(row, url.strip(), result, storage)
        session.flush()
        session.refresh(row)
        return row

    return await db.run(store)


def ensure_camera(video: Video) -> Video:
    if video.source_kind != "camera":
        raise ServiceError(409, "not_a_camera", f"video {video.id} is an uploaded file, not a camera")
    return video
