"""Every message that crosses a process, defined once (DESIGN.md, Redis and WebSocket).

Producer, Spark job, Redis bridge and backend all import these models; encode/decode to
Redis stream fields sits next to each. JPEG bytes travel raw in Redis and as a data URL in
JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

JPEG_DATA_URL_PREFIX = "data:image/jpeg;base64,"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BBox(Strict):
    x1: float
    y1: float
    x2: float
    y2: float


class Vehicle(Strict):
    track_id: int
    bbox: BBox
    speed: float | None = None
    speed_unit: str = "km/h"
    class_id: int
    class_name: str
    confidence: float
    in_roi: bool
    # The vehicle's speeding flag, decided once by the processor's analytics (median of its
    # estimates in the ROI over >= 0.5 s of video time above the video's limit; never taken
    # back). The bridge's speeding list and the red boxes use this, never ``speed``.
    speeding: bool = False


class Stats(Strict):
    total_vehicles: int = 0
    speeding_count: int = 0
    current_in_roi: int = 0


class Passage(Strict):
    """One counted vehicle's passage through the ROI: a ``vehicle_passages`` row, and a record of
    ``vehicles`` in the offline CLI's results.json."""

    track_id: int
    class_name: str
    first_frame: int
    last_frame: int
    first_time_s: float  # video time
    last_time_s: float
    dwell_time_s: float
    speed_kmh: float | None = None  # representative: median of the estimates inside the ROI
    max_speed_kmh: float | None = None
    speeding: bool = False


class Summary(Strict):
    """Final per-video analytics: the ``video_analytics`` row, plus (when the processor sends
    them) the per-vehicle passages, sorted by first frame."""

    total_vehicles_count: int
    avg_dwell_time: float
    vehicle_type_distribution: dict[str, int]
    speeding_count: int
    vehicles: list[Passage] | None = None


class Violation(Strict):
    """A vehicle flagged speeding (once per vehicle): a ``speeding_violations`` row.

    ``snapshot_jpeg`` is base64 in every dump (``model_dump_json`` and ``model_dump`` alike, so
    that ``ProcessedFrame.to_fields`` can ``json.dumps`` it) and a base64 string is decoded back to
    the JPEG bytes on validation; raw bytes are taken as they are.
    """

    track_id: int
    class_name: str
    speed_kmh: float  # the vehicle's representative (median) speed when flagged
    frame_number: int
    timestamp: float  # video time, seconds
    # Wall clock (Unix epoch seconds) at the moment the processor flagged the vehicle; None from
    # an older processor (the clean-up then stores its own time).
    detected_at: float | None = None
    # JPEG crop of the vehicle when it was flagged; None when the processor sent none.
    snapshot_jpeg: bytes | None = None

    @field_validator("snapshot_jpeg", mode="before")
    @classmethod
    def _snapshot_from_base64(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"snapshot_jpeg is not base64: {exc}") from exc
        return value

    @field_serializer("snapshot_jpeg")
    def _snapshot_to_base64(self, value: bytes | None) -> str | None:
        return None if value is None else base64.b64encode(value).decode("ascii")


class FrameConfig(Strict):
    """Per-video processing settings carried in each ``video-frames`` entry."""

    roi_polygon: list[list[float]] | None = None
    homography_matrix: list[list[float]] | None = None
    fps: float = Field(gt=0)
    speed_limit_kmh: float = Field(default=60.0, gt=0)
    # False: process every frame (no live skipping); the producer applies backpressure.
    realtime: bool = True


def _text(fields: dict[Any, Any], key: str, default: Any = None) -> Any:
    value = fields.get(key, fields.get(key.encode(), default))
    return value.decode() if isinstance(value, bytes) else value


def _raw(fields: dict[Any, Any], key: str) -> bytes:
    value = fields.get(key, fields.get(key.encode(), b""))
    return value.encode() if isinstance(value, str) else value


