"""Synthetic traffic videos with exact ground truth.

A pinhole camera over a flat road gives an exact road-plane homography. Real vehicle images
(ultralytics' bundled ``bus.jpg`` and crops of the real clips in ../shared/assets/videos) are
pasted as upright billboards whose bottom-centre sits on the vehicle's road position, scaled
with distance, moving along lanes at known constant speeds. Writes the video, the matching
CALIB.json and a truth file.

``python -m testing.synthetic OUT_DIR [--preset speeds|highway|shortzone|oblique]`` renders the standard
scenario (``speeds``), the 720p highway one, or a short counting zone with fast traffic seen in
perspective (``shortzone``) or obliquely (``oblique``).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from traffic_processing.calibration import project_points

from contracts.assets import SAMPLE_VIDEO as URBAN_CLIP

# Vehicle images: (source, frame number, box x1 y1 x2 y2, class, real width in metres).
# Boxes were picked from confident detections (>= 0.8) of the real clips.
SPRITES: dict[str, tuple[str, int, tuple[int, int, int, int], str, float]] = {
    "car_rear_white": ("urban", 280, (322, 177, 388, 248), "car", 1.8),
    "car_rear_dark": ("urban", 760, (322, 210, 399, 295), "car", 1.8),
    "car_rear_grey": ("urban", 800, (399, 187, 495, 258), "car", 1.8),
    "car_front": ("urban", 840, (130, 201, 215, 289), "car", 1.8),
    "bus_rear": ("urban", 880, (428, 107, 591, 297), "bus", 2.5),
    # bus.jpg shows the bus's front and part of its side: the crop spans about 3.4 m.
    "bus_front": ("bus.jpg", 0, (24, 231, 802, 780), "bus", 3.4),
}


def load_sprite(name: str) -> tuple[np.ndarray, str, float]:
    """(BGR crop, class name, width in metres) of a named sprite."""
    source, frame_no, (x1, y1, x2, y2), cls, width_m = SPRITES[name]
    if source == "bus.jpg":
        import ultralytics

        image = cv2.imread(os.path.join(os.path.dirname(ultralytics.__file__), "assets", "bus.jpg"))
    else:
        cap = cv2.VideoCapture(str(URBAN_CLIP))
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame_no)
        ok, image = cap.read()
        cap.release()
        if not ok:
            image = None
    if image is None:
        raise FileNotFoundError(f"sprite source for {name} not readable ({source})")
    return image[y1:y2, x1:x2].copy(), cls, width_m


@dataclass
class Camera:
    """Pinhole camera at height ``height_m`` above the road at Y=0, looking along +Y, tilted
    down by ``tilt_deg``. Road plane: X lateral (m), Y along the road (m)."""

    width: int = 640
    height: int = 360
    focal_px: float = 560.0
    height_m: float = 9.0
    tilt_deg: float = 24.0
    # Oblique views: the camera stands ``x_m`` metres across the road from its axis and is
    # turned by ``pan_deg`` (positive: towards +X) about the vertical; 0, 0 looks along the road.
    pan_deg: float = 0.0
    x_m: float = 0.0

    @property
    def _ground_to_camera(self) -> np.ndarray:
        """(3, 3) road (X, Y, 1) -> (lateral, depth, 1) of the camera's ground frame."""
        s, c = np.sin(np.radians(self.pan_deg)), np.cos(np.radians(self.pan_deg))
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array(
            [[1, 0, -self.x_m], [0, 1, 0], [0, 0, 1]]
        )

    @property
    def world_to_image(self) -> np.ndarray:
        """(3, 3) homography road (X, Y) metres -> image (u, v) pixels."""
        s, c = np.sin(np.radians(self.tilt_deg)), np.cos(np.radians(self.tilt_deg))
        k = np.array([[self.focal_px, 0, self.width / 2], [0, self.focal_px, self.height / 2], [0, 0, 1]])
        rt = np.array([[1, 0, 0], [0, -s, self.height_m * c], [0, c, self.height_m * s]])
        return k @ rt @ self._ground_to_camera

    def depth_m(self, x: float, y: float) -> float:
        """Horizontal distance of road point (x, y) along the camera's viewing direction."""
        return float((self._ground_to_camera @ np.array([x, y, 1.0]))[1])

    @property
    def image_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_image)

    def scale_px_per_m(self, x: float, y: float) -> float:
        """Pixels per metre across the view (across the road for an unpanned camera) at road
        point (x, y)."""
        dx, dy = 0.5 * np.cos(np.radians(self.pan_deg)), -0.5 * np.sin(np.radians(self.pan_deg))
        pts = project_points(self.world_to_image, np.array([[x - dx, y - dy], [x + dx, y + dy]]))
        return float(np.linalg.norm(pts[1] - pts[0]))


