"""The processing stage of the Spark application, as plain functions over pandas frames.

One stateful pass per video (``VideoStateProcessor``, run by ``transformWithStateInPandas``
straight on the source's rows, in stream order): decode, detect (process-wide
``VehicleDetector``), ROI filter, appearance embeddings, DeepSORT, speed, analytics, drawing and
JPEG encoding, with the video's ``FrameProcessor`` (minus the detector) pickled in a
``ValueState``. On the end of stream it emits the final summary and drops the state. Detection
lives in this pass (not in a stateless stage before it) so that the JPEG bytes cross from the
JVM to Python once, and so that the live stride below is decided where the video's state is.

Live streams (``realtime``) hold a latency budget (``LIVE_LATENCY_BUDGET_S``, producer to
viewer) on any machine: of a video's frames only an even stride is detected, every k-th frame,
k from the measured costs of a detected and of a held frame and of Spark's per-batch overhead
(``LiveStride``); beyond ``fps / LIVE_MIN_DETECT_HZ`` the stream is *degraded* (said on every
frame and in the progress). The others are drawn with the tracks predicted to their frame number
(``FrameProcessor.hold``) and counted in ``skipped_frames``. A frame already older than the
budget (less its delivery) when the stage reaches it is dropped: not drawn, not delivered,
counted in ``dropped_frames``; at ``LIVE_LATE_DETECT_HZ`` such frames are still detected, for
the tracks only (Spark's gap between two batches is no hole where a fast vehicle goes unseen),
and a vehicle flagged on one goes out with the next frame delivered. Before the detection rate
goes under ``LIVE_MIN_DETECT_HZ``, the drawing gives: only every ``view_every``-th frame between
two detected ones is drawn, the others are dropped too. Live frames are published to
``processed-frames`` as soon as they are drawn (``publisher.Publisher``), not with the sink at
the end of the micro-batch. The
tracker, the speed windows and the speeding rule count video time, so results equal the
every-frame ones. ``realtime=false`` detects every frame and drops none.

Row statuses of the output: ``ok`` (detected), ``skipped`` (live, not detected: drawn with the
predicted tracks), ``dropped`` (live, too late or thinned from the view: nothing drawn nor
delivered), ``error`` (this frame failed: undecodable JPEG, bad config...), ``fatal``
(the processor cannot run at all, e.g. the model is missing), ``eos`` (end-of-stream marker
without a frame). An end-of-stream entry that carries a frame is processed as a frame (``ok``)
and then ends the video. An ``error``/``fatal`` frame has an empty ``processed_frame`` and the
``error`` text.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pandas as pd

from contracts.messages import FrameConfig, ProcessedFrame, Stats, Summary
from contracts.streams import parse_stream_id
from spark.streaming.publisher import Publisher, get_publisher
from spark.streaming.settings import SparkSettings
from spark.streaming.state import LiveTuning, VideoState, dumps, loads

log = logging.getLogger("traffic_streaming.stages")

OUTPUT_SCHEMA = (
    "video_id int, frame_number int, stream_id string, produced_at double, status string, "
    "end_of_stream boolean, processed_frame binary, message string, summary string, published boolean"
)
STATE_SCHEMA = "blob binary"

OK, SKIPPED, DROPPED, ERROR, FATAL, EOS = "ok", "skipped", "dropped", "error", "fatal", "eos"


def configure_worker_logging(settings: SparkSettings) -> None:
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
    if settings.LOG_PERFORMANCE:
        if not perf.handlers:
            perf.addHandler(logging.StreamHandler(sys.stderr))
        perf.setLevel(logging.INFO)
    else:
        perf.setLevel(logging.WARNING)


# -- process-wide model singletons (never in state) --------------------------------------------
_DETECTOR: Any = None
_DETECTOR_ERROR: str | None = None
_MEASURED = False  # a detection was timed in this process (the first one is not a fair cost)


def detector_config(settings: SparkSettings) -> Any:
    """The detector's settings of this deployment: ``DETECTOR_DEVICE`` (cpu|cuda|cuda:N; the
    embedder follows it), ``DETECTOR_HALF`` (fp16 on the GPU), ``DETECT_BATCH`` (frames per
    network call in the batched stage)."""
    from traffic_processing.detector import DetectorConfig

    return DetectorConfig(
        device=settings.DETECTOR_DEVICE, half=settings.DETECTOR_HALF, batch=settings.DETECT_BATCH
    )


def processor_config(settings: SparkSettings) -> Any:
    """The ``ProcessorConfig`` of this deployment, for both ways a frame is detected (the
    per-video stage's ``FrameProcessor`` and the batched detection stage): the detector's
    (``detector_config``) and ``EMBED_BATCH`` (crops per embedder call); the embedder's device
    and precision follow the detector's (``processor.bind_to_detector``)."""
    from traffic_processing.config import ProcessorConfig
    from traffic_processing.tracker import TrackerConfig

    return ProcessorConfig(
        detector=detector_config(settings), tracker=TrackerConfig(embed_batch=settings.EMBED_BATCH)
    )


def get_detector(settings: SparkSettings) -> Any:
    """The process-wide ``VehicleDetector`` (``MODEL_PATH`` or the library default); raises
    ``ModelLoadError`` (remembered: no reload attempt per frame) when the model cannot load."""
    global _DETECTOR, _DETECTOR_ERROR
    if _DETECTOR is None:
        if _DETECTOR_ERROR is not None:
            from traffic_processing.detector import ModelLoadError

            raise ModelLoadError(_DETECTOR_ERROR)
        from traffic_processing.detector import VehicleDetector

        os.environ.setdefault("YOLO_OFFLINE", "1")
        try:
            from spark.streaming.shipping import local_model_path

            model = local_model_path(settings.MODEL_PATH) if settings.MODEL_PATH else None
            _DETECTOR = VehicleDetector(model, detector_config(settings))
        except Exception as exc:
            _DETECTOR_ERROR = f"detector cannot load: {exc}"
            log.error("[SPARK-APP] %s", _DETECTOR_ERROR)
            raise
    return _DETECTOR


_WARMED = False  # warm_models ran in this process


def warm_models(settings: SparkSettings) -> bool:
    """Load the detector and the embedder of this process and run each twice on a frame with
    a vehicle-sized box, so the first real frame pays no lazy set-up (model compilation,
    first inference, embedder weights): seconds that a live stream would otherwise spend
    dropping frames. Once per process; False (logged) when it failed."""
    global _WARMED
    if _WARMED:
        return True
    import numpy as np

    try:
        from traffic_processing.detections import FrameDetections
        from traffic_processing.tracker import embed

        detector = get_detector(settings)
        frame = np.zeros((360, 640, 3), dtype=np.uint8)
        boxes = FrameDetections(
            xyxy=np.array([[10, 10, 60, 60]]), confidence=np.array([0.9]), class_id=np.array([2])
        )
        for _ in range(2):
            detector.detect([frame])
            embed(frame, boxes, device=detector.device, half=detector.half)
    except Exception as exc:
        log.warning("[SPARK-APP] warm-up in pid %s failed: %r", os.getpid(), exc)
        return False
    _WARMED = True
    return True


def warm_partitions(settings: SparkSettings, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` warm-up run once at start (bound to the settings with ``partial``): loads
    the detector and the embedder in the Python workers that the query's tasks then reuse."""
    configure_worker_logging(settings)
    for pdf in batches:
        ok = 1 if warm_models(settings) else 0
        yield pd.DataFrame({"ok": [ok] * max(1, len(pdf))})


# -- stateful stage -------------------------------------------------------------------------
def _summary(state: VideoState) -> Summary:
    from traffic_processing.processor import summarize

    return summarize(None if state.processor is None else state.processor.analytics)


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


class _Video:
    """One video during one micro-batch: its state, and the ``FrameProcessor`` rebuilt from it
    (settings + ``ProcessorState``) when a frame needs it."""

    def __init__(self, video_id: int, state: VideoState, settings: SparkSettings) -> None:
        self.video_id = video_id
        self.state = state
        self.settings = settings
        self.tuning = LiveTuning.from_settings(settings)
        self._proc: Any = None

    def reset(self) -> None:
        self.state, self._proc = VideoState(), None

    def processor(self, frame_config: FrameConfig) -> Any:
        if self._proc is None:
            from traffic_processing.processor import FrameProcessor

            if self.state.settings is None:
                self.state.settings = frame_config.model_dump_json()
            self._proc = FrameProcessor(
                self.state.frame_config or frame_config,
                video_id=self.video_id,
                config=processor_config(self.settings),
                state=self.state.processor,
                emit_passages=True,  # continuous results: passages go out as tracks end
            )
            self.state.processor = self._proc.state
        return self._proc

    def keep(self) -> None:
        """Take the processor's state back into the video's state (the processor may have
        replaced the last tracked boxes)."""
        if self._proc is not None:
            self.state.processor = self._proc.state


def _process_row(
    video: _Video, row: dict, frame_config: FrameConfig | None, now: Any
) -> tuple[ProcessedFrame, str, str | None, float]:
    """One row -> (message, status, kind of cost: "detect" / "hold" / None, ms)."""
    from traffic_processing.detector import ModelLoadError
    from traffic_processing.visualize import decode_jpeg

    video_id, state = video.video_id, video.state
    frame_number = int(row["frame_number"])
    raw = bytes(row["frame_data"] or b"")
    if row["end_of_stream"] and not raw:
        return _base_frame(video_id, row, state, frame_config), EOS, None, 0.0
    if frame_config is None:
        pf = _base_frame(video_id, row, state, None)
        pf.error = "invalid config: " + (str(row["config"])[:200] or "(none)")
        return pf, ERROR, None, 0.0
    proc = video.processor(frame_config)
    live = frame_config.realtime and not row["end_of_stream"]
    late = live and now() - float(row["produced_at"]) > video.tuning.room_s
    if late:
        # Already too late to be seen within the budget: not drawn, not delivered, counted;
        # now and then still detected, for the tracks (below).
        state.dropped += 1
        if not state.stride.late_due(frame_number, frame_config.fps, video.settings.LIVE_LATE_DETECT_HZ):
            return _base_frame(video_id, row, state, frame_config), DROPPED, None, 0.0
    started = time.perf_counter()
    if live and not late and not state.stride.due(frame_number):
        if not state.stride.drawn(frame_number):  # the view is thinned to leave the CPU to detection
            state.dropped += 1
            return _base_frame(video_id, row, state, frame_config), DROPPED, None, 0.0
        pf = _base_frame(video_id, row, state, frame_config)
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
            proc.detector = get_detector(video.settings)
        except ModelLoadError as exc:
            pf = _base_frame(video_id, row, state, frame_config)
            pf.error = str(exc)
            return pf, FATAL, None, 0.0
    times = {"timestamp": float(row["timestamp"]), "produced_at": float(row["produced_at"])}
    drawing, proc.annotate = proc.annotate, proc.annotate and not late
    try:
        if detections is None:
            pf = proc.process(raw, frame_number, **times)
        else:  # detected (and embedded) by the batched stage before this one
            pf = proc.track(decode_jpeg(raw), detections, frame_number, **times)
    except Exception as exc:
        log.warning("[SPARK-APP] video %s frame %s failed: %r", video_id, frame_number, exc)
        pf = _base_frame(video_id, row, state, frame_config)
        pf.error = f"decode: {exc}" if isinstance(exc, ValueError) else f"process: {exc!r}"
        return pf, ERROR, None, 0.0
    finally:
        proc.detector = None
        proc.annotate = drawing
    video.keep()
    state.stride.last_detected = frame_number
    state.detected += 1
    if late:  # analysed for the tracks only: its flags go out with the next frame delivered
        state.pending_violations = (*state.pending_violations, *pf.new_violations)
        dropped = _base_frame(video_id, row, state, frame_config)
        dropped.passages = pf.passages  # stored whether or not the frame is delivered
        return (
            dropped,
            DROPPED,
            "detect",
            (time.perf_counter() - started) * 1000.0,
        )
    # Every detected frame's cost is measured (a frame of a stream that is not live too: it
    # seeds the costs a new live stream starts from).
    return pf, OK, "detect", (time.perf_counter() - started) * 1000.0


def _adapt(video: _Video, fps: float, lag_s: float) -> None:
    stride = video.state.stride
    before, was_degraded, view_before = stride.k, stride.degraded, stride.view_every
    after = stride.adapt(fps, lag_s, video.tuning, pulling=video.state.pulling)
    if after != before or stride.view_every != view_before:
        log.info(
            "[SPARK-APP] video %s: detection stride %s -> %s (%.1f Hz%s; drawn 1 in %s; detect %.0f ms, "
            "hold %.1f ms, overhead %.2f s, lag %.2f s)",
            video.video_id,
            before,
            after,
            stride.detect_hz(fps),
            ", DEGRADED" if stride.degraded else "",
            stride.view_every,
            stride.detect_ms or 0.0,
            stride.hold_ms or 0.0,
            stride.overhead_s or 0.0,
            lag_s,
        )
    if stride.degraded and not was_degraded:
        log.warning(
            "[SPARK-APP] video %s degraded: detecting at %.1f Hz (under %.1f Hz) to hold the %.2f s latency "
            "budget; fast vehicles may be missed",
            video.video_id,
            stride.detect_hz(fps),
            video.tuning.min_detect_hz,
            video.tuning.budget_s,
        )


def _already_handled(state: VideoState, row: dict) -> bool:
    """A row this video's stage already read ahead from Redis (``_pull_ahead``), now delivered
    by Spark: same run, stream id not above the last one read ahead."""
    if state.pulled_upto is None or (state.run_id and _run_id(row) and _run_id(row) != state.run_id):
        return False
    return parse_stream_id(row["stream_id"]) <= parse_stream_id(state.pulled_upto)


def _handle_row(
    video: _Video, row: dict, now: Any, publisher: Publisher | None, pulled: bool = False
) -> dict | None:
    """One source row -> its output record (None: already handled ahead, nothing to output)."""
    video_id = video.video_id
    if _already_handled(video.state, row):
        return None
    frame_number = int(row["frame_number"])
    frame_config = frame_settings(row)
    if _is_new_run(video.state, row, frame_number):
        log.warning(
            "[SPARK-APP] video %s: frame %s (run %s) after %s (run %s): new stream run, state reset",
            video_id,
            frame_number,
            _run_id(row),
            video.state.last_frame,
            video.state.run_id,
        )
        video.reset()
    state = video.state
    state.run_id = _run_id(row) or state.run_id
    try:
        pf, status, kind, ms = _process_row(video, row, frame_config, now)
    except Exception as exc:  # last resort: this frame fails, the video goes on
        log.error("[SPARK-APP] video %s frame %s: %s", video_id, frame_number, traceback.format_exc())
        pf, status, kind, ms = _base_frame(video_id, row, state, frame_config), ERROR, None, 0.0
        pf.error = f"track: {exc!r}"
    live = frame_config is not None and frame_config.realtime
    global _MEASURED
    if kind == "detect" and not _MEASURED:
        _MEASURED = True  # a process's first detection pays the models' lazy set-up: not a cost
    elif kind and frame_config is not None:
        state.stride.observe(kind, ms)
        if kind == "detect" and live:  # the stride follows the costs within the batch too
            # While pulling ahead, rows Spark delivered after its batch gap are late by that gap,
            # which no stride can shorten: only pulled rows' lag tells whether we keep up.
            lag = now() - float(row["produced_at"]) if (pulled or not state.pulling) else 0.0
            _adapt(video, frame_config.fps, lag)
    if status in (ERROR, FATAL):
        state.errors += 1
    if status != DROPPED and state.pending_violations:
        pf.new_violations = [*state.pending_violations, *pf.new_violations]
        state.pending_violations = ()
    if status != EOS:
        state.last_frame = max(state.last_frame, frame_number)
        state.frames += 1
    if pulled:
        state.pulled_upto = str(row["stream_id"])
    pf.skipped_frames = state.skipped
    pf.detected_frames = state.detected
    pf.dropped_frames = state.dropped
    pf.detect_stride = state.stride.k
    if frame_config is not None:
        pf.detect_hz = round(state.stride.detect_hz(frame_config.fps) if live else frame_config.fps, 3)
    pf.degraded = bool(live and state.stride.degraded)
    pf.run_id = _run_id(row)
    published = False
    publish_now = live and status not in (DROPPED, EOS) and not row["end_of_stream"]
    if publisher is not None and video.settings.LIVE_EARLY_PUBLISH and publish_now:
        published = publisher.frame(pf)
    jpeg = b"" if published else pf.processed_frame
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
        "published": published,
    }
    if row["end_of_stream"]:
        pf.end_of_stream = True
        pf.summary = _summary(state)
        record["summary"] = pf.summary.model_dump_json()
        log.info(
            "[SPARK-APP] video %s end of stream: %s frames, %s detected, %s skipped, %s dropped, %s errors, "
            "summary %s, %d passages",
            video_id,
            state.frames,
            state.detected,
            state.skipped,
            state.dropped,
            state.errors,
            pf.summary.model_dump_json(exclude={"vehicles"}),
            len(pf.summary.vehicles or []),
        )
        # Anything after the end of stream in this batch belongs to a new run of the video.
        video.reset()
    record["message"] = pf.model_dump_json()
    return record


def _pull_ahead(
    video: _Video, publisher: Publisher, out: list[dict], deadline: float, now: Any
) -> Iterator[dict]:
    """A lone live stream's newer frames, read from ``video-frames`` by the stage itself until
    ``deadline`` (LIVE_PULL_S after the call started): the stream is processed as its frames
    arrive instead of once per micro-batch, so its latency no longer waits for Spark's
    per-batch overhead (planning, state store, sink, offset and commit logs: 0.4-0.8 s on 2
    cores), only the frames that arrive during that gap do. Spark delivers these rows again in
    a later batch: ``_already_handled`` skips them (the state records the last stream id
    read ahead, committed with the batch; after a crash the batch is replayed from the state
    before it and its frames published again, which the hub drops as repeats).

    Only while this is the one stream the source serves (no other video's read limit is fresh:
    reading ahead would make the others wait) and never past the video's end of stream or a
    row of another run (those are left to Spark's next batch)."""
    state = video.state
    config = state.frame_config
    was_pulling, state.pulling = state.pulling, False
    if state.processor is None or config is None or not config.realtime:
        return
    if (
        not (out or was_pulling)
        or (out and out[-1]["end_of_stream"])
        or publisher.other_streams(video.video_id)
    ):
        return
    state.pulling = True
    after = max(out[-1]["stream_id"] if out else "0-0", state.pulled_upto or "0-0", key=parse_stream_id)
    yield from publisher.pull(video.video_id, after, state.run_id, deadline, now)


def process_video_rows(
    video_id: int,
    pdf: pd.DataFrame,
    blob: bytes | None,
    now: Any = time.time,
    settings: SparkSettings | None = None,
    publisher: Publisher | None = None,
) -> tuple[list[dict], bytes | None]:
    """The stateful step of one video for one micro-batch: source rows (any order) + the stored
    state (``state.dumps``) -> output rows in stream order + the new stored state (None: drop it).
    No Spark here. ``settings``: the application's (default: read from the environment).
    ``publisher``: the video's read limit is kept there; with LIVE_EARLY_PUBLISH live frames
    are published through it as soon as they are drawn (their rows then say ``published`` and
    carry no JPEG), and with LIVE_PULL_S a lone live stream goes on reading its newer frames
    from Redis for that long (see ``_pull_ahead``)."""
    video = _Video(video_id, loads(blob) if blob else VideoState(), settings or SparkSettings())
    pdf = pdf.assign(_order=[parse_stream_id(s) for s in pdf["stream_id"]]).sort_values("_order")
    out: list[dict] = []
    started = now()
    video.state.stride.batch_started(started)
    for row in pdf.to_dict("records"):
        record = _handle_row(video, row, now, publisher)
        if record is not None:
            out.append(record)
    if publisher is not None and video.settings.LIVE_PULL_S > 0:
        for row in _pull_ahead(video, publisher, out, started + video.settings.LIVE_PULL_S, now):
            record = _handle_row(video, row, now, publisher, pulled=True)
            if record is not None:
                out.append(record)
    state = video.state
    config = state.frame_config
    if config is not None and config.realtime and out and not out[-1]["end_of_stream"]:
        # After the batch too (a batch without a detected frame, or frames dropped as late).
        _adapt(video, config.fps, now() - float(out[-1]["produced_at"]))
    if publisher is not None:
        if state.processor is None and state.frames == 0:  # ended (or nothing yet): no allowance
            publisher.read_limit(video_id, None)
        elif config is not None:
            live = config.realtime
            rows = (
                state.stride.read_limit(config.fps, video.tuning, pulling=state.pulling)
                if live
                else video.settings.MAX_ENTRIES_PER_BATCH
            )
            publisher.read_limit(video_id, rows)
            if state.pulled_upto is not None:
                publisher.pulled(video_id, state.pulled_upto)
    state.stride.last_call_end = now()
    if out and out[-1]["summary"] is None and state.processor is not None:
        out[-1]["summary"] = _summary(state).model_dump_json()
    if state.processor is None and state.frames == 0:
        return out, None
    return out, dumps(state)


_VIDEOS_HERE: set[int] = set()  # the videos this Python worker has processed


def make_state_processor(settings: SparkSettings) -> Any:
    """The ``StatefulProcessor`` (built lazily so this module imports without pyspark); it
    carries the settings to the Python workers."""
    from pyspark.sql.streaming.stateful_processor import StatefulProcessor

    class VideoStateProcessor(StatefulProcessor):
        def init(self, handle: Any) -> None:
            configure_worker_logging(settings)
            self.state = handle.getValueState("video", STATE_SCHEMA)
            from spark.streaming.shipping import model_here

            if model_here(settings.MODEL_PATH):
                warm_models(settings)  # this worker's first task (the warm-up query's) pays it

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
            if video_id not in _VIDEOS_HERE:  # where each video runs (a cluster moves them)
                _VIDEOS_HERE.add(video_id)
                log.info(
                    "[SPARK-APP] video %s is processed in pid %s (%s state)",
                    video_id,
                    os.getpid(),
                    "checkpointed" if blob else "new",
                )
            started = time.perf_counter()
            publisher = get_publisher(settings.REDIS_HOST, settings.REDIS_PORT, settings.REDIS_PASSWORD)
            out, new_blob = process_video_rows(video_id, pdf, blob, settings=settings, publisher=publisher)
            if settings.LOG_TIMING:
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
