"""WebSocket and REST message shapes of the backend (DESIGN.md, WebSocket and REST).

Stream entries (``video-frames``, ``processed-frames``) live in ``traffic_processing.schemas``;
the models here are the ones that only the backend, the bridge and the browser exchange. The
bridge builds ``ProcessedFrameIngest`` / ``AnalyticsIngest`` from a ``ProcessedFrame`` with
``from_processed``; the backend re-sends their ``data`` to subscribers unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from traffic_processing.schemas import JPEG_DATA_URL_PREFIX, BBox, ProcessedFrame, Stats, Summary

FRAME_CHANNEL = "processed_frame"
ANALYTICS_CHANNEL = "analytics_metrics"
CHANNEL_RE = re.compile(rf"^({FRAME_CHANNEL}|{ANALYTICS_CHANNEL})_([1-9][0-9]{{0,17}})$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_channel(channel: str) -> tuple[str, int] | None:
    """``"processed_frame_7"`` -> ``("processed_frame", 7)``; None when not a known channel."""
    match = CHANNEL_RE.match(channel)
    if match is None:
        return None
    return match.group(1), int(match.group(2))


# ---- client <-> hub ------------------------------------------------------------------------


class ClientAction(Strict):
    action: Literal["subscribe", "unsubscribe"]
    channel: str


class SubscriptionAck(Strict):
    type: Literal["subscription_ack"] = "subscription_ack"
    channel: str
    status: Literal["subscribed", "unsubscribed"]


class ErrorMessage(Strict):
    type: Literal["error"] = "error"
    message: str


# ---- bridge -> hub -> client ---------------------------------------------------------------


class FrameData(BaseModel):
    video_id: int
    frame_number: int
    timestamp: float
    processed_frame: str  # "data:image/jpeg;base64,…"
    roi_polygon: list[list[float]] | None = None
    end_of_stream: bool = False
    # (beyond DESIGN) wall clock when the producer sent the frame: live latency on the client
    produced_at: float | None = None
    skipped_frames: int = 0
    # (beyond DESIGN) live thinning: frames detected so far and the detection stride now
    detected_frames: int = 0
    detect_stride: int = 1
    # (beyond DESIGN) the stream run (VideoFrame.run_id): tells a new run from a repeat
    run_id: str | None = None

    @field_validator("processed_frame")
    @classmethod
    def _data_url(cls, value: str) -> str:
        if value and not value.startswith(JPEG_DATA_URL_PREFIX):
            raise ValueError(f"processed_frame must be a {JPEG_DATA_URL_PREFIX}… data URL")
        return value


class SpeedingVehicle(BaseModel):
    """A vehicle of the frame that the processor flagged speeding (``Vehicle.speeding``)."""

    track_id: int
    bbox: BBox
    speed: float | None = None  # this frame's estimate; None when the box is not measured in this frame
    speed_unit: str = "km/h"
    class_id: int
    class_name: str | None = None
    confidence: float
    speeding: bool = True


class AnalyticsData(BaseModel):
    video_id: int
    frame_number: int
    timestamp: float
    stats: Stats
    speeding_vehicles: list[SpeedingVehicle] = []
    # (beyond DESIGN) the final summary, on the end-of-stream update
    end_of_stream: bool = False
    summary: Summary | None = None
    # (beyond DESIGN) wall clock when the producer sent the frame (new run vs repeat without run_id)
    produced_at: float | None = None
    # (beyond DESIGN) the stream run (VideoFrame.run_id): tells a new run from a repeat
    run_id: str | None = None


class ProcessedFrameIngest(Strict):
    type: Literal["processed_frame"] = "processed_frame"
    data: FrameData

    @classmethod
    def from_processed(cls, frame: ProcessedFrame) -> ProcessedFrameIngest:
        return cls(
            data=FrameData(
                video_id=frame.video_id,
                frame_number=frame.frame_number,
                timestamp=frame.timestamp,
                processed_frame=frame.frame_data_url() if frame.processed_frame else "",
                roi_polygon=frame.roi_polygon,
                end_of_stream=frame.end_of_stream,
                produced_at=frame.produced_at,
                skipped_frames=frame.skipped_frames,
                detected_frames=frame.detected_frames,
                detect_stride=frame.detect_stride,
                run_id=frame.run_id,
            )
        )


class AnalyticsIngest(Strict):
    type: Literal["analytics_update"] = "analytics_update"
    data: AnalyticsData

    @classmethod
    def from_processed(cls, frame: ProcessedFrame) -> AnalyticsIngest:
        """``speeding_vehicles``: exactly the frame's vehicles with ``speeding`` true (the
        processor's per-vehicle decision, the same as ``speeding_count`` and the violations)."""
        speeding = [
            SpeedingVehicle(
                track_id=v.track_id,
                bbox=v.bbox,
                speed=v.speed,
                speed_unit=v.speed_unit,
                class_id=v.class_id,
                class_name=v.class_name,
                confidence=v.confidence,
                speeding=True,
            )
            for v in frame.vehicles
            if v.speeding
        ]
        return cls(
            data=AnalyticsData(
                video_id=frame.video_id,
                frame_number=frame.frame_number,
                timestamp=frame.timestamp,
                stats=frame.stats,
                speeding_vehicles=speeding,
                end_of_stream=frame.end_of_stream,
                summary=frame.summary,
                produced_at=frame.produced_at,
                run_id=frame.run_id,
            )
        )


class FrameMessage(Strict):
    type: Literal["frame"] = "frame"
    data: FrameData


class AnalyticsMessage(Strict):
    type: Literal["analytics"] = "analytics"
    data: AnalyticsData


# ---- REST ----------------------------------------------------------------------------------


MAX_SPEED_LIMIT_KMH = 400.0


# An [x, y] pair of finite numbers (pixels or metres).
Point = Annotated[list[float], Field(min_length=2, max_length=2)]


class CalibrationIn(Strict):
    """``PUT /api/videos/{id}/calibration``: ROI (pixels) and paired image/road points.

    Exactly these fields (unknown ones, e.g. the former ``roi``, are refused): ``roi_polygon`` is
    the name of the calibration files (``calibrations/*.json``, traffic-analyze's CALIB.json), of
    ``FrameConfig`` and of the processed-frames messages. ``backend/openapi.py`` documents the same
    fields (``Calibration``; a test compares both). ROI and image points must lie inside the video's
    frame (checked by the handler, which knows the frame size)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    roi_polygon: list[Point] = Field(min_length=3)  # pixels
    image_points: list[Point] = Field(min_length=4)  # pixels
    world_points: list[Point] = Field(min_length=4)  # metres on the road plane
    # The video's speed limit (km/h); omitted or null: the backend's SPEED_LIMIT_KMH (60).
    speed_limit_kmh: float | None = Field(default=None, gt=0, le=MAX_SPEED_LIMIT_KMH)

    @field_validator("speed_limit_kmh", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError("must be a number of km/h")
        return value


class StreamStartIn(Strict):
    """Optional body of ``POST /api/videos/{id}/stream/start``; goes into the DAG conf."""

    # False: every frame is processed (no live skipping) and the producer runs as fast as the
    # processor keeps up (backpressure) instead of at the video's fps.
    realtime: StrictBool = True


class ApiErrorBody(Strict):
    code: str
    message: str


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": ApiErrorBody(code=code, message=message).model_dump()}
