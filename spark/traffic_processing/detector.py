"""Vehicle detector: ultralytics YOLOv8 from a local model file, batch in, detections out.

Formats: OpenVINO directory, ``.tflite``, ``.pt``, ``.onnx`` on CPU; TensorRT ``.engine`` on a
GPU (export one with ``traffic-export-engine``). Weights are only ever loaded from a path;
``yolov8n.pt`` by name is the last resort and downloads only where internet exists.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detections import VEHICLE_CLASSES, FrameDetections
from .device import DeviceError, resolve_device, ultralytics_device

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_MODEL = REPO_ROOT.parent / "shared" / "assets" / "models" / "yolov8n_int8_openvino_model"
FALLBACK_MODEL = "yolov8n.pt"
MODEL_SUFFIXES = {".pt", ".onnx", ".tflite", ".engine"}


class ModelLoadError(RuntimeError):
    """The detector model is missing, unreadable or of an unknown format, or the device asked
    for is not there."""


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
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N": the embedder runs there too
    classes: tuple[int, ...] = tuple(VEHICLE_CLASSES)
    half: bool = False  # fp16 inference (CUDA only; a TensorRT engine has its own precision)
    batch: int = 32  # frames per network call when a list of frames is detected at once


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


class VehicleDetector:
    """YOLOv8 vehicle detector. ``detect(frames)`` takes a list of BGR (H, W, 3) uint8 frames
    and returns one ``FrameDetections`` per frame (boxes in pixels of that frame)."""

    def __init__(self, model_path: str | None = None, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self.model_path = resolve_model_path(model_path)
        _check_model_path(self.model_path)
        try:
            self.device = resolve_device(self.config.device)
        except DeviceError as exc:
            raise ModelLoadError(str(exc)) from exc
        if self.model_path.endswith(".engine"):
            if self.device == "cpu":
                raise ModelLoadError(f"{self.model_path} is a TensorRT engine: it needs --device cuda")
            if not tensorrt_available():
                raise ModelLoadError(
                    f"{self.model_path} is a TensorRT engine but the tensorrt package is not installed "
                    "(pip install tensorrt, or use the .pt/.onnx model with --device cuda)"
                )
        # fp16 is a GPU feature; on the CPU ultralytics would silently run fp32 anyway.
        self.half = bool(self.config.half and self.device != "cpu")
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
                **self._precision(),
            )
        except Exception as exc:  # ultralytics raises many types for bad files
            raise ModelLoadError(f"cannot load model {self.model_path}: {exc}") from exc

    def _precision(self) -> dict:
        """ultralytics' precision argument (``quantize=16`` replaced ``half=True`` in 8.4): fp16
        on the GPU when asked for, else the weights' own precision."""
        return {"quantize": 16} if self.half else {}

    def _device(self) -> str:
        return ultralytics_device(self.device)

    def detect(self, frames: list[np.ndarray]) -> list[FrameDetections]:
        """Detections of each frame; a list longer than ``config.batch`` goes through the
        network in chunks of that many frames (one ultralytics call each: letterbox, one
        forward pass over the stacked batch, NMS, one host copy of the boxes per frame)."""
        out: list[FrameDetections] = []
        step = max(1, int(self.config.batch))
        for i in range(0, len(frames), step):
            results = self.model.predict(
                frames[i : i + step],
                conf=self.config.confidence,
                iou=self.config.iou,
                imgsz=self.config.imgsz,
                classes=list(self.config.classes),
                agnostic_nms=True,
                device=self._device(),
                **self._precision(),
                verbose=False,
            )
            out.extend(from_ultralytics_batch(results))
        return out


def from_ultralytics_batch(results: list) -> list[FrameDetections]:
    """``FrameDetections`` of each ultralytics ``Results`` of one call, with one copy to the host
    for the whole batch (``boxes.data`` rows are x1, y1, x2, y2, conf, cls)."""
    import torch

    if not results or any(r.boxes is None for r in results):
        return [from_ultralytics(r) for r in results]
    datas = [r.boxes.data for r in results]
    rows = torch.cat(datas).cpu().numpy() if len(datas) > 1 else datas[0].cpu().numpy()
    out, start = [], 0
    for d in datas:
        part = rows[start : start + len(d)]
        start += len(d)
        if len(part) == 0:
            out.append(FrameDetections.empty())
            continue
        out.append(
            FrameDetections(
                xyxy=np.ascontiguousarray(part[:, :4], dtype=np.float32),
                confidence=np.ascontiguousarray(part[:, 4], dtype=np.float32),
                class_id=part[:, 5].astype(np.int32),
            )
        )
    return out


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
    """``traffic-export-engine MODEL.pt [--batch 32] [--dynamic] [--fp32] [--imgsz 640]``:
    a TensorRT ``.engine`` next to the weights, fp16 by default, for ``--device cuda``."""
    import argparse

    parser = argparse.ArgumentParser(prog="traffic-export-engine", description=export_engine_main.__doc__)
    parser.add_argument("model", help="YOLOv8 .pt weights (e.g. the shared yolov8n_rebuilt_from_int8.pt)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument(
        "--batch", type=int, default=32, help="largest batch (match DETECT_BATCH of the Spark job)"
    )
    parser.add_argument("--dynamic", action="store_true", help="dynamic batch 1..--batch (else fixed)")
    parser.add_argument("--fp32", action="store_true", help="fp32 engine (default fp16)")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N")
    args = parser.parse_args(argv)
    try:
        _check_model_path(args.model)
        if not args.model.endswith(".pt"):
            raise ModelLoadError(f"{args.model}: TensorRT export starts from .pt weights")
        device = resolve_device(args.device)
        if device == "cpu":
            raise DeviceError("a TensorRT engine is built on the GPU it runs on: use --device cuda")
        if not tensorrt_available():
            raise ModelLoadError(
                "the tensorrt package is not installed: use an image with TensorRT "
                "(e.g. nvcr.io/nvidia/pytorch:25.xx-py3 ships it) or pip install tensorrt"
            )
    except (ModelLoadError, DeviceError) as exc:
        print(f"traffic-export-engine: error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    out = YOLO(args.model).export(
        format="engine",
        imgsz=args.imgsz,
        quantize=None if args.fp32 else 16,
        batch=args.batch,
        dynamic=args.dynamic,
        device=ultralytics_device(device),
    )
    print(out)
    return 0
