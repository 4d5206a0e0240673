"""Vehicle detector: ultralytics YOLOv8 from a local model file, batch in, detections out.

Formats: OpenVINO directory, ``.tflite``, ``.pt``, ``.onnx`` on CPU; TensorRT ``.engine`` on a
GPU (export one with ``traffic-export-engine``). Weights are only ever loaded from a path;
``yolov8n.pt`` by name is the last resort and downloads only where internet exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detections import VEHICLE_CLASSES, FrameDetections

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_MODEL = REPO_ROOT.parent / "shared" / "assets" / "models" / "yolov8n_int8_openvino_model"
FALLBACK_MODEL = "yolov8n.pt"
MODEL_SUFFIXES = {".pt", ".onnx", ".tflite", ".engine"}


class ModelLoadError(RuntimeError):
    """The detector model is missing, unreadable or of an unknown format."""


def resolve_model_path(explicit: str | os.PathLike | None = None) -> str:
    """Model to load: the explicit path, else ``MODEL_PATH``, else the shared OpenVINO model,
    else ``yolov8n.pt`` (downloaded by ultralytics where internet exists)."""
    for candidate in (explicit, os.environ.get("MODEL_PATH")):
        if candidate:
            return str(candidate)
    if SHARED_MODEL.exists():
        return str(SHARED_MODEL)
    return FALLBACK_MODEL


def _check_model_path(path: str) -> None:
    if path == FALLBACK_MODEL:
        return
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model not found: {path} (set MODEL_PATH or --model to a YOLOv8 model)")
    if p.is_dir():
        if not any(p.glob("*.xml")):
            raise ModelLoadError(f"model directory {path} holds no OpenVINO .xml file")
    elif p.suffix not in MODEL_SUFFIXES:
        raise ModelLoadError(
            f"unsupported model format {p.suffix!r} for {path}: use an OpenVINO dir, "
            f"{', '.join(sorted(MODEL_SUFFIXES))}"
        )
    elif p.stat().st_size == 0:
        raise ModelLoadError(f"model file is empty: {path}")


@dataclass
class DetectorConfig:
    confidence: float = 0.3
    iou: float = 0.5
    imgsz: int = 640
    device: str = "cpu"  # "cpu" or "cuda"
    classes: tuple[int, ...] = tuple(VEHICLE_CLASSES)


class VehicleDetector:
    """YOLOv8 vehicle detector. ``detect(frames)`` takes a list of BGR (H, W, 3) uint8 frames
    and returns one ``FrameDetections`` per frame (boxes in pixels of that frame)."""

    def __init__(self, model_path: str | None = None, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self.model_path = resolve_model_path(model_path)
        _check_model_path(self.model_path)
        if self.model_path.endswith(".engine") and self.config.device != "cuda":
            raise ModelLoadError(f"{self.model_path} is a TensorRT engine: it needs --device cuda")
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO

        try:
            self.model = YOLO(self.model_path, task="detect")
            # Load the weights now (ultralytics is lazy), so a corrupt file fails here.
            self.model.predict(
                np.zeros((64, 64, 3), dtype=np.uint8),
                verbose=False,
                device=self._device(),
                imgsz=self.config.imgsz,
            )
        except Exception as exc:  # ultralytics raises many types for bad files
            raise ModelLoadError(f"cannot load model {self.model_path}: {exc}") from exc

    def _device(self) -> str:
        return "0" if self.config.device == "cuda" else "cpu"

    def detect(self, frames: list[np.ndarray]) -> list[FrameDetections]:
        if not frames:
            return []
        results = self.model.predict(
            frames,
            conf=self.config.confidence,
            iou=self.config.iou,
            imgsz=self.config.imgsz,
            classes=list(self.config.classes),
            agnostic_nms=True,
            device=self._device(),
            verbose=False,
        )
        return [from_ultralytics(r) for r in results]


def from_ultralytics(result: object) -> FrameDetections:
    """Convert one ultralytics ``Results`` to ``FrameDetections`` (the only place that knows
    the ultralytics layout)."""
    boxes = result.boxes  # type: ignore[attr-defined]
    if boxes is None or len(boxes) == 0:
        return FrameDetections.empty()
    return FrameDetections(
        xyxy=boxes.xyxy.cpu().numpy(),
        confidence=boxes.conf.cpu().numpy(),
        class_id=boxes.cls.cpu().numpy().astype(np.int32),
    )


def export_engine_main(argv: list[str] | None = None) -> int:
    """``traffic-export-engine MODEL.pt [--half] [--imgsz 640]``: TensorRT export, on a GPU."""
    import argparse

    parser = argparse.ArgumentParser(prog="traffic-export-engine", description=export_engine_main.__doc__)
    parser.add_argument("model", help="YOLOv8 .pt weights")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--half", action="store_true", help="FP16 engine")
    args = parser.parse_args(argv)
    import torch
    from ultralytics import YOLO

    if not torch.cuda.is_available():
        parser.error("TensorRT export needs a CUDA GPU")
    out = YOLO(args.model).export(
        format="engine", imgsz=args.imgsz, half=args.half, batch=args.batch, device=0
    )
    print(out)
    return 0
