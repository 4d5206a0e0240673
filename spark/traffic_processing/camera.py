"""Reading cameras (RTSP/RTSPS over TCP, HTTP(S) MJPEG, HLS) with PyAV, FFmpeg's libraries in a
pip wheel: chosen over OpenCV's FFmpeg backend by measurement (``make bench-decoders``: about the
same decode cost and reconnect time, a frozen server noticed in 4 s instead of 6, and typed
errors: refused, 401/403, 404, timeouts).

Credentials never leave here in a message: ``redact`` / ``redact_text`` take them out of URLs and
of any text that may quote one (FFmpeg's errors name the URL they opened). The backend's connection
test and the Airflow producer share ``open_options`` and ``classify``.
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import numpy as np

HIDDEN = "***"
# query parameters that carry a secret in camera URLs (tokens, keys, passwords)
SECRET_PARAMS = re.compile(r"(pass|pwd|token|key|secret|auth|sig)", re.IGNORECASE)
URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact(url: str) -> str:
    """The URL with its user info and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, HIDDEN if SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, *secrets: str | None) -> str:
    """``text`` with every URL in it redacted, and each of ``secrets`` (a URL's password and user,
    raw and percent-encoded) replaced by ``***`` wherever else it appears."""
    out = URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe=""), unquote(secret)}:
                if len(form) >= 3:
                    out = out.replace(form, HIDDEN)
    return out


def url_secrets(url: str) -> tuple[str | None, ...]:
    """The user name and password of ``url`` (either may be None)."""
    try:
        parts = urlsplit(url)
        return parts.username, parts.password
    except ValueError:
        return (None, None)


def open_options(url: str, timeout_s: float) -> dict[str, str]:
    """FFmpeg options for a camera: RTSP over TCP, a socket timeout, little probing (the first
    frame comes sooner)."""
    us = str(int(timeout_s * 1_000_000))
    options = {"timeout": us, "analyzeduration": "1000000", "probesize": "1000000"}
    if urlsplit(url).scheme.lower() in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"
    else:
        options["rw_timeout"] = us
        options["reconnect"] = "0"
    return options


# Codes of ``classify``; the permanent ones will not go away by retrying soon.
PERMANENT = frozenset(
    {"camera_auth_failed", "camera_not_found", "camera_no_video", "camera_unsupported_codec"}
)


def classify(exc: BaseException, url: str, timed_out: bool = False) -> tuple[str, str]:
    """(code, message without credentials) of a decoder failure: ``camera_unreachable``,
    ``camera_auth_failed``, ``camera_not_found``, ``camera_unsupported_codec``, ``camera_timeout``.
    ``timed_out``: the failure came after the whole timeout (a server that accepts and never
    answers makes FFmpeg's RTSP demuxer give up with "invalid data")."""
    import av

    secrets = url_secrets(url)
    where = redact(url)
    detail = redact_text(str(exc), *secrets)
    if isinstance(exc, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
        return "camera_auth_failed", f"{where}: authentication failed (check the user and password)"
    if isinstance(exc, av.error.HTTPNotFoundError):
        return "camera_not_found", f"{where}: the server has no stream at this path"
    if (
        timed_out
        or isinstance(exc, (av.error.ExitError, TimeoutError))
        or getattr(exc, "errno", None) in (errno.ETIMEDOUT, errno.EAGAIN)
    ):
        return "camera_timeout", f"{where}: no answer in time ({detail})"
    if isinstance(exc, (av.error.DecoderNotFoundError, av.error.PatchWelcomeError)):
        return "camera_unsupported_codec", f"{where}: unsupported codec ({detail})"
    if isinstance(exc, av.error.InvalidDataError):
        return "camera_unsupported_codec", f"{where}: the stream cannot be decoded ({detail})"
    return "camera_unreachable", f"{where}: cannot connect ({detail})"


class CameraReadError(RuntimeError):
    """The camera could not be opened or read: ``code`` as ``classify``'s, the message redacted."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def permanent(self) -> bool:
        return self.code in PERMANENT


@dataclass(frozen=True)
class CameraFrame:
    """One decoded frame: BGR pixels, its presentation time in seconds (the stream's clock, from
    this connection's first frame) and the wall clock when it was read."""

    image: np.ndarray
    pts_s: float | None
    read_at: float


@dataclass
class CameraConnection:
    """An open camera: its nominal frame rate (None when the stream does not say) and its frames."""

    fps: float | None
    codec: str
    width: int
    height: int
    frames: Iterator[CameraFrame]
    container: Any

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


def connect(url: str, timeout_s: float = 5.0) -> CameraConnection:
    """Open ``url`` and its first video stream; ``CameraReadError`` when that fails. Reading the
    frames raises ``CameraReadError`` when the stream breaks or no packet comes for about
    ``timeout_s``, and ends (StopIteration) when the server closes it."""
    import av

    started = time.monotonic()
    try:
        container = av.open(url, options=open_options(url, timeout_s), timeout=(timeout_s, timeout_s))
    except Exception as exc:  # noqa: BLE001 - every decoder failure is classified
        raise CameraReadError(*classify(exc, url, time.monotonic() - started >= 0.9 * timeout_s)) from None
    if not container.streams.video:
        kinds = sorted({str(s.type) for s in container.streams}) or ["none"]
        container.close()
        raise CameraReadError(
            "camera_no_video", f"{redact(url)}: no video track (streams: {', '.join(kinds)})"
        )
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"  # frame threading would delay every frame by a few frames
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate and 0 < float(rate) <= 240 else None
    ctx = stream.codec_context
    return CameraConnection(
        fps, ctx.name, ctx.width, ctx.height, _frames(container, stream, url, timeout_s), container
    )


def _frames(container: Any, stream: Any, url: str, timeout_s: float) -> Iterator[CameraFrame]:
    first: float | None = None
    last_ok = time.monotonic()
    try:
        for frame in container.decode(stream):
            read_at = time.time()
            last_ok = time.monotonic()
            pts = None
            if frame.pts is not None and frame.time_base is not None:
                t = float(frame.pts * frame.time_base)
                first = t if first is None else first
                pts = t - first
            yield CameraFrame(frame.to_ndarray(format="bgr24"), pts, read_at)
    except Exception as exc:  # noqa: BLE001 - classified for the health report
        raise CameraReadError(*classify(exc, url, time.monotonic() - last_ok >= 0.9 * timeout_s)) from None
