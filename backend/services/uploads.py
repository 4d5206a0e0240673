"""Uploads (DESIGN.md, Data flow 1): the multipart body streams to a temporary file in
``VIDEO_STORAGE_PATH`` (never whole in memory); ``store_upload`` then checks the form fields,
probes the file with OpenCV (readable, fps, frames, size, not truncated), inserts the ``videos``
row and renames the file to the server-chosen ``{id}.{ext}`` in the same transaction."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

import cv2
from sqlalchemy.orm import Session
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget
from traffic_processing.roi import RoiError, parse_polygon
from traffic_processing.video import VideoError, VideoInfo, probe_video

from backend.db import crud
from backend.db.models import Video
from backend.db.session import Database
from backend.services.containers import TruncatedVideo, check_complete
from backend.services.errors import ServiceError
from backend.services.videos import outside_frame

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
MAX_FPS = 1000.0


class UploadRejected(ServiceError):
    """The upload is refused (the API answers ``status`` with ``code``)."""


def safe_extension(filename: str | None) -> str:
    """The lower-case video extension of a client file name; rejects paths and odd names."""
    if not filename:
        raise UploadRejected(400, "missing_filename", "the 'video' part has no file name")
    if (
        "\x00" in filename
        or filename != PurePosixPath(filename).name
        or filename != PureWindowsPath(filename).name
        or filename in {".", ".."}
        or filename.startswith(".")
    ):
        raise UploadRejected(400, "invalid_filename", f"file name {filename!r} must be a plain file name")
    ext = os.path.splitext(filename)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise UploadRejected(
            415,
            "unsupported_type",
            f"file extension {ext or '(none)'!r} is not one of {sorted(VIDEO_EXTENSIONS)}",
        )
    return ext


class _Target(BaseTarget):
    @property
    def started(self) -> bool:
        return self._started

    @property
    def finished(self) -> bool:
        return self._finished


class FileTarget(_Target):
    """Writes the part to ``path``; validates the client file name when the part starts."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.size = 0
        self.extension = ""
        self._file: BinaryIO | None = None

    def on_start(self) -> None:
        self.extension = safe_extension(self.multipart_filename)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in on_finish/close

    def on_data_received(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)
        self.size += len(chunk)

    def on_finish(self) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class SmallValueTarget(_Target):
    """A text field, capped so a huge field cannot fill memory."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__()
        self.name = name
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def on_data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.limit:
            raise UploadRejected(400, "field_too_large", f"field {self.name!r} is over {self.limit} bytes")
        self._parts.append(chunk)

    @property
    def value(self) -> str | None:
        if not self.started:
            return None
        try:
            return b"".join(self._parts).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UploadRejected(400, "invalid_field", f"field {self.name!r} is not UTF-8") from exc


class MultipartUpload:
    """Feeds body chunks to the parser; the video part goes to a temporary file."""

    def __init__(self, headers, storage: Path, max_bytes: int) -> None:
        storage.mkdir(parents=True, exist_ok=True)
        self.temp_path = storage / f".upload-{uuid.uuid4().hex}.part"
        self.max_bytes = max_bytes
        self.received = 0
        self.video = FileTarget(self.temp_path)
        self.fields = {
            "name": SmallValueTarget("name", 1024),
            "roi": SmallValueTarget("roi", 64 * 1024),
            "fps": SmallValueTarget("fps", 64),
        }
        try:
            self.parser = StreamingFormDataParser(headers=headers)
        except Exception as exc:
            raise UploadRejected(
                400, "invalid_multipart", f"not a multipart/form-data request: {exc}"
            ) from exc
        self.parser.register("video", self.video)
        for name, target in self.fields.items():
            self.parser.register(name, target)

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise UploadRejected(
                413, "payload_too_large", f"upload is over the limit of {self.max_bytes // (1024 * 1024)} MB"
            )
        try:
            self.parser.data_received(chunk)
        except UploadRejected:
            raise
        except Exception as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, UploadRejected):
                raise cause from None
            raise UploadRejected(400, "invalid_multipart", f"malformed multipart body: {exc}") from exc

    def discard(self) -> None:
        self.video.close()
        self.temp_path.unlink(missing_ok=True)


def probe_complete(path: Path) -> VideoInfo:
    """OpenCV probe (readable, fps, frames, size) plus a read near the end to catch truncation."""
    try:
        check_complete(path)
    except TruncatedVideo as exc:
        raise VideoError(f"the file is truncated: {exc}") from exc
    info = probe_video(path)
    if info.frame_count < 1:
        raise VideoError(f"{path.name} reports no frames")
    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, max(info.frame_count - 1, 0))
        ok, _ = cap.read()
    finally:
        cap.release()
    if not ok:
        raise VideoError("the file is truncated or corrupt: its last frames cannot be read")
    return info


def parse_roi(raw: str | None) -> list[list[float]] | None:
    """The form's optional ``roi`` (JSON list of [x, y] pixels); None when absent or blank."""
    if raw is None or not raw.strip():
        return None
    try:
        polygon = parse_polygon(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise UploadRejected(400, "invalid_roi", f"roi is not valid JSON: {exc}") from exc
    except RoiError as exc:
        raise UploadRejected(400, "invalid_roi", str(exc)) from exc
    return None if polygon is None else polygon.tolist()


def parse_fps(raw: str | None) -> float | None:
    """The form's optional ``fps`` override, in (0, 1000]; None when absent or blank."""
    if raw is None or not raw.strip():
        return None
    try:
        fps = float(raw)
    except ValueError as exc:
        raise UploadRejected(400, "invalid_fps", f"fps {raw!r} is not a number") from exc
    if not 0 < fps <= MAX_FPS:
        raise UploadRejected(400, "invalid_fps", f"fps {fps} must be in (0, 1000]")
    return fps


async def store_upload(*, db: Database, storage: Path, upload: MultipartUpload) -> Video:
    """Check the received form, probe the video, insert its row and move the file to
    ``storage/{id}{ext}``. On any failure nothing stays: no row, no file (the caller discards
    the temporary file)."""
    upload.video.close()
    if not upload.video.started:
        raise UploadRejected(400, "missing_field", "multipart field 'video' (the file) is required")
    if not upload.video.finished:
        raise UploadRejected(400, "invalid_multipart", "the multipart body ended inside the 'video' part")
    name = (upload.fields["name"].value or "").strip()
    if not name:
        raise UploadRejected(400, "missing_field", "multipart field 'name' is required")
    if upload.video.size == 0:
        raise UploadRejected(400, "empty_file", "the uploaded file is empty")
    roi = parse_roi(upload.fields["roi"].value)
    fps = parse_fps(upload.fields["fps"].value)
    try:
        info = await db.run_blocking(probe_complete, upload.temp_path)
    except VideoError as exc:
        raise UploadRejected(400, "invalid_video", f"not a readable video: {exc}") from exc
    if roi is not None and (outside := outside_frame("roi", roi, info.width, info.height)):
        raise UploadRejected(400, "invalid_roi", outside)
    ext = upload.video.extension
    fps = fps or info.fps
    moved: list[Path] = []

    def insert(session: Session) -> Video:
        video = crud.create_video(
            session=session,
            name=name,
            file_path=str(upload.temp_path),
            fps=fps,
            frame_count=info.frame_count,
            width=info.width,
            height=info.height,
            duration=info.frame_count / fps,
            roi=roi,
        )
        final = storage / f"{video.id}{ext}"  # server-chosen name
        os.replace(upload.temp_path, final)
        moved.append(final)
        return crud.set_file_path(session=session, video_id=video.id, file_path=str(final))

    try:
        return await db.run(insert)
    except BaseException:
        # The transaction rolled back, so no row names the moved file: remove it too.
        for path in moved:
            path.unlink(missing_ok=True)
        raise
