"""Vehicle detector: ultralytics YOLOv8 from a local model file, batch in, detections out.

Formats: OpenVINO directory, ``.tflite``, ``.pt``, ``.onnx`` on CPU; TensorRT ``.engine`` on a
GPU (export one with ``traffic-export-engine``). Weights are only ever loaded from a path;
``yolov8n.pt`` by name is the last resort and downloads only where internet exists.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.assets import SHARED_MODEL

from .detections import VEHICLE_CLASSES, FrameDetections
from .device import DeviceError, resolve_device, ultralytics_device

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


# Off by default: at 640x384 the boxes move a little (99 % of them matched at IoU >= 0.5) and
# that is enough for today's tracker to swap or split ids on the generated truth
# (spark/tests/test_tracker_strides.py): turn it on once the tracker holds there.
RECT_DEFAULT = False


@dataclass
class DetectorConfig:
    confidence: float = 0.3
    iou: float = 0.5
    imgsz: int = 640
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N": the embedder runs there too
    classes: tuple[int, ...] = tuple(VEHICLE_CLASSES)
    half: bool = False  # fp16 inference (CUDA only; a TensorRT engine has its own precision)
    batch: int = 32  # frames per network call when a list of frames is detected at once
    # "auto": an OpenVINO model on the CPU is run by OpenVINO directly (``OpenVINODetector``:
    # input at the frame's aspect ratio, e.g. 640x384 for 16:9, letterbox and decode of our
    # own); anything else through ultralytics. "ultralytics": always ultralytics (the shipped
    # fixed-shape IR then sees a 640x640 letterbox), e.g. the ``python -m benchmarks.processor --baseline``.
    backend: str = "auto"
    threads: int = 0  # OpenVINO inference threads for one frame (0: every core)
    # OpenVINO run directly: input at the frame's aspect ratio (640x384 for 16:9: ~30 % less
    # detector time), else the imgsz x imgsz letterbox the IR was exported with.
    rect: bool = RECT_DEFAULT


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
        if self.config.backend not in BACKENDS:
            raise ModelLoadError(
                f"unknown detector backend {self.config.backend!r}: use {', '.join(BACKENDS)}"
            )
        # OpenVINO directly: an OpenVINO model on the CPU, unless ultralytics is asked for.
        self.openvino: OpenVINODetector | None = None
        self.backend = "ultralytics"
        self.model: Any = None  # the ultralytics YOLO (None when OpenVINO runs the model directly)
        if self.config.backend == "auto" and self.device == "cpu" and _openvino_xml(self.model_path):
            self.openvino = OpenVINODetector.load(self.model_path, self.config)
            if self.openvino is not None:
                self.backend = "openvino"
                return
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
        if self.openvino is not None:
            return self.openvino.detect(frames)
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


BACKENDS = ("auto", "ultralytics")
REG_MAX = 16  # YOLOv8's distribution focal loss bins per box side


def _openvino_xml(path: str) -> Path | None:
    """The .xml of an OpenVINO model path (a directory holding one, or the .xml itself)."""
    p = Path(path)
    if p.is_dir():
        return next(iter(sorted(p.glob("*.xml"))), None)
    return p if p.suffix == ".xml" and p.is_file() else None


class OpenVINODetector:
    """A YOLOv8 OpenVINO IR run by OpenVINO directly, at the frame's aspect ratio.

    ultralytics exports the IR with its input shape and anchor grid fixed (1x3x640x640 for the
    shipped model): reshaping it fails in the head's decode. The network up to the head's
    per-level outputs (``(1, 4 * 16 + classes, H/s, W/s)`` for strides 8, 16, 32) is fully
    convolutional, so the graph is cut there and reshaped to each letterbox shape met (a 16:9
    frame: 640x384, 40 % fewer pixels than 640x640, same int8 weights); the decode (DFL,
    anchors, sigmoid) of the few candidate boxes above the confidence threshold and the NMS run
    here, with ultralytics' rules (best class over all classes, then the class filter; agnostic
    NMS). The letterbox (resize, pad 114 to a multiple of 32, centred) is ultralytics' too; the
    BGR->RGB swap and the 1/255 scaling are compiled into the graph (uint8 NHWC input).

    ``detect`` of one frame runs one inference on every core (``threads``: 0, the LATENCY hint);
    of several frames of one shape, ``min(N, cores)`` inference requests in flight at once on
    a THROUGHPUT-compiled copy (one stream per core), each frame on one core.
    """

    def __init__(self, model: Any, heads: list[Any], config: DetectorConfig, path: str) -> None:
        import openvino as ov

        self._ov = ov
        self.core = ov.Core()
        self.config = config
        self.path = path
        self.num_classes = int(heads[0].get_partial_shape()[1].get_length()) - 4 * REG_MAX
        self._net = ov.Model(heads, [model.get_parameters()[0]], "yolov8_heads")
        self._compiled: dict[tuple[str, int, int], tuple[Any, list[Any]]] = {}
        self._grids: dict[tuple[tuple[int, int], ...], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        cls = np.zeros(max(self.num_classes, 1), dtype=bool)
        cls[[c for c in config.classes if 0 <= c < self.num_classes]] = True
        self._keep_class = cls
        conf = min(max(float(config.confidence), 1e-6), 1 - 1e-6)
        self._logit_threshold = float(np.log(conf / (1 - conf)))

    @classmethod
    def load(cls, path: str, config: DetectorConfig) -> OpenVINODetector | None:
        """The direct runner of the OpenVINO model at ``path``; None when its graph has no
        YOLOv8 detect head to cut (ultralytics then runs it as it is). Unreadable: ModelLoadError."""
        xml = _openvino_xml(path)
        if xml is None:
            return None
        try:
            import openvino as ov

            model = ov.Core().read_model(str(xml))
            heads = _detect_heads(model)
            if heads is None:
                return None
            runner = cls(model, heads, config, path)
            imgsz = int(config.imgsz)
            runner._request("latency", imgsz, imgsz)  # compile now: a broken graph fails here
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and others
            raise ModelLoadError(f"cannot load model {path}: {exc}") from exc
        return runner

    # -- shapes and compiled models -------------------------------------------------------
    def letterbox_shape(self, h: int, w: int) -> tuple[float, int, int, int, int]:
        """(scale, new_w, new_h, input_h, input_w) of ultralytics' letterbox: longest side to
        ``imgsz``; with ``rect`` the other padded up to a multiple of 32 only, else to ``imgsz``."""
        size = int(self.config.imgsz)
        r = min(size / h, size / w)
        nw, nh = max(1, int(round(w * r))), max(1, int(round(h * r)))
        if not self.config.rect:
            return r, nw, nh, _ceil32(size), _ceil32(size)
        ih, iw = _ceil32(nh), _ceil32(nw)
        return r, nw, nh, ih, iw

    def _request(self, mode: str, ih: int, iw: int) -> tuple[Any, list[Any]]:
        """The compiled model of input (ih, iw) in ``mode`` ("latency": one request on every
        core; "throughput": one stream per core) and its infer requests."""
        key = (mode, ih, iw)
        if key not in self._compiled:
            ov = self._ov
            from openvino.preprocess import ColorFormat, PrePostProcessor

            net = self._net.clone()
            net.reshape({net.inputs[0]: [1, 3, ih, iw]})
            ppp = PrePostProcessor(net)
            ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
                ColorFormat.BGR
            )
            ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(
                255.0
            )
            ppp.input().model().set_layout(ov.Layout("NCHW"))
            net = ppp.build()
            cfg: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY" if mode == "latency" else "THROUGHPUT"}
            if mode == "latency" and self.config.threads > 0:
                cfg["INFERENCE_NUM_THREADS"] = int(self.config.threads)
            compiled = self.core.compile_model(net, "CPU", cfg)
            n = (
                1
                if mode == "latency"
                else max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            )
            self._compiled[key] = (compiled, [compiled.create_infer_request() for _ in range(n)])
        return self._compiled[key]

    def _grid(self, ih: int, levels: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
        """Anchor centres (A, 2) in strides and the stride (A,) of every cell of the levels'
        (H/s, W/s) grids, in the order of the concatenated head outputs."""
        if levels not in self._grids:
            points, strides = [], []
            for gh, gw in levels:
                gy, gx = np.mgrid[0:gh, 0:gw]
                points.append(np.stack([gx.ravel() + 0.5, gy.ravel() + 0.5], axis=1))
                strides.append(np.full(gx.size, ih / gh, dtype=np.float32))
            self._grids[levels] = (np.concatenate(points).astype(np.float32), np.concatenate(strides))
        return self._grids[levels]

    # -- detection ------------------------------------------------------------------------
    def detect(self, frames: list[np.ndarray]) -> list[FrameDetections]:
        with self._lock:  # infer requests are not shared between threads
            return self._detect(frames)

    def _detect(self, frames: list[np.ndarray]) -> list[FrameDetections]:
        out: list[FrameDetections | None] = [None] * len(frames)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            by_shape.setdefault(f.shape[:2], []).append(i)
        for (h, w), idx in by_shape.items():
            r, nw, nh, ih, iw = self.letterbox_shape(h, w)
            pad = ((iw - nw) / 2, (ih - nh) / 2)
            inputs = [_letterbox(frames[i], nw, nh, ih, iw) for i in idx]
            if len(inputs) == 1:
                _, requests = self._request("latency", ih, iw)
                requests[0].infer([inputs[0]])
                raws = [[t.data[0] for t in requests[0].output_tensors]]
            else:
                raws = self._infer_many(inputs, ih, iw)
            for i, raw in zip(idx, raws):
                out[i] = self._decode(raw, ih, iw, r, pad, (h, w))
        return out  # type: ignore[return-value]

    def _infer_many(self, inputs: list[np.ndarray], ih: int, iw: int) -> list[list[np.ndarray]]:
        """Several inputs through the THROUGHPUT model, its requests in flight together."""
        _, requests = self._request("throughput", ih, iw)
        raws: list[list[np.ndarray]] = []
        for start in range(0, len(inputs), len(requests)):
            chunk = inputs[start : start + len(requests)]
            for req, x in zip(requests, chunk):
                req.start_async([x])
            for req in requests[: len(chunk)]:
                req.wait()
                raws.append([t.data[0].copy() for t in req.output_tensors])
        return raws

    def _decode(
        self,
        raw: list[np.ndarray],
        ih: int,
        iw: int,
        r: float,
        pad: tuple[float, float],
        shape: tuple[int, int],
    ) -> FrameDetections:
        """Boxes of one frame from its per-level head outputs (C, H/s, W/s)."""
        c = raw[0].shape[0]
        preds = np.concatenate([x.reshape(c, -1) for x in raw], axis=1)  # (64 + classes, A)
        logits = preds[4 * REG_MAX :]
        cand = np.flatnonzero(logits.max(axis=0) > self._logit_threshold)
        if len(cand):
            best = logits[:, cand].argmax(axis=0)
            keep = self._keep_class[best]
            cand, best = cand[keep], best[keep]
        if not len(cand):
            return FrameDetections.empty()
        score = 1.0 / (1.0 + np.exp(-logits[best, cand]))
        # DFL: expected distance of each side over 16 bins (softmax), in strides
        dist = preds[: 4 * REG_MAX, cand].reshape(4, REG_MAX, -1)
        dist = np.exp(dist - dist.max(axis=1, keepdims=True))
        dist = (dist * np.arange(REG_MAX, dtype=np.float32)[None, :, None]).sum(axis=1) / dist.sum(axis=1)
        anchors, strides = self._grid(ih, tuple((x.shape[1], x.shape[2]) for x in raw))
        a, s = anchors[cand], strides[cand]
        xyxy = (
            np.stack([a[:, 0] - dist[0], a[:, 1] - dist[1], a[:, 0] + dist[2], a[:, 1] + dist[3]], axis=1)
            * s[:, None]
        )
        keep_i = _nms(xyxy, score, float(self.config.iou))[:MAX_DET]
        xyxy, score, best = xyxy[keep_i], score[keep_i], best[keep_i]
        xyxy = (xyxy - np.array([pad[0], pad[1], pad[0], pad[1]], dtype=np.float32)) / r
        h, w = shape
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        return FrameDetections(
            xyxy=xyxy.astype(np.float32),
            confidence=score.astype(np.float32),
            class_id=best.astype(np.int32),
        )


MAX_DET = 300


def _ceil32(v: int) -> int:
    return int(np.ceil(v / 32) * 32)


def _letterbox(frame: np.ndarray, nw: int, nh: int, ih: int, iw: int) -> np.ndarray:
    """(1, ih, iw, 3) uint8: ``frame`` resized to (nw, nh) and centred on grey 114."""
    import cv2

    img = (
        frame
        if frame.shape[1] == nw and frame.shape[0] == nh
        else cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    )
    dw, dh = (iw - nw) / 2, (ih - nh) / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return np.ascontiguousarray(img)[None]


def _nms(xyxy: np.ndarray, score: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by class-agnostic NMS, by decreasing score (torchvision's, as ultralytics)."""
    if len(score) == 1:
        return np.zeros(1, dtype=np.int64)
    import torch
    import torchvision

    keep = torchvision.ops.nms(torch.from_numpy(xyxy), torch.from_numpy(score), iou)
    return keep.numpy()


def _detect_heads(model: Any) -> list[Any] | None:
    """The per-level outputs (1, 4 * 16 + classes, H/s, W/s) of a YOLOv8 detect head, by
    decreasing resolution (strides 8, 16, 32): the ``Concat`` of each level's box and class
    branches that feeds the head's fixed-shape decode. None when the graph has no such three."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Concat" or op.get_output_size() != 1:
            continue
        shape = op.get_output_partial_shape(0)
        if shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[1].is_dynamic:
            continue
        if shape[1].get_length() <= 4 * REG_MAX:
            continue
        consumers = op.output(0).get_target_inputs()
        if any(c.get_node().get_type_name() == "Reshape" for c in consumers):
            found.append(op)
    if len(found) != 3:
        return None
    channels = {int(op.get_output_partial_shape(0)[1].get_length()) for op in found}
    if len(channels) != 1:
        return None
    found.sort(key=lambda op: -_static_or_zero(op.get_output_partial_shape(0)[3]))
    return [op.output(0) for op in found]


def _static_or_zero(dim: Any) -> int:
    return int(dim.get_length()) if dim.is_static else 0


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