@dataclass
class VehicleSpec:
    sprite: str
    lane_x_m: float  # lane centre
    speed_kmh: float
    start_s: float  # when it appears at its start position
    direction: int = 1  # +1 away from the camera, -1 towards it


@dataclass
class Scenario:
    vehicles: list[VehicleSpec]
    duration_s: float
    fps: float = 30.0
    camera: Camera = field(default_factory=Camera)
    lane_width_m: float = 3.5
    lanes: int = 3
    road_start_m: float = 4.0  # vehicles enter / leave the road section here ...
    road_end_m: float = 70.0  # ... and here
    roi_y_m: tuple[float, float] = (11.0, 40.0)  # region of interest along the road
    speed_limit_kmh: float = 60.0
    seed: int = 7

    @property
    def roi_x_m(self) -> tuple[float, float]:
        half = self.lanes * self.lane_width_m / 2
        return (-half, half)


def speeds_scenario(fps: float = 30.0) -> Scenario:
    """Eight vehicles, 30 to 120 km/h, three lanes both ways, cars and buses, one per lane at
    a time (no occlusion): the model-in-the-loop truth of the test suite."""
    lanes = (-3.5, 0.0, 3.5)
    plan = [
        ("car_rear_white", 0, 120, 0.0, 1),
        ("car_rear_dark", 1, 45, 0.0, 1),
        ("bus_rear", 2, 30, 0.0, 1),
        ("car_rear_grey", 0, 95, 1.6, 1),
        ("car_front", 1, 75, 3.4, -1),
        ("car_rear_white", 0, 55, 3.4, 1),
        ("bus_front", 2, 65, 4.8, -1),
        ("car_rear_dark", 1, 105, 6.8, 1),  # after car_front left its lane: no head-on overlap
    ]
    vehicles = [VehicleSpec(s, lanes[lane], v, t0, d) for s, lane, v, t0, d in plan]
    return Scenario(vehicles=vehicles, duration_s=9.0, fps=fps)


def highway_camera() -> Camera:
    """720p camera 10 m up a pole (gantry), tilted 12.5 deg down, with a long lens (2800 px, a
    26 deg horizontal field): the region of interest 30 to 78 m ahead fills the frame and a car
    at its far end is still ~64 px wide (~32 px at the detector's 640 input). A 1120 px lens (the
    640x360 camera's 560 px, doubled) over the same 48 m of road shrinks far cars to ~17 px at the
    detector's input, where YOLOv8n misses most of them."""
    return Camera(width=1280, height=720, focal_px=2800.0, height_m=10.0, tilt_deg=12.5)


