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

from contracts.messages import FrameConfig
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
    """The knobs of ``LiveStride``: ``SparkSettings``' LIVE_* (defaults: those of the settings
    class, defined there only)."""

    budget_s: float = _DEFAULTS.LIVE_LATENCY_BUDGET_S
    min_detect_hz: float = _DEFAULTS.LIVE_MIN_DETECT_HZ
    degraded_min_hz: float = _DEFAULTS.LIVE_DEGRADED_MIN_DETECT_HZ
    cpu_share: float = _DEFAULTS.LIVE_CPU_SHARE
    min_view_fps: float = _DEFAULTS.LIVE_MIN_VIEW_FPS
    # Of the budget, what the way from processed-frames to the viewer takes (bridge, hub, socket)
    delivery_s: float = 0.15

    @classmethod
    def from_settings(cls, settings: SparkSettings) -> LiveTuning:
        return cls(
            budget_s=settings.LIVE_LATENCY_BUDGET_S,
            min_detect_hz=settings.LIVE_MIN_DETECT_HZ,
            degraded_min_hz=settings.LIVE_DEGRADED_MIN_DETECT_HZ,
            cpu_share=settings.LIVE_CPU_SHARE,
            min_view_fps=settings.LIVE_MIN_VIEW_FPS,
        )

    @property
    def room_s(self) -> float:
        """The age a frame may have when the processor reaches it: the budget less delivery."""
        return max(0.05, self.budget_s - self.delivery_s)

    def normal_max_stride(self, fps: float) -> int:
        """The largest stride that keeps detection at LIVE_MIN_DETECT_HZ (beyond: degraded)."""
        return max(1, int(fps / self.min_detect_hz + 1e-9))

    def max_stride(self, fps: float) -> int:
        return max(self.normal_max_stride(fps), int(fps / self.degraded_min_hz + 1e-9))

    def max_view_every(self, fps: float) -> int:
        """The largest thinning of the drawn frames that keeps LIVE_MIN_VIEW_FPS."""
        return max(1, int(fps / self.min_view_fps + 1e-9))


