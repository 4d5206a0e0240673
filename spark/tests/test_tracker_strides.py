"""The tracker counts time in frames: fed every k-th frame of generated truth (what a thinned
live stream does), it keeps one id per vehicle inside the ROI at strides 1, 2, 4 and 6."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from functools import partial

import cv2
import numpy as np
import pytest
from conftest import read_json
from traffic_processing.calibration import fit_homography, project_points
from traffic_processing.processor import FrameProcessor
from traffic_processing.tracker import TrackerConfig, VehicleTracker

from contracts.messages import FrameConfig
from testing.synthetic import _position, highway_scenario, speeds_scenario

pytestmark = pytest.mark.slow


SCENARIOS = {"speeds": ("truth_clip", speeds_scenario), "highway": ("highway_clip", highway_scenario)}


_ANALYZED: dict[str, tuple] = {}


def analyze(name: str, request, detector) -> tuple:
    """Every frame of a truth clip (640x360 at 30-120 km/h, 1280x720 at 40-130 km/h) detected once
    per module (ROI-filtered, embedded): (settings, per-frame detections, scenario, truth)."""
    if name not in _ANALYZED:
        fixture, scenario = SCENARIOS[name]
        out, truth = request.getfixturevalue(fixture)
        calib = read_json(out / f"{name}_calib.json")
        homography = fit_homography(calib["image_points"], calib["world_points"]).matrix
        settings = FrameConfig(
            roi_polygon=calib["roi_polygon"],
            homography_matrix=homography.tolist(),
            fps=truth["fps"],
            speed_limit_kmh=truth["speed_limit_kmh"],
        )
        proc = FrameProcessor(settings, detector=detector, annotate=False)
        cap = cv2.VideoCapture(truth["video"])
        detections = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            detections.extend(proc.analyze([frame]))
        cap.release()
        _ANALYZED[name] = (settings, detections, scenario(truth["fps"]), truth)
    return _ANALYZED[name]


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def analyzed_truth(request, detector):
    """(settings, per-frame detections, scenario) of each truth clip."""
    return analyze(request.param, request, detector)[:3]


def truth_vehicle(scn, frame_number: int, world_xy: np.ndarray) -> int | None:
    """The truth vehicle whose road contact point is where the box's bottom-centre projects."""
    t = frame_number / scn.fps
    best, best_d = None, 3.0
    for i, v in enumerate(scn.vehicles):
        y = _position(v, scn, t)
        if y is None or abs(world_xy[0] - v.lane_x_m) > scn.lane_width_m / 2:
            continue
        if abs(world_xy[1] - y) < best_d:
            best, best_d = i, abs(world_xy[1] - y)
    return best


KNOWN_SWITCH = pytest.mark.xfail(
    strict=True,
    reason="degraded live (3.3 Hz at 30 fps): on the 640x360 clip two of eight vehicles (30-120 km/h, "
    "small boxes) switch ids; the 720p highway holds one id each at this stride",
)


@pytest.mark.parametrize("stride", [1, 2, 4, 6, 9])
def test_one_id_per_vehicle_at_every_detection_stride(analyzed_truth, stride, request):
    settings, detections, scn = analyzed_truth
    if request.node.callspec.id == "speeds-9":
        request.applymarker(KNOWN_SWITCH)
    homography = np.asarray(settings.homography_matrix)
    tracker = VehicleTracker(TrackerConfig(), fps=settings.fps, to_world=partial(project_points, homography))
    ids_of: dict[int, set[int]] = {}  # truth vehicle -> track ids
    vehicles_of: dict[int, set[int]] = {}  # track id -> truth vehicles
    for n in range(0, len(detections), stride):
        dets = detections[n][np.arange(len(detections[n]))]
        tracked = tracker.update(dets, frame_number=n)
        # where vehicles are counted: the margin of road around the ROI is tracked too (track
        # points for the speed), where a far or truncated box may start a new track
        tracked = tracked[tracked.in_roi]
        world = project_points(homography, tracked.bottom_center) if len(tracked) else []
        for tid, xy in zip(tracked.tracker_id, world):
            v = truth_vehicle(scn, n, xy)
            if v is not None:
                ids_of.setdefault(v, set()).add(int(tid))
                vehicles_of.setdefault(int(tid), set()).add(v)
    print(f"stride {stride}: ids per vehicle", {v: sorted(ids) for v, ids in sorted(ids_of.items())})
    assert sorted(ids_of) == list(range(len(scn.vehicles))), "a vehicle was never tracked"
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of
    assert all(len(vs) == 1 for vs in vehicles_of.values()), vehicles_of


