"""Camera calibration: homography from image points (pixels) to road-plane points (metres).

Pure functions of numpy arrays. The one implementation used by the CLI, the Spark job
and the backend's calibration endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_POINTS = 4
# Points closer than this (pixels or metres) count as duplicates.
_DUPLICATE_EPS = 1e-6
# Minimal normalised triangle area for a point set not to count as collinear.
_COLLINEAR_EPS = 1e-3


class CalibrationError(ValueError):
    """Calibration input that cannot give a homography."""


@dataclass(frozen=True)
class Homography:
    """A fitted image -> road-plane homography.

    matrix: (3, 3) float64, maps homogeneous pixels to homogeneous metres.
    reprojection_error_m: RMS distance (metres) between the mapped image points and the
        given road points.
    """

    matrix: np.ndarray
    reprojection_error_m: float

    def to_world(self, points_px: np.ndarray) -> np.ndarray:
        return project_points(self.matrix, points_px)

    def to_image(self, points_m: np.ndarray) -> np.ndarray:
        return project_points(np.linalg.inv(self.matrix), points_m)


def _as_points(points: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{name} must be a list of [x, y] pairs of numbers") from exc
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise CalibrationError(f"{name} must be a list of [x, y] pairs, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{name} contains non-finite values")
    return arr


def _check_spread(points: np.ndarray, name: str) -> None:
    n = len(points)
    diffs = points[:, None, :] - points[None, :, :]
    dist = np.linalg.norm(diffs, axis=2) + np.eye(n)
    if np.any(dist < _DUPLICATE_EPS):
        i, j = np.argwhere(dist < _DUPLICATE_EPS)[0]
        raise CalibrationError(f"{name} has duplicate points (#{i} and #{j})")
    # Collinearity: the largest triangle spanned by the points, relative to the spread.
    centred = points - points.mean(axis=0)
    scale = np.abs(centred).max()
    singular = np.linalg.svd(centred / scale, compute_uv=False)
    if singular[-1] / singular[0] < _COLLINEAR_EPS:
        raise CalibrationError(f"{name} are collinear: a homography needs points spanning an area")


def fit_homography(image_points: object, world_points: object) -> Homography:
    """Fit the homography mapping image_points (N, 2) pixels to world_points (N, 2) metres.

    Raises CalibrationError for fewer than 4 pairs, mismatched counts, duplicate or
    collinear points, or a degenerate fit.
    """
    img = _as_points(image_points, "image_points")
    world = _as_points(world_points, "world_points")
    if len(img) != len(world):
        raise CalibrationError(
            f"image_points ({len(img)}) and world_points ({len(world)}) must have the same count"
        )
    if len(img) < MIN_POINTS:
        raise CalibrationError(f"at least {MIN_POINTS} point pairs are needed, got {len(img)}")
    _check_spread(img, "image_points")
    _check_spread(world, "world_points")
    matrix, _ = cv2.findHomography(img, world, method=0)
    if matrix is None or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
        raise CalibrationError("the points do not determine a homography (degenerate configuration)")
    mapped = project_points(matrix, img)
    error = float(np.sqrt(np.mean(np.sum((mapped - world) ** 2, axis=1))))
    return Homography(matrix=matrix, reprojection_error_m=error)


def project_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (3, 3) homography to (N, 2) points; returns (N, 2) float64."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return pts.copy()
    homog = np.hstack([pts, np.ones((len(pts), 1))]) @ np.asarray(matrix, dtype=np.float64).T
    return homog[:, :2] / homog[:, 2:3]