def highway_scenario(fps: float = 30.0) -> Scenario:
    """Highway truth at 720p: twelve vehicles at 40 to 130 km/h (six under the 60 km/h limit, six
    over), two lanes each way (right: away from the camera, left: towards it), cars and buses,
    15 s. The ROI is 48 m long, so that a 130 km/h vehicle stays 1.33 s inside it (40 frames at
    30 fps: 10 detections at a live stride of 4, 6-7 at 6). Vehicles of one lane keep a gap in
    the image (no box touches another of its lane); faster vehicles overtake slower ones in the
    next lane without overlapping them. Every vehicle enters the road section before the ROI and
    has crossed the ROI before the clip ends."""
    away_slow, away_fast, towards_fast, towards_slow = 5.25, 1.75, -1.75, -5.25
    plan = [  # sprite, lane, km/h, start s, direction
        ("bus_rear", away_slow, 40, 0.0, 1),
        ("car_rear_dark", away_fast, 130, 0.6, 1),
        ("bus_front", towards_slow, 45, 1.0, -1),
        ("car_rear_white", away_fast, 94, 2.6, 1),
        ("car_front", towards_fast, 106, 3.5, -1),
        ("car_rear_grey", away_slow, 48, 4.0, 1),
        ("car_rear_grey", away_fast, 118, 6.0, 1),
        ("car_rear_white", away_slow, 54, 8.0, 1),
        ("car_front", towards_slow, 51, 8.0, -1),
        ("car_front", towards_fast, 42, 8.5, -1),
        ("car_rear_dark", away_fast, 70, 9.0, 1),
        ("bus_rear", away_fast, 82, 11.0, 1),
    ]
    vehicles = [VehicleSpec(s, lane, v, t0, d) for s, lane, v, t0, d in plan]
    return Scenario(
        vehicles=vehicles,
        duration_s=15.0,
        fps=fps,
        camera=highway_camera(),
        lane_width_m=3.5,
        lanes=4,
        road_start_m=25.0,  # below the bottom edge of the frame (27.7 m)
        road_end_m=90.0,
        roi_y_m=(30.0, 78.0),
        speed_limit_kmh=60.0,
    )


def shortzone_scenario(fps: float = 25.0) -> Scenario:
    """Short counting zone, fast traffic, perspective view (960x540 @25, 10 s): an 18 m ROI that
    a 140 km/h car crosses in 0.46 s (12 frames; 2-3 detections at a live stride of 5, 1-2 at 10),
    with calibrated road before and after it. Limit 60: speeders at 70-140 km/h and vehicles
    just under the limit (52-55 km/h), both directions; vehicles enter the ROI in the first
    second and leave it in the last one."""
    away_slow, away_fast, towards_fast, towards_slow = 5.25, 1.75, -1.75, -5.25
    plan = [  # sprite, lane, km/h, start s, direction
        ("car_rear_dark", away_fast, 140, 0.0, 1),  # in the ROI at 0.39 s
        ("car_front", towards_slow, 55, -2.8, -1),  # in the ROI at 0.4 s
        ("car_rear_white", away_slow, 70, 0.6, 1),
        ("car_front", towards_fast, 130, 1.2, -1),
        ("bus_rear", away_slow, 52, 2.0, 1),
        ("car_rear_grey", away_fast, 120, 2.6, 1),
        ("car_front", towards_fast, 72, 3.6, -1),
        ("car_rear_dark", away_fast, 100, 4.8, 1),
        ("bus_front", towards_slow, 55, 5.0, -1),
        ("car_rear_white", away_fast, 135, 6.6, 1),
        ("car_front", towards_fast, 140, 7.6, -1),
        ("car_rear_grey", away_slow, 55, 7.4, 1),  # leaves the ROI at 9.64 s
    ]
    return Scenario(
        vehicles=[VehicleSpec(s, lane, v, t0, d) for s, lane, v, t0, d in plan],
        duration_s=10.0,
        fps=fps,
        camera=Camera(width=960, height=540, focal_px=1400.0, height_m=10.0, tilt_deg=15.0),
        lanes=4,
        road_start_m=18.0,  # below the bottom edge of the frame (20.6 m)
        road_end_m=100.0,
        roi_y_m=(34.0, 52.0),
        speed_limit_kmh=60.0,
    )


