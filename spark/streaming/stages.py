"""The two processing stages of the Spark application, as plain functions over pandas frames.

Stateless (``analyze_partitions``, run by ``mapInPandas`` on all cores): decode the JPEG, skip
frames of a live stream that are already more than ``MAX_LIVE_DELAY_S`` behind and all but
``LIVE_FRAMES_PER_TASK`` evenly spaced ones of the rest (``thin_live_rows``), detect + ROI
filter + appearance embeddings with a process-wide ``FrameProcessor`` (one per distinct
config, all sharing one process-wide ``VehicleDetector``), and pass the detections on pickled.

Stateful (``VideoStateProcessor``, run by ``transformWithStateInPandas`` per video): DeepSORT
association, speed, analytics, drawing and JPEG encoding, in stream order, with the video's
``FrameProcessor`` (minus the detector) pickled in a ``ValueState``. On the end of stream it
emits the final summary and drops the state.

Row statuses between the stages: ``ok`` (detections attached), ``skipped`` (live stream behind,
not detected), ``error`` (this frame failed: undecodable JPEG, bad config...), ``fatal`` (the
processor cannot run at all, e.g. the model is missing), ``eos`` (end-of-stream marker without
a frame). An end-of-stream entry that carries a frame is processed as a frame (``ok``) and then
ends the video.

Output of the stateful stage for a ``skipped`` frame: a ``ProcessedFrame`` whose JPEG is the
input drawn with the boxes of the last tracked frame (``FrameProcessor.hold``), no vehicles, the
current stats and the cumulative ``skipped_frames``. For
an ``error``/``fatal`` frame: empty ``processed_frame`` and the ``error`` text.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from traffic_processing.schemas import FrameConfig, ProcessedFrame, Stats, Summary
from traffic_processing.streams import MAX_LIVE_DELAY_S

log = logging.getLogger("traffic_streaming.stages")

ANALYZED_SCHEMA = (
    "video_id int, frame_number int, stream_id string, frame_data binary, timestamp double, "
    "produced_at double, config string, end_of_stream boolean, status string, error string, "
    "detections binary, timings string"
)
OUTPUT_SCHEMA = (
    "video_id int, frame_number int, stream_id string, produced_at double, status string, "
    "end_of_stream boolean, processed_frame binary, message string, summary string"
)
STATE_SCHEMA = "blob binary"

OK, SKIPPED, ERROR, FATAL, EOS = "ok", "skipped", "error", "fatal", "eos"

# Frames handed to the detector at once; the staleness check runs before each chunk.
TIMING = os.environ.get("LOG_TIMING") == "1"
ANALYZE_CHUNK = max(1, int(os.environ.get("ANALYZE_CHUNK", "1")))
# Live (realtime) frames of one video detected per task and micro-batch (0: no limit).
LIVE_FRAMES_PER_TASK = max(0, int(os.environ.get("LIVE_FRAMES_PER_TASK", "6")))


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
_ANALYZERS: OrderedDict[str, Any] = OrderedDict()
_MAX_ANALYZERS = 16


def get_detector() -> Any:
    """The process-wide ``VehicleDetector`` (``MODEL_PATH`` or the library default); raises
    ``ModelLoadError`` (remembered: no reload attempt per frame) when the model cannot load."""
    global _DETECTOR, _DETECTOR_ERROR
    if _DETECTOR is None:
        if _DETECTOR_ERROR is not None:
            from traffic_processing.detector import ModelLoadError

            raise ModelLoadError(_DETECTOR_ERROR)
        from traffic_processing.detector import DetectorConfig, VehicleDetector

        os.environ.setdefault("YOLO_OFFLINE", "1")
        config = DetectorConfig(device=os.environ.get("DETECTOR_DEVICE", "cpu"))
        try:
            _DETECTOR = VehicleDetector(os.environ.get("MODEL_PATH") or None, config)
        except Exception as exc:
            _DETECTOR_ERROR = f"detector cannot load: {exc}"
            log.error("[SPARK-APP] %s", _DETECTOR_ERROR)
            raise
    return _DETECTOR


def get_analyzer(config_json: str) -> Any:
    """A process-wide ``FrameProcessor`` for the stateless stage of this config (its ROI and
    embedder settings); only ``analyze`` is used on it."""
    proc = _ANALYZERS.get(config_json)
    if proc is None:
        from traffic_processing.processor import FrameProcessor

        settings = FrameConfig.model_validate_json(config_json)
        proc = FrameProcessor(settings, detector=get_detector(), annotate=False)
        _ANALYZERS[config_json] = proc
        while len(_ANALYZERS) > _MAX_ANALYZERS:
            _ANALYZERS.popitem(last=False)
    else:
        _ANALYZERS.move_to_end(config_json)
    return proc


# -- stateless stage ------------------------------------------------------------------------
def thin_live_rows(rows: list[dict], budget: int) -> list[dict]:
    """The rows to detect: of a live video's frames at most ``budget`` per task, evenly spaced
    and always the newest, the others marked ``skipped``; every other row is kept.

    A micro-batch costs a fixed ~0.7 s plus ~40 ms per detected frame on this CPU; detecting
    every live frame that arrived meanwhile makes the next batch longer still, and the delay
    grows until frames go stale. Detecting a few evenly spaced frames per batch keeps batches
    short (the live latency is about two batch lengths) and the tracker fed at a steady rate.
    """
    if budget <= 0:
        return rows
    live: dict[int, list[dict]] = {}
    for row in rows:
        if row["_settings"].realtime and not row["end_of_stream"]:
            live.setdefault(row["video_id"], []).append(row)
    for frames in live.values():
        if len(frames) <= budget:
            continue
        frames.sort(key=lambda r: stream_order(r["stream_id"]))
        step = len(frames) / budget
        keep = {len(frames) - 1 - int(i * step) for i in range(budget)}
        for i, row in enumerate(frames):
            if i not in keep:
                row["status"] = SKIPPED
    return [r for r in rows if r.get("status") != SKIPPED]


def _analyze_frame_rows(rows: list[dict], now: Any) -> None:
    """Fill status/error/detections/timings of the rows in place."""
    from traffic_processing.detector import ModelLoadError
    from traffic_processing.visualize import decode_jpeg

    todo: list[tuple[dict, Any, Any]] = []  # (row, settings, decoded frame)
    candidates: list[dict] = []
    for row in rows:
        row.update(status=OK, error=None, detections=None, timings=None)
        has_frame = len(row["frame_data"] or b"") > 0
        if row["end_of_stream"] and not has_frame:
            row["status"] = EOS
            continue
        try:
            settings = FrameConfig.model_validate_json(row["config"] or "")
        except Exception as exc:
            row.update(status=ERROR, error=f"invalid config: {exc}".splitlines()[0][:500])
            continue
        row["_settings"] = settings
        if settings.realtime and not row["end_of_stream"] and now() - row["produced_at"] > MAX_LIVE_DELAY_S:
            row["status"] = SKIPPED
            continue
        candidates.append(row)
    for row in thin_live_rows(candidates, LIVE_FRAMES_PER_TASK):
        settings = row["_settings"]
        start = time.perf_counter()
        try:
            frame = decode_jpeg(bytes(row["frame_data"]))
        except Exception as exc:
            row.update(status=ERROR, error=f"decode: {exc}")
            continue
        row["_decode_ms"] = (time.perf_counter() - start) * 1000.0
        todo.append((row, settings, frame))

    for i in range(0, len(todo), ANALYZE_CHUNK):
        chunk = todo[i : i + ANALYZE_CHUNK]
        # Live frames that went stale while earlier chunks ran are skipped too.
        fresh = []
        for row, settings, frame in chunk:
            if (
                settings.realtime
                and not row["end_of_stream"]
                and now() - row["produced_at"] > MAX_LIVE_DELAY_S
            ):
                row["status"] = SKIPPED
            else:
                fresh.append((row, settings, frame))
        by_config: dict[str, list[tuple[dict, Any, Any]]] = {}
        for item in fresh:
            by_config.setdefault(item[0]["config"], []).append(item)
        for config_json, items in by_config.items():
            try:
                analyzer = get_analyzer(config_json)
            except ModelLoadError as exc:
                for row, _, _ in items:
                    row.update(status=FATAL, error=str(exc))
                continue
            except Exception as exc:
                for row, _, _ in items:
                    row.update(status=ERROR, error=f"processor setup: {exc!r}")
                continue
            try:
                results = analyzer.analyze([frame for _, _, frame in items])
            except Exception:  # isolate the frame that fails
                results = []
                for _, _, frame in items:
                    try:
                        results.extend(analyzer.analyze([frame]))
                    except Exception as exc:
                        results.append(exc)
            share = {k: v / len(items) for k, v in analyzer.timer.ms.items()}
            analyzer.timer.ms.clear()
            for (row, _, _), result in zip(items, results):
                if isinstance(result, Exception):
                    row.update(status=ERROR, error=f"analyze: {result!r}")
                    continue
                row["detections"] = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
                row["timings"] = json.dumps({"decode": row.get("_decode_ms", 0.0), **share})


def analyze_partitions(batches: Iterator[pd.DataFrame], now: Any = time.time) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` function: source rows -> ANALYZED_SCHEMA rows. Never raises for a frame."""
    configure_worker_logging()
    columns = [c.split()[0] for c in ANALYZED_SCHEMA.split(", ")]
    for pdf in batches:
        if pdf.empty:
            continue
        rows = pdf.to_dict("records")
        started = time.perf_counter()
        try:
            _analyze_frame_rows(rows, now)
        except Exception as exc:  # last resort: report on every unfinished row
            log.error("stateless stage failed: %s", traceback.format_exc())
            for row in rows:
                if row.get("status") == OK and row.get("detections") is None:
                    row.update(status=ERROR, error=f"stateless stage: {exc!r}")
        if TIMING:
            log.info(
                "[TIMING] stateless pid %s: %s rows (%s ok) in %.0f ms",
                os.getpid(),
                len(rows),
                sum(1 for r in rows if r["status"] == OK),
                (time.perf_counter() - started) * 1000,
            )
        yield pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)


