"""The GPU path, checked on the CPU: one device for every model, a clear error where CUDA is
asked for and absent, the batched path equal to the per-frame path on generated truth, the float
``.pt`` weights, and the GPU benchmark and engine export ready to run."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import ASSETS, BIN, CALIBRATIONS, REPO, URBAN, read_json
from traffic_processing import device as device_mod
from traffic_processing.calibration import fit_homography
from traffic_processing.detections import FrameDetections
from traffic_processing.detector import DetectorConfig, ModelLoadError, VehicleDetector, export_engine_main
from traffic_processing.device import DeviceError, resolve_device
from traffic_processing.processor import FrameProcessor
from traffic_processing.tracker import embedder_device, get_embedder

from contracts.messages import FrameConfig, ProcessedFrame

PT_MODEL = ASSETS / "models" / "yolov8n_rebuilt_from_int8.pt"


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, whatever it has."""
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)


def urban_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(URBAN))
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    return frames


# -- device selection --------------------------------------------------------------------------
def test_cpu_config_puts_every_model_on_the_cpu(detector):
    settings = FrameConfig(fps=25.0)
    proc = FrameProcessor(settings, detector=detector)
    result = proc.process(urban_frames(1)[0], 0)
    assert detector.device == "cpu"
    assert proc.config.tracker.device == "cpu"
    assert embedder_device(get_embedder(device="cpu")) == "cpu"
    assert result.frame_number == 0


def test_pt_weights_load_on_the_cpu_device():
    det = VehicleDetector(str(PT_MODEL), DetectorConfig(device="cpu"))
    weights = next(det.model.model.parameters())
    assert weights.device.type == "cpu"
    assert det.half is False  # fp16 is never silently asked of the CPU


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda_is_a_clear_error(no_cuda, name):
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device(name)
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        VehicleDetector(None, DetectorConfig(device=name))
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        get_embedder(device=name.lower())


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_name_is_refused(name):
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device(name)


