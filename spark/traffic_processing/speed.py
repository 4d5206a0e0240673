"""Speed estimation: bottom-centre through the homography to metres, slope over a window of
video time (frame_number / fps, never wall clock).

A least-squares line through the positions of the last ``window_s`` seconds averages box
jitter; frame numbers carry the time, so skipped frames only thin the window. An estimate is
made only when its standard error is small enough (``SpeedConfig.max_se_kmh``); a short or
sparse track reaches further back for points (up to ``max_window_s``), so the rule depends on
the detection rate only through the data.
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


def window_fits(
    times_s: np.ndarray, positions_m: np.ndarray, sigmas_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares constant-velocity fits over every window that ends at the latest point:
    window j holds points j..N-1 (times ascending). Returns (speed m/s, standard error m/s) per
    window start j (NaN where the window has fewer than two distinct times).

    The standard error is sqrt(sigma^2 / S_tt): sigma^2 is the variance of the residuals along
    the direction of motion (N - 2 degrees of freedom), floored by the mean of the points' own
    position noise ``sigmas_m`` (a two- or three-point window has no or too few residuals to
    tell its noise); S_tt is the spread of the times about their mean. Computed from suffix sums,
    so all windows cost one pass."""
    t = np.asarray(times_s, dtype=np.float64)
    p = np.asarray(positions_m, dtype=np.float64).reshape(-1, 2)
    n = len(t)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    t = t - t[-1]
    p = p - p[-1]

    def suffix(a: np.ndarray) -> np.ndarray:
        return np.cumsum(a[::-1], axis=0)[::-1]

    k = suffix(np.ones(n))
    st, stt = suffix(t), suffix(t * t)
    sp, stp = suffix(p), suffix(t[:, None] * p)
    spp = suffix(np.einsum("ni,nj->nij", p, p))
    ss = suffix(np.asarray(sigmas_m, dtype=np.float64) ** 2)
    ctt = stt - st * st / k
    ctp = stp - st[:, None] * sp / k[:, None]
    cpp = spp - np.einsum("ni,nj->nij", sp, sp) / k[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = ctt > 1e-12
        velocity = np.where(ok[:, None], ctp / np.where(ok, ctt, 1.0)[:, None], np.nan)
        speed = np.linalg.norm(velocity, axis=1)
        u = velocity / np.where(speed > 1e-9, speed, 1.0)[:, None]  # direction of motion
        cqq = np.einsum("ni,nij,nj->n", u, cpp, u)
        ctq = np.einsum("ni,ni->n", ctp, u)
        rss = np.maximum(cqq - ctq * ctq / np.where(ok, ctt, 1.0), 0.0)
        resid = np.where(k > 2, rss / np.maximum(k - 2, 1), 0.0)
        sigma2 = np.maximum(resid, ss / k)
        se = np.sqrt(sigma2 / np.where(ok, ctt, 1.0))
    return np.where(ok, speed, np.nan), np.where(ok, se, np.nan)


@dataclass
class SpeedConfig:
    # The fit uses the positions of the last ``window_s`` of video time; while that gives fewer
    # than ``min_points`` positions or a standard error above ``max_se_kmh`` (a short or sparse
    # track: few detections, a vehicle far away), it reaches further back, up to
    # ``max_window_s``. No estimate until some window qualifies: the evidence is the estimate's
    # uncertainty, not a fixed time span, so a vehicle crossing a short zone fast gets a speed
    # as soon as its points (margin included) pin it down, at any detection rate.
    window_s: float = 1.0
    max_window_s: float = 3.0
    min_points: int = 3  # two points have no residual to judge the fit by
    max_se_kmh: float = 2.0
    # Position noise of a box's bottom-centre, in pixels; through the homography's local scale it
    # becomes each point's noise in metres (a floor under the residuals: far is noisier).
    pixel_sigma: float = 1.0
    min_span_s: float = 0.0  # optional extra condition on the window's span (0: none)
    forget_after_s: float = 2.0  # drop a track's history after this long unseen
    border_px: float = 2.0  # boxes this close to the frame edge are truncated: not used


class SpeedEstimator:
    """Per-track windowed speed. ``__call__(detections, frame_number, frame_shape)`` fills
    ``detections.speed_kmh`` (NaN until a window qualifies, then the latest estimate) for tracked
    rows; ``last_se_kmh`` holds each track's latest estimate's standard error."""

    def __init__(
        self, homography: np.ndarray | list[list[float]] | None, fps: float, config: SpeedConfig | None = None
    ):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.homography = None if homography is None else np.asarray(homography, dtype=np.float64)
        self.fps = float(fps)
        self.config = config or SpeedConfig()
        # track -> (t, x, y[, sigma]) positions; states pickled before sigma was kept hold 3-tuples
        self._history: dict[int, deque[tuple[float, ...]]] = {}
        self._last_seen: dict[int, float] = {}
        self._last_speed: dict[int, float] = {}
        self._last_se: dict[int, float] = {}
        self._fresh: set[int] = set()

    def __setstate__(self, state: dict) -> None:  # states pickled by earlier versions lack these
        self.__dict__.update(state)
        self.__dict__.setdefault("_last_se", {})
        self.__dict__.setdefault("_fresh", set())

    def __call__(
        self, detections: FrameDetections, frame_number: int, frame_shape: tuple[int, ...] | None = None
    ) -> FrameDetections:
        n = len(detections)
        speeds = np.full(n, np.nan, dtype=np.float32)
        self._fresh = set()
        if self.homography is None or n == 0:
            detections.speed_kmh = speeds
            self._forget(frame_number / self.fps)
            return detections
        t = frame_number / self.fps
        points = detections.bottom_center
        world = project_points(self.homography, points)
        sigmas = self.position_sigma_m(points)
        usable = self._not_truncated(detections.xyxy, frame_shape)
        cfg = self.config
        keep_s = max(cfg.window_s, cfg.max_window_s)
        for i, track_id in enumerate(detections.tracker_id):
            tid = int(track_id)
            if tid < 0:
                continue
            self._last_seen[tid] = t
            history = self._history.setdefault(tid, deque())
            if usable[i] and (not history or history[-1][0] < t):
                history.append((t, float(world[i, 0]), float(world[i, 1]), float(sigmas[i])))
                while history and history[0][0] < t - keep_s - 1e-9:
                    history.popleft()
                estimate = self._estimate(history)
                if estimate is not None:
                    self._last_speed[tid], self._last_se[tid] = estimate
                    self._fresh.add(tid)
            if tid in self._last_speed:
                speeds[i] = self._last_speed[tid]
        detections.speed_kmh = speeds
        self._forget(t)
        return detections

    def _estimate(self, history: deque[tuple[float, ...]]) -> tuple[float, float] | None:
        """(km/h, standard error km/h) of the shortest qualifying window, None if none does."""
        cfg = self.config
        if len(history) < max(2, cfg.min_points):
            return None
        default = self._default_sigma()
        arr = np.asarray([h if len(h) == 4 else (*h, default) for h in history], dtype=np.float64)
        times = arr[:, 0]
        speed, se = window_fits(times, arr[:, 1:3], arr[:, 3])
        latest = times[-1]
        count = np.arange(len(times), 0, -1)
        span = latest - times
        base = int(np.searchsorted(times, latest - cfg.window_s - 1e-9))  # the window_s window
        ok = (
            (count >= cfg.min_points)
            & (span >= cfg.min_span_s - 1e-9)
            & (span <= cfg.max_window_s + 1e-9)
            & np.isfinite(se)
            & (se * MS_TO_KMH <= cfg.max_se_kmh)
        )
        starts = np.flatnonzero(ok[: base + 1])  # windows of window_s or longer ...
        if len(starts):
            j = starts[-1]  # ... the shortest of them that qualifies
        else:  # none: a point that spoils them all (a box cut by the frame's edge, mostly), so
            starts = np.flatnonzero(ok)  # the longest shorter window that qualifies, if any
            if not len(starts):
                return None
            j = starts[0]
        return float(speed[j] * MS_TO_KMH), float(se[j] * MS_TO_KMH)

    def position_sigma_m(self, points_px: np.ndarray) -> np.ndarray:
        """(N,) metres of road that ``pixel_sigma`` pixels at each image point stand for (the RMS
        of the homography's local scale along the image axes)."""
        pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
        if self.homography is None or not len(pts):
            return np.zeros(len(pts))
        base = project_points(self.homography, pts)
        du = project_points(self.homography, pts + [1.0, 0.0]) - base
        dv = project_points(self.homography, pts + [0.0, 1.0]) - base
        scale = np.sqrt((np.sum(du * du, axis=1) + np.sum(dv * dv, axis=1)) / 2.0)
        return self.config.pixel_sigma * scale

    def _default_sigma(self) -> float:
        """Noise of positions recorded without one (a state from before it was kept)."""
        return 0.0

    def estimated_now(self, track_id: int) -> bool:
        """Whether the last call made a new estimate for this track (not just repeated one)."""
        return int(track_id) in self._fresh

    def last_se_kmh(self, track_id: int) -> float:
        """Standard error (km/h) of the track's latest estimate, NaN when none."""
        return self._last_se.get(int(track_id), float("nan"))

    def seed(self, track_id: int, hits: list[tuple[int, float, float]]) -> None:
        """Positions of a track measured before it was confirmed: [(frame_number, x, y px)]."""
        if self.homography is None or not hits:
            return
        frames = np.asarray([h[0] for h in hits], dtype=np.float64)
        points = np.asarray([h[1:] for h in hits], dtype=np.float64)
        world = project_points(self.homography, points)
        sigmas = self.position_sigma_m(points)
        history = self._history.setdefault(int(track_id), deque())
        older = [(f / self.fps, float(x), float(y), float(s)) for f, (x, y), s in zip(frames, world, sigmas)]
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
            self._last_se.pop(tid, None)
