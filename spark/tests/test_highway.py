"""The 720p highway truth (12 vehicles, 40-130 km/h, both directions): the scenario's own
guarantees, then the offline CLI (every frame) against it with the real model in the loop."""

from collections import Counter

import numpy as np
import pytest
from conftest import analyze, match


@pytest.fixture(scope="module")
def scenario():
    from testing.synthetic import highway_scenario

    return highway_scenario()


def test_scenario_spans_40_to_130_kmh_both_ways_about_half_speeding(scenario):
    speeds = [v.speed_kmh for v in scenario.vehicles]
    assert len(speeds) == 12 and min(speeds) == 40 and max(speeds) == 130
    assert {v.direction for v in scenario.vehicles} == {1, -1}
    speeders = sum(v > scenario.speed_limit_kmh for v in speeds)
    assert 4 <= speeders <= 8
    # no vehicle within 5 km/h of the limit: speeding is a clear call either way
    assert all(abs(v - scenario.speed_limit_kmh) >= 5 for v in speeds)
    cam = scenario.camera
    assert (cam.width, cam.height, scenario.fps) == (1280, 720, 30.0)


def test_scenario_layout_no_occlusion_and_every_vehicle_crosses_the_roi(scenario):
    """Drawn as the renderer draws them (far to near), no vehicle's box touches another of its
    lane, no vehicle is more than 10 % hidden while in the ROI, the fastest stays >= 1.3 s in the
    ROI, and each one enters the ROI after the clip starts and leaves it before the clip ends."""
    from testing.synthetic import load_sprite, vehicle_boxes

    sprites = {name: load_sprite(name) for name in {v.sprite for v in scenario.vehicles}}
    cam = scenario.camera
    n_frames = int(round(scenario.duration_s * scenario.fps))
    visible = {i: 1.0 for i in range(len(scenario.vehicles))}
    in_roi: dict[int, list[int]] = {i: [] for i in visible}
    for n in range(n_frames):
        boxes = vehicle_boxes(scenario, n / scenario.fps, sprites)
        owner = np.full((cam.height, cam.width), -1, np.int16)
        for i, _, (x1, y1, x2, y2) in boxes:
            owner[y1:y2, x1:x2] = i
        for i, y, (x1, y1, x2, y2) in boxes:
            if scenario.roi_y_m[0] <= y <= scenario.roi_y_m[1]:
                in_roi[i].append(n)
                visible[i] = min(visible[i], float((owner[y1:y2, x1:x2] == i).mean()))
        for a, (i, _, ba) in enumerate(boxes):
            for j, _, bb in boxes[a + 1 :]:
                if scenario.vehicles[i].lane_x_m == scenario.vehicles[j].lane_x_m:
                    gap_x = max(ba[0], bb[0]) - min(ba[2], bb[2])
                    gap_y = max(ba[1], bb[1]) - min(ba[3], bb[3])
                    assert gap_x > 0 or gap_y > 0, f"vehicles {i} and {j} touch in frame {n}"
    assert min(visible.values()) >= 0.9, visible
    for i, frames in in_roi.items():
        assert frames and frames[0] > 0 and frames[-1] < n_frames - 1, (i, frames[:1], frames[-1:])
        assert len(frames) == frames[-1] - frames[0] + 1
    fastest = max(range(len(scenario.vehicles)), key=lambda i: scenario.vehicles[i].speed_kmh)
    assert len(in_roi[fastest]) / scenario.fps >= 1.3


@pytest.fixture(scope="module")
def analyzed(highway_clip):
    out, truth = highway_clip
    return analyze(truth["video"], out / "highway_calib.json", out / "results.json"), truth


@pytest.mark.slow
def test_every_vehicle_counted_exactly_once(analyzed):
    results, truth = analyzed
    assert results["summary"]["total_vehicles_count"] == len(truth["vehicles"])
    pairs = match(results, truth)
    assert all(v is not None for v in pairs.values()), pairs


@pytest.mark.slow
def test_speed_mean_absolute_error_within_2_kmh(analyzed):
    results, truth = analyzed
    pairs = match(results, truth)
    errors = [abs(pairs[t["id"]]["speed_kmh"] - t["speed_kmh"]) for t in truth["vehicles"]]
    print(
        "truth km/h -> measured:", [(t["speed_kmh"], pairs[t["id"]]["speed_kmh"]) for t in truth["vehicles"]]
    )
    assert np.mean(errors) <= 2.0, errors
    assert max(errors) <= 5.0, errors


@pytest.mark.slow
def test_speeders_exactly_those_above_the_limit(analyzed):
    results, truth = analyzed
    pairs = match(results, truth)
    for t in truth["vehicles"]:
        assert pairs[t["id"]]["speeding"] == t["speeding"], (t, pairs[t["id"]])
    assert results["summary"]["speeding_count"] == sum(t["speeding"] for t in truth["vehicles"])


@pytest.mark.slow
def test_type_mix_matches_truth(analyzed):
    results, truth = analyzed
    expected = Counter(t["class_name"] for t in truth["vehicles"])
    assert results["summary"]["vehicle_type_distribution"] == dict(expected)
