"""Uploads (DESIGN.md, Data flow 1): the multipart body streams to a temporary file in
``VIDEO_STORAGE_PATH`` (never whole in memory); ``store_upload`` then checks the form fields,
reads the file's headers in a subprocess (``services.probe``: frame size, rate and duration
against their limits, before anything decodes it), probes it with OpenCV (readable, fps,
frames, size, not truncated), makes its thumbnail, inserts the ``videos`` row and renames the
file to the server-chosen ``{id}.{ext}`` (the thumbnail ``{id}.thumb.jpg`` beside it) in the same
transaction.

Refused early: the ``name`` field as soon as its part ends (before the file part, when the
client sends it first, as the dashboard does: the file is then never written); a body larger
than the free space of the storage (507 before the body); a full disk while writing (507, the
partial file removed)."""

from __future__ import annotations

import errno
import json
import os
import shutil
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
from backend.services.probe import LimitExceeded, ProbeFailed, VideoLimits, check_limits, probe_headers
from backend.services.videos import make_thumbnail, outside_frame, thumbnail_path, write_atomically

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
MAX_FPS = 1000.0
MAX_NAME_CHARS = 255  # the ``videos.name`` column
STORAGE_FULL = {errno.ENOSPC, errno.EDQUOT}


class UploadRejected(ServiceError):
    """The upload is refused (the API answers ``status`` with ``code``)."""


def storage_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_FULL


def insufficient_storage(detail: str) -> UploadRejected:
    return UploadRejected(507, "insufficient_storage", f"the video storage is full: {detail}")


def check_free_space(storage: Path, content_length: int) -> None:
    """507 before the body is read when it cannot fit in the storage's free space."""
    try:
        free = shutil.disk_usage(storage).free
    except OSError:  # not there yet (created with the first upload): the write will tell
        return
    if content_length > free:
        raise insufficient_storage(
            f"the upload is {content_length / 2**20:.1f} MB, {free / 2**20:.1f} MB are free"
        )


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
        try:
            self._write(chunk)
        except OSError as exc:
            if storage_full(exc):
                raise insufficient_storage(os.strerror(exc.errno or errno.ENOSPC)) from exc
            raise
        self.size += len(chunk)

    def _write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)

    def on_finish(self) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the file (a full disk may only tell here: 507)."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as exc:
            if storage_full(exc):
                raise insufficient_storage(os.strerror(exc.errno or errno.ENOSPC)) from exc
            raise

    def abandon(self) -> None:
        """Close without caring whether the last bytes reached the disk (the file goes)."""
        try:
            self.close()
        except OSError:
            pass


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


class NameTarget(SmallValueTarget):
    """The ``name`` field, checked as soon as its part ends: at most ``MAX_NAME_CHARS``
    characters (the column), UTF-8; 400 ``invalid_name`` at once, before any later part (the
    file, when the client sends the name first) is read."""

    def __init__(self) -> None:
        super().__init__("name", MAX_NAME_CHARS * 4 + 64)  # UTF-8: up to 4 bytes a character

    def on_data_received(self, chunk: bytes) -> None:
        try:
            super().on_data_received(chunk)
        except UploadRejected:
            raise UploadRejected(400, "invalid_name", self._too_long()) from None

    def on_finish(self) -> None:
        try:
            name = self.value or ""
        except UploadRejected:
            raise UploadRejected(400, "invalid_name", "the name is not valid UTF-8") from None
        if len(name.strip()) > MAX_NAME_CHARS:
            raise UploadRejected(400, "invalid_name", self._too_long(len(name.strip())))

    def _too_long(self, chars: int | None = None) -> str:
        size = f"{chars} characters" if chars is not None else f"over {self.limit} bytes"
        return f"the name is {size}; at most {MAX_NAME_CHARS} characters"


