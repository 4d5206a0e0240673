"""The frame processor: decode -> detect -> ROI filter -> embed -> DeepSORT -> speed ->
analytics -> visualize -> JPEG encode, producing the ``processed-frames`` payload.

``analyze`` is the stateless part (``analyze_frames``, which the Spark job's batched detection
stage runs over the frames of several videos); ``track`` the stateful part (one video, frames in
order). ``process`` runs both for one frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from itertools import repeat

import numpy as np

from contracts.messages import BBox, FrameConfig, Passage, ProcessedFrame, Stats, Summary, Vehicle, Violation

from .analytics import VehicleAnalyticsTracker
from .calibration import project_points
from .config import ProcessorConfig
from .detections import FrameDetections
from .detector import VehicleDetector
from .roi import RoiFilter, TrackingZone, points_in_polygon
from .speed import SpeedEstimator
from .tracker import TrackerConfig, VehicleTracker, embed_many
from .visualize import Visualizer, VisualizerConfig, decode_jpeg, encode_jpeg

log = logging.getLogger("traffic_processing.performance")

STAGES = ("decode", "detection", "tracking", "speed", "analytics", "visualization", "encode")


class StageTimer:
    """Milliseconds per stage for the current frame."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000.0

    def report(self, frame_number: int) -> str:
        total = sum(self.ms.get(s, 0.0) for s in STAGES)
        lines = [f"[PERFORMANCE] frame {frame_number}"]
        lines += [f"  {s:<14}{self.ms.get(s, 0.0):8.2f} ms" for s in STAGES]
        lines.append(f"  {'total':<14}{total:8.2f} ms")
        lines.append(f"  {'fps':<14}{(1000.0 / total if total > 0 else 0.0):8.2f}")
        return "\n".join(lines)


@dataclass
class ProcessorState:
    """What a video's processing remembers between frames: the tracker (tracks, Kalman states,
    appearance gallery), the speed histories, the analytics, and the boxes of the last tracked
    frame. Everything else of a ``FrameProcessor`` derives from the settings and the config,
    so this, not the processor, is what the Spark job keeps between micro-batches."""

    tracker: VehicleTracker
    speed: SpeedEstimator
    analytics: VehicleAnalyticsTracker
    last_tracked: FrameDetections | None = None


