"""The processing stage of the Spark application, as plain functions over pandas frames.

One stateful pass per video (``VideoStateProcessor``, run by ``transformWithStateInPandas``
straight on the source's rows, in stream order): decode, detect (process-wide
``VehicleDetector``), ROI filter, appearance embeddings, DeepSORT, speed, analytics, drawing and
JPEG encoding, with the video's ``FrameProcessor`` (minus the detector) pickled in a
``ValueState``. On the end of stream it emits the final summary and drops the state. Detection
lives in this pass (not in a stateless stage before it) so that the JPEG bytes cross from the
JVM to Python once, and so that the live stride below is decided where the video's state is.

Live streams (``realtime``): of a video's frames only an even stride is detected, every k-th
frame, k from the measured cost of a detected and of a held frame against the frame interval
(``LiveStride``), adapted after each micro-batch and raised while the stream lags more than
``MAX_LIVE_DELAY_S``; at most ``fps / LIVE_MIN_DETECT_HZ``. The others are drawn with the tracks
predicted to their frame number (``FrameProcessor.hold``) and counted in ``skipped_frames``.
The tracker, the speed windows and the speeding rule count video time, so results equal the
every-frame ones. ``realtime=false`` detects every frame.

Row statuses of the output: ``ok`` (detected), ``skipped`` (live, not detected: drawn with the
predicted tracks), ``error`` (this frame failed: undecodable JPEG, bad config...), ``fatal``
(the processor cannot run at all, e.g. the model is missing), ``eos`` (end-of-stream marker
without a frame). An end-of-stream entry that carries a frame is processed as a frame (``ok``)
and then ends the video. An ``error``/``fatal`` frame has an empty ``processed_frame`` and the
``error`` text.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from traffic_processing.schemas import FrameConfig, ProcessedFrame, Stats, Summary
from traffic_processing.streams import MAX_LIVE_DELAY_S

log = logging.getLogger("traffic_streaming.stages")

OUTPUT_SCHEMA = (
    "video_id int, frame_number int, stream_id string, produced_at double, status string, "
    "end_of_stream boolean, processed_frame binary, message string, summary string"
)
STATE_SCHEMA = "blob binary"

OK, SKIPPED, ERROR, FATAL, EOS = "ok", "skipped", "error", "fatal", "eos"

TIMING = os.environ.get("LOG_TIMING") == "1"
# Live streams: share of one frame interval the processing of a video may take on average
# (the rest is Spark's per-batch overhead and the other services), and the lowest detection
# rate (Hz) the stride may fall to (the tracker associates down to ~5 Hz).
LIVE_CPU_SHARE = float(os.environ.get("LIVE_CPU_SHARE", "0.7"))
# Live streams: the micro-batch length aimed at (a frame waits up to about two of them).
LIVE_TARGET_BATCH_S = float(os.environ.get("LIVE_TARGET_BATCH_S", "0.6"))
LIVE_MIN_DETECT_HZ = float(os.environ.get("LIVE_MIN_DETECT_HZ", "5"))


def stream_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = str(stream_id).partition("-")
    return int(ms), int(seq or 0)


def configure_worker_logging() -> None:
    """Python workers start with logging unconfigured: INFO for ours, and the per-frame
    ``[PERFORMANCE]`` block only with LOG_PERFORMANCE=1."""
    root = logging.getLogger("traffic_streaming")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    perf = logging.getLogger("traffic_processing.performance")
    if os.environ.get("LOG_PERFORMANCE") == "1":
        if not perf.handlers:
            perf.addHandler(logging.StreamHandler(sys.stderr))
        perf.setLevel(logging.INFO)
    else:
        perf.setLevel(logging.WARNING)


# -- process-wide model singletons (never in state) --------------------------------------------
_DETECTOR: Any = None
_DETECTOR_ERROR: str | None = None


def detector_config() -> Any:
    """The detector's settings of this deployment: ``DETECTOR_DEVICE`` (cpu|cuda|cuda:N; the
    embedder follows it), ``DETECTOR_HALF`` (1: fp16 on the GPU), ``DETECT_BATCH`` (frames per
    network call in the batched stage, default 32)."""
    from traffic_processing.detector import DetectorConfig

    return DetectorConfig(
        device=os.environ.get("DETECTOR_DEVICE", "cpu"),
        half=os.environ.get("DETECTOR_HALF") == "1",
        batch=int(os.environ.get("DETECT_BATCH") or 32),
    )


def get_detector() -> Any:
    """The process-wide ``VehicleDetector`` (``MODEL_PATH`` or the library default); raises
    ``ModelLoadError`` (remembered: no reload attempt per frame) when the model cannot load."""
    global _DETECTOR, _DETECTOR_ERROR
    if _DETECTOR is None:
        if _DETECTOR_ERROR is not None:
            from traffic_processing.detector import ModelLoadError

            raise ModelLoadError(_DETECTOR_ERROR)
        from traffic_processing.detector import VehicleDetector

        os.environ.setdefault("YOLO_OFFLINE", "1")
        config = detector_config()
        try:
            _DETECTOR = VehicleDetector(os.environ.get("MODEL_PATH") or None, config)
        except Exception as exc:
            _DETECTOR_ERROR = f"detector cannot load: {exc}"
            log.error("[SPARK-APP] %s", _DETECTOR_ERROR)
            raise
    return _DETECTOR


def warm_partitions(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` warm-up run once at start: loads the detector and the embedder in the
    Python workers that the query's tasks then reuse (first batch without model loading)."""
    import numpy as np

    configure_worker_logging()
    for pdf in batches:
        ok = 1
        try:
            from traffic_processing.detections import FrameDetections
            from traffic_processing.tracker import embed

            detector = get_detector()
            frame = np.zeros((360, 640, 3), dtype=np.uint8)
            detector.detect([frame])
            boxes = FrameDetections(xyxy=[[10, 10, 60, 60]], confidence=[0.9], class_id=[2])
            embed(frame, boxes, device=detector.device, half=detector.half)
        except Exception as exc:
            log.warning("[SPARK-APP] warm-up in pid %s failed: %r", os.getpid(), exc)
            ok = 0
        yield pd.DataFrame({"ok": [ok] * max(1, len(pdf))})