class MultipartUpload:
    """Feeds body chunks to the parser; the video part goes to a temporary file."""

    def __init__(self, headers, storage: Path, max_bytes: int) -> None:
        storage.mkdir(parents=True, exist_ok=True)
        self.temp_path = storage / f".upload-{uuid.uuid4().hex}.part"
        self.max_bytes = max_bytes
        self.received = 0
        self.video = FileTarget(self.temp_path)
        self.fields: dict[str, SmallValueTarget] = {
            "name": NameTarget(),
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
        self.video.abandon()
        self.temp_path.unlink(missing_ok=True)


def probe_complete(path: Path) -> VideoInfo:
    """OpenCV probe (readable, fps, frames, size) plus a read near the end to catch truncation."""
    return probe_with_thumbnail(path)[0]


def probe_with_thumbnail(path: Path) -> tuple[VideoInfo, bytes]:
    """``probe_complete``'s checks, and the first frame as the video's thumbnail (JPEG), from
    the same capture (video work: run it on ``Database.run_video``)."""
    try:
        check_complete(path)
    except TruncatedVideo as exc:
        raise VideoError(f"the file is truncated: {exc}") from exc
    info = probe_video(path)
    if info.frame_count < 1:
        raise VideoError(f"{path.name} reports no frames")
    cap = cv2.VideoCapture(str(path))
    try:
        ok, first = cap.read()
        if not ok or first is None:
            raise VideoError(f"{path.name} holds no readable video frame")
        thumbnail = make_thumbnail(first)
        if info.frame_count > 1:
            cap.set(cv2.CAP_PROP_POS_FRAMES, info.frame_count - 1)
            ok, _ = cap.read()
    finally:
        cap.release()
    if not ok:
        raise VideoError("the file is truncated or corrupt: its last frames cannot be read")
    return info, thumbnail


async def check_headers(path: Path, limits: VideoLimits) -> None:
    """What the file's headers declare against the limits, read in a subprocess with a
    timeout and a memory cap (``services.probe``): 422 over a limit (or when the probe timed
    out or ran out of memory), 400 ``invalid_video`` when they cannot be read."""
    try:
        header = await probe_headers(path, limits)
    except ProbeFailed as exc:
        if exc.kind == "memory":
            raise UploadRejected(422, "video_too_large", str(exc)) from exc
        if exc.kind == "timeout":
            raise UploadRejected(422, "probe_timeout", str(exc)) from exc
        raise UploadRejected(400, "invalid_video", f"not a readable video: {exc}") from exc
    try:
        check_limits(
            limits, width=header.width, height=header.height, fps=header.fps, duration_s=header.duration_s
        )
    except LimitExceeded as exc:
        raise UploadRejected(422, exc.code, str(exc)) from exc


def parse_roi(raw: str | None) -> list[list[float]] | None:
    """The form's optional ``roi`` (JSON list of [x, y] pixels); None when absent or blank."""
    if raw is None or not raw.strip():
        return None
    try:
        polygon = parse_polygon(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise UploadRejected(400, "invalid_roi", f"roi is not valid JSON: {exc}", field="roi") from exc
    except RoiError as exc:
        raise UploadRejected(400, "invalid_roi", str(exc), field="roi") from exc
    return None if polygon is None else polygon.tolist()


def parse_fps(raw: str | None) -> float | None:
    """The form's optional ``fps`` override, in (0, 1000]; None when absent or blank."""
    if raw is None or not raw.strip():
        return None
    try:
        fps = float(raw)
    except ValueError as exc:
        raise UploadRejected(400, "invalid_fps", f"fps {raw!r} is not a number", field="fps") from exc
    if not 0 < fps <= MAX_FPS:
        raise UploadRejected(400, "invalid_fps", f"fps {fps} must be in (0, 1000]", field="fps")
    return fps


async def store_upload(
    *, db: Database, storage: Path, upload: MultipartUpload, limits: VideoLimits | None = None
) -> Video:
    """Check the received form, the video's headers against ``limits`` (a subprocess), probe it
    (OpenCV, on the video pool), insert its row and move the file to ``storage/{id}{ext}``, its
    thumbnail to ``storage/{id}.thumb.jpg``. On any failure nothing stays: no row, no file (the
    caller discards the temporary file)."""
    limits = limits or VideoLimits()
    upload.video.close()
    if not upload.video.started:
        raise UploadRejected(
            400, "missing_field", "multipart field 'video' (the file) is required", field="video"
        )
    if not upload.video.finished:
        raise UploadRejected(400, "invalid_multipart", "the multipart body ended inside the 'video' part")
    name = (upload.fields["name"].value or "").strip()
    if not name:
        raise UploadRejected(400, "missing_field", "multipart field 'name' is required", field="name")
    if upload.video.size == 0:
        raise UploadRejected(400, "empty_file", "the uploaded file is empty")
    roi = parse_roi(upload.fields["roi"].value)
    fps = parse_fps(upload.fields["fps"].value)
    await check_headers(upload.temp_path, limits)  # before anything decodes it
    try:
        info, thumbnail = await db.run_video(probe_with_thumbnail, upload.temp_path)
    except VideoError as exc:
        raise UploadRejected(400, "invalid_video", f"not a readable video: {exc}") from exc
    if roi is not None and (outside := outside_frame("roi", roi, info.width, info.height)):
        raise UploadRejected(400, "invalid_roi", outside, field="roi")
    ext = upload.video.extension
    fps = fps or info.fps
    try:  # what the decoder found (and the rate the form asks for), as the headers were
        check_limits(limits, width=info.width, height=info.height, fps=fps, duration_s=info.frame_count / fps)
    except LimitExceeded as exc:
        raise UploadRejected(422, exc.code, str(exc)) from exc
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
        thumb = thumbnail_path(final, video.id)
        moved.append(thumb)
        write_atomically(thumb, thumbnail)
        return crud.set_file_path(session=session, video_id=video.id, file_path=str(final))

    try:
        return await db.run(insert)
    except BaseException as exc:
        # The transaction rolled back, so no row names the moved files: remove them too.
        for path in moved:
            path.unlink(missing_ok=True)
        if storage_full(exc):
            raise insufficient_storage("the thumbnail could not be written") from exc
        raise
