"""Synthetic traffic videos with exact ground truth.

A pinhole camera over a flat road gives an exact road-plane homography. Real vehicle images
(ultralytics' bundled ``bus.jpg`` and crops of the real clips in ../shared/assets/videos) are
pasted as upright billboards whose bottom-centre sits on the vehicle's road position, scaled
with distance, moving along lanes at known constant speeds. Writes the video, the matching
CALIB.json and a truth file.

``traffic-synth OUT_DIR [--preset speeds|highway]`` renders the standard scenario (``speeds``)
or the 720p highway one.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .calibration import project_points
from .detector import REPO_ROOT

SHARED_VIDEOS = REPO_ROOT.parent / "shared" / "assets" / "videos"
URBAN_CLIP = SHARED_VIDEOS / "urban_cctv_640x360_25fps.mp4"

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

    @property
    def world_to_image(self) -> np.ndarray:
        """(3, 3) homography road (X, Y) metres -> image (u, v) pixels."""
        s, c = np.sin(np.radians(self.tilt_deg)), np.cos(np.radians(self.tilt_deg))
        k = np.array([[self.focal_px, 0, self.width / 2], [0, self.focal_px, self.height / 2], [0, 0, 1]])
        rt = np.array([[1, 0, 0], [0, -s, self.height_m * c], [0, c, self.height_m * s]])
        return k @ rt

    @property
    def image_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_image)

    def scale_px_per_m(self, x: float, y: float) -> float:
        """Pixels per metre across the road at road point (x, y)."""
        pts = project_points(self.world_to_image, np.array([[x - 0.5, y], [x + 0.5, y]]))
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


PRESETS = {"speeds": speeds_scenario, "highway": highway_scenario}


def _road_texture(
    scn: Scenario, rng: np.random.Generator, px_per_m: float = 16.0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-down road raster and its (3, 3) raster-pixel -> road-metre transform."""
    x0, x1, y0, y1 = -16.0, 16.0, -2.0, 160.0
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
    return sorted(out, key=lambda b: -b[1])


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
        for y, _, v in sorted(placed, key=lambda p: -p[0]):  # far to near
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
    parser = argparse.ArgumentParser(prog="traffic-synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="speeds",
        help="speeds: 640x360, 8 vehicles at 30-120 km/h; highway: 1280x720, 12 at 40-130 km/h",
    )
    parser.add_argument("--name", help="file name stem (default: synthetic, or the preset's name)")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    name = args.name or ("synthetic" if args.preset == "speeds" else args.preset)
    truth = render(PRESETS[args.preset](args.fps), args.out_dir, name)
    print(f"{truth['frames']} frames, {len(truth['vehicles'])} vehicles -> {truth['video']}")
    return 0
