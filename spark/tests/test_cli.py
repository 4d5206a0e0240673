"""The ``traffic-analyze`` contract: real clip output schema, and clear errors for bad input."""

import json
import subprocess

import pytest
from conftest import BIN, CALIBRATIONS, HIGHWAY, URBAN, read_json

pytestmark = pytest.mark.slow


def analyze(*args, timeout=600):
    return subprocess.run(
        [str(BIN / "traffic-analyze"), *map(str, args), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_real_clip_output_matches_schema(tmp_path):
    out = tmp_path / "urban.json"
    proc = analyze(
        URBAN,
        "--calibration",
        CALIBRATIONS / "urban_cctv_640x360_25fps.json",
        "--out",
        out,
        "--max-frames",
        "250",
        "--annotated",
        tmp_path / "a.mp4",
    )
    assert proc.returncode == 0, proc.stderr
    r = read_json(out)
    assert set(r) == {"video", "frames", "fps", "summary", "vehicles"}
    assert r["frames"] == 250 and r["fps"] == 25
    assert set(r["summary"]) == {
        "total_vehicles_count",
        "avg_dwell_time",
        "vehicle_type_distribution",
        "speeding_count",
    }
    assert r["summary"]["total_vehicles_count"] == len(r["vehicles"]) >= 3
    assert set(r["summary"]["vehicle_type_distribution"]) <= {"car", "motorcycle", "bus", "truck"}
    for v in r["vehicles"]:
        assert set(v) == {
            "track_id",
            "class_name",
            "first_frame",
            "last_frame",
            "first_time_s",
            "last_time_s",
            "speed_kmh",
            "max_speed_kmh",
            "dwell_time_s",
            "speeding",
            "direction",
        }
        assert v["direction"] in ("approaching", "receding", "left_to_right", "right_to_left", None)
        assert 0 <= v["first_frame"] <= v["last_frame"] < 250
    measured = [v["speed_kmh"] for v in r["vehicles"] if v["speed_kmh"] is not None]
    # urban traffic on a calibrated camera: plausible city speeds, not pixels per frame
    assert measured and all(0 <= s < 90 for s in measured)
    assert (tmp_path / "a.mp4").stat().st_size > 10_000


def test_highway_calibration_runs(tmp_path):
    out = tmp_path / "hw.json"
    proc = analyze(
        HIGHWAY,
        "--calibration",
        CALIBRATIONS / "highway_320x240_60fps.json",
        "--out",
        out,
        "--max-frames",
        "120",
    )
    assert proc.returncode == 0, proc.stderr
    assert read_json(out)["fps"] == 60


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "calib.json"
    path.write_text((CALIBRATIONS / "urban_cctv_640x360_25fps.json").read_text())
    return path


def assert_clear_error(proc, *words):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


def test_missing_model(tmp_path, calib):
    proc = analyze(
        URBAN, "--calibration", calib, "--out", tmp_path / "o.json", "--model", tmp_path / "nope.onnx"
    )
    assert_clear_error(proc, "model not found", "nope.onnx")
    assert not (tmp_path / "o.json").exists()


def test_corrupt_model(tmp_path, calib):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx model" * 10)
    proc = analyze(URBAN, "--calibration", calib, "--out", tmp_path / "o.json", "--model", bad)
    assert_clear_error(proc, "cannot load model", "broken.onnx")


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100])
def test_non_video_file(tmp_path, calib, content):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(content)
    proc = analyze(fake, "--calibration", calib, "--out", tmp_path / "o.json")
    assert_clear_error(proc, "clip.mp4")
    assert not (tmp_path / "o.json").exists()


def test_missing_video(tmp_path, calib):
    assert_clear_error(
        analyze(tmp_path / "none.mp4", "--calibration", calib, "--out", tmp_path / "o.json"),
        "video not found",
    )


@pytest.mark.parametrize(
    "text, words",
    [
        ("{not json", ["not valid JSON"]),
        (
            json.dumps({"image_points": [[0, 0], [1, 0], [1, 1]], "world_points": [[0, 0], [1, 0], [1, 1]]}),
            ["image_points"],
        ),
        (
            json.dumps(
                {"image_points": [[0, 0], [10, 0], [10, 10], [0, 10]], "world_points": [[0, 0], [1, 0]]}
            ),
            ["world_points"],
        ),
        (
            json.dumps(
                {
                    "image_points": [[0, 0], [10, 10], [20, 20], [30, 30]],
                    "world_points": [[0, 0], [1, 0], [1, 1], [0, 1]],
                }
            ),
            ["collinear"],
        ),
        (
            json.dumps(
                {
                    "image_points": [[0, 0], [0, 0], [20, 0], [30, 30]],
                    "world_points": [[0, 0], [1, 0], [1, 1], [0, 1]],
                }
            ),
            ["duplicate"],
        ),
        (
            json.dumps(
                {
                    "roi_polygon": [[0, 0], [1, 1]],
                    "image_points": [[0, 0], [10, 0], [10, 10], [0, 10]],
                    "world_points": [[0, 0], [1, 0], [1, 1], [0, 1]],
                }
            ),
            ["roi_polygon"],
        ),
        (
            json.dumps(
                {
                    "image_points": [[0, 0], [10, 0], [10, 10], [0, 10]],
                    "world_points": [[0, 0], [1, 0], [1, 1], [0, 1]],
                    "fps": -5,
                }
            ),
            ["fps"],
        ),
    ],
)
def test_bad_calibration(tmp_path, text, words):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    proc = analyze(URBAN, "--calibration", bad, "--out", tmp_path / "o.json", timeout=120)
    assert_clear_error(proc, *words)
    assert not (tmp_path / "o.json").exists()


def test_missing_calibration_file(tmp_path):
    assert_clear_error(
        analyze(URBAN, "--calibration", tmp_path / "x.json", "--out", tmp_path / "o.json"),
        "cannot read calibration",
    )