class FrameProcessor:
    """Processes the frames of one video. Holds that video's tracker, speed history and
    analytics (``state``, given to resume); the detector (heavy) may be shared between
    processors."""

    def __init__(
        self,
        settings: FrameConfig,
        *,
        video_id: int = 0,
        detector: VehicleDetector | None = None,
        config: ProcessorConfig | None = None,
        annotate: bool = True,
        state: ProcessorState | None = None,
        emit_passages: bool = False,
    ) -> None:
        """``emit_passages``: each frame's message carries the passages of the vehicles whose
        track ended (``ProcessedFrame.passages``), which the analytics then forget (a stream that
        never ends: a camera); off, ``finalize`` lists every vehicle (the offline CLI)."""
        self.settings = settings
        self.emit_passages = emit_passages
        self.video_id = video_id
        self.config = config or ProcessorConfig()
        self.config.analytics.speed_limit_kmh = settings.speed_limit_kmh
        self.detector = detector
        bind_to_detector(self.config, detector)
        self.annotate = annotate
        self.roi = RoiFilter(settings.roi_polygon)
        self.zone = TrackingZone(settings.roi_polygon, settings.homography_matrix, self.config.margin_m)
        homography = settings.homography_matrix
        self.tracker = VehicleTracker(
            self.config.tracker,
            fps=settings.fps,
            # partial of a module function, not a lambda: the processor is pickled into Spark state
            to_world=None if homography is None else partial(project_points, np.asarray(homography)),
        )
        self.speed = SpeedEstimator(settings.homography_matrix, settings.fps, self.config.speed)
        self.analytics = VehicleAnalyticsTracker(self.config.analytics)
        self.visualizer = Visualizer(self.roi.polygon, VisualizerConfig())
        self.timer = StageTimer()
        self.last_timings: dict[str, float] = {}
        self.last_annotated: np.ndarray | None = None  # BGR, kept for writers of annotated video
        self.last_tracked: FrameDetections | None = None  # boxes of the last tracked frame (no embeddings)
        if state is not None:
            self.tracker, self.speed, self.analytics = state.tracker, state.speed, state.analytics
            self.last_tracked = state.last_tracked
            # the rules are the config's, not the pickled state's (a state from an earlier version)
            self.speed.config, self.analytics.config = self.config.speed, self.config.analytics

    @property
    def state(self) -> ProcessorState:
        return ProcessorState(self.tracker, self.speed, self.analytics, self.last_tracked)

    # -- stateless stage -------------------------------------------------------------------
    def analyze(self, frames: list[np.ndarray]) -> list[FrameDetections]:
        """Detect (batched), keep boxes whose bottom-centre is in the tracking zone (the ROI and
        its margin, ``in_roi`` set), embed the crops of all frames in one call, on the
        detector's device."""
        if self.detector is None:
            raise RuntimeError("FrameProcessor.analyze needs a detector")
        select = partial(select_tracked, roi=self.roi, zone=self.zone)
        return analyze_frames(frames, self.detector, repeat(select), self.config, self.timer)

    def process_batch(self, frames: list[np.ndarray], first_frame: int) -> list[ProcessedFrame]:
        """Consecutive frames ``first_frame, first_frame + 1, ...`` (BGR): detected and embedded
        in batched calls, then tracked one by one in order. Same results as ``process`` per
        frame; the detection and embedding time is shared evenly in each frame's timings."""
        return list(self.iter_batch(frames, first_frame))

    def iter_batch(self, frames: list[np.ndarray], first_frame: int) -> Iterator[ProcessedFrame]:
        """``process_batch`` one result at a time (``last_annotated`` is that frame's drawing)."""
        if not frames:
            return
        self.timer.ms.clear()
        analyzed = self.analyze(frames)
        shared = {k: v / len(frames) for k, v in self.timer.ms.items()}
        for i, (frame, dets) in enumerate(zip(frames, analyzed)):
            self.timer.ms = dict(shared)
            yield self.track(frame, dets, first_frame + i)

    # -- stateful stage --------------------------------------------------------------------
    def track(
        self,
        frame: np.ndarray,
        detections: FrameDetections,
        frame_number: int,
        *,
        timestamp: float | None = None,
        produced_at: float | None = None,
    ) -> ProcessedFrame:
        """Associate, measure, count and draw one frame (frames of a video in order).
        ``timestamp`` is the frame's video time (default: frame number / fps) and ``produced_at``
        the producer's wall clock, both carried into the message."""
        t = frame_number / self.settings.fps
        with self.timer.stage("tracking"):
            tracked = self.tracker.update(detections, frame, frame_number)
            for tid, hits in self.tracker.confirmed_now.items():
                self.speed.seed(tid, hits)
                self._seed_analytics(tid, hits)
        with self.timer.stage("speed"):
            tracked = self.speed(tracked, frame_number, frame.shape)
        with self.timer.stage("analytics"):
            self.analytics.update(tracked, frame_number, t, produced_at)
            ended = self.analytics.pop_ended(self.tracker.alive_ids()) if self.emit_passages else []
        self.last_tracked = replace(tracked, embeddings=None)
        jpeg = b""
        self.last_annotated = None
        if self.annotate:
            with self.timer.stage("visualization"):
                annotated = self.last_annotated = self.visualizer.annotate(
                    frame, tracked, self.speeding_mask(tracked)
                )
            with self.timer.stage("encode"):
                jpeg = encode_jpeg(annotated, self.config.jpeg_quality)
        self.last_timings = dict(self.timer.ms)
        if log.isEnabledFor(logging.INFO):
            log.info(self.timer.report(frame_number))
        self.timer.ms.clear()
        return ProcessedFrame(
            video_id=self.video_id,
            frame_number=frame_number,
            timestamp=t if timestamp is None else timestamp,
            produced_at=produced_at,
            processed_frame=jpeg,
            vehicles=to_vehicles(tracked, self.speeding_mask(tracked)),
            stats=Stats(**self.analytics.stats()),
            roi_polygon=None if self.roi.polygon is None else self.roi.polygon.tolist(),
            has_homography=self.settings.homography_matrix is not None,
            new_violations=self._new_violations(frame, tracked),
            passages=[Passage(**p) for p in ended],
        )

    def _seed_analytics(self, track_id: int, hits: list[tuple[int, float, float]]) -> None:
        """A track confirmed now: its detections in the ROI before confirmation (on the margin
        it may have been confirmed before entering, or only after leaving) start its time in
        the ROI, and count it even if it is outside the ROI now."""
        if not hits:
            return
        inside = points_in_polygon(np.asarray([h[1:] for h in hits], dtype=np.float64), self.roi.polygon)
        frames = [int(h[0]) for h, ok in zip(hits, inside) if ok]
        if frames:
            fps = self.settings.fps
            self.analytics.seed(track_id, frames[0], frames[0] / fps, frames[-1], frames[-1] / fps)

    def predicted(self, frame_number: int) -> FrameDetections:
        """The tracks of the last detected frame moved to ``frame_number`` by their motion model,
        with their last speed: what a frame that was not detected shows."""
        held = self.tracker.predicted(frame_number)
        held.speed_kmh = self.speed.last_speeds(held.tracker_id)
        if self.roi.polygon is not None and len(held):
            held = self.roi(held)
        return held

    def hold(self, frame: np.ndarray, frame_number: int | None = None) -> bytes:
        """JPEG of a frame that was not detected (a thinned live stream): drawn with the tracks
        predicted to its frame number (the last tracked boxes when no number is given), so that
        the overlay moves smoothly between detected frames."""
        if not self.annotate:
            return b""
        if frame_number is None:
            held = self.last_tracked if self.last_tracked is not None else FrameDetections.empty()
        else:
            held = self.predicted(frame_number)
        annotated = self.visualizer.annotate(frame, held, self.speeding_mask(held))
        return encode_jpeg(annotated, self.config.jpeg_quality)

    def speeding_mask(self, detections: FrameDetections) -> np.ndarray:
        """(N,) bool: the analytics' speeding flag of each detection's track (the one rule for
        the red boxes, the vehicles' ``speeding`` and the violations)."""
        return np.array([self.analytics.is_speeding(t) for t in detections.tracker_id], dtype=bool)

    def _new_violations(self, frame: np.ndarray, tracked: FrameDetections) -> list[Violation]:
        """The vehicles flagged at this frame, each with the wall-clock time of the flag and a
        JPEG crop of it from this (undrawn) frame."""
        out = []
        for tid in self.analytics.newly_speeding:
            rec = self.analytics.vehicles[tid]
            rows = np.flatnonzero(tracked.tracker_id == tid)
            out.append(
                Violation(
                    track_id=tid,
                    vehicle_class=rec.class_name,
                    speed_kmh=round(rec.speed_kmh or 0.0, 2),  # flagged: has a speed
                    frame_number=rec.speeding_frame if rec.speeding_frame is not None else -1,
                    video_time_s=round(rec.last_time_s, 4),
                    detected_at=time.time(),
                    snapshot_jpeg=snapshot(frame, tracked.xyxy[rows[0]]) if len(rows) else None,
                )
            )
        return out

    # -- both ------------------------------------------------------------------------------
    def process(
        self,
        frame: np.ndarray | bytes,
        frame_number: int,
        *,
        timestamp: float | None = None,
        produced_at: float | None = None,
    ) -> ProcessedFrame:
        """One frame, BGR array or JPEG bytes (``timestamp``, ``produced_at``: see ``track``)."""
        if isinstance(frame, (bytes, bytearray)):
            with self.timer.stage("decode"):
                frame = decode_jpeg(bytes(frame))
        return self.track(
            frame, self.analyze([frame])[0], frame_number, timestamp=timestamp, produced_at=produced_at
        )

    def finalize(self) -> Summary:
        """The ``video_analytics`` totals and every counted vehicle's passage."""
        return summarize(self.analytics)