# -- stateful stage -------------------------------------------------------------------------
# Costs measured on any video of this worker (ms per detected / held frame, s of Spark overhead
# per batch): a new live video starts from them rather than from stride 1.
_COST_PRIOR: dict[str, float] = {}


@dataclass
class LiveStride:
    """The detection stride of a live video: detect every ``k``-th frame.

    Steady state of a live stream: a micro-batch takes ``T = O + n * c`` (``O`` Spark's overhead
    per batch, measured between two calls of this video, ``n = fps * T`` frames arrived
    meanwhile, ``c = (detect + (k - 1) * hold) / k`` the mean cost per frame), so
    ``T = O / (1 - fps * c)``, and a frame waits up to about two batches. ``k`` is the smallest
    stride with ``T <= LIVE_TARGET_BATCH_S``, and ``fps * c <= LIVE_CPU_SHARE`` at most; it is
    re-evaluated after every detected frame (moving averages of the measured costs), raised by one
    while the stream lags more than ``MAX_LIVE_DELAY_S``, within 1..``fps / LIVE_MIN_DETECT_HZ``.
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

    def adapt(self, fps: float, lag_s: float) -> int:
        k_max = max(1, int(fps / LIVE_MIN_DETECT_HZ))
        if self.detect_ms is None:
            return self.k
        share = LIVE_CPU_SHARE
        if self.overhead_s is not None:
            share = min(share, max(0.2, 1.0 - self.overhead_s / LIVE_TARGET_BATCH_S))
        budget = share * 1000.0 / fps
        hold = self.hold_ms if self.hold_ms is not None else 0.1 * self.detect_ms
        if self.detect_ms <= budget:
            k = 1
        elif hold >= budget:
            k = k_max
        else:
            k = math.ceil((self.detect_ms - hold) / (budget - hold))
        if lag_s > MAX_LIVE_DELAY_S:
            k = max(k, self.k + 1)
        self.k = max(1, min(k_max, k))
        return self.k


@dataclass
class VideoState:
    """Everything kept about one video between micro-batches (pickled in a ValueState)."""

    processor: Any = None  # FrameProcessor; its detector is never pickled
    skipped: int = 0
    errors: int = 0
    last_frame: int = -1
    frames: int = 0
    detected: int = 0
    run_id: str | None = None
    stride: LiveStride = field(default_factory=LiveStride)


def _summary(state: VideoState) -> Summary:
    if state.processor is None:
        return Summary(
            total_vehicles_count=0,
            avg_dwell_time=0.0,
            vehicle_type_distribution={},
            speeding_count=0,
            vehicles=[],
        )
    return state.processor.finalize()


def _base_frame(video_id: int, row: dict, state: VideoState, settings: FrameConfig | None) -> ProcessedFrame:
    proc = state.processor
    return ProcessedFrame(
        video_id=video_id,
        frame_number=int(row["frame_number"]),
        timestamp=float(row["timestamp"]),
        stats=Stats(**proc.analytics.stats()) if proc is not None else Stats(),
        roi_polygon=(settings.roi_polygon if settings else None),
        has_homography=bool(settings and settings.homography_matrix is not None),
        produced_at=float(row["produced_at"]),
    )


def frame_settings(row: dict) -> FrameConfig | None:
    try:
        return FrameConfig.model_validate_json(row["config"] or "")
    except Exception:
        return None


def _run_id(row: dict) -> str | None:
    """The row's run id; None when the entry has none (pandas may hand a null over as NaN)."""
    value = row.get("run_id")
    return value if isinstance(value, str) and value else None


