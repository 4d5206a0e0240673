"""Every message that crosses a process, defined once (DESIGN.md, Redis and WebSocket).

Producer, Spark job, Redis bridge and backend all import these models; encode/decode to
Redis stream fields sits next to each. JPEG bytes travel raw in Redis and as a data URL in
JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from .streams import PROGRESS_TTL_S, progress_key, text

# The speed limit (km/h) of a video without its own: the one definition of the default.
DEFAULT_SPEED_LIMIT_KMH = 60.0

JPEG_DATA_URL_PREFIX = "data:image/jpeg;base64,"

log = logging.getLogger(__name__)


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
    # Continuous results: the stream run that counted it (dag run id; with the track id, the
    # row's identity), the wall clock of its last frame in the ROI (Unix epoch s: a camera's
    # frames are stamped at read, a file's when produced) and its direction of travel in the
    # image (``DIRECTIONS``; None when it barely moved).
    run_id: str | None = None
    passed_at: float | None = None
    direction: str | None = None


# A passage's direction of travel, from the image motion of its box's bottom centre in the ROI:
# down the image (towards a camera looking along the road), up it, or across.
DIRECTIONS = ("approaching", "receding", "left_to_right", "right_to_left")


class Summary(Strict):
    """Final per-video analytics: the ``video_analytics`` row, plus (when the processor sends
    them) the per-vehicle passages, sorted by first frame."""

    total_vehicles_count: int
    avg_dwell_time: float
    vehicle_type_distribution: dict[str, int]
    speeding_count: int
    vehicles: list[Passage] | None = None


class Violation(Strict):
    """A vehicle flagged speeding (once per vehicle): a ``speeding_violations`` row, field for
    column (``vehicle_class``, ``video_time_s``: the names of the table and of the REST JSON).

    ``snapshot_jpeg`` is base64 in every dump (``model_dump_json`` and ``model_dump`` alike, so
    that ``ProcessedFrame.to_fields`` can ``json.dumps`` it) and a base64 string is decoded back to
    the JPEG bytes on validation; raw bytes are taken as they are.
    """

    track_id: int
    # the vehicle's class name (car, motorcycle, bus, truck); read as ``class_name`` too: the
    # name in an older processor's message (written back as ``vehicle_class``)
    vehicle_class: str = Field(validation_alias=AliasChoices("vehicle_class", "class_name"))
    speed_kmh: float  # the vehicle's representative (median) speed when flagged
    frame_number: int
    # video time of the flag, seconds; read as ``timestamp`` too (an older processor's name)
    video_time_s: float = Field(validation_alias=AliasChoices("video_time_s", "timestamp"))
    # Wall clock (Unix epoch seconds) at the moment the processor flagged the vehicle; None from
    # an older processor (the clean-up then stores its own time).
    detected_at: float | None = None
    # JPEG crop of the vehicle when it was flagged; None when the processor sent none.
    snapshot_jpeg: bytes | None = None
    run_id: str | None = None  # the stream run that flagged it (with track_id, the row's identity)

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
    speed_limit_kmh: float = Field(default=DEFAULT_SPEED_LIMIT_KMH, gt=0)
    # False: process every frame (no live skipping); the producer applies backpressure.
    realtime: bool = True


def field_text(fields: Mapping[Any, Any], key: str, default: Any = None) -> Any:
    """The field ``key`` of a stream entry (bytes or str keys and values) as text; ``default``
    when absent."""
    value = fields.get(key, fields.get(key.encode(), default))
    return None if value is None else text(value)


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
        config = field_text(fields, "config") or None
        return cls(
            video_id=int(field_text(fields, "video_id")),
            frame_number=int(field_text(fields, "frame_number")),
            frame_data=_raw(fields, "frame_data"),
            timestamp=float(field_text(fields, "timestamp")),
            produced_at=float(field_text(fields, "produced_at")),
            config=FrameConfig.model_validate_json(config) if config else None,
            end_of_stream=field_text(fields, "end_of_stream") == "1",
            run_id=field_text(fields, "run_id") or None,
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
    # live: frames of this run dropped so far (already older than the latency budget when the
    # processor reached them: never drawn nor delivered)
    dropped_frames: int = 0
    detect_hz: float | None = None  # live: detections per second of video now (fps / stride)
    # live: detection had to go below LIVE_MIN_DETECT_HZ to hold the latency budget
    degraded: bool = False
    new_violations: list[Violation] = []
    # Continuous results: the vehicles whose track ended at this frame, each sent once (the
    # end-of-stream summary carries those still tracked then).
    passages: list[Passage] = []
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
            "dropped_frames": str(self.dropped_frames),
            "detect_hz": "" if self.detect_hz is None else repr(self.detect_hz),
            "degraded": "1" if self.degraded else "0",
            "new_violations": json.dumps([v.model_dump() for v in self.new_violations]),
            "passages": json.dumps([p.model_dump() for p in self.passages]),
            "run_id": self.run_id or "",
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> ProcessedFrame:
        summary = field_text(fields, "summary") or None
        produced = field_text(fields, "produced_at") or None
        hz = field_text(fields, "detect_hz") or None
        return cls(
            video_id=int(field_text(fields, "video_id")),
            frame_number=int(field_text(fields, "frame_number")),
            timestamp=float(field_text(fields, "timestamp")),
            processed_frame=_raw(fields, "processed_frame"),
            vehicles=json.loads(field_text(fields, "vehicles") or "[]"),
            stats=Stats.model_validate_json(field_text(fields, "stats") or "{}"),
            roi_polygon=json.loads(field_text(fields, "roi_polygon") or "null"),
            has_homography=field_text(fields, "has_homography") == "1",
            has_camera_matrix=field_text(fields, "has_camera_matrix") == "1",
            end_of_stream=field_text(fields, "end_of_stream") == "1",
            error=field_text(fields, "error") or None,
            summary=Summary.model_validate_json(summary) if summary else None,
            produced_at=float(produced) if produced else None,
            skipped_frames=int(field_text(fields, "skipped_frames") or 0),
            detected_frames=int(field_text(fields, "detected_frames") or 0),
            detect_stride=int(field_text(fields, "detect_stride") or 1),
            dropped_frames=int(field_text(fields, "dropped_frames") or 0),
            detect_hz=float(hz) if hz else None,
            degraded=field_text(fields, "degraded") == "1",
            new_violations=json.loads(field_text(fields, "new_violations") or "[]"),
            passages=json.loads(field_text(fields, "passages") or "[]"),
            run_id=field_text(fields, "run_id") or None,
        )

    def frame_data_url(self) -> str:
        return JPEG_DATA_URL_PREFIX + base64.b64encode(self.processed_frame).decode("ascii")


# -- The per-video progress hash (``streams.progress_key``) --------------------------------------


class StreamState(StrEnum):
    """``StreamProgress.state``: the producer's lifecycle of one stream run, then the clean-up's."""

    PRODUCING = "producing"  # frames are being added
    PRODUCED = "produced"  # every frame and the end-of-stream entry written
    STOPPED = "stopped"  # the stop flag was honoured (the end-of-stream entry still written)
    FAILED = "failed"  # the producer failed (``producer_error``); end of stream written if it could
    DONE = "done"  # the clean-up ran (``status`` holds the outcome)


class VideoStatus(StrEnum):
    """``videos.status`` (and ``StreamProgress.status``, the outcome the clean-up recorded)."""

    UPLOADED = "uploaded"  # stored, never streamed
    PROCESSING = "processing"  # a stream was started (the backend's start)
    STOPPING = "stopping"  # a stop was asked (the backend's stop); the clean-up sets the outcome
    COMPLETED = "completed"  # the whole video went through the processor
    STOPPED = "stopped"  # stopped before its end (partial results stored)
    FAILED = "failed"  # a task of the run failed


# A video in one of these has a stream run going (or ending): not to be deleted or restarted.
STREAMING_VIDEO_STATUSES = frozenset({VideoStatus.PROCESSING, VideoStatus.STOPPING})


class CameraState(StrEnum):
    """A camera's health (``StreamProgress.camera_state``, written by its producer)."""

    CONNECTING = "connecting"  # opening the stream for the first time in this run
    LIVE = "live"  # frames arrive
    RECONNECTING = "reconnecting"  # no frame for CAMERA_STALL_S or the decoder failed: retrying with backoff
    FAILED = "failed"  # the camera refuses us for good (authentication, codec): retried rarely


