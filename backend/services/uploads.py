"""Streaming multipart upload to a temporary file in ``VIDEO_STORAGE_PATH`` (never whole in memory)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path, PurePosixPath, PureWindowsPath

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class UploadRejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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
        self._file = None

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