def _detections(row: dict) -> Any:
    """The row's ``FrameDetections`` from the batched detection stage, or None (no such stage,
    or it could not detect this frame)."""
    blob = row.get("detections")
    if not isinstance(blob, (bytes, bytearray)) or not blob:
        return None
    from traffic_processing.detections import FrameDetections

    return FrameDetections.from_bytes(bytes(blob))


def _is_new_run(state: VideoState, row: dict, frame_number: int) -> bool:
    """A row of another run of the video than the state's: another run id, or (entries without
    one) a frame number that does not move forward."""
    if state.processor is None and state.frames == 0:
        return False
    run_id = _run_id(row)
    if run_id and state.run_id and run_id != state.run_id:
        return True
    return not row["end_of_stream"] and frame_number <= state.last_frame


def _process_row(
    video_id: int, row: dict, state: VideoState, settings: FrameConfig | None, now: Any
) -> tuple[ProcessedFrame, str, str | None, float]:
    """One row -> (message, status, kind of cost: "detect" / "hold" / None, ms)."""
    from traffic_processing.detector import ModelLoadError
    from traffic_processing.visualize import decode_jpeg

    frame_number = int(row["frame_number"])
    raw = bytes(row["frame_data"] or b"")
    if row["end_of_stream"] and not raw:
        return _base_frame(video_id, row, state, settings), EOS, None, 0.0
    if settings is None:
        pf = _base_frame(video_id, row, state, None)
        pf.error = "invalid config: " + (str(row["config"])[:200] or "(none)")
        return pf, ERROR, None, 0.0
    if state.processor is None:
        from traffic_processing.config import ProcessorConfig
        from traffic_processing.processor import FrameProcessor

        config = ProcessorConfig(detector=detector_config())
        state.processor = FrameProcessor(settings, video_id=video_id, detector=None, config=config)
    proc = state.processor
    live = settings.realtime and not row["end_of_stream"]
    started = time.perf_counter()
    if live and not state.stride.due(frame_number):
        pf = _base_frame(video_id, row, state, settings)
        if now() - float(row["produced_at"]) > MAX_LIVE_DELAY_S:
            # Far behind live: pass the frame on as it came (no decode, draw, encode) to catch up.
            pf.processed_frame = raw
            state.skipped += 1
            return pf, SKIPPED, None, 0.0
        try:
            pf.processed_frame = proc.hold(decode_jpeg(raw), frame_number)
        except Exception as exc:  # undecodable: the viewers get it as it came, counted as an error
            pf.error = f"decode: {exc}"
            return pf, ERROR, None, 0.0
        state.skipped += 1
        return pf, SKIPPED, "hold", (time.perf_counter() - started) * 1000.0
    detections = _detections(row)
    if detections is None:
        try:
            proc.detector = get_detector()
        except ModelLoadError as exc:
            pf = _base_frame(video_id, row, state, settings)
            pf.error = str(exc)
            return pf, FATAL, None, 0.0
    try:
        if detections is None:
            pf = proc.process(raw, frame_number)
        else:  # detected (and embedded) by the batched stage before this one
            pf = proc.track(decode_jpeg(raw), detections, frame_number)
    except Exception as exc:
        log.warning("[SPARK-APP] video %s frame %s failed: %r", video_id, frame_number, exc)
        pf = _base_frame(video_id, row, state, settings)
        pf.error = f"decode: {exc}" if isinstance(exc, ValueError) else f"process: {exc!r}"
        return pf, ERROR, None, 0.0
    finally:
        proc.detector = None
    proc.last_annotated = None
    pf.timestamp = float(row["timestamp"])
    pf.produced_at = float(row["produced_at"])
    state.stride.last_detected = frame_number
    state.detected += 1
    return pf, OK, ("detect" if live else None), (time.perf_counter() - started) * 1000.0


def _adapt(video_id: int, state: VideoState, fps: float, lag_s: float) -> None:
    before = state.stride.k
    after = state.stride.adapt(fps, lag_s)
    if after != before:
        log.info(
            "[SPARK-APP] video %s: detection stride %s -> %s (detect %.0f ms, hold %.0f ms, "
            "overhead %.2f s, lag %.2f s)",
            video_id,
            before,
            after,
            state.stride.detect_ms or 0.0,
            state.stride.hold_ms or 0.0,
            state.stride.overhead_s or 0.0,
            lag_s,
        )


