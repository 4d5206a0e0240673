"""What the Spark job keeps per video between micro-batches, and how it is stored.

``VideoState`` is explicit: the video's settings (``FrameConfig`` JSON), its ``ProcessorState``
(tracker, speed histories, analytics: the processing library's state type, not the processor),
the counters of the stream and its live stride. It is stored as ``MAGIC + version + pickle``:

- version ``STATE_VERSION`` (2): this layout;
- no header (version 1, written before this module existed): the whole ``FrameProcessor`` was
  pickled; ``loads`` reads it through ``_LegacyUnpickler`` (the old classes become plain shells)
  and keeps its tracker, speed histories and analytics: a stream in flight goes on;
- a newer version: ``StateVersionError``, naming the checkpoint to remove or the version to run.

A refactor of ``FrameProcessor`` no longer touches checkpoints; a change of the state types
(``VideoState``, ``ProcessorState``, ``LiveStride``, the tracker/speed/analytics classes) bumps
``STATE_VERSION`` and teaches ``loads`` the previous one.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

from traffic_processing.processor import ProcessorState
from traffic_processing.schemas import FrameConfig

from spark.streaming.settings import SparkSettings

MAGIC = b"TRAFFIC-VIDEO-STATE"
STATE_VERSION = 2
_HEADER = struct.Struct(">H")


class StateVersionError(RuntimeError):
    """A stored video state this version of the application cannot read."""


# Costs measured on any video of this worker (ms per detected / held frame, s of Spark overhead
# per batch): a new live video starts from them rather than from stride 1.
_COST_PRIOR: dict[str, float] = {}


_DEFAULTS = SparkSettings.model_construct()  # the declared defaults (no environment read)


@dataclass(frozen=True)
class LiveTuning:
    """The knobs of ``LiveStride``: ``SparkSettings``' LIVE_* and MAX_LIVE_DELAY_S (defaults:
    those of the settings class, defined there only)."""

    cpu_share: float = _DEFAULTS.LIVE_CPU_SHARE
    target_batch_s: float = _DEFAULTS.LIVE_TARGET_BATCH_S
    min_detect_hz: float = _DEFAULTS.LIVE_MIN_DETECT_HZ
    max_delay_s: float = _DEFAULTS.MAX_LIVE_DELAY_S

    @classmethod
    def from_settings(cls, settings: SparkSettings) -> LiveTuning:
        return cls(
            cpu_share=settings.LIVE_CPU_SHARE,
            target_batch_s=settings.LIVE_TARGET_BATCH_S,
            min_detect_hz=settings.LIVE_MIN_DETECT_HZ,
            max_delay_s=settings.MAX_LIVE_DELAY_S,
        )


@dataclass
class LiveStride:
    """The detection stride of a live video: detect every ``k``-th frame.

    Steady state of a live stream: a micro-batch takes ``T = O + n * c`` (``O`` Spark's overhead
    per batch, measured between two calls of this video, ``n = fps * T`` frames arrived
    meanwhile, ``c = (detect + (k - 1) * hold) / k`` the mean cost per frame), so
    ``T = O / (1 - fps * c)``, and a frame waits up to about two batches. ``k`` is the smallest
    stride with ``T <= target_batch_s``, and ``fps * c <= cpu_share`` at most; it is re-evaluated
    after every detected frame (moving averages of the measured costs), raised by one while the
    stream lags more than ``max_delay_s``, within 1..``fps / min_detect_hz``.
    """

    k: int = 1
    detect_ms: float | None = None
    hold_ms: float | None = None
    overhead_s: float | None = None
    last_detected: int = -1
    last_call_end: float | None = None  # wall clock at the end of this video's previous batch

    def __post_init__(self) -> None:
        self.detect_ms = self.detect_ms if self.detect_ms is not None else _COST_PRIOR.get("detect")
        self.hold_ms = self.hold_ms if self.hold_ms is not None else _COST_PRIOR.get("hold")
        self.overhead_s = self.overhead_s if self.overhead_s is not None else _COST_PRIOR.get("overhead")

    def due(self, frame_number: int) -> bool:
        return self.last_detected < 0 or frame_number - self.last_detected >= self.k

    @staticmethod
    def _ema(old: float | None, new: float, weight: float = 0.3) -> float:
        return new if old is None else (1 - weight) * old + weight * new

    def observe(self, kind: str, ms: float) -> None:
        if kind == "detect":
            self.detect_ms = _COST_PRIOR["detect"] = self._ema(self.detect_ms, ms)
        else:
            self.hold_ms = _COST_PRIOR["hold"] = self._ema(self.hold_ms, ms, 0.1)

    def batch_started(self, wall: float) -> None:
        if self.last_call_end is not None and 0 <= wall - self.last_call_end < 30:
            self.overhead_s = _COST_PRIOR["overhead"] = self._ema(self.overhead_s, wall - self.last_call_end)

    def adapt(self, fps: float, lag_s: float, tuning: LiveTuning | None = None) -> int:
        t = tuning or LiveTuning()
        k_max = max(1, int(fps / t.min_detect_hz))
        if self.detect_ms is None:
            return self.k
        share = t.cpu_share
        if self.overhead_s is not None:
            share = min(share, max(0.2, 1.0 - self.overhead_s / t.target_batch_s))
        budget = share * 1000.0 / fps
        hold = self.hold_ms if self.hold_ms is not None else 0.1 * self.detect_ms
        if self.detect_ms <= budget:
            k = 1
        elif hold >= budget:
            k = k_max
        else:
            k = math.ceil((self.detect_ms - hold) / (budget - hold))
        if lag_s > t.max_delay_s:
            k = max(k, self.k + 1)
        self.k = max(1, min(k_max, k))
        return self.k


@dataclass
class VideoState:
    """Everything kept about one video between micro-batches."""

    settings: str | None = None  # the video's FrameConfig (JSON), from its first frame
    processor: ProcessorState | None = None
    skipped: int = 0
    errors: int = 0
    last_frame: int = -1
    frames: int = 0
    detected: int = 0
    run_id: str | None = None
    stride: LiveStride = field(default_factory=LiveStride)

    @property
    def frame_config(self) -> FrameConfig | None:
        return None if self.settings is None else FrameConfig.model_validate_json(self.settings)


def dumps(state: VideoState) -> bytes:
    return MAGIC + _HEADER.pack(STATE_VERSION) + pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def loads(blob: bytes) -> VideoState:
    """The stored state, of this version or the previous one; ``StateVersionError`` otherwise."""
    if not blob.startswith(MAGIC):
        return _from_version_1(blob)
    (version,) = _HEADER.unpack_from(blob, len(MAGIC))
    if version != STATE_VERSION:
        raise StateVersionError(
            f"stored video state is version {version}, this application reads versions 1-{STATE_VERSION}: "
            "run the application version that wrote it, or remove the checkpoint "
            "(SPARK_CHECKPOINT_DIR) and restart the streams in flight"
        )
    state = pickle.loads(blob[len(MAGIC) + _HEADER.size :])
    if not isinstance(state, VideoState):
        raise StateVersionError(f"stored video state holds a {type(state).__name__}, not a VideoState")
    return state


class _Shell:
    """An object of a class of the version-1 state that no longer exists as it was."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {})


