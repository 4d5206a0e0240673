import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from traffic_processing.calibration import CalibrationError, fit_homography, project_points

SQUARE_PX = [[100, 300], [500, 300], [400, 100], [200, 100]]
SQUARE_M = [[0, 0], [7, 0], [7, 30], [0, 30]]


@pytest.mark.parametrize(
    "image, world, message",
    [
        (SQUARE_PX[:3], SQUARE_M[:3], "at least 4"),
        (SQUARE_PX, SQUARE_M[:3], "same count"),
        ([[1, 1], [1, 1], [5, 5], [9, 1]], SQUARE_M, "duplicate"),
        ([[0, 0], [1, 1], [2, 2], [3, 3]], SQUARE_M, "collinear"),
        (SQUARE_PX, [[0, 0], [1, 0], [2, 0], [3, 0]], "collinear"),
        ([[0, 0, 0]] * 4, SQUARE_M, "pairs"),
        ([["a", 1]] * 4, SQUARE_M, "numbers"),
        ([[float("nan"), 1], [2, 3], [4, 5], [6, 8]], SQUARE_M, "non-finite"),
    ],
)
def test_degenerate_input_is_a_clear_error(image, world, message):
    with pytest.raises(CalibrationError, match=message):
        fit_homography(image, world)


def test_exact_points_fit_with_zero_error():
    hom = fit_homography(SQUARE_PX, SQUARE_M)
    assert hom.reprojection_error_m < 1e-6
    np.testing.assert_allclose(hom.to_world(np.array(SQUARE_PX)), SQUARE_M, atol=1e-6)


@pytest.mark.parametrize(
    "point_px, expected_m",
    [((300, 300), (3.5, 0.0)), ((100, 300), (0.0, 0.0)), ((300, 100), (3.5, 30.0))],
)
def test_known_points_map_to_known_road_positions(point_px, expected_m):
    hom = fit_homography(SQUARE_PX, SQUARE_M)
    np.testing.assert_allclose(hom.to_world(np.array([point_px]))[0], expected_m, atol=1e-6)


def test_noisy_points_report_reprojection_error():
    noisy = np.array(SQUARE_M + [[3.5, 15]], float)
    image = project_points(np.linalg.inv(fit_homography(SQUARE_PX, SQUARE_M).matrix), noisy)
    noisy[4] += [0.5, 0.0]
    assert 0.05 < fit_homography(image, noisy).reprojection_error_m < 0.5


coords = st.floats(min_value=-50, max_value=50, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(x=coords, y=st.floats(min_value=0, max_value=60), tilt=st.floats(min_value=10, max_value=60))
def test_world_to_image_and_back_returns(x, y, tilt):
    from testing.synthetic import Camera

    cam = Camera(tilt_deg=tilt)
    world = np.array([[-5, 5], [5, 5], [5, 40], [-5, 40], [0, 20]], float)
    hom = fit_homography(project_points(cam.world_to_image, world), world)
    back = hom.to_world(hom.to_image(np.array([[x, y]])))
    np.testing.assert_allclose(back[0], [x, y], atol=1e-6 * (1 + abs(x) + abs(y)))
