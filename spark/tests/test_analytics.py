import numpy as np
import pytest
from traffic_processing.analytics import AnalyticsConfig, VehicleAnalyticsTracker
from traffic_processing.detections import FrameDetections


def frame(rows):
    """rows: (track_id, class_id, speed, in_roi)"""
    n = len(rows)
    return FrameDetections(
        xyxy=np.tile([0, 0, 10, 10], (n, 1)),
        confidence=np.full(n, 0.9),
        class_id=[r[1] for r in rows],
        tracker_id=[r[0] for r in rows],
        speed_kmh=[r[2] for r in rows],
        in_roi=[r[3] for r in rows],
    )


def test_vehicle_lost_for_a_few_frames_is_counted_once():
    a = VehicleAnalyticsTracker()
    for n in range(30):
        rows = [(1, 2, 50.0, True)] if not 10 <= n < 15 else []  # gap of 5 frames
        a.update(frame(rows), n, n / 10)
    assert a.total_vehicles == 1
    assert a.vehicles[1].dwell_time_s == pytest.approx(2.9)


def test_counts_only_inside_roi_and_current_occupancy():
    a = VehicleAnalyticsTracker()
    a.update(frame([(1, 2, np.nan, True), (2, 7, np.nan, False), (3, 5, np.nan, True)]), 0, 0.0)
    assert a.stats() == {"total_vehicles": 2, "speeding_count": 0, "current_in_roi": 2}
    a.update(frame([(2, 7, np.nan, True)]), 1, 0.1)
    assert a.stats() == {"total_vehicles": 3, "speeding_count": 0, "current_in_roi": 1}
    assert a.finalize()["vehicle_type_distribution"] == {"bus": 1, "car": 1, "truck": 1}


def test_speeding_flag_needs_a_stable_median_above_the_limit_and_sticks():
    a = VehicleAnalyticsTracker(AnalyticsConfig(speed_limit_kmh=60, min_evidence_s=0.25))
    speeds = [58, 75, 59, 58, 59, 70, 71, 72, 73, 74, 20, 20, 20, 20, 20, 20, 20, 20, 20]
    flagged_at = None
    for n, s in enumerate(speeds):
        a.update(frame([(4, 2, s, True)]), n, n / 25)
        if a.newly_speeding and flagged_at is None:
            flagged_at = n
    assert flagged_at == 7  # median of 58,75,59,58,59,70,71,72 = 64.5 > 60 (median at n=6 is 59)
    assert a.finalize()["speeding_count"] == 1
    assert a.vehicles[4].speeding


@pytest.mark.parametrize("stride", [1, 2, 4, 6])
def test_speeding_evidence_is_video_time_not_a_count_of_frames(stride):
    """At 30 fps, 0.5 s of track in the ROI flags a 90 km/h vehicle at the same video time whatever
    the detection stride; a vehicle seen for less than 0.5 s is never flagged."""
    a = VehicleAnalyticsTracker(AnalyticsConfig(speed_limit_kmh=60, min_evidence_s=0.5))
    flagged_at = None
    for n in range(0, 31, stride):
        a.update(frame([(1, 2, 90.0, True)]), n, n / 30)
        if a.newly_speeding and flagged_at is None:
            flagged_at = n
    assert flagged_at is not None and 15 <= flagged_at < 15 + stride
    short = VehicleAnalyticsTracker(AnalyticsConfig(speed_limit_kmh=60, min_evidence_s=0.5))
    for n in range(0, 14, stride):
        short.update(frame([(2, 2, 130.0, True)]), n, n / 30)
    assert short.speeding_count == 0


def test_finalize_summary_shape():
    a = VehicleAnalyticsTracker()
    a.update(frame([(1, 3, 30.0, True)]), 0, 0.0)
    a.update(frame([(1, 3, 30.0, True)]), 10, 1.0)
    assert a.finalize() == {
        "total_vehicles_count": 1,
        "avg_dwell_time": 1.0,
        "vehicle_type_distribution": {"motorcycle": 1},
        "speeding_count": 0,
    }