class _LegacyUnpickler(pickle.Unpickler):
    """Version 1 pickled the stage's ``VideoState`` and the whole ``FrameProcessor``: those (and
    its timer) load as shells; the tracker, speed and analytics classes are still the state types."""

    SHELLS = {
        ("spark.streaming.stages", "VideoState"),
        ("traffic_processing.processor", "FrameProcessor"),
        ("traffic_processing.processor", "StageTimer"),
    }
    MOVED = {("spark.streaming.stages", "LiveStride"): LiveStride}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.SHELLS:
            return _Shell
        if (module, name) in self.MOVED:
            return self.MOVED[(module, name)]
        return super().find_class(module, name)


def _from_version_1(blob: bytes) -> VideoState:
    try:
        old = _LegacyUnpickler(io.BytesIO(blob)).load()
    except Exception as exc:
        raise StateVersionError(
            f"stored video state has no version header and is not a version-1 state either ({exc!r}): "
            "remove the checkpoint (SPARK_CHECKPOINT_DIR) and restart the streams in flight"
        ) from exc
    if not isinstance(old, _Shell):
        kind = type(old).__name__
        raise StateVersionError(f"stored video state holds a {kind}, not a version-1 VideoState")
    attrs = old.__dict__
    proc = attrs.get("processor")
    state = VideoState(
        skipped=attrs.get("skipped", 0),
        errors=attrs.get("errors", 0),
        last_frame=attrs.get("last_frame", -1),
        frames=attrs.get("frames", 0),
        detected=attrs.get("detected", 0),
        run_id=attrs.get("run_id"),
        stride=attrs.get("stride") or LiveStride(),
    )
    if proc is not None:
        p = proc.__dict__
        state.settings = p["settings"].model_dump_json()
        state.processor = ProcessorState(p["tracker"], p["speed"], p["analytics"], p.get("last_tracked"))
    return state
