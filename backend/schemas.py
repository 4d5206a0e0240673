"""WebSocket and REST message shapes of the backend (DESIGN.md, WebSocket and REST).

Stream entries (``video-frames``, ``processed-frames``) live in ``contracts.messages``;
the models here are the ones that only the backend, the bridge and the browser exchange. The
bridge builds ``ProcessedFrameIngest`` / ``AnalyticsIngest`` from a ``ProcessedFrame`` with
``from_processed``; the hub re-sends their ``data`` unchanged to subscribers in a ``FrameMessage``
/ ``AnalyticsMessage`` envelope, encoded once per message (``ClientEnvelope.to_json_bytes``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, field_validator

from contracts.messages import (
    JPEG_DATA_URL_PREFIX,
    BBox,
    Passage,
    ProcessedFrame,
    Stats,
    Summary,
    VideoStatus,
)

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
    # (beyond DESIGN) the live latency budget: frames dropped as too late so far, the detection
    # rate now (per second of video) and whether it is below the normal floor (degraded)
    dropped_frames: int = 0
    detect_hz: float | None = None
    degraded: bool = False
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
                dropped_frames=frame.dropped_frames,
                detect_hz=frame.detect_hz,
                degraded=frame.degraded,
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


class ClientEnvelope(Strict):
    """A message the hub sends to subscribed clients."""

    def to_json_bytes(self) -> bytes:
        """The JSON text, UTF-8: built once per message and queued as it is for every
        subscriber (Tornado writes bytes as a text frame without encoding them again)."""
        return pydantic_core.to_json(self)


class FrameMessage(ClientEnvelope):
    type: Literal["frame"] = "frame"
    data: FrameData


class AnalyticsMessage(ClientEnvelope):
    type: Literal["analytics"] = "analytics"
    data: AnalyticsData


# ---- REST ----------------------------------------------------------------------------------
#
# Request bodies and responses of the REST API. ``backend/openapi.py`` generates
# ``GET /api/openapi.json`` from these models; the handlers parse with the ``*In`` models and
# write the ``*Out`` ones (``BaseHandler.send_model``), so the document is what the API does.


MAX_SPEED_LIMIT_KMH = 400.0


# An [x, y] pair of finite numbers (pixels or metres).
Point = Annotated[list[float], Field(min_length=2, max_length=2)]
# A pair as a response shows it: a 2-tuple in the document (a [number, number] tuple in TypeScript).
PointOut = tuple[float, float]
# ISO 8601 text as the database rows render it.
Timestamp = Annotated[str, Field(description="ISO 8601 (server time, no offset)")]
UtcTimestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"}, description="ISO 8601, UTC")]


class UploadForm(Strict):
    """``POST /api/videos/upload`` (multipart/form-data). Documents the form: the body is parsed
    while it streams to disk (``services.uploads``), which checks the same fields."""

    video: bytes = Field(description="The video file (mp4, avi, mov, mkv, webm, m4v, mpg, mpeg)")
    name: str = Field(min_length=1, max_length=1024)
    roi: str | None = Field(default=None, description="JSON list of [x, y] pixels inside the frame")
    fps: float | None = Field(default=None, gt=0, le=1000, description="Overrides the probed fps")


class CameraIn(Strict):
    """``POST /api/cameras``: a camera source. The backend grabs a frame to test the connection
    before anything is stored. The URL's credentials are kept, never shown back (``***``)."""

    name: str = Field(min_length=1, max_length=255)
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="rtsp:// or rtsps:// (TCP), http(s):// MJPEG or HLS (.m3u8); user:password@ if needed",
    )


