"""One typed object carrying a frame's detections between the processing stages.

Modelled on supervision's ``Detections``: parallel numpy arrays, validated once,
filtered by indexing (``d[d.in_roi]``). Every stage takes a ``FrameDetections`` and
returns one, so stages can be tested alone and swapped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

# COCO ids of the vehicle classes we keep, and their names.
VEHICLE_CLASSES: dict[int, str] = {2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}


def _empty(dtype: Any, *shape: int) -> np.ndarray:
    return np.zeros((0, *shape), dtype=dtype)


@dataclass
class FrameDetections:
    """Detections of one frame.

    Attributes (N = number of detections):
        xyxy: (N, 4) float32 boxes in pixels (x1, y1, x2, y2).
        confidence: (N,) float32 detector scores in [0, 1].
        class_id: (N,) int32 COCO class ids.
        tracker_id: (N,) int64 track ids, -1 where not tracked.
        speed_kmh: (N,) float32 speeds in km/h, NaN where not yet known.
        in_roi: (N,) bool, bottom-centre inside the region of interest.
        embeddings: (N, D) float32 appearance embeddings, or None.
    """

    xyxy: np.ndarray = field(default_factory=lambda: _empty(np.float32, 4))
    confidence: np.ndarray = field(default_factory=lambda: _empty(np.float32))
    class_id: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    # None when constructing means "default" (-1 / NaN / True); always an array after __post_init__
    tracker_id: np.ndarray = None  # type: ignore[assignment]
    speed_kmh: np.ndarray = None  # type: ignore[assignment]
    in_roi: np.ndarray = None  # type: ignore[assignment]
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        if self.tracker_id is None:
            self.tracker_id = np.full(n, -1, dtype=np.int64)
        self.tracker_id = np.asarray(self.tracker_id, dtype=np.int64).reshape(-1)
        if self.speed_kmh is None:
            self.speed_kmh = np.full(n, np.nan, dtype=np.float32)
        self.speed_kmh = np.asarray(self.speed_kmh, dtype=np.float32).reshape(-1)
        if self.in_roi is None:
            self.in_roi = np.ones(n, dtype=bool)
        self.in_roi = np.asarray(self.in_roi, dtype=bool).reshape(-1)
        if self.embeddings is not None:
            emb = np.asarray(self.embeddings, dtype=np.float32)
            self.embeddings = (
                emb.reshape(n, emb.shape[-1] if emb.ndim > 1 else -1)
                if n
                else emb.reshape(0, emb.shape[-1] if emb.ndim > 1 else 0)
            )
        for name in ("confidence", "class_id", "tracker_id", "speed_kmh", "in_roi"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FrameDetections.{name} has {len(getattr(self, name))} rows, xyxy has {n}")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> FrameDetections:
        """Select rows by boolean mask, integer array or slice."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = None if value is None else value[index]
        return FrameDetections(**values)

    @classmethod
    def empty(cls) -> FrameDetections:
        return cls()

    @classmethod
    def merge(cls, parts: list[FrameDetections]) -> FrameDetections:
        """Concatenate several detection sets (rows in order)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        embeds = None
        if all(p.embeddings is not None for p in parts):
            embeds = np.concatenate([p.embeddings for p in parts])
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            class_id=np.concatenate([p.class_id for p in parts]),
            tracker_id=np.concatenate([p.tracker_id for p in parts]),
            speed_kmh=np.concatenate([p.speed_kmh for p in parts]),
            in_roi=np.concatenate([p.in_roi for p in parts]),
            embeddings=embeds,
        )

    def to_bytes(self) -> bytes:
        """Compact binary form (``np.savez`` of the set arrays): what the Spark job's batched
        detection stage hands to the per-video stage. No pickle: the bytes cross processes."""
        buf = io.BytesIO()
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FrameDetections:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(**{name: z[name] for name in z.files})

    @property
    def bottom_center(self) -> np.ndarray:
        """(N, 2) float64 bottom-centre of each box in pixels: the road contact point."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2.0, self.xyxy[:, 3]], axis=1).astype(
            np.float64
        )

    @property
    def class_name(self) -> list[str]:
        return [VEHICLE_CLASSES.get(int(c), str(int(c))) for c in self.class_id]