class ProgressWriter(StrEnum):
    """The processes that write the progress hash; each owns its fields."""

    PRODUCER = "producer"  # Airflow ``produce_frames``
    PROCESSOR = "processor"  # the Spark application (its sink)
    MONITOR = "monitor"  # Airflow ``process_frames``
    CLEANUP = "cleanup"  # Airflow ``cleanup``


@dataclass(frozen=True)
class _WrittenBy:
    """Field metadata of ``StreamProgress``: who writes it, and whether it is a counter (HINCRBY)."""

    writers: frozenset[ProgressWriter]
    counter: bool = False


def _by(*writers: ProgressWriter, counter: bool = False) -> _WrittenBy:
    return _WrittenBy(frozenset(writers), counter)


_PRODUCER, _PROCESSOR = ProgressWriter.PRODUCER, ProgressWriter.PROCESSOR
_MONITOR, _CLEANUP = ProgressWriter.MONITOR, ProgressWriter.CLEANUP


class StreamProgress(BaseModel):
    """The hash ``streams.progress_key(video_id)``: one stream run of a video, as the producer,
    the Spark application, the monitor and the clean-up report it. Every field is optional (a
    reader sees what was written so far); each is written by the writers named on it.

    Encoding (``to_hash``): ints as decimals, floats with ``repr``, booleans "1"/"0", enums by
    value, ``summary`` as JSON; only the fields set on the object (and not None), so that a
    writer never overwrites another's fields: ``StreamProgress.update(ProgressWriter.PROCESSOR,
    stride=2, updated_at=now)`` is the HSET mapping of these two fields, and refuses a field
    that writer does not own; ``increments`` gives the HINCRBY amounts of counters.
    ``from_hash`` reads an HGETALL reply (bytes or str), ignores unknown fields, and drops
    (logged) a field that does not parse rather than the whole hash.
    """

    model_config = ConfigDict(extra="ignore")

    # producer: a fresh hash per run
    run_id: Annotated[str | None, _by(_PRODUCER)] = None  # the run owning the hash (dag run id)
    state: Annotated[StreamState | None, _by(_PRODUCER, _CLEANUP)] = None
    realtime: Annotated[bool | None, _by(_PRODUCER)] = None  # paced (true) or with backpressure
    frames_total: Annotated[int | None, _by(_PRODUCER)] = None  # frame count (exact once produced)
    produced: Annotated[int | None, _by(_PRODUCER)] = None  # frames added to video-frames so far
    produce_done: Annotated[bool | None, _by(_PRODUCER)] = None  # the end-of-stream entry is written
    started_at: Annotated[float | None, _by(_PRODUCER)] = None  # wall clock, s
    producer_heartbeat: Annotated[float | None, _by(_PRODUCER)] = None  # wall clock, s
    producer_error: Annotated[str | None, _by(_PRODUCER)] = None  # with state "failed"
    # a camera's producer: its health (``CameraState``), the wall clock of the last frame read,
    # the measured input rate (frames/s over the last seconds), reconnections so far in this run,
    # the last error (credentials redacted) and the frames it dropped, oldest first, while the
    # pipeline lagged
    camera_state: Annotated[CameraState | None, _by(_PRODUCER)] = None
    last_frame_at: Annotated[float | None, _by(_PRODUCER)] = None
    input_fps: Annotated[float | None, _by(_PRODUCER)] = None
    reconnects: Annotated[int | None, _by(_PRODUCER)] = None
    camera_error: Annotated[str | None, _by(_PRODUCER)] = None
    camera_dropped: Annotated[int | None, _by(_PRODUCER)] = None
    # the Spark application's sink
    # frames handled: written to processed-frames (skipped and failed ones too) or dropped live
    processed: Annotated[int | None, _by(_PROCESSOR, counter=True)] = None
    processed_last_frame: Annotated[int | None, _by(_PROCESSOR)] = None  # frame_number of the last one
    skipped: Annotated[int | None, _by(_PROCESSOR, counter=True)] = None  # live frames not detected
    detected: Annotated[int | None, _by(_PROCESSOR, counter=True)] = None  # frames detected
    stride: Annotated[int | None, _by(_PROCESSOR)] = None  # live: every stride-th frame detected now
    # live: frames dropped (older than the latency budget when reached: not delivered)
    dropped: Annotated[int | None, _by(_PROCESSOR, counter=True)] = None
    detect_hz: Annotated[float | None, _by(_PROCESSOR)] = None  # live: detections per second of video now
    # live: detection below LIVE_MIN_DETECT_HZ to hold the latency budget
    degraded: Annotated[bool | None, _by(_PROCESSOR)] = None
    frame_errors: Annotated[int | None, _by(_PROCESSOR, counter=True)] = None  # frames that failed
    eos_processed: Annotated[bool | None, _by(_PROCESSOR)] = None  # the end of stream went through
    summary: Annotated[Summary | None, _by(_PROCESSOR)] = None  # latest; final once eos_processed
    fatal_error: Annotated[str | None, _by(_PROCESSOR)] = None  # the processor cannot run at all
    # the monitor (process_frames): why it failed the run (it also sets the stop flag)
    monitor_error: Annotated[str | None, _by(_MONITOR)] = None
    # the clean-up: with state "done"
    status: Annotated[VideoStatus | None, _by(_CLEANUP)] = None  # as written to videos.status
    cleaned_at: Annotated[float | None, _by(_CLEANUP)] = None  # wall clock, s
    # every writer but the clean-up: wall clock of the last write, s
    updated_at: Annotated[float | None, _by(_PRODUCER, _PROCESSOR, _MONITOR)] = None

    COUNTERS: ClassVar[frozenset[str]]  # the HINCRBY fields (set below the class)

    @field_validator("summary", mode="before")
    @classmethod
    def _summary_from_json(cls, value: Any) -> Any:
        if isinstance(value, (bytes, str)):
            return Summary.model_validate_json(value)
        return value

    @classmethod
    def writers_of(cls, name: str) -> _WrittenBy:
        field = cls.model_fields.get(name)
        if field is None:
            raise ValueError(f"{name!r} is not a progress hash field")
        return next(m for m in field.metadata if isinstance(m, _WrittenBy))

    @classmethod
    def _check_owner(cls, writer: ProgressWriter, names: Any) -> None:
        for name in names:
            if writer not in cls.writers_of(name).writers:
                raise ValueError(f"the {writer} does not write the progress field {name!r}")

    def to_hash(self) -> dict[str, str]:
        """The HSET mapping of the fields set on this object (None ones left out)."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in self.model_fields_set and value is not None:
                out[name] = _encode_field(value)
        return out

    @classmethod
    def update(cls, writer: ProgressWriter, **fields: Any) -> dict[str, str]:
        """The HSET mapping of ``fields`` (None ones left out), all owned by ``writer``
        (ValueError otherwise): a partial update that touches no other field."""
        cls._check_owner(writer, fields)
        return cls.model_validate(fields).to_hash()

    @classmethod
    def increments(cls, writer: ProgressWriter, **amounts: int) -> dict[str, int]:
        """The HINCRBY amounts of counter fields owned by ``writer`` (zeros left out)."""
        cls._check_owner(writer, amounts)
        for name in amounts:
            if name not in cls.COUNTERS:
                raise ValueError(f"{name!r} is not a counter of the progress hash")
        return {name: int(n) for name, n in amounts.items() if n}

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any] | None) -> StreamProgress:
        """An HGETALL reply (bytes or str keys and values; empty: nothing written) -> the model.
        Unknown fields are ignored, empty values are absent, and a field that does not parse is
        dropped with a warning."""
        values = {text(k): text(v) for k, v in (raw or {}).items()}
        values = {k: v for k, v in values.items() if k in cls.model_fields and v != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            log.warning("progress hash: unreadable fields %s dropped: %s", sorted(bad), exc)
            return cls.model_validate({k: v for k, v in values.items() if k not in bad})


StreamProgress.COUNTERS = frozenset(
    name for name in StreamProgress.model_fields if StreamProgress.writers_of(name).counter
)


def write_progress(pipe: Any, video_id: int, writer: ProgressWriter, **fields: Any) -> None:
    """Queue on ``pipe`` (a Redis pipeline) the HSET of ``fields`` on the video's progress hash
    (``StreamProgress.update``: only fields ``writer`` owns) and the renewal of its TTL
    (``PROGRESS_TTL_S``)."""
    key = progress_key(video_id)
    pipe.hset(key, mapping=StreamProgress.update(writer, **fields))
    pipe.expire(key, PROGRESS_TTL_S)


def _encode_field(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return str(value)