def test_cli_cuda_without_cuda_exits_with_the_reason(no_cuda, tmp_path, capsys):
    from traffic_processing.cli import main

    rc = main(
        [
            str(URBAN),
            "--calibration",
            str(CALIBRATIONS / "urban_cctv_640x360_25fps.json"),
            "--out",
            str(tmp_path / "r.json"),
            "--device",
            "cuda",
            "--no-progress",
        ]
    )
    assert rc == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_spark_app_refuses_to_start_on_a_missing_gpu(no_cuda, monkeypatch, tmp_path, caplog):
    """Before any frame: the application exits 2 and names the problem (it never reaches Redis)."""
    from spark.streaming import app

    monkeypatch.setenv("DETECTOR_DEVICE", "cuda")
    monkeypatch.setenv("SPARK_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    monkeypatch.setenv("REDIS_PORT", "1")  # nothing listens there: reaching Redis would raise
    assert app.main() == 2
    assert "no CUDA GPU" in caplog.text


def test_export_engine_without_cuda_is_a_clear_error(no_cuda, capsys):
    assert export_engine_main([str(PT_MODEL)]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_export_engine_refuses_non_pt_weights(capsys):
    assert export_engine_main([str(ASSETS / "models" / "yolov8n_int8_openvino_model")]) == 2
    assert ".pt" in capsys.readouterr().err


def test_bench_gpu_without_cuda_says_so_and_exits_0(no_cuda, capsys):
    from benchmarks.gpu import main

    assert main([]) == 0
    assert "no CUDA device here" in capsys.readouterr().out


# -- batched path == per-frame path ---------------------------------------------------------------
def test_detections_round_trip_as_bytes():
    d = FrameDetections(
        xyxy=[[1, 2, 30, 40], [5, 6, 70, 80]],
        confidence=[0.9, 0.4],
        class_id=[2, 7],
        embeddings=np.random.default_rng(0).random((2, 1280)),
    )
    back = FrameDetections.from_bytes(d.to_bytes())
    for name in ("xyxy", "confidence", "class_id", "tracker_id", "in_roi", "embeddings"):
        np.testing.assert_array_equal(getattr(back, name), getattr(d, name))
    assert len(FrameDetections.from_bytes(FrameDetections.empty().to_bytes())) == 0


@pytest.fixture(scope="module")
def truth_settings(truth_clip):
    out, truth = truth_clip
    calib = read_json(out / "speeds_calib.json")
    homography = fit_homography(calib["image_points"], calib["world_points"]).matrix
    settings = FrameConfig(
        roi_polygon=calib["roi_polygon"], homography_matrix=homography.tolist(), fps=truth["fps"]
    )
    cap = cv2.VideoCapture(truth["video"])
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return settings, frames


def _vehicles(results):
    return [[(v.track_id, v.class_name, v.speed) for v in r.vehicles] for r in results]


def assert_same_results(a, b, summary_a, summary_b):
    assert [r.frame_number for r in a] == [r.frame_number for r in b]
    for ra, rb in zip(a, b):
        assert [v.track_id for v in ra.vehicles] == [v.track_id for v in rb.vehicles], ra.frame_number
        for va, vb in zip(ra.vehicles, rb.vehicles):
            assert va.class_name == vb.class_name
            assert (va.speed is None) == (vb.speed is None)
            if va.speed is not None:
                assert abs(va.speed - vb.speed) <= 0.1, (ra.frame_number, va, vb)
    assert summary_a.total_vehicles_count == summary_b.total_vehicles_count
    assert summary_a.vehicle_type_distribution == summary_b.vehicle_type_distribution
    assert summary_a.speeding_count == summary_b.speeding_count
    speeds_a = sorted(p.speed_kmh or 0.0 for p in summary_a.vehicles)
    speeds_b = sorted(p.speed_kmh or 0.0 for p in summary_b.vehicles)
    assert np.allclose(speeds_a, speeds_b, atol=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [8])
def test_process_batch_equals_per_frame_on_generated_truth(detector, truth_settings, batch):
    settings, frames = truth_settings
    one = FrameProcessor(settings, detector=detector, annotate=False)
    per_frame = [one.process(f, n) for n, f in enumerate(frames)]
    many = FrameProcessor(settings, detector=detector, annotate=False)
    batched = []
    for i in range(0, len(frames), batch):
        batched += many.process_batch(frames[i : i + batch], i)
    summary_one, summary_many = one.finalize(), many.finalize()
    assert summary_one.total_vehicles_count >= 3  # the clip's vehicles were seen at all
    assert_same_results(per_frame, batched, summary_one, summary_many)


@pytest.mark.slow
def test_spark_batched_stage_equals_the_single_pass(detector, truth_settings, monkeypatch):
    """The Spark functions without Spark: the batched detection stage then the per-video stage
    give the messages the single pass gives (same tracks, speeds, violations, summary)."""
    from spark.streaming import stages
    from spark.streaming.detect_stage import detect_rows
    from spark.streaming.settings import SparkSettings

    monkeypatch.setattr(stages, "_DETECTOR", detector)
    settings, frames = truth_settings
    config = settings.model_copy(update={"realtime": False})
    rows = [
        {
            "video_id": 5,
            "frame_number": n,
            "stream_id": f"{1000 + n}-0",
            "frame_data": cv2.imencode(".jpg", frame)[1].tobytes(),
            "timestamp": n / settings.fps,
            "produced_at": 0.0,
            "config": config.model_dump_json(),
            "end_of_stream": n == len(frames) - 1,
            "run_id": "r1",
        }
        for n, frame in enumerate(frames)
    ]
    pdf = pd.DataFrame(rows)
    single, _ = stages.process_video_rows(5, pdf, None)
    batched_pdf = pdf.assign(detections=detect_rows(pdf, SparkSettings()))
    assert batched_pdf["detections"].notna().all()
    batched, _ = stages.process_video_rows(5, batched_pdf, None)
    assert [r["status"] for r in single] == [r["status"] for r in batched]
    a = [ProcessedFrame.model_validate_json(r["message"]) for r in single]
    b = [ProcessedFrame.model_validate_json(r["message"]) for r in batched]
    assert a[-1].summary is not None and b[-1].summary is not None
    assert_same_results(a, b, a[-1].summary, b[-1].summary)
    flagged = [[v.track_id for r in run for v in r.new_violations] for run in (a, b)]
    assert flagged[0] == flagged[1]


# -- the float .pt weights --------------------------------------------------------------------
@pytest.mark.slow
def test_pt_weights_find_the_vehicles_the_int8_model_finds(detector):
    frames = urban_frames(12)[::3]
    pt = VehicleDetector(str(PT_MODEL), DetectorConfig(device="cpu", batch=4))
    ref = detector.detect(frames)
    got = pt.detect(frames)  # one batched call of 4 frames
    matched = total = 0
    for r, g in zip(ref, got):
        total += len(r)
        for box in r.xyxy:
            if len(g) and _best_iou(box, g.xyxy) >= 0.5:
                matched += 1
    assert total >= 8
    assert matched / total >= 0.9, (matched, total)


def _best_iou(box: np.ndarray, boxes: np.ndarray) -> float:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return float((inter / (area + areas - inter)).max())


@pytest.mark.slow
def test_cli_pt_weights_batched_on_the_cpu(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            str(BIN / "traffic-analyze"),
            str(URBAN),
            "--calibration",
            str(CALIBRATIONS / "urban_cctv_640x360_25fps.json"),
            "--out",
            str(out),
            "--model",
            str(PT_MODEL),
            "--batch",
            "4",
            "--max-frames",
            "60",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pkg_resources" not in proc.stderr  # deep-sort-realtime's warning is silenced
    results = read_json(out)
    assert results["frames"] == 60
    assert results["summary"]["total_vehicles_count"] >= 1


@pytest.mark.slow
def test_bench_gpu_runs_its_sections_on_the_cpu():
    """``make bench-gpu``'s code path end to end (tiny sizes, on the CPU)."""
    proc = subprocess.run(
        [
            str(BIN / "python"),
            "-m",
            "benchmarks.gpu",
            "--device",
            "cpu",
            "--frames",
            "6",
            "--batches",
            "1,2",
            "--batch",
            "2",
            "--streams",
            "1,2",
            "--seconds",
            "0.5",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "1. bare network" in out and "2. whole processor" in out and "3. N streams" in out
    assert "real-time streams per GPU:" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("1 ") and "real" not in line)
    assert float(row.split()[1]) > 0  # aggregate frames/s of one stream was measured
