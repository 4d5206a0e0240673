"""Speed estimation: bottom-centre through the homography to metres, slope over a sliding
window of video time (frame_number / fps, never wall clock).

A least-squares line through the positions of the last ``window_s`` seconds averages box
jitter; frame numbers carry the time, so skipped frames only thin the window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .calibration import project_points
from .detections import FrameDetections

MS_TO_KMH = 3.6


def speed_mps(times_s: np.ndarray, positions_m: np.ndarray) -> float:
    """Speed (m/s) of a least-squares constant-velocity fit to positions (N, 2) metres at
    times (N,) seconds; N >= 2 with distinct times."""
    t = np.asarray(times_s, dtype=np.float64)
    p = np.asarray(positions_m, dtype=np.float64).reshape(-1, 2)
    if len(t) < 2 or np.ptp(t) <= 0:
        raise ValueError("need at least two distinct times")
    tc = t - t.mean()
    velocity = (tc[:, None] * (p - p.mean(axis=0))).sum(axis=0) / (tc**2).sum()
    return float(np.linalg.norm(velocity))


def track_speed_kmh(
    frame_numbers: np.ndarray, points_px: np.ndarray, homography: np.ndarray, fps: float
) -> float:
    """Speed (km/h) of one track from its frame numbers (N,) and bottom-centres (N, 2) px."""
    world = project_points(homography, points_px)
    return speed_mps(np.asarray(frame_numbers, dtype=np.float64) / fps, world) * MS_TO_KMH


@dataclass
class SpeedConfig:
    window_s: float = 1.0  # positions older than this (video time) leave the fit
    min_span_s: float = 0.4  # no speed until the history spans this much video time
    min_points: int = 3  # 3 over >= 0.4 s: a sparse live stride (5 Hz) is measured in 0.4 s
    forget_after_s: float = 2.0  # drop a track's history after this long unseen
    border_px: float = 2.0  # boxes this close to the frame edge are truncated: not used


class SpeedEstimator:
    """Per-track sliding-window speed. ``__call__(detections, frame_number, frame_shape)``
    fills ``detections.speed_kmh`` (NaN until enough history) for tracked rows."""

    def __init__(
        self, homography: np.ndarray | list[list[float]] | None, fps: float, config: SpeedConfig | None = None
    ):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.homography = None if homography is None else np.asarray(homography, dtype=np.float64)
        self.fps = float(fps)
        self.config = config or SpeedConfig()
        self._history: dict[int, deque[tuple[float, float, float]]] = {}
        self._last_seen: dict[int, float] = {}
        self._last_speed: dict[int, float] = {}

    def __call__(
        self, detections: FrameDetections, frame_number: int, frame_shape: tuple[int, ...] | None = None
    ) -> FrameDetections:
        n = len(detections)
        speeds = np.full(n, np.nan, dtype=np.float32)
        if self.homography is None or n == 0:
            detections.speed_kmh = speeds
            self._forget(frame_number / self.fps)
            return detections
        t = frame_number / self.fps
        world = project_points(self.homography, detections.bottom_center)
        usable = self._not_truncated(detections.xyxy, frame_shape)
        cfg = self.config
        for i, track_id in enumerate(detections.tracker_id):
            tid = int(track_id)
            if tid < 0:
                continue
            self._last_seen[tid] = t
            history = self._history.setdefault(tid, deque())
            if usable[i] and (not history or history[-1][0] < t):
                history.append((t, float(world[i, 0]), float(world[i, 1])))
            while history and history[0][0] < t - cfg.window_s:
                history.popleft()
            if len(history) >= cfg.min_points and history[-1][0] - history[0][0] >= cfg.min_span_s:
                arr = np.asarray(history)
                self._last_speed[tid] = speed_mps(arr[:, 0], arr[:, 1:]) * MS_TO_KMH
            if tid in self._last_speed:
                speeds[i] = self._last_speed[tid]
        detections.speed_kmh = speeds
        self._forget(t)
        return detections

    def seed(self, track_id: int, hits: list[tuple[int, float, float]]) -> None:
        """Positions of a track measured before it was confirmed: [(frame_number, x, y px)]."""
        if self.homography is None or not hits:
            return
        frames = np.asarray([h[0] for h in hits], dtype=np.float64)
        world = project_points(self.homography, np.asarray([h[1:] for h in hits], dtype=np.float64))
        history = self._history.setdefault(int(track_id), deque())
        older = [(f / self.fps, float(x), float(y)) for f, (x, y) in zip(frames, world)]
        newer = list(history)
        history.clear()
        history.extend(sorted(older + [h for h in newer if h[0] not in {o[0] for o in older}]))
        self._last_seen[int(track_id)] = history[-1][0]

    def last_speeds(self, track_ids: np.ndarray) -> np.ndarray:
        """The latest estimate (km/h, NaN when none) of each track id."""
        return np.asarray([self._last_speed.get(int(t), np.nan) for t in track_ids], dtype=np.float32)

    def _not_truncated(self, xyxy: np.ndarray, frame_shape: tuple[int, ...] | None) -> np.ndarray:
        if frame_shape is None:
            return np.ones(len(xyxy), dtype=bool)
        h, w = frame_shape[:2]
        b = self.config.border_px
        return (xyxy[:, 0] > b) & (xyxy[:, 1] > b) & (xyxy[:, 2] < w - b) & (xyxy[:, 3] < h - b)

    def _forget(self, t: float) -> None:
        stale = [tid for tid, seen in self._last_seen.items() if t - seen > self.config.forget_after_s]
        for tid in stale:
            self._history.pop(tid, None)
            self._last_seen.pop(tid, None)
            self._last_speed.pop(tid, None)