def oblique_scenario(fps: float = 30.0) -> Scenario:
    """Short counting zone seen obliquely (960x540 @30, 10 s): the camera stands 14 m beside
    the road, turned 20 deg towards it, so the road crosses the image diagonally; a 15 m ROI,
    traffic at 52-140 km/h both ways, limit 60 with vehicles at 55 and 70; vehicles enter the ROI
    in the first second and leave it in the last one."""
    away, towards = 1.75, -1.75
    plan = [  # sprite, lane, km/h, start s, direction
        ("car_rear_white", away, 120, -0.4, 1),  # in the ROI at 0.27 s
        ("car_front", towards, 70, -2.2, -1),  # in the ROI at 0.63 s
        ("car_rear_dark", away, 55, 0.2, 1),
        ("car_front", towards, 140, 1.4, -1),
        ("car_front", towards, 100, 2.2, -1),
        ("car_rear_dark", away, 130, 4.2, 1),
        ("car_rear_grey", away, 140, 4.9, 1),
        ("car_rear_white", away, 70, 5.0, 1),
        ("bus_front", towards, 52, 3.6, -1),
        ("car_front", towards, 55, 5.3, -1),  # leaves the ROI at 9.87 s
    ]
    return Scenario(
        vehicles=[VehicleSpec(s, lane, v, t0, d) for s, lane, v, t0, d in plan],
        duration_s=10.0,
        fps=fps,
        camera=Camera(
            width=960, height=540, focal_px=2200.0, height_m=8.0, tilt_deg=8.0, pan_deg=20.0, x_m=-14.0
        ),
        lanes=2,
        road_start_m=22.0,  # off the frame (the road enters it at 28 m) ...
        road_end_m=110.0,  # ... and leaves it at 102 m
        roi_y_m=(40.0, 55.0),
        speed_limit_kmh=60.0,
    )


PRESETS = {
    "speeds": speeds_scenario,
    "highway": highway_scenario,
    "shortzone": shortzone_scenario,
    "oblique": oblique_scenario,
}


