"""The header probe of an uploaded video: what its container and stream headers declare (frame
size, rate, duration), read by FFmpeg (PyAV) in a subprocess, before anything decodes the clip.

A clip can declare 16000 x 16000 pixels, a week of duration or 10 000 frames/s in a few hundred
bytes; decoding it (OpenCV's full probe, the producer, Spark) would then take the memory and CPU
of every service that touches it. The headers are read in a child process, never in the
backend's: its address space is capped (``RLIMIT_AS``), its CPU time too, and it is killed at
the timeout. FFmpeg's ``avformat_find_stream_info`` may decode a frame or two of some codecs to
learn their parameters; the memory cap is what keeps that bounded.

The backend calls ``probe_headers`` (async: the request thread and the IOLoop never wait on
it); the child is ``python -m backend.services.probe PATH --memory-mb N --cpu-s N`` and prints
one JSON line: ``{"ok": true, "width", "height", "fps", "duration_s", "frames", "codec",
"format"}`` or ``{"ok": false, "error", "oom"}``. Only the standard library is imported at the
top: the child starts in about 0.1 s (PyAV is imported inside it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]  # where ``-m backend.services.probe`` imports from
# Header probes running at once (per event loop): each is a process of up to PROBE_MEMORY_MB
MAX_CONCURRENT_PROBES = 4
OUTPUT_LIMIT = 64 * 1024  # what is read of the child's stdout/stderr


@dataclass(frozen=True)
class VideoLimits:
    """What an uploaded video may declare (``Settings``: MAX_VIDEO_PIXELS, MAX_VIDEO_DURATION_S,
    MAX_VIDEO_FPS) and how the header probe runs (PROBE_TIMEOUT_S, PROBE_MEMORY_MB)."""

    max_pixels: int = 7680 * 4320
    max_duration_s: float = 24 * 3600
    max_fps: float = 240.0
    probe_timeout_s: float = 20.0
    probe_memory_mb: int = 1024

    @classmethod
    def from_settings(cls, config: Any) -> VideoLimits:
        return cls(
            max_pixels=config.MAX_VIDEO_PIXELS,
            max_duration_s=config.MAX_VIDEO_DURATION_S,
            max_fps=config.MAX_VIDEO_FPS,
            probe_timeout_s=config.PROBE_TIMEOUT_S,
            probe_memory_mb=config.PROBE_MEMORY_MB,
        )


@dataclass(frozen=True)
class HeaderInfo:
    """What the headers declare; ``fps``/``duration_s``/``frames`` None when they do not say."""

    width: int
    height: int
    fps: float | None
    duration_s: float | None
    frames: int | None
    codec: str = ""
    format: str = ""


class ProbeFailed(Exception):
    """The header probe could not read the file (``kind``: ``invalid`` not a readable video,
    ``timeout`` killed at the timeout, ``memory`` over its memory cap)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class LimitExceeded(Exception):
    """The video declares more than a limit allows: ``code`` (``video_too_large``,
    ``video_too_long``, ``frame_rate_too_high``) and a message naming the limit."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_limits(
    limits: VideoLimits,
    *,
    width: int | None,
    height: int | None,
    fps: float | None,
    duration_s: float | None,
    what: str = "the video",
) -> None:
    """``LimitExceeded`` for the first of frame size, frame rate and duration over its limit
    (an unknown value is not checked)."""
    if width and height and width * height > limits.max_pixels:
        raise LimitExceeded(
            "video_too_large",
            f"{what} is {width}x{height} ({width * height} pixels a frame); the limit is "
            f"{limits.max_pixels} pixels a frame (MAX_VIDEO_PIXELS, e.g. 7680x4320)",
        )
    if fps is not None and fps > limits.max_fps:
        raise LimitExceeded(
            "frame_rate_too_high",
            f"{what} runs at {fps:g} frames/s; the limit is {limits.max_fps:g} (MAX_VIDEO_FPS)",
        )
    if duration_s is not None and duration_s > limits.max_duration_s:
        raise LimitExceeded(
            "video_too_long",
            f"{what} lasts {duration_s:.0f} s; the limit is {limits.max_duration_s:g} s "
            "(MAX_VIDEO_DURATION_S)",
        )


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(MAX_CONCURRENT_PROBES)
    return slots


def probe_command(path: Path, limits: VideoLimits) -> list[str]:
    """The child's command line (a test may swap it for one that hangs)."""
    cpu_s = max(1, math.ceil(limits.probe_timeout_s) + 1)  # a belt: the timeout kills it first
    return [
        sys.executable,
        "-m",
        "backend.services.probe",
        str(path),
        "--memory-mb",
        str(limits.probe_memory_mb),
        "--cpu-s",
        str(cpu_s),
    ]


