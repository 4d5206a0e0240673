"""Derive the CALIB.json files of the two real clips from their lane markings.

Pixel positions were measured on the median background of each clip (vehicles removed):
dash ends found as connected components of bright low-saturation pixels, the yellow line as the
most yellow column per row, the kerb by eye on a 3x enlargement. Road-plane sizes come from
marking standards (see README.md beside this file). Run with ``python derive_calibrations.py``
to rewrite the JSON files; it prints the fit residuals and the camera consistency check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

HERE = Path(__file__).resolve().parent


def urban() -> dict:
    """Urban CCTV clip (China, GB 5768.3 urban lane lines: 2 m dash, 4 m gap; lanes 3.5 m).

    Three dashed lane lines (left X=-3.5, middle X=0, right X=+3.5); dashes are aligned
    across lines; Y is metres along the road from the near end of the nearest middle dash.
    """
    lane = 3.5
    # (u, v) pixel, (X, Y) metres
    pairs = [
        # middle line: dash ends at Y = 0, 2 | 6, 8 | 12, 14 | 18, 20
        ((314.5, 320.0), (0.0, 0.0)),
        ((312.5, 277.0), (0.0, 2.0)),
        ((310.0, 219.0), (0.0, 6.0)),
        ((308.5, 197.0), (0.0, 8.0)),
        ((305.7, 163.0), (0.0, 12.0)),
        ((305.0, 149.0), (0.0, 14.0)),
        ((302.5, 126.0), (0.0, 18.0)),
        ((302.0, 117.0), (0.0, 20.0)),
        # left line
        ((213.2, 218.0), (-lane, 6.0)),
        ((219.5, 196.0), (-lane, 8.0)),
        ((229.5, 162.0), (-lane, 12.0)),
        ((233.3, 148.0), (-lane, 14.0)),
        ((239.0, 125.0), (-lane, 18.0)),
        ((241.0, 116.0), (-lane, 20.0)),
        # right line
        ((406.0, 220.0), (lane, 6.0)),
        ((396.8, 198.0), (lane, 8.0)),
        ((380.3, 163.0), (lane, 12.0)),
        ((374.3, 149.0), (lane, 14.0)),
        ((363.5, 127.0), (lane, 18.0)),
        ((359.5, 118.0), (lane, 20.0)),
    ]
    return {
        "video": "urban_cctv_640x360_25fps.mp4",
        # Our carriageway, between the left kerb barrier and the bus-stop lane edge, cut above
        # the frame's bottom edge (boxes touching it are truncated) and below the far end.
        "roi_polygon": [[228, 92], [420, 92], [620, 340], [52, 340]],
        "image_points": [list(p) for p, _ in pairs],
        "world_points": [list(w) for _, w in pairs],
        "fps": 25,
        "speed_limit_kmh": 60,
    }


def _apply(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    q = np.hstack([pts, np.ones((len(pts), 1))]) @ h.T
    return q[:, :2] / q[:, 2:3]


def highway(period: float, dash: float, lane: float) -> tuple[dict, np.ndarray, float]:
    """Highway clip: one dashed line between two lanes, the yellow left edge line and the kerb.

    Parallel lines at X = -lane (kerb), 0 (dashes), +lane (yellow) and the dash pattern along
    X = 0 fix the homography: fitted by least squares over the 8 homography parameters.
    """
    dashes_far_to_near = [  # (top (far end), bottom (near end)) pixel points
        ((224.5, 39.0), (223.0, 42.0)),
        ((219.5, 48.0), (218.0, 52.0)),
        ((213.5, 59.0), (211.5, 63.0)),
        ((206.5, 73.0), (204.5, 78.0)),
        ((197.0, 90.0), (193.5, 98.0)),
        ((183.0, 114.0), (178.5, 124.0)),
        ((166.0, 145.0), (158.5, 160.0)),
        ((140.0, 193.0), (128.5, 216.0)),
    ]
    yellow = np.array(
        [
            (270, 40),
            (266, 55),
            (264, 70),
            (265, 85),
            (262, 100),
            (263, 115),
            (263, 130),
            (261, 145),
            (256, 160),
            (256, 175),
            (254, 190),
            (255, 205),
            (250, 220),
            (250, 235),
        ],
        dtype=float,
    )
    kerb = np.array([(7, 195), (60, 147), (110, 100), (150, 67), (200, 13)], dtype=float)
    n = len(dashes_far_to_near)
    dash_px, dash_w = [], []
    for k, (top, bottom) in enumerate(dashes_far_to_near):
        y_near = (n - 1 - k) * period
        dash_px += [top, bottom]
        dash_w += [(0.0, y_near + dash), (0.0, y_near)]
    dash_px, dash_w = np.array(dash_px), np.array(dash_w)

    def residuals(p: np.ndarray) -> np.ndarray:
        h = np.append(p, 1.0).reshape(3, 3)
        r = [
            (_apply(h, dash_px) - dash_w).ravel(),
            _apply(h, yellow)[:, 0] - lane,
            _apply(h, kerb)[:, 0] + lane,
        ]
        return np.concatenate(r)

    import cv2

    init_src = np.array([dashes_far_to_near[-1][1], dashes_far_to_near[3][0], (250, 216), (140, 73)])
    init_dst = np.array([(0, 0), (0, 4 * period + dash), (lane, 0), (-lane, 4 * period + dash)])
    h0, _ = cv2.findHomography(init_src.astype(float), init_dst.astype(float))
    fit = least_squares(residuals, (h0 / h0[2, 2]).ravel()[:8])
    h = np.append(fit.x, 1.0).reshape(3, 3)
    rms = float(np.sqrt(np.mean(fit.fun**2)))
    # Point pairs for CALIB.json: the dash ends, plus the yellow and kerb lines at the same Y.
    img_pts, world_pts = [], []
    for (u, v), (x, y) in zip(dash_px, dash_w):
        img_pts.append([round(float(u), 1), round(float(v), 1)])
        world_pts.append([x, round(float(y), 3)])
    inv = np.linalg.inv(h)
    for y in (0.0, 2 * period, 4 * period):
        for x in (-lane, lane):
            u, v = _apply(inv, np.array([[x, y]]))[0]
            img_pts.append([round(float(u), 1), round(float(v), 1)])
            world_pts.append([x, y])
    calib = {
        "video": "highway_320x240_60fps.avi",
        "roi_polygon": [[120, 60], [262, 40], [262, 236], [5, 236], [5, 190]],
        "image_points": img_pts,
        "world_points": world_pts,
        "fps": 60,
        "speed_limit_kmh": 100,
    }
    return calib, h, rms


def focal_consistency(h_img_to_world: np.ndarray, size: tuple[int, int]) -> tuple[float, float]:
    """For a pinhole camera with square pixels and the principal point at the image centre,
    world->image = K [r1 r2 t]: returns (focal length in pixels, |r1| / |r2|), ratio 1 when
    the road-plane scales along and across the road agree."""
    g = np.linalg.inv(h_img_to_world)
    cx, cy = size[0] / 2, size[1] / 2
    a = g[0] - cx * g[2]
    b = g[1] - cy * g[2]
    f2 = -(a[0] * a[1] + b[0] * b[1]) / (g[2, 0] * g[2, 1])
    f = float(np.sqrt(abs(f2)))
    m1 = np.array([a[0] / f, b[0] / f, g[2, 0]])
    m2 = np.array([a[1] / f, b[1] / f, g[2, 1]])
    return f, float(np.linalg.norm(m1) / np.linalg.norm(m2))


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE.parent / "spark"))
    from traffic_processing.calibration import fit_homography

    u = urban()
    hom = fit_homography(u["image_points"], u["world_points"])
    f, ratio = focal_consistency(hom.matrix, (640, 360))
    print(f"urban: reprojection {hom.reprojection_error_m:.3f} m, focal {f:.0f} px, scale ratio {ratio:.3f}")
    (HERE / "urban_cctv_640x360_25fps.json").write_text(json.dumps(u, indent=1) + "\n")
    # Highway: US MUTCD 10 ft dash / 30 ft gap would be a 1:3 pattern; the measured pattern is
    # 1:2 (1D projective fit: 0.5 px rms vs 1.7 px for 1:3), so we take 3 m dash / 6 m gap
    # lines with 3.6 m lanes, and print the camera consistency check for each hypothesis.
    for period, dash in ((9.0, 3.0), (12.0, 4.0), (12.19, 3.05)):
        calib, h, rms = highway(period, dash, 3.6)
        f, ratio = focal_consistency(h, (320, 240))
        print(
            f"highway dash {dash} gap {period - dash}: fit rms {rms:.3f} m, focal {f:.0f} px, "
            f"scale ratio {ratio:.3f}"
        )
    calib, h, rms = highway(9.0, 3.0, 3.6)
    (HERE / "highway_320x240_60fps.json").write_text(json.dumps(calib, indent=1) + "\n")


if __name__ == "__main__":
    main()
