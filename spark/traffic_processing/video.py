"""Reading videos with OpenCV, with clear errors for files that are not videos."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


class VideoError(ValueError):
    """A file that is missing or cannot be read as a video."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    frame_count: int
    width: int
    height: int


def probe_video(path: str | Path) -> VideoInfo:
    """Open the file, read its first frame, return fps, frame count and size."""
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"video not found: {path}")
    if p.stat().st_size == 0:
        raise VideoError(f"video file is empty: {path}")
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise VideoError(f"cannot open {path} as a video (unknown or corrupt format)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{path} holds no readable video frame")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        h, w = frame.shape[:2]
    finally:
        cap.release()
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        raise VideoError(f"{path} reports no usable frame rate ({fps}); pass one explicitly")
    return VideoInfo(str(p), fps, max(count, 1), w, h)


def iter_frames(path: str | Path) -> Iterator[tuple[int, np.ndarray]]:
    """(frame_number, BGR frame) from 0 until the stream ends."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open {path} as a video")
    try:
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield n, frame
            n += 1
    finally:
        cap.release()


def first_frame(path: str | Path) -> np.ndarray:
    for _, frame in iter_frames(path):
        return frame
    raise VideoError(f"{path} holds no readable video frame")