async def probe_headers(path: Path, limits: VideoLimits) -> HeaderInfo:
    """Read ``path``'s headers in a child process with a memory cap, killed after
    ``limits.probe_timeout_s``; ``ProbeFailed`` when it cannot say (never blocks the loop)."""
    async with _semaphore():
        proc = await asyncio.create_subprocess_exec(
            *probe_command(path, limits),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(REPO_ROOT),
            start_new_session=True,  # a Ctrl-C of the backend's terminal is not its business
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), limits.probe_timeout_s)
        except TimeoutError:
            raise ProbeFailed(
                "timeout",
                f"reading the video's headers took longer than {limits.probe_timeout_s:g} s "
                "(PROBE_TIMEOUT_S)",
            ) from None
        finally:
            if proc.returncode is None:  # timed out, or this task was cancelled
                proc.kill()
                await proc.wait()
    return _parse(proc.returncode, out[:OUTPUT_LIMIT], err[:OUTPUT_LIMIT], limits)


def _parse(returncode: int | None, out: bytes, err: bytes, limits: VideoLimits) -> HeaderInfo:
    line = out.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    try:
        answer = json.loads(line[0])
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if "MemoryError" in tail[0]:
            raise ProbeFailed("memory", _memory_message(limits))
        how = f"killed by signal {-returncode}" if returncode and returncode < 0 else f"exit {returncode}"
        raise ProbeFailed("invalid", f"the header probe failed ({how}) {tail[0][:200]}".strip())
    if not answer.get("ok"):
        if answer.get("oom"):
            raise ProbeFailed("memory", _memory_message(limits))
        raise ProbeFailed("invalid", str(answer.get("error") or "unreadable")[:500])
    return HeaderInfo(
        width=int(answer["width"]),
        height=int(answer["height"]),
        fps=answer.get("fps"),
        duration_s=answer.get("duration_s"),
        frames=answer.get("frames"),
        codec=str(answer.get("codec") or ""),
        format=str(answer.get("format") or ""),
    )


def _memory_message(limits: VideoLimits) -> str:
    return (
        f"reading the video's headers needed more than {limits.probe_memory_mb} MB (PROBE_MEMORY_MB): "
        "its frames are too large"
    )


# ---- the child ---------------------------------------------------------------------------------


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def read_headers(path: str) -> dict[str, Any]:
    """The best video stream's declared size, rate, duration and frame count (no frame is
    decoded by this code; FFmpeg's stream-info probe may decode one of some codecs)."""
    import av

    with av.open(path, mode="r", metadata_errors="ignore") as container:
        stream = container.streams.best("video")
        if not isinstance(stream, av.video.stream.VideoStream):
            return {"ok": False, "error": "the file holds no video stream"}
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            return {"ok": False, "error": "the video stream declares no frame size"}
        # average_rate: FFmpeg's avg_frame_rate (base_rate, r_frame_rate, is a time base guess
        # for variable-rate files: 1000 for a browser's WebM)
        fps = _positive(stream.average_rate) or _positive(stream.guessed_rate)
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = _positive(stream.duration * stream.time_base)
        if duration is None and container.duration is not None:
            duration = _positive(container.duration / 1_000_000)  # AV_TIME_BASE
        frames = int(stream.frames) if stream.frames and stream.frames > 0 else None
        if duration is None and frames and fps:
            duration = frames / fps
        return {
            "ok": True,
            "width": width,
            "height": height,
            "fps": fps,
            "duration_s": duration,
            "frames": frames,
            "codec": ctx.name,
            "format": container.format.name,
        }


def _limit(kind: int, value: int) -> None:
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):  # above the hard limit already set: that one holds
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path")
    parser.add_argument("--memory-mb", type=int, default=VideoLimits.probe_memory_mb)
    parser.add_argument("--cpu-s", type=int, default=30)
    args = parser.parse_args(argv)
    _limit(resource.RLIMIT_AS, args.memory_mb * 1024 * 1024)
    _limit(resource.RLIMIT_CPU, args.cpu_s)
    _limit(resource.RLIMIT_CORE, 0)
    try:
        answer = read_headers(args.path)
    except MemoryError:  # PyAV's ENOMEM is a MemoryError too
        answer = {"ok": False, "oom": True, "error": "out of memory"}
    except ImportError as exc:  # FFmpeg's libraries could not even be mapped under the cap
        answer = {"ok": False, "oom": "map" in str(exc) or "memory" in str(exc), "error": str(exc)}
    except Exception as exc:  # FFmpeg's errors: not a video, truncated, unknown codec...
        message = str(exc).replace(repr(args.path), "").replace(args.path, "the file").rstrip(": ")
        answer = {"ok": False, "error": message or type(exc).__name__}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