class CameraUpdateIn(Strict):
    """``PUT /api/cameras/{id}``: a new name and/or URL (a new URL is tested first)."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    url: str | None = Field(default=None, min_length=1, max_length=2000)


class CalibrationIn(Strict):
    """``PUT /api/videos/{id}/calibration``: ROI (pixels) and paired image/road points.

    Exactly these fields (unknown ones, e.g. the former ``roi``, are refused): ``roi_polygon`` is
    the name of the calibration files (``calibrations/*.json``, traffic-analyze's CALIB.json), of
    ``FrameConfig`` and of the processed-frames messages. ROI and image points must lie inside the
    video's frame, 0 <= x <= width, 0 <= y <= height (checked by the service, which knows the
    frame size)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    roi_polygon: list[Point] = Field(min_length=3, description="ROI polygon, [x, y] pixels")
    image_points: list[Point] = Field(min_length=4, description="[x, y] pixels, paired with world_points")
    world_points: list[Point] = Field(min_length=4, description="[x, y] metres on the road plane")
    speed_limit_kmh: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SPEED_LIMIT_KMH,
        description="The video's speed limit; omitted or null: the backend's SPEED_LIMIT_KMH",
    )

    @field_validator("speed_limit_kmh", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError("must be a number of km/h")
        return value


class StreamStartIn(Strict):
    """Optional body of ``POST /api/videos/{id}/stream/start``; goes into the DAG conf."""

    realtime: StrictBool = Field(
        default=True,
        description="true: paced at the video's fps, frames may be skipped to stay live; false: "
        "every frame processed, the producer as fast as the processor keeps up (backpressure)",
    )


class Out(BaseModel):
    """A response body: every field is always present (required in the document)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


CameraHealthState = Literal["idle", "connecting", "live", "reconnecting", "failed"]


class CameraHealth(Out):
    """A camera's health (``services.camera_health``), from its row and the progress hash its
    producer writes while it streams (``StreamProgress.camera_state`` and the fields beside it)."""

    state: CameraHealthState = Field(
        description="idle: not streaming; else the producer's state (connecting until it wrote "
        "one); a live camera whose last frame is older than 5 s is reported reconnecting"
    )
    last_frame_at: UtcTimestamp | None = Field(description="Wall clock of the last frame read")
    last_frame_age_s: float | None = Field(description="Seconds since the last frame read")
    input_fps: float | None = Field(description="Frames per second the camera delivers (measured)")
    reconnects: int = Field(description="Reconnections in the current run")
    last_error: str | None = Field(description="The producer's last camera error, credentials as ***")
    dropped_frames: int = Field(
        description="Frames the producer dropped, oldest first, while the pipeline lagged (current run)"
    )


class CalibrationPoints(BaseModel):
    """``VideoOut.calibrate_coordinates``: the point pairs of the calibration, and its limit when
    it has one (absent otherwise)."""

    image_points: list[PointOut]
    world_points: list[PointOut]
    speed_limit_kmh: float | None = Field(default=None, exclude_if=lambda limit: limit is None)


class VideoOut(Out):
    """A ``videos`` row."""

    id: int
    name: str
    file_path: str
    status: VideoStatus | None = Field(description="null only for a row stored without one")
    fps: float | None
    frame_count: int | None
    width: int | None
    height: int | None
    duration: float | None = Field(description="seconds")
    roi: list[PointOut] | None = Field(description="ROI polygon, [x, y] pixels")
    calibrate_coordinates: CalibrationPoints | None = Field(
        description="image_points, world_points and the video's speed_limit_kmh when set"
    )
    homography_matrix: list[list[float]] | None = Field(description="3x3, image pixels -> road metres")
    speed_limit_kmh: float | None = Field(
        description="The video's limit (set with the calibration), else SPEED_LIMIT_KMH"
    )
    source_kind: Literal["file", "camera"] = Field(description="An uploaded file, or a camera")
    source_url: str | None = Field(
        description="A camera's URL, its credentials and secret query values shown as ***; null for a file"
    )
    created_at: Timestamp | None
    updated_at: Timestamp | None
    health: CameraHealth | None = Field(
        default=None,
        description="A camera's health; null for a file (and for a streaming camera whose "
        "progress cannot be read: Redis unreachable)",
    )


class VideoListOut(Out):
    videos: list[VideoOut]


class CalibrationOut(Out):
    video: VideoOut
    reprojection_error_m: float = Field(
        description="RMS error of the image points mapped to the road, metres"
    )


class StreamStartOut(Out):
    video_id: int
    status: Literal[VideoStatus.PROCESSING]
    dag_run: dict[str, Any] = Field(description="The DAG run as Airflow's REST API returns it")


class StreamStopOut(Out):
    video_id: int
    status: Literal[VideoStatus.STOPPING]
    dag_run_ids: list[str | None]


class FinalAnalyticsOut(Out):
    """The stored ``video_analytics`` row (written at the end of a stream)."""

    source: Literal["final"]
    video_id: int
    total_vehicles_count: int | None
    avg_dwell_time: float | None
    vehicle_type_distribution: dict[str, int] | None
    speeding_count: int | None
    created_at: Timestamp | None


class LiveAnalyticsOut(BaseModel):
    """The running stream's snapshot (the processor's summary so far), without the passages.
    Sent with ``exclude_unset``: only the keys the snapshot has."""

    model_config = ConfigDict(extra="allow")

    source: Literal["live"]
    video_id: int
    total_vehicles_count: int | None = None
    avg_dwell_time: float | None = None
    vehicle_type_distribution: dict[str, int] | None = None
    speeding_count: int | None = None


class AnalyticsOut(RootModel[Annotated[FinalAnalyticsOut | LiveAnalyticsOut, Field(discriminator="source")]]):
    """``GET /api/videos/{id}/analytics``: final when stored, else the live snapshot."""


class ViolationOut(Out):
    """A ``speeding_violations`` row; while a stream runs and none is stored, an entry of the live
    list (``id``, ``snapshot_path`` and ``snapshot_url`` null)."""

    id: int | None
    video_id: int
    track_id: int
    vehicle_class: str | None
    speed_kmh: float
    frame_number: int
    video_time_s: float | None = Field(description="video time, seconds")
    detected_at: UtcTimestamp | None = Field(description="Wall clock when the processor flagged the vehicle")
    snapshot_path: str | None = Field(description="server-side file of the JPEG crop")
    snapshot_url: str | None = Field(description="/api/violations/{id}/snapshot when a crop is stored")


class ViolationListOut(Out):
    video_id: int
    source: Literal["stored", "live"] = Field(description="stored rows, or the running stream's live list")
    violations: list[ViolationOut]


class PassageListOut(Out):
    video_id: int
    passages: list[Passage] = Field(description="Every counted vehicle of the last stream, by first frame")


class HistogramBin(Out):
    from_kmh: int
    to_kmh: int
    count: int


class SpeedHistogram(Out):
    bin_width_kmh: int
    bins: list[HistogramBin]


class SpeedReport(Out):
    limit_kmh: float
    mean_kmh: float | None
    p85_kmh: float | None = Field(description="85th percentile, interpolated")
    measured_vehicles: int
    histogram: SpeedHistogram


class MinuteVolume(Out):
    minute: int = Field(description="minute of video time, from 0")
    counts: dict[str, int] = Field(description="vehicles per class that entered in that minute")


class ReportOut(Out):
    """Traffic report computed from the passages (empty/zero when there are none)."""

    video_id: int
    total_vehicles: int
    speeding_count: int
    avg_dwell_time_s: float
    class_mix: dict[str, int]
    speed: SpeedReport
    volume_per_minute: list[MinuteVolume]


SPEED = "km/h over the vehicles with a speed; null when none has one"


class WindowStats(Out):
    """The traffic study figures of one interval (or of the whole window)."""

    volume: int = Field(description="vehicles that passed (passed_at) in the interval")
    volume_by_class: dict[str, int] = Field(description="per class of the report's classes, 0 included")
    volume_by_direction: dict[str, int] = Field(
        description="per direction of the report's directions, 0 included"
    )
    measured_vehicles: int = Field(description="vehicles with a speed")
    mean_kmh: float | None = Field(description=f"mean speed, {SPEED}")
    v50_kmh: float | None = Field(description=f"median speed (linear interpolation), {SPEED}")
    v85_kmh: float | None = Field(description=f"85th percentile speed (linear interpolation), {SPEED}")
    pace_from_kmh: float | None = Field(
        description="the 10 km/h pace band [pace_from_kmh, pace_to_kmh) holding the most measured "
        "speeds (whole km/h; the lowest on a tie); null without a speed"
    )
    pace_to_kmh: float | None
    pace_share: float | None = Field(description="share of the measured vehicles in the pace band, 0..1")
    over_limit_share: float | None = Field(description="share of the measured vehicles above limit_kmh, 0..1")
    mean_headway_s: float | None = Field(
        description="mean gap (s) between consecutive passages of the same direction, both in the "
        "interval; null without a gap"
    )


class WindowSpan(Out):
    start: UtcTimestamp = Field(description="inclusive, on a UTC clock boundary of the interval")
    end: UtcTimestamp = Field(description="exclusive")


class WindowInterval(WindowStats, WindowSpan):
    """One interval of a window report: its span, then its figures."""


class WindowReportOut(Out):
    """``GET /api/videos/{id}/report?from=&to=&interval=``: the traffic study over a window of
    wall-clock time (``passed_at``), per interval and in total. Passages without ``passed_at``
    (older rows) are left out."""

    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
    )

    video_id: int
    from_: UtcTimestamp = Field(alias="from", description="start of the window, inclusive")
    to: UtcTimestamp = Field(description="end of the window, exclusive")
    interval: Literal["5m", "15m", "1h"]
    interval_s: int
    limit_kmh: float = Field(description="the video's speed limit, else SPEED_LIMIT_KMH")
    classes: list[str] = Field(description="the classes that passed in the window, sorted")
    directions: list[str] = Field(
        description="the directions that passed in the window, sorted: approaching, receding, "
        "left_to_right, right_to_left, and unknown for a passage without one"
    )
    total: WindowStats = Field(description="the whole window")
    intervals: list[WindowInterval] = Field(
        description="every interval from the one holding from up to to, empty ones included"
    )


class TrafficReportOut(RootModel[ReportOut | WindowReportOut]):
    """``GET /api/videos/{id}/report``: the report of every passage without window parameters,
    the window report with any of from, to, interval (or format=csv)."""


class StreamThinning(Out):
    """A video's live thinning, from its latest frame: the detection stride and rate, frames
    detected, skipped (drawn with predicted boxes) and dropped (too late for the latency
    budget), and ``degraded`` (detection below LIVE_MIN_DETECT_HZ to hold the budget)."""

    frame_number: int
    detect_stride: int
    detected_frames: int
    skipped_frames: int
    dropped_frames: int = 0
    detect_hz: float | None = None
    degraded: bool = False


class WebSocketStatusOut(Out):
    """``dropped_frames`` and ``repeats_dropped`` are totals since start, the same numbers as
    /metrics' backend_ws_frames_dropped_total and backend_ingest_repeats_total."""

    total_connections: int
    channels: dict[str, int] = Field(description="subscribers per channel")
    backend_connections: dict[str, int] = Field(description="bridge ingest connections per kind")
    dropped_frames: int
    repeats_dropped: int
    streams: dict[str, StreamThinning] = Field(description="per video id")


class HealthOut(Out):
    status: Literal["ok", "degraded"]
    checks: dict[str, str] = Field(description='database and redis: "ok" or "error: <kind>"')
    processor: Literal["ready", "not running", "unknown"] = Field(
        description="ready while the Spark application keeps its heartbeat (informational)"
    )


# ---- accounts (issue 17) ---------------------------------------------------------------------

Role = Literal["viewer", "operator", "admin"]


class LoginIn(Strict):
    """``POST /api/auth/login``: sets the session cookie (signed, HttpOnly, SameSite=Strict)."""

    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class UserIn(Strict):
    """``POST /api/users`` (admin)."""

    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    password: str = Field(min_length=12, max_length=1024)
    role: Role


class UserUpdateIn(Strict):
    """``PUT /api/users/{id}`` (admin): any of role, a new password, disabled."""

    role: Role | None = None
    password: str | None = Field(default=None, min_length=12, max_length=1024)
    disabled: StrictBool | None = None


class PasswordChangeIn(Strict):
    """``POST /api/auth/password``: the caller's own new password (any role, session or token)."""

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


class TokenIn(Strict):
    """``POST /api/tokens``: a new API token of the caller (it acts with the caller's role)."""

    name: str = Field(min_length=1, max_length=100)


class SessionUserOut(Out):
    id: int
    username: str
    role: Role


class LoginOut(Out):
    user: SessionUserOut


class UserOut(SessionUserOut):
    created_at: str
    disabled: bool


class UserListOut(Out):
    users: list[UserOut]


class TokenOut(Out):
    id: int
    name: str
    prefix: str = Field(description="the token's first characters, to recognise it")
    username: str
    created_at: str
    last_used_at: str | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="the secret: shown this once, stored only as a digest")


class TokenListOut(Out):
    tokens: list[TokenOut]


class AuditEntryOut(Out):
    id: int
    at: str
    username: str | None
    role: str | None
    action: str
    target: str | None
    ip: str | None
    outcome: Literal["ok", "refused"]
    detail: dict[str, Any] | None


class AuditListOut(Out):
    entries: list[AuditEntryOut] = Field(description="newest first")


class ApiErrorBody(Strict):
    code: str
    message: str
    field: str | None = Field(
        default=None,
        description="The request field refused, where the error is about one: a JSON body's field "
        "as its location joined by '.' (roi_polygon, image_points.2, speed_limit_kmh), a form's "
        "field (roi, fps); absent otherwise",
    )


class ErrorResponse(Strict):
    """Every API error: ``{"error": {"code", "message", "field"?}}``."""

    error: ApiErrorBody


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return ErrorResponse(error=ApiErrorBody(code=code, message=message, field=field)).model_dump(
        exclude_none=True
    )