def warm_partitions(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` warm-up run once at start: loads the detector and the embedder in the
    Python workers that the query's tasks then reuse (first batch without model loading)."""
    import numpy as np

    configure_worker_logging()
    for pdf in batches:
        ok = 1
        try:
            from traffic_processing.tracker import embed, get_embedder

            detector = get_detector()
            frame = np.zeros((360, 640, 3), dtype=np.uint8)
            detector.detect([frame])
            get_embedder()
            from traffic_processing.detections import FrameDetections

            embed(frame, FrameDetections(xyxy=[[10, 10, 60, 60]], confidence=[0.9], class_id=[2]))
        except Exception as exc:
            log.warning("[SPARK-APP] warm-up in pid %s failed: %r", os.getpid(), exc)
            ok = 0
        yield pd.DataFrame({"ok": [ok] * max(1, len(pdf))})


# -- stateful stage -------------------------------------------------------------------------
@dataclass
class VideoState:
    """Everything kept about one video between micro-batches (pickled in a ValueState)."""

    processor: Any = None  # FrameProcessor with detector=None
    skipped: int = 0
    errors: int = 0
    last_frame: int = -1
    frames: int = 0


def _summary(state: VideoState) -> Summary:
    if state.processor is None:
        return Summary(
            total_vehicles_count=0, avg_dwell_time=0.0, vehicle_type_distribution={}, speeding_count=0
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
        skipped_frames=state.skipped,
    )


def _held_frame(video_id: int, row: dict, state: VideoState) -> bytes:
    """A skipped frame for the viewers: drawn with the last tracked boxes; the input JPEG as it
    came when that fails (or nothing was tracked yet)."""
    raw = bytes(row["frame_data"] or b"")
    if state.processor is None or not raw:
        return raw
    from traffic_processing.visualize import decode_jpeg

    try:
        return state.processor.hold(decode_jpeg(raw)) or raw
    except Exception as exc:
        log.warning("[SPARK-APP] video %s frame %s not drawn: %r", video_id, row["frame_number"], exc)
        return raw


def process_video_rows(
    video_id: int, pdf: pd.DataFrame, blob: bytes | None
) -> tuple[list[dict], bytes | None]:
    """The stateful step of one video for one micro-batch: rows (any order) + the pickled state
    -> output rows in stream order + the new pickled state (None: drop it). No Spark here."""
    from traffic_processing.processor import FrameProcessor
    from traffic_processing.visualize import decode_jpeg

    state: VideoState = pickle.loads(blob) if blob else VideoState()
    pdf = pdf.assign(_order=[stream_order(s) for s in pdf["stream_id"]]).sort_values("_order")
    out: list[dict] = []
    ended = False
    for row in pdf.to_dict("records"):
        status = row["status"]
        frame_number = int(row["frame_number"])
        settings = None
        if row["config"]:
            try:
                settings = FrameConfig.model_validate_json(row["config"])
            except Exception:
                settings = None
        if status != EOS and state.processor is not None and frame_number <= state.last_frame:
            # The video streams again from the start (a new run): start over.
            log.warning(
                "[SPARK-APP] video %s: frame %s after %s, new stream run: state reset",
                video_id,
                frame_number,
                state.last_frame,
            )
            state = VideoState()
        if state.processor is None and settings is not None and status in (OK, SKIPPED):
            state.processor = FrameProcessor(settings, video_id=video_id, detector=None)
        pf: ProcessedFrame
        if status == OK and state.processor is not None:
            try:
                frame = decode_jpeg(bytes(row["frame_data"]))
                detections = pickle.loads(row["detections"])
                proc = state.processor
                if row["timings"]:
                    proc.timer.ms.update(json.loads(row["timings"]))
                pf = proc.track(frame, detections, frame_number)
                proc.last_annotated = None
                pf.timestamp = float(row["timestamp"])
                pf.produced_at = float(row["produced_at"])
                pf.skipped_frames = state.skipped
            except Exception as exc:
                log.error("[SPARK-APP] video %s frame %s: %s", video_id, frame_number, traceback.format_exc())
                state.errors += 1
                pf = _base_frame(video_id, row, state, settings)
                pf.error = f"track: {exc!r}"
                status = ERROR
        elif status == SKIPPED:
            state.skipped += 1
            pf = _base_frame(video_id, row, state, settings)
            pf.processed_frame = _held_frame(video_id, row, state)
        elif status == EOS:
            pf = _base_frame(video_id, row, state, settings)
        else:  # error / fatal (or ok without a processor, which cannot happen)
            state.errors += 1
            pf = _base_frame(video_id, row, state, settings)
            pf.error = row["error"] or "frame failed"
            status = status if status in (ERROR, FATAL) else ERROR
        if status != EOS:
            state.last_frame = max(state.last_frame, frame_number)
            state.frames += 1
        if row["end_of_stream"]:
            pf.end_of_stream = True
            pf.summary = _summary(state)
            ended = True
            log.info(
                "[SPARK-APP] video %s end of stream: %s frames, %s skipped, %s errors, summary %s",
                video_id,
                state.frames,
                state.skipped,
                state.errors,
                pf.summary.model_dump_json(),
            )
        jpeg = pf.processed_frame
        pf.processed_frame = b""
        out.append(
            {
                "video_id": video_id,
                "frame_number": frame_number,
                "stream_id": row["stream_id"],
                "produced_at": float(row["produced_at"]),
                "status": status,
                "end_of_stream": bool(row["end_of_stream"]),
                "processed_frame": jpeg,
                "message": pf.model_dump_json(),
                "summary": None,
            }
        )
        if ended:
            # Anything after the end of stream in this batch belongs to a new run of the video.
            state = VideoState()
            ended = False
            out[-1]["summary"] = pf.summary.model_dump_json()
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