class VideoFrame(Strict):
    """An entry of the ``video-frames`` stream."""

    video_id: int
    frame_number: int
    frame_data: bytes = b""  # JPEG
    timestamp: float  # seconds of video time = frame_number / fps
    produced_at: float  # wall clock (s since epoch), for latency
    config: FrameConfig | None = None
    end_of_stream: bool = False
    # One stream run of the video (the Airflow dag run id, else a generated one): tells a new
    # run that starts again at frame 0 from a redelivery of the same run.
    run_id: str | None = None

    def to_fields(self) -> dict[str, bytes | str]:
        return {
            "video_id": str(self.video_id),
            "frame_number": str(self.frame_number),
            "frame_data": self.frame_data,
            "timestamp": repr(self.timestamp),
            "produced_at": repr(self.produced_at),
            "config": self.config.model_dump_json() if self.config else "",
            "end_of_stream": "1" if self.end_of_stream else "0",
            "run_id": self.run_id or "",
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> VideoFrame:
        config = _text(fields, "config") or None
        return cls(
            video_id=int(_text(fields, "video_id")),
            frame_number=int(_text(fields, "frame_number")),
            frame_data=_raw(fields, "frame_data"),
            timestamp=float(_text(fields, "timestamp")),
            produced_at=float(_text(fields, "produced_at")),
            config=FrameConfig.model_validate_json(config) if config else None,
            end_of_stream=_text(fields, "end_of_stream") == "1",
            run_id=_text(fields, "run_id") or None,
        )


class ProcessedFrame(Strict):
    """An entry of the ``processed-frames`` stream."""

    video_id: int
    frame_number: int
    timestamp: float
    processed_frame: bytes = b""  # JPEG
    vehicles: list[Vehicle] = []
    stats: Stats = Stats()
    roi_polygon: list[list[float]] | None = None
    has_homography: bool = False
    has_camera_matrix: bool = False
    end_of_stream: bool = False
    error: str | None = None
    summary: Summary | None = None
    produced_at: float | None = None
    skipped_frames: int = 0  # live: frames of this run not detected so far (drawn predicted)
    detected_frames: int = 0  # frames of this run detected so far
    detect_stride: int = 1  # live: every detect_stride-th frame is detected now
    new_violations: list[Violation] = []
    run_id: str | None = None  # the run_id of the video-frames entry (VideoFrame.run_id)

    def to_fields(self) -> dict[str, bytes | str]:
        return {
            "video_id": str(self.video_id),
            "frame_number": str(self.frame_number),
            "timestamp": repr(self.timestamp),
            "processed_frame": self.processed_frame,
            "vehicles": json.dumps([v.model_dump() for v in self.vehicles]),
            "stats": self.stats.model_dump_json(),
            "roi_polygon": json.dumps(self.roi_polygon),
            "has_homography": "1" if self.has_homography else "0",
            "has_camera_matrix": "1" if self.has_camera_matrix else "0",
            "end_of_stream": "1" if self.end_of_stream else "0",
            "error": self.error or "",
            "summary": self.summary.model_dump_json() if self.summary else "",
            "produced_at": "" if self.produced_at is None else repr(self.produced_at),
            "skipped_frames": str(self.skipped_frames),
            "detected_frames": str(self.detected_frames),
            "detect_stride": str(self.detect_stride),
            "new_violations": json.dumps([v.model_dump() for v in self.new_violations]),
            "run_id": self.run_id or "",
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> ProcessedFrame:
        summary = _text(fields, "summary") or None
        produced = _text(fields, "produced_at") or None
        return cls(
            video_id=int(_text(fields, "video_id")),
            frame_number=int(_text(fields, "frame_number")),
            timestamp=float(_text(fields, "timestamp")),
            processed_frame=_raw(fields, "processed_frame"),
            vehicles=json.loads(_text(fields, "vehicles") or "[]"),
            stats=Stats.model_validate_json(_text(fields, "stats") or "{}"),
            roi_polygon=json.loads(_text(fields, "roi_polygon") or "null"),
            has_homography=_text(fields, "has_homography") == "1",
            has_camera_matrix=_text(fields, "has_camera_matrix") == "1",
            end_of_stream=_text(fields, "end_of_stream") == "1",
            error=_text(fields, "error") or None,
            summary=Summary.model_validate_json(summary) if summary else None,
            produced_at=float(produced) if produced else None,
            skipped_frames=int(_text(fields, "skipped_frames") or 0),
            detected_frames=int(_text(fields, "detected_frames") or 0),
            detect_stride=int(_text(fields, "detect_stride") or 1),
            new_violations=json.loads(_text(fields, "new_violations") or "[]"),
            run_id=_text(fields, "run_id") or None,
        )

    def frame_data_url(self) -> str:
        return JPEG_DATA_URL_PREFIX + base64.b64encode(self.processed_frame).decode("ascii")
