"""Annotated frames: boxes, track id, class, speed (red for a vehicle flagged speeding), ROI overlay.
OpenCV's Hershey fonts only: no font download."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .detections import FrameDetections

GREEN, RED, YELLOW, WHITE, BLACK = (60, 200, 60), (40, 40, 230), (0, 215, 255), (255, 255, 255), (0, 0, 0)


@dataclass
class VisualizerConfig:
    roi_alpha: float = 0.15
    font_scale: float = 0.45
    thickness: int = 2


class Visualizer:
    def __init__(self, roi_polygon: np.ndarray | None = None, config: VisualizerConfig | None = None):
        self.config = config or VisualizerConfig()
        self.roi = None if roi_polygon is None else np.asarray(roi_polygon, dtype=np.int32).reshape(-1, 1, 2)
        self._overlay_cache: tuple[tuple[int, ...], np.ndarray] | None = None

    def __getstate__(self) -> dict:
        """Pickled (Spark state, every micro-batch) without the full-frame tint cache."""
        return {**self.__dict__, "_overlay_cache": None}

    def _tint(self, shape: tuple[int, ...]) -> np.ndarray:
        if self._overlay_cache is None or self._overlay_cache[0] != shape:
            tint = np.zeros(shape, dtype=np.uint8)
            cv2.fillPoly(tint, [self.roi], tuple(int(c * self.config.roi_alpha) for c in YELLOW))
            self._overlay_cache = (shape, tint)
        return self._overlay_cache[1]

    def annotate(
        self, frame: np.ndarray, detections: FrameDetections, speeding: np.ndarray | None = None
    ) -> np.ndarray:
        """Draw on a copy of the BGR frame and return it. ``speeding`` (N,) bool: the boxes drawn
        red, the vehicles the analytics flagged speeding (never an instantaneous speed)."""
        cfg = self.config
        out = frame.copy()
        if self.roi is not None:
            # ROI outline; the tint is a precomputed additive overlay (one saturating add).
            cv2.add(out, self._tint(out.shape), dst=out)
            cv2.polylines(out, [self.roi], True, YELLOW, 1, cv2.LINE_AA)
        names = detections.class_name
        for i in range(len(detections)):
            x1, y1, x2, y2 = (int(round(v)) for v in detections.xyxy[i])
            speed = float(detections.speed_kmh[i])
            color = RED if speeding is not None and speeding[i] else GREEN
            cv2.rectangle(out, (x1, y1), (x2, y2), color, cfg.thickness)
            tid = int(detections.tracker_id[i])
            label = f"#{tid} {names[i]}" if tid >= 0 else names[i]
            if np.isfinite(speed):
                label += f" {speed:.0f} km/h"
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, cfg.font_scale, 1)
            ty = max(y1, th + base + 2)
            cv2.rectangle(out, (x1, ty - th - base - 2), (x1 + tw + 4, ty), color, -1)
            cv2.putText(
                out,
                label,
                (x1 + 2, ty - base),
                cv2.FONT_HERSHEY_SIMPLEX,
                cfg.font_scale,
                WHITE,
                1,
                cv2.LINE_AA,
            )
        return out


def encode_jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of a BGR frame; quality 1-100."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """BGR frame from JPEG (or any OpenCV image) bytes; ValueError when undecodable."""
    frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError("frame_data is not a decodable image")
    return frame