def process_video_rows(
    video_id: int, pdf: pd.DataFrame, blob: bytes | None, now: Any = time.time
) -> tuple[list[dict], bytes | None]:
    """The stateful step of one video for one micro-batch: source rows (any order) + the pickled
    state -> output rows in stream order + the new pickled state (None: drop it). No Spark here."""
    state: VideoState = pickle.loads(blob) if blob else VideoState()
    pdf = pdf.assign(_order=[stream_order(s) for s in pdf["stream_id"]]).sort_values("_order")
    out: list[dict] = []
    state.stride.batch_started(now())
    for row in pdf.to_dict("records"):
        frame_number = int(row["frame_number"])
        settings = frame_settings(row)
        if _is_new_run(state, row, frame_number):
            log.warning(
                "[SPARK-APP] video %s: frame %s (run %s) after %s (run %s): new stream run, state reset",
                video_id,
                frame_number,
                _run_id(row),
                state.last_frame,
                state.run_id,
            )
            state = VideoState()
        state.run_id = _run_id(row) or state.run_id
        try:
            pf, status, kind, ms = _process_row(video_id, row, state, settings, now)
        except Exception as exc:  # last resort: this frame fails, the video goes on
            log.error("[SPARK-APP] video %s frame %s: %s", video_id, frame_number, traceback.format_exc())
            pf, status, kind, ms = _base_frame(video_id, row, state, settings), ERROR, None, 0.0
            pf.error = f"track: {exc!r}"
        if kind and settings is not None:
            state.stride.observe(kind, ms)
            if kind == "detect":  # the stride follows the costs within the batch too
                _adapt(video_id, state, settings.fps, now() - float(row["produced_at"]))
        if status in (ERROR, FATAL):
            state.errors += 1
        if status != EOS:
            state.last_frame = max(state.last_frame, frame_number)
            state.frames += 1
        pf.skipped_frames = state.skipped
        pf.detected_frames = state.detected
        pf.detect_stride = state.stride.k
        pf.run_id = _run_id(row)
        jpeg = pf.processed_frame
        pf.processed_frame = b""
        record = {
            "video_id": video_id,
            "frame_number": frame_number,
            "stream_id": row["stream_id"],
            "produced_at": float(row["produced_at"]),
            "status": status,
            "end_of_stream": bool(row["end_of_stream"]),
            "processed_frame": jpeg,
            "message": "",
            "summary": None,
        }
        if row["end_of_stream"]:
            pf.end_of_stream = True
            pf.summary = _summary(state)
            record["summary"] = pf.summary.model_dump_json()
            log.info(
                "[SPARK-APP] video %s end of stream: %s frames, %s detected, %s skipped, %s errors, "
                "summary %s, %d passages",
                video_id,
                state.frames,
                state.detected,
                state.skipped,
                state.errors,
                pf.summary.model_dump_json(exclude={"vehicles"}),
                len(pf.summary.vehicles or []),
            )
            # Anything after the end of stream in this batch belongs to a new run of the video.
            state = VideoState()
        record["message"] = pf.model_dump_json()
        out.append(record)
    state.stride.last_call_end = now()
    if out and out[-1]["summary"] is None and state.processor is not None:
        out[-1]["summary"] = _summary(state).model_dump_json()
    if state.processor is None and state.frames == 0:
        return out, None
    return out, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def make_state_processor() -> Any:
    """The ``StatefulProcessor`` (built lazily so this module imports without pyspark)."""
    from pyspark.sql.streaming.stateful_processor import StatefulProcessor

    class VideoStateProcessor(StatefulProcessor):
        def init(self, handle: Any) -> None:
            configure_worker_logging()
            self.state = handle.getValueState("video", STATE_SCHEMA)

        def handleInputRows(
            self, key: Any, rows: Iterator[pd.DataFrame], timerValues: Any
        ) -> Iterator[pd.DataFrame]:
            video_id = int(key[0])
            chunks = [c for c in rows if not c.empty]
            if not chunks:
                return
            pdf = pd.concat(chunks, ignore_index=True)
            blob = None
            if self.state.exists():
                value = self.state.get()
                blob = bytes(value[0]) if value and value[0] is not None else None
            started = time.perf_counter()
            out, new_blob = process_video_rows(video_id, pdf, blob)
            if TIMING:
                log.info(
                    "[TIMING] stateful pid %s video %s: %s rows in %.0f ms, state %s bytes",
                    os.getpid(),
                    video_id,
                    len(out),
                    (time.perf_counter() - started) * 1000,
                    len(new_blob or b""),
                )
            if new_blob is None:
                self.state.clear()
            else:
                self.state.update((new_blob,))
            columns = [c.split()[0] for c in OUTPUT_SCHEMA.split(", ")]
            yield pd.DataFrame(out, columns=columns)

        def close(self) -> None:
            pass

    return VideoStateProcessor()