def _road_texture(
    scn: Scenario, rng: np.random.Generator, px_per_m: float = 16.0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-down road raster and its (3, 3) raster-pixel -> road-metre transform."""
    x0, x1, y0, y1 = min(-16.0, scn.camera.x_m - 10), max(16.0, scn.camera.x_m + 10), -2.0, 160.0
    w, h = int((x1 - x0) * px_per_m), int((y1 - y0) * px_per_m)
    tex = np.empty((h, w, 3), np.uint8)
    tex[:] = (88, 92, 90)
    tex = np.clip(tex.astype(np.int16) + rng.normal(0, 6, (h, w, 1)).astype(np.int16), 0, 255).astype(
        np.uint8
    )

    def col(x: float) -> int:
        return int((x - x0) * px_per_m)

    half = scn.lanes * scn.lane_width_m / 2
    tex[:, : col(-half - 1.5)] = (60, 120, 70)  # verges
    tex[:, col(half + 1.5) :] = (60, 120, 70)
    for x in (-half, half):  # edge lines
        tex[:, col(x) - 2 : col(x) + 2] = (235, 235, 235)
    for i in range(1, scn.lanes):  # dashed lane lines, 3 m dash / 6 m gap
        x = -half + i * scn.lane_width_m
        for y in np.arange(y0, y1, 9.0):
            r0, r1 = int((y - y0) * px_per_m), int((y + 3.0 - y0) * px_per_m)
            tex[r0:r1, col(x) - 2 : col(x) + 2] = (235, 235, 235)
    # raster (col, row) -> road (X, Y): X = x0 + col/ppm, Y = y0 + row/ppm
    raster_to_road = np.array([[1 / px_per_m, 0, x0], [0, 1 / px_per_m, y0], [0, 0, 1]])
    return tex, raster_to_road


def _position(v: VehicleSpec, scn: Scenario, t: float) -> float | None:
    """Road Y (m) of the vehicle's front-bottom contact point at time t, None when off the road."""
    if t < v.start_s:
        return None
    travelled = (t - v.start_s) * v.speed_kmh / 3.6
    y = scn.road_start_m + travelled if v.direction > 0 else scn.road_end_m - travelled
    return y if scn.road_start_m <= y <= scn.road_end_m else None


def _placement(
    cam: Camera, v: VehicleSpec, y: float, sprite: tuple[np.ndarray, str, float]
) -> tuple[int, int, int, int]:
    """Image rectangle (x1, y1, width, height) of a vehicle's billboard at road Y ``y``: its
    bottom-centre on the road point, its width the sprite's metres at that distance."""
    crop, _, width_m = sprite
    u, vv = project_points(cam.world_to_image, np.array([[v.lane_x_m, y]]))[0]
    sw = max(2, int(round(width_m * cam.scale_px_per_m(v.lane_x_m, y))))
    sh = max(2, int(round(sw * crop.shape[0] / crop.shape[1])))
    return int(round(u - sw / 2)), int(round(vv - sh)), sw, sh


def vehicle_boxes(
    scn: Scenario, t: float, sprites: dict[str, tuple[np.ndarray, str, float]] | None = None
) -> list[tuple[int, float, tuple[int, int, int, int]]]:
    """(vehicle index, road Y, image box x1 y1 x2 y2 clipped to the frame) of the vehicles on the
    road at time t, far to near (drawing order: a later box hides the earlier ones)."""
    sprites = sprites or {name: load_sprite(name) for name in {v.sprite for v in scn.vehicles}}
    cam = scn.camera
    out = []
    for i, v in enumerate(scn.vehicles):
        y = _position(v, scn, t)
        if y is None:
            continue
        x1, y1, sw, sh = _placement(cam, v, y, sprites[v.sprite])
        box = (max(x1, 0), max(y1, 0), min(x1 + sw, cam.width), min(y1 + sh, cam.height))
        if box[2] > box[0] and box[3] > box[1]:
            out.append((i, y, box))
    return sorted(out, key=lambda b: -cam.depth_m(scn.vehicles[b[0]].lane_x_m, b[1]))


def render(scn: Scenario, out_dir: str | Path, name: str = "synthetic") -> dict:
    """Write ``{name}.mp4``, ``{name}_calib.json`` and ``{name}_truth.json`` into out_dir;
    returns the truth dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(scn.seed)
    cam = scn.camera
    w2i = cam.world_to_image
    tex, raster_to_road = _road_texture(scn, rng)
    background = cv2.warpPerspective(
        tex, w2i @ raster_to_road, (cam.width, cam.height), flags=cv2.INTER_LINEAR
    )
    sprites = {name: load_sprite(name) for name in {v.sprite for v in scn.vehicles}}
    n_frames = int(round(scn.duration_s * scn.fps))
    video_path = out / f"{name}.mp4"
    writer = cv2.VideoWriter(
        str(video_path), cv2.VideoWriter.fourcc(*"mp4v"), scn.fps, (cam.width, cam.height)
    )
    (rx0, rx1), (ry0, ry1) = scn.roi_x_m, scn.roi_y_m
    truth = [
        {
            "id": i,
            "class_name": sprites[v.sprite][1],
            "speed_kmh": v.speed_kmh,
            "lane_x_m": v.lane_x_m,
            "direction": v.direction,
            "first_frame_in_roi": None,
            "last_frame_in_roi": None,
            "speeding": v.speed_kmh > scn.speed_limit_kmh,
        }
        for i, v in enumerate(scn.vehicles)
    ]
    for n in range(n_frames):
        t = n / scn.fps
        frame = background.copy()
        placed = []
        for i, v in enumerate(scn.vehicles):
            y = _position(v, scn, t)
            if y is None:
                continue
            placed.append((y, i, v))
            if ry0 <= y <= ry1:
                truth[i]["first_frame_in_roi"] = (
                    truth[i]["first_frame_in_roi"] if truth[i]["first_frame_in_roi"] is not None else n
                )
                truth[i]["last_frame_in_roi"] = n
        for y, _, v in sorted(placed, key=lambda p: -cam.depth_m(p[2].lane_x_m, p[0])):  # far to near
            crop = sprites[v.sprite][0]
            x1, y1, sw, sh = _placement(cam, v, y, sprites[v.sprite])
            sprite = cv2.resize(
                crop, (sw, sh), interpolation=cv2.INTER_AREA if sw < crop.shape[1] else cv2.INTER_LINEAR
            )
            fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x1 + sw, cam.width), min(y1 + sh, cam.height)
            if fx2 > fx1 and fy2 > fy1:
                frame[fy1:fy2, fx1:fx2] = sprite[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1]
        writer.write(frame)
    writer.release()

    roi_world = np.array([[rx0, ry0], [rx1, ry0], [rx1, ry1], [rx0, ry1]])
    calib_world = np.array(
        [[rx0, ry0], [rx1, ry0], [rx1, ry1], [rx0, ry1], [0.0, (ry0 + ry1) / 2], [rx0, (ry0 + ry1) / 2]]
    )
    calib = {
        "roi_polygon": np.round(project_points(w2i, roi_world), 2).tolist(),
        "image_points": np.round(project_points(w2i, calib_world), 3).tolist(),
        "world_points": calib_world.tolist(),
        "fps": scn.fps,
        "speed_limit_kmh": scn.speed_limit_kmh,
    }
    result = {
        "video": str(video_path),
        "frames": n_frames,
        "fps": scn.fps,
        "speed_limit_kmh": scn.speed_limit_kmh,
        "camera": asdict(cam),
        "vehicles": truth,
    }
    (out / f"{name}_calib.json").write_text(json.dumps(calib, indent=1) + "\n")
    (out / f"{name}_truth.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="speeds",
        help="speeds: 640x360, 8 vehicles at 30-120 km/h; highway: 1280x720, 12 at 40-130 km/h; "
        "shortzone: 960x540, 18 m ROI, perspective, 12 at 52-140 km/h; oblique: 960x540, 15 m ROI, "
        "oblique view, 10 at 52-140 km/h",
    )
    parser.add_argument("--name", help="file name stem (default: synthetic, or the preset's name)")
    parser.add_argument("--fps", type=float, help="frame rate (default: the preset's, 30 or 25)")
    args = parser.parse_args(argv)
    name = args.name or ("synthetic" if args.preset == "speeds" else args.preset)
    preset = PRESETS[args.preset]
    truth = render(preset(args.fps) if args.fps else preset(), args.out_dir, name)
    print(f"{truth['frames']} frames, {len(truth['vehicles'])} vehicles -> {truth['video']}")
    return 0


# -- scoring results against the truth (tests, benches) --------------------------------------
def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def identify_tracks(
    scn: Scenario,
    observations: list[tuple[int, int, tuple[float, float, float, float]]],
    min_iou: float = 0.3,
) -> dict[int, int | None]:
    """track id -> index of the truth vehicle whose rendered box its boxes cover (the majority
    over its (frame_number, track_id, (x1, y1, x2, y2)) observations; None when none matches).
    Independent of the measured speed, so a wrong speed cannot pick its own match."""
    sprites = {name: load_sprite(name) for name in {v.sprite for v in scn.vehicles}}
    truth_boxes: dict[int, list] = {}
    votes: dict[int, dict[int, int]] = {}
    for frame_number, track_id, box in observations:
        if frame_number not in truth_boxes:
            truth_boxes[frame_number] = vehicle_boxes(scn, frame_number / scn.fps, sprites)
        best = max(((box_iou(box, tb), i) for i, _, tb in truth_boxes[frame_number]), default=(0.0, None))
        tally = votes.setdefault(int(track_id), {})
        if best[0] >= min_iou and best[1] is not None:
            tally[best[1]] = tally.get(best[1], 0) + 1
    return {t: (max(c, key=lambda i: c[i]) if c else None) for t, c in votes.items()}


def match_passages(passages: list[dict], truth: dict, max_frames: int = 20) -> dict[int, Any]:
    """truth vehicle id -> the passage (``first_frame``/``last_frame`` in the ROI) that best fits
    its frames in the ROI (one-to-one, least total |first - first| + |last - last|, none farther
    than ``max_frames`` on either end); for results that carry no boxes (the REST passages)."""
    from scipy.optimize import linear_sum_assignment

    vehicles = truth["vehicles"]
    out: dict[int, Any] = {t["id"]: None for t in vehicles}
    if not passages:
        return out
    cost = np.full((len(vehicles), len(passages)), 1e6)
    for i, t in enumerate(vehicles):
        for j, p in enumerate(passages):
            d0 = abs(p["first_frame"] - t["first_frame_in_roi"])
            d1 = abs(p["last_frame"] - t["last_frame_in_roi"])
            if max(d0, d1) <= max_frames:
                cost[i, j] = d0 + d1
    for i, j in zip(*linear_sum_assignment(cost)):
        if cost[i, j] < 1e6:
            out[vehicles[i]["id"]] = passages[j]
    return out


def score(passages: list[dict], truth: dict, identity: dict[int, int | None] | None = None) -> dict[str, Any]:
    """Passages (``schemas.Passage`` dicts) against the truth: each truth vehicle's passage (by
    ``identity``, track id -> truth index, when given; else by ``match_passages``), the counted
    total, the vehicles counted twice or not at all, counted vehicles without a speed, the
    speed errors, and the speeders flagged / missed / falsely flagged."""
    vehicles = truth["vehicles"]
    pairs: dict[int, Any]
    if identity is not None:
        of: dict[int, list[dict]] = {t["id"]: [] for t in vehicles}
        unknown: list[dict] = []
        for p in passages:
            i = identity.get(p["track_id"])
            (of[i] if i is not None else unknown).append(p)
        pairs = {i: (ps[0] if len(ps) == 1 else None) for i, ps in of.items()}
        twice = sorted(i for i, ps in of.items() if len(ps) > 1)
        missed = sorted(i for i, ps in of.items() if not ps)
        extra = [p["track_id"] for p in unknown]
    else:
        pairs = match_passages(passages, truth)
        matched = {id(p) for p in pairs.values() if p is not None}
        twice, missed = [], sorted(i for i, p in pairs.items() if p is None)
        extra = [p["track_id"] for p in passages if id(p) not in matched]
    errors = {
        t["id"]: abs(pairs[t["id"]]["speed_kmh"] - t["speed_kmh"])
        for t in vehicles
        if pairs[t["id"]] is not None and pairs[t["id"]]["speed_kmh"] is not None
    }
    speeders = {t["id"] for t in vehicles if t["speeding"]}
    flagged = {i for i, p in pairs.items() if p is not None and p["speeding"]}
    return {
        "counted": len(passages),
        "truth": len(vehicles),
        "twice": twice,
        "missed": missed,
        "extra": extra,
        "without_speed": [p["track_id"] for p in passages if p["speed_kmh"] is None],
        "mae_kmh": float(np.mean(list(errors.values()))) if errors else float("nan"),
        "max_error_kmh": max(errors.values(), default=float("nan")),
        "speeders": len(speeders),
        "flagged": sum(bool(p["speeding"]) for p in passages),
        "missed_speeders": sorted(speeders - flagged),
        "false_flags": sorted(flagged - speeders)
        + [
            p["track_id"]
            for p in passages
            if p["speeding"] and (identity is not None and identity.get(p["track_id"]) is None)
        ],
        "speeds": {
            t["id"]: (t["speed_kmh"], None if pairs[t["id"]] is None else pairs[t["id"]]["speed_kmh"])
            for t in vehicles
        },
    }


def meets_truth(s: dict[str, Any], mae_kmh: float = 1.5) -> bool:
    """Every vehicle counted exactly once, every counted one with a speed, speed MAE within
    ``mae_kmh``, exactly the truth's speeders flagged."""
    return (
        s["counted"] == s["truth"]
        and not s["twice"]
        and not s["missed"]
        and not s["extra"]
        and not s["without_speed"]
        and float(s["mae_kmh"]) <= mae_kmh
        and not s["missed_speeders"]
        and not s["false_flags"]
    )


def summary_line(s: dict[str, Any]) -> str:
    return (
        f"counted {s['counted']}/{s['truth']} "
        f"(twice {s['twice']}, missed {s['missed']}, extra {s['extra']}), "
        f"without speed {len(s['without_speed'])}, flagged {s['flagged']}/{s['speeders']} "
        f"(missed {s['missed_speeders']}, false {s['false_flags']}), MAE {s['mae_kmh']:.2f} km/h "
        f"(max {s['max_error_kmh']:.2f})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
