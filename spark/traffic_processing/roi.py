"""Region-of-interest filter on the box's bottom-centre (the road contact point)."""

from __future__ import annotations

import cv2
import numpy as np

from .detections import FrameDetections


class RoiError(ValueError):
    """A polygon that cannot serve as a region of interest."""


def parse_polygon(polygon: object) -> np.ndarray | None:
    """Validate an ROI polygon given as [[x, y], ...] pixels; None means the whole frame.

    Returns (K, 2) float32 with K >= 3. Raises RoiError for anything else.
    """
    if polygon is None:
        return None
    try:
        arr = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RoiError("roi_polygon must be a list of [x, y] pairs of numbers") from exc
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3:
        raise RoiError(f"roi_polygon needs at least 3 [x, y] points, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise RoiError("roi_polygon contains non-finite values")
    if abs(cv2.contourArea(arr.astype(np.float32))) < 1.0:
        raise RoiError("roi_polygon has no area")
    return arr.astype(np.float32)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray | None) -> np.ndarray:
    """(N,) bool: which of the (N, 2) pixel points lie inside (or on) the polygon."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if polygon is None:
        return np.ones(len(pts), dtype=bool)
    contour = np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)
    return np.array(
        [cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in pts],
        dtype=bool,
    )


class RoiFilter:
    """Marks detections whose bottom-centre is inside the polygon (``in_roi``)."""

    def __init__(self, polygon: object = None) -> None:
        self.polygon = parse_polygon(polygon)

    def __call__(self, detections: FrameDetections) -> FrameDetections:
        detections.in_roi = points_in_polygon(detections.bottom_center, self.polygon)
        return detections


class TrackingZone:
    """Where detections are tracked and measured: the ROI grown by ``margin_m`` metres of road
    all around it, on the road plane through the homography (the distance from the ROI's
    road-plane polygon, so a metre counts the same near and far in a perspective view).

    A vehicle crossing a short zone fast has track points before and after it, so it is
    confirmed before it enters, and its speed fit spans more than the zone. Counting stays in
    the ROI (``in_roi``). Without a homography, or without a polygon (the whole frame), or with
    ``margin_m <= 0``, the zone is the ROI itself. Image points whose ray does not meet the road
    in front of the camera (above the horizon) are outside.
    """

    def __init__(self, polygon: object = None, homography: object = None, margin_m: float = 0.0) -> None:
        self.polygon = parse_polygon(polygon)
        self.margin_m = float(margin_m)
        self.homography: np.ndarray | None = None
        self.world_polygon: np.ndarray | None = None
        if self.polygon is None or homography is None or self.margin_m <= 0:
            return
        h = np.asarray(homography, dtype=np.float64).reshape(3, 3)
        ph = np.c_[self.polygon.astype(np.float64), np.ones(len(self.polygon))] @ h.T
        if not np.all(np.abs(ph[:, 2]) > 1e-12):
            return
        self._sign = float(np.sign(ph[0, 2]))
        if not np.all(np.sign(ph[:, 2]) == self._sign):  # the ROI straddles the horizon
            return
        self.homography = h
        self.world_polygon = (ph[:, :2] / ph[:, 2:]).astype(np.float32)

    def contains(self, points_px: np.ndarray, in_roi: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: which of the (N, 2) pixel points are in the ROI or within the margin."""
        pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
        inside = points_in_polygon(pts, self.polygon) if in_roi is None else np.asarray(in_roi, bool).copy()
        if self.world_polygon is None or self.homography is None or not len(pts):
            return inside
        ph = np.c_[pts, np.ones(len(pts))] @ self.homography.T
        ahead = np.sign(ph[:, 2]) == self._sign
        contour = self.world_polygon.reshape(-1, 1, 2)
        for i in np.flatnonzero(ahead & ~inside):
            x, y = ph[i, :2] / ph[i, 2]
            inside[i] = cv2.pointPolygonTest(contour, (float(x), float(y)), True) >= -self.margin_m
        return inside

    def __call__(self, detections: FrameDetections) -> np.ndarray:
        """(N,) bool mask of the detections to track."""
        return self.contains(detections.bottom_center)
