"""The tracker learns the road's axis from the tracks' motion and does not continue a track
across it: at a sparse live stride a new track (one measured position, no motion yet) must not
take a look-alike vehicle in the next lane. Synthetic boxes and embeddings, no model."""

from __future__ import annotations

import numpy as np
from traffic_processing.detections import FrameDetections
from traffic_processing.tracker import TrackerConfig, VehicleTracker

FPS, STRIDE = 30.0, 6
PX_PER_M = 10.0  # the "camera": 10 px a metre, x across the road, y along it
LANE_A, LANE_B = 100.0, 135.0  # 3.5 m apart
SPEED_PX = 20.0 * PX_PER_M / FPS  # 20 m/s (72 km/h) in px per frame


def to_world(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) / PX_PER_M


def look(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=64).astype(np.float32)
    return v / np.linalg.norm(v)


def frame(*vehicles: tuple[float, float, np.ndarray]) -> FrameDetections:
    """Detections of (lane x, bottom y, embedding): 4 m wide, 6 m long boxes."""
    boxes = [[x - 20, y - 60, x + 20, y] for x, y, _ in vehicles]
    return FrameDetections(
        xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        confidence=np.full(len(vehicles), 0.9),
        class_id=np.full(len(vehicles), 2),
        embeddings=np.asarray([e for _, _, e in vehicles], dtype=np.float32).reshape(len(vehicles), -1),
    )


def run(config: TrackerConfig) -> tuple[VehicleTracker, list[list[int]]]:
    """Vehicle A (id 1) drives lane A for 2.4 s; then vehicle B appears in lane B (a new track,
    id 2), is missed at the next detection, where a look-alike C is beside it in lane A; C is
    seen again after. -> the ids out of the last two updates."""
    tracker = VehicleTracker(config, fps=FPS, to_world=to_world)
    n = 0
    for n in range(0, 72, STRIDE):
        tracker.update(frame((LANE_A, 100 + SPEED_PX * n, look(1))), frame_number=n)
    alike = look(7)
    tracker.update(frame((LANE_B, 300.0, alike)), frame_number=n + STRIDE)
    y_c = 300.0 + SPEED_PX * STRIDE  # where B would be, one lane over
    ids = []
    for step, y in ((2, y_c), (3, y_c + SPEED_PX * STRIDE)):
        out = tracker.update(frame((LANE_A, y, alike)), frame_number=n + step * STRIDE)
        ids.append([int(i) for i in out.tracker_id])
    return tracker, ids


def test_the_road_axis_is_learned_and_a_new_track_does_not_jump_lanes():
    learned, ids = run(TrackerConfig())
    axis = learned._tracker.road_axis()
    assert axis is not None and abs(axis[1]) > 0.99  # along y, the way the traffic went
    assert ids == [[], [3]]  # C: a track of its own (born after B's), confirmed at its 2nd sight
    # Without the axis, B's track takes C (same look, within any vehicle's reach): id 2 in lane A
    _, ids_without = run(TrackerConfig(axis_min_samples=10**9))
    assert ids_without[0] == [2]


def test_no_axis_where_the_traffic_crosses():
    tracker = VehicleTracker(TrackerConfig(), fps=FPS, to_world=to_world)
    for n in range(0, 120, STRIDE):  # a junction: as many tracks along x as along y
        tracker.update(
            frame((LANE_A, 100 + SPEED_PX * n, look(1)), (100 + SPEED_PX * n, 900.0, look(2))),
            frame_number=n,
        )
    assert tracker._tracker.axis_sums[3] >= TrackerConfig().axis_min_samples
    assert tracker._tracker.road_axis() is None