def test_passages_are_the_per_vehicle_records_by_first_frame():
    """What results.json lists under ``vehicles`` and the summary carries to ``vehicle_passages``."""
    from contracts.messages import Passage

    a = VehicleAnalyticsTracker(AnalyticsConfig(speed_limit_kmh=60, min_evidence_s=0.5))
    for n in range(0, 30):
        rows = [(5, 7, 90.0 + n % 3, True)]  # a truck at 90-92 km/h from frame 0
        if n >= 10:
            rows.append((2, 2, 40.0, True))  # a car at 40 km/h from frame 10
        a.update(frame(rows), n, n / 20)
    a.update(frame([(9, 2, np.nan, True)]), 30, 1.5)  # counted, never measured
    passages = a.passages()
    assert [p["track_id"] for p in passages] == [5, 2, 9]
    truck, car, unmeasured = (Passage(**p) for p in passages)
    assert truck == Passage(
        track_id=5,
        class_name="truck",
        first_frame=0,
        last_frame=29,
        first_time_s=0.0,
        last_time_s=1.45,
        dwell_time_s=1.45,
        speed_kmh=91.0,
        max_speed_kmh=92.0,
        speeding=True,
    )
    assert (car.class_name, car.first_frame, car.first_time_s, car.speed_kmh, car.speeding) == (
        "car",
        10,
        0.5,
        40.0,
        False,
    )
    assert unmeasured.speed_kmh is None and unmeasured.max_speed_kmh is None and not unmeasured.speeding
    assert sum(p["speeding"] for p in passages) == a.finalize()["speeding_count"] == 1
    assert VehicleAnalyticsTracker().passages() == []


def moving(track_id, class_id, speed, x, y, in_roi=True):
    """One detection whose box's bottom centre is at (x, y)."""
    return FrameDetections(
        xyxy=np.array([[x - 5, y - 10, x + 5, y]], dtype=np.float32),
        confidence=np.full(1, 0.9),
        class_id=[class_id],
        tracker_id=[track_id],
        speed_kmh=[speed],
        in_roi=[in_roi],
    )


def test_ended_tracks_hand_out_their_passage_once_and_the_totals_stay():
    a = VehicleAnalyticsTracker(AnalyticsConfig(speed_limit_kmh=60))
    wall = 1_800_000_000.0
    for n in range(10):  # track 1 drives down the image (towards the camera), track 2 leftwards
        both = FrameDetections.merge(
            [moving(1, 2, 80.0, 50, 20 + 10 * n), moving(2, 7, 40.0, 300 - 12 * n, 100)]
        )
        a.update(both, n, n / 10, wall + n / 10)
        assert a.pop_ended({1, 2}) == []  # both alive: nothing final yet
    ended = a.pop_ended({2})  # track 1 deleted by the tracker
    assert [p["track_id"] for p in ended] == [1]
    (p,) = ended
    assert p["direction"] == "approaching" and p["speeding"] and p["class_name"] == "car"
    assert p["passed_at"] == pytest.approx(wall + 0.9)
    assert 1 not in a.vehicles and a.pop_ended({2}) == []  # handed out once, forgotten
    assert a.stats()["total_vehicles"] == 2 and a.speeding_count == 1
    summary = a.finalize()
    assert summary["total_vehicles_count"] == 2 and summary["speeding_count"] == 1
    assert summary["vehicle_type_distribution"] == {"car": 1, "truck": 1}
    assert summary["avg_dwell_time"] == pytest.approx(0.9)
    assert [p["track_id"] for p in a.passages()] == [2]  # what is still tracked
    assert a.passages()[0]["direction"] == "right_to_left"


def test_a_vehicle_that_barely_moved_has_no_direction():
    a = VehicleAnalyticsTracker()
    for n in range(5):
        a.update(moving(3, 2, 10.0, 100 + n, 100), n, n / 10)
    (p,) = a.pop_ended(set())
    assert p["direction"] is None and p["passed_at"] is None  # offline: no wall clock


def test_a_state_pickled_before_continuous_results_still_loads():
    import pickle

    a = VehicleAnalyticsTracker()
    a.update(moving(1, 2, 50.0, 10, 10), 0, 0.0)
    old = a.__dict__.copy()
    del old["_ended"]
    b = VehicleAnalyticsTracker.__new__(VehicleAnalyticsTracker)
    b.__setstate__(pickle.loads(pickle.dumps(old)))
    assert b.pop_ended(set())[0]["track_id"] == 1 and b.total_vehicles == 1
