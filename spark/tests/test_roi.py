import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from traffic_processing.detections import FrameDetections
from traffic_processing.roi import RoiError, RoiFilter, parse_polygon, points_in_polygon

TRAPEZOID = [[200, 100], [440, 100], [620, 350], [20, 350]]


@pytest.mark.parametrize(
    "point, inside",
    [
        ((320, 200), True),
        ((320, 50), False),
        ((30, 120), False),
        ((610, 349), True),
        ((200, 100), True),
        ((639, 359), False),
    ],
)
def test_points_in_trapezoid(point, inside):
    assert points_in_polygon(np.array([point]), parse_polygon(TRAPEZOID))[0] == inside


@pytest.mark.parametrize(
    "bad",
    [
        [[0, 0], [1, 1]],
        [[0, 0], [1, 1], [2, 2]],
        "x",
        [[0, "a"], [1, 1], [2, 0]],
        [[0, 0, 0], [1, 1, 1], [2, 2, 2]],
    ],
)
def test_bad_polygons_are_rejected(bad):
    with pytest.raises(RoiError):
        parse_polygon(bad)


def test_filter_uses_bottom_centre_of_the_box():
    # box whose top is outside but bottom-centre inside, and the reverse
    dets = FrameDetections(
        xyxy=[[300, 40, 340, 120], [300, 300, 340, 355]], confidence=[0.9, 0.9], class_id=[2, 2]
    )
    out = RoiFilter(TRAPEZOID)(dets)
    assert out.in_roi.tolist() == [True, False]


def test_no_polygon_means_whole_frame():
    dets = FrameDetections(xyxy=[[0, 0, 5, 5]], confidence=[1], class_id=[2])
    assert RoiFilter(None)(dets).in_roi.tolist() == [True]


@given(
    cx=st.floats(100, 500),
    cy=st.floats(100, 300),
    r=st.floats(5, 90),
    px=st.floats(0, 640),
    py=st.floats(0, 360),
)
def test_axis_aligned_square_membership(cx, cy, r, px, py):
    square = [[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]]
    inside = points_in_polygon(np.array([[px, py]]), parse_polygon(square))[0]
    margin = 1e-3
    if abs(px - cx) < r - margin and abs(py - cy) < r - margin:
        assert inside
    elif abs(px - cx) > r + margin or abs(py - cy) > r + margin:
        assert not inside
