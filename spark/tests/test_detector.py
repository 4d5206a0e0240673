import os

import cv2
import numpy as np
import pytest
from traffic_processing.detector import ModelLoadError, VehicleDetector, resolve_model_path

pytestmark = pytest.mark.slow


def test_bus_image_detected_as_bus(detector):
    import ultralytics

    bus = cv2.imread(os.path.join(os.path.dirname(ultralytics.__file__), "assets", "bus.jpg"))
    dets = detector.detect([bus, bus[:, ::-1].copy()])
    assert len(dets) == 2
    for d in dets:
        assert "bus" in d.class_name
        assert "person" not in d.class_name and set(d.class_id.tolist()) <= {2, 3, 5, 7}
        assert d.confidence.max() > 0.7


def test_model_path_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_PATH", "/env/model.onnx")
    assert resolve_model_path("/explicit.pt") == "/explicit.pt"
    assert resolve_model_path() == "/env/model.onnx"
    monkeypatch.delenv("MODEL_PATH")
    assert "yolov8n_int8_openvino_model" in resolve_model_path()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.pt", None, "model not found"),
        ("empty.pt", b"", "empty"),
        ("model.xyz", b"abc", "unsupported model format"),
        ("garbage.pt", b"\x00garbage" * 100, "cannot load model"),
    ],
)
def test_bad_models_fail_naming_the_path(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as err:
        VehicleDetector(str(path))
    assert name in str(err.value)


def test_engine_needs_cuda(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="cuda"):
        VehicleDetector(str(engine))


def test_openvino_dir_without_xml(tmp_path):
    with pytest.raises(ModelLoadError, match="no OpenVINO"):
        VehicleDetector(str(tmp_path))


# -- OpenVINO run directly: input at the frame's aspect ratio -------------------------------------
def _urban_frames(step: int = 40, n: int = 1190) -> list:
    from conftest import URBAN

    cap = cv2.VideoCapture(str(URBAN))
    frames = []
    for i in range(n):
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def ultralytics_detector():
    from traffic_processing.detector import DetectorConfig

    return VehicleDetector(None, DetectorConfig(backend="ultralytics"))


@pytest.fixture(scope="module")
def rect_detector():
    from traffic_processing.detector import DetectorConfig

    return VehicleDetector(None, DetectorConfig(rect=True))


def test_shipped_ir_runs_directly_at_the_frames_aspect_ratio(detector, rect_detector):
    assert detector.backend == "openvino" and detector.openvino is not None
    assert detector.openvino.letterbox_shape(360, 640)[3:] == (640, 640)  # the exported input
    # the IR is exported 1x3x640x640; with rect a 16:9 frame goes through at 640x384, 4:3 at 640x480
    assert rect_detector.openvino.letterbox_shape(360, 640)[3:] == (384, 640)
    assert rect_detector.openvino.letterbox_shape(240, 320)[3:] == (480, 640)
    assert rect_detector.openvino.letterbox_shape(1080, 1920)[3:] == (384, 640)


def test_direct_decode_equals_ultralytics_at_the_same_input(detector, ultralytics_detector):
    """At ultralytics' own 640x640 letterbox the direct run finds the same boxes: the cut head,
    the decode and the NMS are ultralytics' rules."""
    from benchmarks.processor import box_recall

    frames = _urban_frames(step=100)
    assert detector.openvino.letterbox_shape(360, 640)[3:] == (640, 640)
    got = detector.detect(frames)
    ref = ultralytics_detector.detect(frames)
    matched, total = box_recall(ref, got, iou=0.9)
    back, total_got = box_recall(got, ref, iou=0.9)
    assert total >= 30 and matched == total and back == total_got == total
    for r, g in zip(ref, got):
        assert sorted(r.class_id.tolist()) == sorted(g.class_id.tolist())
        assert np.allclose(np.sort(r.confidence), np.sort(g.confidence), atol=0.03)


def test_aspect_ratio_input_keeps_the_shipped_models_vehicles(rect_detector, ultralytics_detector):
    from benchmarks.processor import box_recall

    frames = _urban_frames(step=20)
    matched, total = box_recall(ultralytics_detector.detect(frames), rect_detector.detect(frames))
    assert total >= 200
    assert matched / total >= 0.95, (matched, total)


@pytest.mark.parametrize("which", ["detector", "rect_detector"])
def test_several_frames_in_one_call_equal_one_by_one(request, which):
    detector = request.getfixturevalue(which)
    frames = _urban_frames(step=50)[:8]
    small = cv2.resize(frames[0], (320, 180))
    batch = detector.detect([*frames, small])
    single = [detector.detect([f])[0] for f in [*frames, small]]
    assert len(batch) == 9
    for b, s in zip(batch, single):
        assert np.allclose(b.xyxy, s.xyxy, atol=1e-3) and np.array_equal(b.class_id, s.class_id)
    assert detector.detect([]) == []


def test_unknown_backend_and_broken_ir_are_model_load_errors(tmp_path):
    from traffic_processing.detector import DetectorConfig

    with pytest.raises(ModelLoadError, match="backend"):
        VehicleDetector(None, DetectorConfig(backend="tensorflow"))
    broken = tmp_path / "broken_openvino_model"
    broken.mkdir()
    (broken / "model.xml").write_text("<net><layers>")
    with pytest.raises(ModelLoadError, match="broken_openvino_model"):
        VehicleDetector(str(broken))


def test_openvino_embedder_gives_the_torch_embeddings(detector):
    import copy

    from traffic_processing.tracker import embed_many

    frames = _urban_frames(step=200)
    dets = detector.detect(frames)
    assert sum(len(d) for d in dets) >= 5
    ov = embed_many(frames, copy.deepcopy(dets), backend="auto")
    torch = embed_many(frames, copy.deepcopy(dets), backend="torch")
    for a, b in zip(ov, torch):
        assert a.embeddings.shape == b.embeddings.shape == (len(a), 1280)
        assert np.allclose(a.embeddings, b.embeddings, atol=1e-3)
    with pytest.raises(ValueError, match="embed backend"):
        embed_many(frames, dets, backend="onnx")