def summarize(analytics: VehicleAnalyticsTracker | None) -> Summary:
    """A video's ``Summary`` from its analytics (``FrameProcessor.finalize``; the Spark job's
    from the ``ProcessorState`` it keeps): the ``video_analytics`` totals and the passage of
    every counted vehicle not yet handed out. None (no frame processed): the empty summary."""
    if analytics is None:
        analytics = VehicleAnalyticsTracker()
    return Summary(**analytics.finalize(), vehicles=[Passage(**p) for p in analytics.passages()])


SNAPSHOT_MARGIN = 0.15  # of the box's size, on each side
SNAPSHOT_QUALITY = 85


def snapshot(frame: np.ndarray, xyxy: np.ndarray) -> bytes | None:
    """JPEG crop of a vehicle's box (with a margin), clipped to the frame; None if empty."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    mx, my = SNAPSHOT_MARGIN * (x2 - x1), SNAPSHOT_MARGIN * (y2 - y1)
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    if right <= left or bottom <= top:
        return None
    return encode_jpeg(np.ascontiguousarray(frame[top:bottom, left:right]), SNAPSHOT_QUALITY)


def select_tracked(detections: FrameDetections, roi: RoiFilter, zone: TrackingZone) -> FrameDetections:
    """The detections to track: ``in_roi`` set by ``roi`` (what is counted), kept where they are
    in the ROI or on the margin of road around it (``zone``)."""
    detections = roi(detections)
    return detections[zone.contains(detections.bottom_center, detections.in_roi)]


def tracking_filter(
    settings: FrameConfig, config: ProcessorConfig | None = None
) -> Callable[[FrameDetections], FrameDetections]:
    """``select_tracked`` bound to a video's ROI, homography and margin: for a detection stage
    that runs before the ``FrameProcessor`` (the Spark job's batched detection)."""
    margin = (config or ProcessorConfig()).margin_m
    return partial(
        select_tracked,
        roi=RoiFilter(settings.roi_polygon),
        zone=TrackingZone(settings.roi_polygon, settings.homography_matrix, margin),
    )


def bind_to_detector(config: ProcessorConfig, detector: VehicleDetector | None = None) -> ProcessorConfig:
    """The detector's device is the one device of every model (``config.detector.device`` when
    no detector is given): the embedder runs there, at the detector's precision (``half``).
    Changes and returns ``config``: the ``FrameProcessor`` and the Spark job's batched
    detection stage bind theirs here, so one setting means the same on both."""
    if detector is not None:
        config.detector.device = detector.device
    config.tracker.device = config.detector.device
    config.tracker.half = config.detector.half
    return config


def analyze_frames(
    frames: list[np.ndarray],
    detector: VehicleDetector,
    select: Iterable[Callable[[FrameDetections], FrameDetections]],
    config: ProcessorConfig,
    timer: StageTimer | None = None,
) -> list[FrameDetections]:
    """The stateless stage, over frames of one video or of several: detect (batched calls),
    keep each frame's boxes to track (``select``, one per frame: ``select_tracked`` bound to the
    frame's video, see ``tracking_filter``), embed the crops of all frames in one call on the
    detector's device with ``config.tracker``'s batch, size and precision (``config`` is bound
    to the detector here, ``bind_to_detector``). ``timer``: the detection and tracking times go
    there."""
    bind_to_detector(config, detector)
    timer = timer or StageTimer()
    with timer.stage("detection"):
        batch = detector.detect(frames)
    with timer.stage("tracking"):
        kept = [keep(d) for keep, d in zip(select, batch)]
        return embed_detections(frames, kept, config.tracker, detector.device)


def embed_detections(
    frames: list[np.ndarray], detections: list[FrameDetections], config: TrackerConfig, device: str
) -> list[FrameDetections]:
    """ROI-filtered detections of several frames -> with their appearance embeddings, in one
    embedder call on ``device`` (the detector's)."""
    config.device = device
    backend = getattr(config, "embed_backend", "auto")  # a config pickled before the field: auto
    return embed_many(frames, detections, config.embed_batch, config.embed_size, device, config.half, backend)


def to_vehicles(detections: FrameDetections, speeding: np.ndarray | None = None) -> list[Vehicle]:
    """The ``vehicles`` of a ``processed-frames`` entry; ``speeding`` (N,) bool is each
    vehicle's flag (``FrameProcessor.speeding_mask``), all False when not given."""
    names = detections.class_name
    out = []
    for i in range(len(detections)):
        x1, y1, x2, y2 = (round(float(v), 1) for v in detections.xyxy[i])
        speed = float(detections.speed_kmh[i])
        out.append(
            Vehicle(
                track_id=int(detections.tracker_id[i]),
                bbox=BBox(x1=x1, y1=y1, x2=x2, y2=y2),
                speed=round(speed, 1) if np.isfinite(speed) else None,
                class_id=int(detections.class_id[i]),
                class_name=names[i],
                confidence=round(float(detections.confidence[i]), 3),
                in_roi=bool(detections.in_roi[i]),
                speeding=bool(speeding[i]) if speeding is not None else False,
            )
        )
    return out