@dataclass
class LiveStride:
    """The detection stride of a live video (detect every ``k``-th frame), chosen so that the
    latency stays within a budget whatever the machine.

    A live frame waits for the next micro-batch to read it (up to one batch period ``T``), then
    is drawn and published within that batch: its latency is about ``T`` plus the delivery to
    the viewer. ``T = O / (1 - u)``: ``O`` is the cost of a batch that is not frame processing
    (Spark's planning, state store, sink, commits, the trigger; measured as the wall time between
    two calls of this video's stage), ``u = fps * c`` the share of real time the frames take,
    ``c = (detect + (k - 1) * hold) / k`` the mean cost of a frame (moving averages of what the
    detected and the held frames measured). ``k`` is the smallest stride with ``T`` within the
    budget's room (``budget - delivery``, with a 25 % margin) and ``u <= cpu_share``; it is
    re-evaluated after every detected frame and every batch, and raised by one while frames
    reach the processor later than the room (the feedback that covers what the model misses).
    Before the detection rate goes under ``min_detect_hz``, the drawing gives: only every
    ``view_every``-th frame between two detected ones is drawn (the view keeps ``min_view_fps``;
    the others are dropped, counted), which leaves their cost to detection. Up to
    ``fps / min_detect_hz`` the stride is normal; beyond, down to ``degraded_min_hz``, the stream
    is **degraded** (fast vehicles may be missed), which the frames and the progress say.
    Frames that are already older than the room when reached are dropped (``stages``), so the
    latency holds even while the stride catches up.
    """

    k: int = 1
    detect_ms: float | None = None
    hold_ms: float | None = None
    overhead_s: float | None = None
    last_detected: int = -1
    last_call_end: float | None = None  # wall clock at the end of this video's previous batch
    # (added in state version 2 with defaults here, so older pickles read them as the defaults)
    degraded: bool = False
    period_s: float | None = None  # moving average of the wall time between two batches
    last_call_start: float | None = None
    view_every: int = 1  # (state version 2 too) every how many frames one is drawn between detections

    def __post_init__(self) -> None:
        self.detect_ms = self.detect_ms if self.detect_ms is not None else _COST_PRIOR.get("detect")
        self.hold_ms = self.hold_ms if self.hold_ms is not None else _COST_PRIOR.get("hold")
        # Not the overhead: another video's (a stream processed every frame, batches of seconds)
        # says nothing of a new live stream's, which is read ahead.

    def due(self, frame_number: int) -> bool:
        return self.last_detected < 0 or frame_number - self.last_detected >= self.k

    def late_due(self, frame_number: int, fps: float, late_hz: float) -> bool:
        """Whether a frame dropped as too late is still detected (for the tracks, not the view):
        at most ``late_hz``, and never more often than the stride."""
        if late_hz <= 0:
            return False
        every = max(self.k, math.ceil(fps / late_hz - 1e-9))
        return self.last_detected < 0 or frame_number - self.last_detected >= every

    def drawn(self, frame_number: int) -> bool:
        """Whether a frame that is not detected is drawn (else dropped: the view is thinned)."""
        return self.last_detected < 0 or (frame_number - self.last_detected) % self.view_every == 0

    @staticmethod
    def _ema(old: float | None, new: float, weight: float = 0.3) -> float:
        return new if old is None else (1 - weight) * old + weight * new

    def observe(self, kind: str, ms: float) -> None:
        """One measured cost. A sample above 3x the current average (a cold model, a pause of
        the machine) counts as 3x, and the average follows a lower cost faster than a higher
        one, so that one outlier (the first inference of a process) does not set the stride
        for seconds."""
        current = self.detect_ms if kind == "detect" else self.hold_ms
        if current is not None:
            ms = min(ms, 3.0 * current)
        lower = current is not None and ms < current
        if kind == "detect":
            self.detect_ms = _COST_PRIOR["detect"] = self._ema(self.detect_ms, ms, 0.6 if lower else 0.3)
        else:
            self.hold_ms = _COST_PRIOR["hold"] = self._ema(self.hold_ms, ms, 0.3 if lower else 0.1)

    def batch_started(self, wall: float) -> None:
        if self.last_call_end is not None and 0 <= wall - self.last_call_end < 30:
            self.overhead_s = self._ema(self.overhead_s, wall - self.last_call_end)
        if self.last_call_start is not None and 0 <= wall - self.last_call_start < 30:
            self.period_s = self._ema(self.period_s, wall - self.last_call_start)
        self.last_call_start = wall

    def detect_hz(self, fps: float) -> float:
        return fps / max(1, self.k)

    def read_limit(self, fps: float, tuning: LiveTuning | None = None, pulling: bool = False) -> int:
        """Entries of this video one micro-batch should read at most: those of one budget (or
        of one batch period when that is longer) and two more; anything older would be dropped
        as too late anyway, and a longer batch would only delay the next one. ``pulling`` (the
        stream is read ahead: the source hands those entries over without their JPEG): half a
        period more, so that Spark's offsets keep up with what the stage read ahead."""
        t = tuning or LiveTuning()
        span = max(t.budget_s, self.period_s or 0.0) * (1.5 if pulling else 1.0)
        return int(math.ceil(fps * span)) + 2

    def adapt(self, fps: float, lag_s: float, tuning: LiveTuning | None = None, pulling: bool = False) -> int:
        """``pulling``: the stream is read ahead (``stages._pull_ahead``): a frame is processed
        as it arrives, only the frames of Spark's gap between two calls wait for the next call
        (as long as that gap, whatever the stride), so the stride needs only keep ``u`` within
        ``cpu_share``; the lag of the frames read ahead is the feedback. When the stride that
        fits is beyond the normal one, the drawn frames are thinned first (``view_every``, down
        to ``min_view_fps``): a held frame not drawn costs nothing."""
        t = tuning or LiveTuning()
        k_normal, k_max = t.normal_max_stride(fps), t.max_stride(fps)
        if self.detect_ms is None:
            return self.k
        overhead = 0.0 if pulling else (self.overhead_s or 0.0)
        share = min(t.cpu_share, 1.0 - 1.25 * overhead / t.room_s)
        hold = self.hold_ms if self.hold_ms is not None else 0.1 * self.detect_ms
        budget_ms = share * 1000.0 / fps  # mean ms per frame that keeps T within the room
        m_max = t.max_view_every(fps)
        m = 1
        k = self._fitting_stride(budget_ms, hold, k_max)
        while k > k_normal and m < m_max:
            m += 1
            k = self._fitting_stride(budget_ms, hold / m, k_max)
        if lag_s > t.room_s:  # late all the same: one step more, in the same order
            if max(k, self.k + 1) > k_normal and max(m, self.view_every) < m_max:
                m, k = max(m, self.view_every + 1), max(k, self.k)  # (not less detection while late)
            else:
                m, k = max(m, self.view_every), max(k, self.k + 1)
        self.k = max(1, min(k_max, k))
        self.view_every = min(m, m_max)
        self.degraded = self.k > k_normal
        return self.k

    def _fitting_stride(self, budget_ms: float, hold_ms: float, k_max: int) -> int:
        """The smallest stride whose mean cost per frame, ``(detect + (k - 1) * hold) / k``, is
        within ``budget_ms``."""
        detect = self.detect_ms or 0.0
        if budget_ms > 0 and detect <= budget_ms:
            return 1
        if hold_ms >= budget_ms:
            return k_max
        return math.ceil((detect - hold_ms) / (budget_ms - hold_ms))


@dataclass
class VideoState:
    """Everything kept about one video between micro-batches."""

    settings: str | None = None  # the video's FrameConfig (JSON), from its first frame
    processor: ProcessorState | None = None
    skipped: int = 0
    dropped: int = 0  # live frames older than the latency budget when reached
    errors: int = 0
    last_frame: int = -1
    frames: int = 0
    detected: int = 0
    run_id: str | None = None
    stride: LiveStride = field(default_factory=LiveStride)
    # (added in state version 2 with defaults, read as these from older pickles)
    pulled_upto: str | None = None  # stream id of the last row read ahead (stages._pull_ahead)
    pulling: bool = False  # the last call read ahead (a lone live stream)
    # Violations flagged on a frame analysed late (not delivered): sent with the next frame
    pending_violations: tuple = ()

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
    state = _Unpickler(io.BytesIO(blob[len(MAGIC) + _HEADER.size :])).load()
    if not isinstance(state, VideoState):
        raise StateVersionError(f"stored video state holds a {type(state).__name__}, not a VideoState")
    return state


class _Shell:
    """An object of a class of the version-1 state that no longer exists as it was."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {})


class _Unpickler(pickle.Unpickler):
    """Reads a pickled state whose classes have since moved module (issue 19: the messages moved
    from the processing library to ``contracts``): a checkpoint written before the move loads."""

    RENAMED = {
        "traffic_processing.schemas": "contracts.messages",
        "traffic_processing.streams": "contracts.streams",
        "traffic_processing.settings": "contracts.settings",
    }

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(self.RENAMED.get(module, module), name)


class _LegacyUnpickler(_Unpickler):
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
