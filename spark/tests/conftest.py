"""Shared fixtures: the real model, real clips and generated ground-truth videos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO.parent / "shared" / "assets"
URBAN = ASSETS / "videos" / "urban_cctv_640x360_25fps.mp4"
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
    from traffic_processing.synthetic import render, speeds_scenario

    out = tmp_path_factory.mktemp("truth")
    truth = render(speeds_scenario(), out, "speeds")
    return out, truth


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
