"""Short counting zones and fast traffic (issue 15): an 18 m ROI in perspective and a 15 m ROI
seen obliquely, 52-140 km/h both ways, limit 60 with vehicles at 52-55 and 70-72 km/h, vehicles
entering the ROI in the first second and leaving it in the last one.

Every vehicle is counted exactly once and gets a speed (MAE <= 1.5 km/h), and exactly the truth's
speeders are flagged: offline with every frame (the CLI), and "live-like", with the processor fed
every k-th frame as a thinned live stream is (k = 5 at 25-30 fps: 5-6 Hz detection). k = 10
(2.5-3 Hz) is measured and printed, not asserted (see the report in the issue).
Tracks are identified with truth vehicles by their boxes (never by their speed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import analyze

from testing.synthetic import (
    PRESETS,
    _position,
    identify_tracks,
    load_sprite,
    meets_truth,
    render,
    score,
    summary_line,
    vehicle_boxes,
)

CLIPS = ("shortzone", "oblique")


@pytest.fixture(scope="module", params=CLIPS)
def clip(request, tmp_path_factory):
    """(name, dir, truth dict, Scenario) of one short-zone clip, rendered once per module."""
    name = request.param
    out = tmp_path_factory.mktemp(name)
    scenario = PRESETS[name]()
    truth = render(scenario, out, name)
    return name, out, truth, scenario


@pytest.mark.parametrize("name", CLIPS)
def test_scenario_is_a_short_zone_with_fast_traffic_near_the_limit(name):
    scn = PRESETS[name]()
    cam = scn.camera
    assert scn.roi_y_m[1] - scn.roi_y_m[0] <= 20
    assert scn.duration_s <= 15 and (cam.width, cam.height) == (960, 540) and scn.fps in (25, 30)
    speeds = [v.speed_kmh for v in scn.vehicles]
    limit = scn.speed_limit_kmh
    assert max(speeds) == 140 and {v.direction for v in scn.vehicles} == {1, -1}
    assert any(limit - 8 <= s < limit for s in speeds) and any(limit < s <= limit + 12 for s in speeds)
    n = int(round(scn.duration_s * scn.fps))
    in_roi = {
        i: [
            k
            for k in range(n)
            if (y := _position(v, scn, k / scn.fps)) is not None and scn.roi_y_m[0] <= y <= scn.roi_y_m[1]
        ]
        for i, v in enumerate(scn.vehicles)
    }
    assert all(frames and 0 < frames[0] and frames[-1] < n - 1 for frames in in_roi.values()), in_roi
    assert min(f[0] for f in in_roi.values()) < scn.fps  # one enters in the first second ...
    assert max(f[-1] for f in in_roi.values()) >= n - scn.fps  # ... one leaves in the last one
    fastest = min(len(f) for f in in_roi.values()) / scn.fps
    assert fastest <= 0.5  # the fastest crosses the ROI in under half a second


def test_oblique_camera_is_oblique():
    scn = PRESETS["oblique"]()
    assert scn.camera.pan_deg != 0 and scn.camera.x_m != 0
    # the road crosses the image diagonally: its axis moves across the image as it recedes
    from traffic_processing.calibration import project_points

    near, far = project_points(
        scn.camera.world_to_image, np.array([[0.0, scn.roi_y_m[0]], [0.0, scn.roi_y_m[1]]])
    )
    assert abs(near[0] - far[0]) > 0.5 * abs(near[1] - far[1])


def test_vehicles_of_a_lane_never_touch_and_stay_visible_in_the_roi():
    for name in CLIPS:
        scn = PRESETS[name]()
        sprites = {s: load_sprite(s) for s in {v.sprite for v in scn.vehicles}}
        cam = scn.camera
        visible = {i: 1.0 for i in range(len(scn.vehicles))}
        for n in range(0, int(round(scn.duration_s * scn.fps)), 2):
            boxes = vehicle_boxes(scn, n / scn.fps, sprites)
            owner = np.full((cam.height, cam.width), -1, np.int16)
            for i, _, (x1, y1, x2, y2) in boxes:
                owner[y1:y2, x1:x2] = i
            for a, (i, y, ba) in enumerate(boxes):
                if scn.roi_y_m[0] <= y <= scn.roi_y_m[1]:
                    visible[i] = min(visible[i], float((owner[ba[1] : ba[3], ba[0] : ba[2]] == i).mean()))
                for j, _, bb in boxes[a + 1 :]:
                    if scn.vehicles[i].lane_x_m == scn.vehicles[j].lane_x_m:
                        apart = max(ba[0], bb[0]) > min(ba[2], bb[2]) or max(ba[1], bb[1]) > min(ba[3], bb[3])
                        assert apart, f"{name}: vehicles {i} and {j} touch in frame {n}"
        assert min(visible.values()) >= 0.8, (name, visible)


# -- model in the loop ----------------------------------------------------------------------
@pytest.mark.slow
def test_offline_cli_counts_measures_and_flags_every_vehicle(clip):
    name, out, truth, scenario = clip
    tracks = out / "tracks.csv"
    results = analyze(
        truth["video"], out / f"{name}_calib.json", out / "results.json", "--tracks-csv", str(tracks)
    )
    with open(tracks) as f:
        observations = [
            (int(r["frame_number"]), int(r["track_id"]), tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")))
            for r in csv.DictReader(f)
        ]
    s = score(results["vehicles"], truth, identify_tracks(scenario, observations))
    print(f"\n{name}, offline CLI (every frame): {summary_line(s)}\n  truth -> measured km/h: {s['speeds']}")
    assert results["summary"]["total_vehicles_count"] == len(truth["vehicles"])
    assert meets_truth(s), summary_line(s)


@pytest.fixture(scope="module")
def analyzed(clip, detector):
    """Every frame of the clip detected once (tracking zone, embeddings), as the Spark job's
    per-frame pass does: (name, settings, per-frame detections, frame shape, truth, scenario)."""
    from traffic_processing.cli import settings_from_calibration
    from traffic_processing.config import CalibrationFile
    from traffic_processing.processor import FrameProcessor

    name, out, truth, scenario = clip
    settings = settings_from_calibration(CalibrationFile.load(out / f"{name}_calib.json"), truth["fps"])
    proc = FrameProcessor(settings, detector=detector, annotate=False)
    cap = cv2.VideoCapture(truth["video"])
    detections, shape = [], None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        shape = frame.shape
        detections.extend(proc.analyze([frame]))
    cap.release()
    return name, settings, detections, shape, truth, scenario


def live_like(analyzed, stride: int) -> dict:
    """The clip as a thinned live stream processes it: every ``stride``-th frame tracked, the
    others drawn from the prediction (``hold``); what its passages score against the truth, and
    whether every flag came while its vehicle was still tracked."""
    from traffic_processing.processor import FrameProcessor

    name, settings, detections, shape, truth, scenario = analyzed
    proc = FrameProcessor(settings, annotate=True)
    frame = np.zeros(shape, np.uint8)
    observations, flagged_at, last_seen = [], {}, {}
    for n in range(len(detections)):
        if n % stride:
            proc.hold(frame, n)
            continue
        dets = detections[n][np.arange(len(detections[n]))]  # a copy: tracking writes into it
        result = proc.track(frame, dets, n)
        for v in result.vehicles:
            observations.append((n, v.track_id, (v.bbox.x1, v.bbox.y1, v.bbox.x2, v.bbox.y2)))
            last_seen[v.track_id] = n
        for violation in result.new_violations:
            flagged_at[violation.track_id] = n
    summary = proc.finalize()
    passages = [p.model_dump() for p in summary.vehicles or []]
    s = score(passages, truth, identify_tracks(scenario, observations))
    s["late_flags"] = [t for t, n in flagged_at.items() if n > last_seen.get(t, -1)]
    s["violations"] = sorted(flagged_at)
    s["speeding_passages"] = sorted(p["track_id"] for p in passages if p["speeding"])
    return s


@pytest.mark.slow
@pytest.mark.parametrize("stride", [1, 5])
def test_live_like_strides_count_measure_and_flag_every_vehicle(analyzed, stride):
    s = live_like(analyzed, stride)
    name, _, _, _, truth, _ = analyzed
    print(f"\n{name}, stride {stride} ({truth['fps'] / stride:.1f} Hz): {summary_line(s)}")
    assert meets_truth(s), summary_line(s)
    assert s["violations"] == s["speeding_passages"]  # one flag, one violation, never taken back
    assert not s["late_flags"]


@pytest.mark.slow
def test_live_like_stride_10_is_reported(analyzed):
    """2.5-3 Hz detection: measured and printed (not asserted: at this rate a 140 km/h vehicle
    is detected once or twice in the visible road, see the issue's report)."""
    s = live_like(analyzed, 10)
    name, _, _, _, truth, _ = analyzed
    print(f"\n{name}, stride 10 ({truth['fps'] / 10:.1f} Hz): {summary_line(s)}")
    assert s["counted"] > 0


def test_truth_file_lists_the_passages_in_the_roi(tmp_path):
    scn = PRESETS["oblique"]()
    scn.duration_s = 1.0  # a short render is enough for the truth file's shape
    truth = render(scn, tmp_path, "o")
    data = json.loads(Path(tmp_path / "o_truth.json").read_text())
    assert data["vehicles"] == truth["vehicles"] and data["camera"]["pan_deg"] == scn.camera.pan_deg


# -- units: the margin, the uncertainty rule, counting a vehicle confirmed past the ROI ---------
def test_tracking_zone_is_the_roi_grown_on_the_road_plane():
    from traffic_processing.roi import TrackingZone

    h = np.diag([0.1, 0.1, 1.0])  # 10 px a metre, image (u, v) -> road (u / 10, v / 10)
    roi = [[100, 100], [200, 100], [200, 300], [100, 300]]  # 10 m x 20 m
    zone = TrackingZone(roi, h, margin_m=20.0)
    pts = np.array([[150, 200], [150, 450], [150, 520], [390, 200], [420, 200]], dtype=float)
    assert zone.contains(pts).tolist() == [True, True, False, True, False]
    assert TrackingZone(roi, None, 20.0).contains(pts).tolist() == [True, False, False, False, False]
    assert TrackingZone(roi, h, 0.0).contains(pts).tolist() == [True, False, False, False, False]
    assert TrackingZone(None, h, 20.0).contains(pts).all()  # no ROI: the whole frame


def test_sparse_stride_gets_a_speed_from_few_points_and_the_rule_depends_only_on_the_data():
    from traffic_processing.detections import FrameDetections
    from traffic_processing.speed import SpeedConfig, SpeedEstimator

    h = np.diag([0.05, 0.05, 1.0])  # 20 px a metre

    def det(y_m: float) -> FrameDetections:
        y = y_m * 20
        return FrameDetections(xyxy=[[90, y - 30, 110, y]], confidence=[0.9], class_id=[2], tracker_id=[1])

    v = 140 / 3.6
    sparse = SpeedEstimator(h, fps=25.0, config=SpeedConfig())
    speeds = [float(sparse(det(5 + v * n / 25), n).speed_kmh[0]) for n in range(0, 40, 10)]
    assert np.isnan(speeds[0]) and np.isnan(speeds[1])  # two points: no residual, no estimate
    assert speeds[2] == pytest.approx(140, abs=0.5)  # the third point, 0.8 s after the first
    dense = SpeedEstimator(h, fps=25.0, config=SpeedConfig())
    for n in range(0, 31, 10):  # the same points, whatever else the stream held
        out = dense(det(5 + v * n / 25), n)
    assert float(out.speed_kmh[0]) == pytest.approx(speeds[-1], abs=1e-6)
    noisy = SpeedEstimator(h, fps=25.0, config=SpeedConfig())
    jitter = [0.0, 1.5, -1.5, 1.5]  # metres: a window this noisy is no evidence
    for i, n in enumerate(range(0, 31, 10)):
        out = noisy(det(5 + v * n / 25 + jitter[i]), n)
    assert np.isnan(out.speed_kmh[0])


def test_vehicle_seen_in_the_roi_only_before_confirmation_is_counted_once_with_its_speed():
    from traffic_processing.analytics import VehicleAnalyticsTracker
    from traffic_processing.detections import FrameDetections

    a = VehicleAnalyticsTracker()
    a.seed(5, 10, 0.4, 10, 0.4)  # detected in the ROI at frame 10, confirmed at 20 past it
    past = FrameDetections(
        xyxy=[[0, 0, 10, 10]], confidence=[0.8], class_id=[2], tracker_id=[5], in_roi=[False]
    )
    past.speed_kmh = np.array([72.0], dtype=np.float32)
    a.update(past, 20, 0.8)
    a.update(past, 30, 1.2)
    (p,) = a.passages()
    assert (p["first_frame"], p["last_frame"], p["speed_kmh"], p["speeding"]) == (10, 10, 72.0, True)
    assert a.vehicles[5].speeding_frame == 20  # flagged while still tracked
    assert a.total_vehicles == 1
