"""Batched detection before the per-video stage (GPU deployments).

On a GPU the network costs ~0.2 ms a frame at batch 64 against ~3 ms at batch 1, and N
processes with one CUDA context each serialise on the device: detecting stream by stream
wastes it. With ``BATCHED_DETECT=1`` (the default when ``DETECTOR_DEVICE`` is a GPU:
``SparkSettings.batched_detect``) the query
gets a stateless stage between the source and the per-video stage::

    video-frames -> mapInPandas(detect_partition): decode, detect every frame of the micro-batch
    (all videos) in batched calls of DETECT_BATCH frames, ROI filter per video, embed all crops in
    one call -> groupBy(video_id).transformWithStateInPandas: track, speed, analytics, draw...

The detection, filter and embedding are the per-video stage's own (``processor.analyze_frames``,
which ``FrameProcessor.analyze`` runs), with the same config (``stages.processor_config``):
DETECTOR_HALF, DETECT_BATCH and EMBED_BATCH mean the same on both paths.

The per-video stage then uses the row's ``detections`` (``FrameDetections.to_bytes``) instead of
running the detector; a row without them (end-of-stream marker, undecodable JPEG, model that did
not load) goes the per-frame way and fails there with the usual status. On the CPU the default
stays off: the single pass decodes each JPEG once and detects only the frames the live stride
asks for, which a stage before it cannot know.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from spark.streaming.redis_source import SCHEMA
from spark.streaming.settings import SparkSettings

log = logging.getLogger("traffic_streaming.detect")

DETECT_SCHEMA = SCHEMA + ", detections binary"


def detect_rows(pdf: pd.DataFrame, settings: SparkSettings) -> list[bytes | None]:
    """The ``detections`` of each source row (None where the row has no decodable frame or its
    config is unreadable, or the model cannot load: the per-video stage reports those)."""
    from traffic_processing.processor import analyze_frames, tracking_filter
    from traffic_processing.visualize import decode_jpeg

    from spark.streaming.stages import frame_settings, get_detector, processor_config

    out: list[bytes | None] = [None] * len(pdf)
    config = processor_config(settings)
    frames, rows, filters = [], [], []
    # the boxes the tracker follows: the ROI and its margin of calibrated road (in_roi: the ROI)
    zone_by_config: dict[str, Any] = {}
    for i, row in enumerate(pdf.to_dict("records")):
        raw = row["frame_data"]
        if raw is None or (isinstance(raw, float) and np.isnan(raw)) or not len(raw):
            continue
        frame_config = frame_settings(row)
        if frame_config is None:
            continue
        try:
            frame = decode_jpeg(bytes(raw))
            zone = zone_by_config.get(row["config"])
            if zone is None:
                zone = zone_by_config[row["config"]] = tracking_filter(frame_config, config)
        except Exception:  # noqa: BLE001 - the per-video stage reports this frame's error
            continue
        frames.append(frame)
        rows.append(i)
        filters.append(zone)
    if not frames:
        return out
    try:
        detector = get_detector(settings)
    except Exception:  # noqa: BLE001 - the per-video stage reports the fatal error per video
        return out
    embedded = analyze_frames(frames, detector, filters, config)
    for i, dets in zip(rows, embedded):
        out[i] = dets.to_bytes()
    return out


def detect_partition(settings: SparkSettings, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` over the source rows (bound to the settings with ``partial``): each Arrow
    batch (a whole micro-batch of one partition) detected in batched calls; rows pass through
    with their ``detections``."""
    from spark.streaming.stages import configure_worker_logging

    configure_worker_logging(settings)
    for pdf in batches:
        if pdf.empty:
            continue
        started = time.perf_counter()
        detections = detect_rows(pdf, settings)
        global _LOGGED
        if not _LOGGED or settings.LOG_TIMING:
            _LOGGED = True
            log.info(
                "[SPARK-APP] batched detection (pid %s): %d frames of %d videos in %.0f ms",
                os.getpid(),
                sum(d is not None for d in detections),
                pdf["video_id"].nunique(),
                (time.perf_counter() - started) * 1000,
            )
        yield pdf.assign(detections=detections)


_LOGGED = False  # the first batch of each worker is logged (every batch with LOG_TIMING=1)
