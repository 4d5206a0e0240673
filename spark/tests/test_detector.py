import os

import cv2
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
