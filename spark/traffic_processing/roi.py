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
