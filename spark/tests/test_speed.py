import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from traffic_processing.detections import FrameDetections
from traffic_processing.speed import SpeedConfig, SpeedEstimator, speed_mps, track_speed_kmh

IDENTITY = np.eye(3)  # pixels are metres


@pytest.mark.parametrize(
    "times, positions, expected_mps",
    [
        ([0, 1], [[0, 0], [10, 0]], 10.0),
        ([0, 0.5, 1.0], [[0, 0], [0, 5], [0, 10]], 10.0),
        ([0, 1, 2], [[0, 0], [3, 4], [6, 8]], 5.0),
        ([0, 0.04, 0.12, 0.2], [[0, 0], [0, 1], [0, 3], [0, 5]], 25.0),  # skipped frames
        ([0, 1, 2, 3], [[5, 5]] * 4, 0.0),
    ],
)
def test_speed_table(times, positions, expected_mps):
    assert speed_mps(np.array(times), np.array(positions)) == pytest.approx(expected_mps, abs=1e-9)


def test_speed_needs_two_distinct_times():
    with pytest.raises(ValueError):
        speed_mps(np.array([1.0, 1.0]), np.array([[0, 0], [1, 1]]))


@settings(max_examples=80, deadline=None)
@given(v=st.floats(0.5, 60), fps=st.floats(5, 120), n=st.integers(3, 40), factor=st.integers(2, 4))
def test_scaling_fps_and_frame_numbers_leaves_speed_unchanged(v, fps, n, factor):
    frames = np.arange(n)
    pts = np.stack([np.zeros(n), v * frames / fps], axis=1)
    base = track_speed_kmh(frames, pts, IDENTITY, fps)
    scaled = track_speed_kmh(frames * factor, pts, IDENTITY, fps * factor)
    assert scaled == pytest.approx(base, rel=1e-9)
    assert base == pytest.approx(v * 3.6, rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(v=st.floats(5, 40), seed=st.integers(0, 10_000))
def test_zero_mean_jitter_averages_out(v, seed):
    rng = np.random.default_rng(seed)
    fps, n = 30.0, 31
    t = np.arange(n) / fps
    pts = np.stack([np.zeros(n), v * t], axis=1) + rng.normal(0, 0.05, (n, 2))
    assert speed_mps(t, pts) == pytest.approx(v, abs=0.35)


def _det(track_id, x, y):
    return FrameDetections(
        xyxy=[[x - 1, y - 2, x + 1, y]], confidence=[0.9], class_id=[2], tracker_id=[track_id]
    )


def test_estimator_waits_for_history_then_reports_kmh():
    # identity homography: a pixel is a metre, so the position noise is given in those units
    config = SpeedConfig(window_s=1.0, min_span_s=0.4, min_points=4, pixel_sigma=0.05)
    est = SpeedEstimator(IDENTITY, fps=10.0, config=config)
    speeds = []
    for n in range(12):
        speeds.append(float(est(_det(1, 50.0, 100.0 + 2.0 * n), n).speed_kmh[0]))  # 2 m/frame = 20 m/s
    assert all(np.isnan(speeds[:4]))
    assert speeds[-1] == pytest.approx(72.0, abs=1e-6)


def test_estimator_uses_frame_numbers_not_arrival_order_gaps():
    est = SpeedEstimator(IDENTITY, fps=25.0)
    out = None
    for n in range(0, 60, 3):  # every third frame only
        out = est(_det(7, 10.0, 0.4 * n), n)
    assert float(out.speed_kmh[0]) == pytest.approx(0.4 * 25 * 3.6, rel=1e-6)


def test_truncated_boxes_are_not_measured():
    est = SpeedEstimator(IDENTITY, fps=10.0)
    for n in range(20):
        out = est(
            FrameDetections(xyxy=[[0, 10 + n, 5, 20 + n]], confidence=[1], class_id=[2], tracker_id=[3]),
            n,
            frame_shape=(100, 100, 3),
        )
    assert np.isnan(out.speed_kmh[0])


def test_untracked_rows_and_missing_homography_give_nan():
    est = SpeedEstimator(None, fps=10.0)
    assert np.isnan(est(_det(1, 0, 0), 0).speed_kmh[0])
    est = SpeedEstimator(IDENTITY, fps=10.0)
    assert np.isnan(est(_det(-1, 0, 0), 0).speed_kmh[0])


def test_invalid_fps_rejected():
    with pytest.raises(ValueError):
        SpeedEstimator(IDENTITY, fps=0)
