"""Shared fixtures: the real model, real clips and generated ground-truth videos."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from contracts import assets

os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = assets.REPO_ROOT
ASSETS = assets.SHARED_ASSETS
URBAN = assets.SAMPLE_VIDEO
HIGHWAY = ASSETS / "videos" / "highway_320x240_60fps.avi"
CALIBRATIONS = REPO / "calibrations"
BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


@pytest.fixture(scope="session")
def detector():
    from traffic_processing.detector import VehicleDetector

    return VehicleDetector()


@pytest.fixture(scope="session")
def truth_clip(tmp_path_factory):
    """The standard ground-truth scenario rendered once per session: (dir, truth dict)."""
    from testing.synthetic import render, speeds_scenario

    out = tmp_path_factory.mktemp("truth")
    truth = render(speeds_scenario(), out, "speeds")
    return out, truth


@pytest.fixture(scope="session")
def highway_clip(tmp_path_factory):
    """The 720p highway scenario (12 vehicles, 40-130 km/h) rendered once per session: (dir, truth)."""
    from testing.synthetic import highway_scenario, render

    out = tmp_path_factory.mktemp("highway")
    truth = render(highway_scenario(), out, "highway")
    return out, truth


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def analyze(video: Path | str, calibration: Path, results: Path, *extra: str) -> dict:
    """Run the offline CLI ``traffic-analyze`` (every frame) and return its RESULTS.json."""
    proc = subprocess.run(
        [
            str(BIN / "traffic-analyze"),
            str(video),
            "--calibration",
            str(calibration),
            "--out",
            str(results),
            "--no-progress",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return read_json(results)


def match(results, truth):
    """One-to-one pairing of truth vehicles and detected vehicles, greedily by the temporal IoU of
    their in-ROI frame intervals; a truth vehicle with no overlapping track pairs with None."""
    candidates = []
    for t in truth["vehicles"]:
        for v in results["vehicles"]:
            a0, a1 = t["first_frame_in_roi"], t["last_frame_in_roi"]
            b0, b1 = v["first_frame"], v["last_frame"]
            inter = min(a1, b1) - max(a0, b0) + 1
            if inter > 0:
                candidates.append((inter / (max(a1, b1) - min(a0, b0) + 1), t["id"], v["track_id"], v))
    pairs, used = {t["id"]: None for t in truth["vehicles"]}, set()
    for _, tid, track, v in sorted(candidates, key=lambda c: -c[0]):
        if pairs[tid] is None and track not in used:
            pairs[tid] = v
            used.add(track)
    return pairs