def test_predicted_boxes_follow_the_motion_between_detections(analyzed_truth):
    """A frame that is not detected is drawn with each track moved by its velocity: the predicted
    box lies closer to the vehicle's true box there than the last detected box does."""
    settings, detections, scn = analyzed_truth
    tracker = VehicleTracker(TrackerConfig(), fps=settings.fps)
    closer = farther = 0
    for n in range(0, len(detections) - 4, 4):
        last = tracker.update(detections[n][np.arange(len(detections[n]))], frame_number=n)
        predicted = tracker.predicted(n + 3)
        truth_next = tracker_free_boxes(detections[n + 3])
        for tid, box in zip(predicted.tracker_id, predicted.xyxy):
            old = last.xyxy[last.tracker_id == tid]
            if not len(old) or not len(truth_next):
                continue
            target = truth_next[np.argmin(np.abs(truth_next - old[0]).sum(axis=1))]
            if np.abs(box - target).sum() < np.abs(old[0] - target).sum():
                closer += 1
            else:
                farther += 1
    assert closer > 3 * farther, (closer, farther)


def tracker_free_boxes(dets) -> np.ndarray:
    return np.asarray(dets.xyxy, dtype=np.float64)


def live_gaps(seed: int) -> Iterator[int]:
    """Frames between two detections as a live stream on a loaded machine makes them: mostly a
    stride of 2-6 (5-15 Hz at 30 fps), and one in five a frame detected late for the tracks
    only, 8-15 frames on (``LIVE_LATE_DETECT_HZ``, while Spark is between two batches)."""
    rng = random.Random(seed)
    while True:
        yield rng.choice([2, 3, 4, 5, 6]) if rng.random() < 0.8 else rng.choice([8, 10, 12, 12, 15])


def test_live_detection_gaps_count_each_highway_vehicle_once(request, detector):
    """The highway truth tracked at 100 irregular live-like detection sequences: the runs count
    the twelve vehicles once each, with the truth's class mix and its six speeders, but for a
    rare few (CI counted a 13th passage: a bus whose box was cut by the frame's edge as it
    entered was not continued after a late frame; a car lost for a second was continued a lane
    over; two lost tracks were paired crosswise). Before those fixes 12 % of the runs miscounted,
    after them 1 %: at most 4 of 100 (the detector's int8 results may differ by CPU)."""
    settings, detections, _, truth = analyze("highway", request, detector)
    blank = np.zeros((truth["camera"]["height"], truth["camera"]["width"], 3), dtype=np.uint8)
    want = Counter(v["class_name"] for v in truth["vehicles"])
    speeders = sum(v["speeding"] for v in truth["vehicles"])
    wrong = {}
    for seed in range(100):
        proc = FrameProcessor(settings, detector=None, annotate=False)
        gaps = live_gaps(seed)
        n = seed % 4
        while n < len(detections):
            proc.track(blank, detections[n][np.arange(len(detections[n]))], n)
            n += next(gaps)
        passages = proc.finalize().vehicles
        got = Counter(p.class_name for p in passages)
        flagged = sum(p.speeding for p in passages)
        if got != want or flagged != speeders:
            wrong[seed] = (dict(got), flagged)
    print(f"{len(wrong)} of 100 live-like runs miscount: {wrong}")
    assert len(wrong) <= 4, f"want {dict(want)} and {speeders} speeders: {wrong}"


@pytest.mark.parametrize("stride", [1, 3])
def test_passages_go_out_as_tracks_end_and_equal_the_end_of_stream_list(request, detector, stride):
    """Continuous results: a processor that hands each passage out as its track ends (the Spark
    stage's) hands out the same passages as one that lists them all at the end (the CLI's), each
    once, within seconds of video after the vehicle's last frame in the ROI; the totals
    of the summary are the same."""
    settings, detections, _, truth = analyze("highway", request, detector)
    blank = np.zeros((truth["camera"]["height"], truth["camera"]["width"], 3), dtype=np.uint8)
    offline = FrameProcessor(settings, detector=None, annotate=False)
    live = FrameProcessor(settings, detector=None, annotate=False, emit_passages=True)
    emitted, late_s = [], []
    for n in range(0, len(detections), stride):
        offline.track(blank, detections[n][np.arange(len(detections[n]))], n)
        pf = live.track(
            blank, detections[n][np.arange(len(detections[n]))], n, produced_at=1000.0 + n / settings.fps
        )
        for p in pf.passages:
            late_s.append(n / settings.fps - p.last_time_s)
            assert p.passed_at == pytest.approx(1000.0 + p.last_frame / settings.fps)
        emitted += pf.passages
    still = live.finalize()
    every = offline.finalize()
    assert len(emitted) >= len(every.vehicles) - 3  # most vehicles left before the clip ended
    key = lambda p: p.model_dump(exclude={"passed_at", "direction", "run_id"})  # noqa: E731
    assert sorted(map(key, emitted + still.vehicles), key=lambda d: d["track_id"]) == sorted(
        map(key, every.vehicles), key=lambda d: d["track_id"]
    )
    assert len({p.track_id for p in emitted}) == len(emitted)  # each once
    # handed out when the track ends: after its time tracked on the margin past the ROI and the
    # tracker's max_age (1 s) without a detection
    assert max(late_s) < 3.0, late_s
    assert still.model_dump(exclude={"vehicles"}) == every.model_dump(exclude={"vehicles"})
    assert all(p.direction is not None for p in emitted)
