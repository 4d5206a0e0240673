"""``traffic-bench``: per-stage timings and frames/s of the whole processor against the bare
detector, on the same frames in the same run.

The processor is fed JPEG bytes (as the Spark job is), so its figure includes decode,
tracking, speed, analytics, drawing and encode; the bare detector gets decoded frames.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from .cli import settings_from_calibration
from .config import CalibrationFile, ProcessorConfig
from .detector import VehicleDetector
from .processor import STAGES, FrameProcessor
from .video import iter_frames, probe_video
from .visualize import encode_jpeg


def load_frames(video: str, limit: int) -> list[np.ndarray]:
    frames = []
    for n, frame in iter_frames(video):
        if n >= limit:
            break
        frames.append(frame)
    return frames


def bench_detector(detector: VehicleDetector, frames: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for frame in frames:
        detector.detect([frame])
    return len(frames) / (time.perf_counter() - start)


def bench_processor(processor: FrameProcessor, jpegs: list[bytes]) -> tuple[float, dict[str, float]]:
    totals = dict.fromkeys(STAGES, 0.0)
    start = time.perf_counter()
    for n, data in enumerate(jpegs):
        processor.process(data, n)
        for k, v in processor.last_timings.items():
            totals[k] += v
    fps = len(jpegs) / (time.perf_counter() - start)
    return fps, {k: v / len(jpegs) for k, v in totals.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="traffic-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--video", required=True)
    p.add_argument("--calibration", required=True)
    p.add_argument("--frames", type=int, default=400, help="frames to time (from the start of the clip)")
    p.add_argument("--model")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args(argv)

    info = probe_video(args.video)
    settings = settings_from_calibration(CalibrationFile.load(args.calibration), info.fps)
    config = ProcessorConfig()
    config.detector.device = args.device
    detector = VehicleDetector(args.model, config.detector)
    frames = load_frames(args.video, args.frames)
    jpegs = [encode_jpeg(f, 90) for f in frames]
    warm = FrameProcessor(settings, detector=detector, config=ProcessorConfig())
    for n, data in enumerate(jpegs[:10]):  # warm up model, embedder and allocator
        warm.process(data, n)

    det_fps = bench_detector(detector, frames)
    proc_fps, stages = bench_processor(FrameProcessor(settings, detector=detector, config=config), jpegs)
    det_fps_after = bench_detector(detector, frames[: len(frames) // 2])  # drift check

    print(
        f"traffic-bench: {args.video} ({info.width}x{info.height} @ {info.fps:g} fps), {len(frames)} frames, "
        f"model {detector.model_path}, device {args.device}, {cv2.getNumberOfCPUs()} CPUs"
    )
    print("per-stage mean ms per frame (whole processor):")
    for k in STAGES:
        print(f"  {k:<14}{stages[k]:8.2f}")
    print(f"  {'total':<14}{sum(stages.values()):8.2f}")
    print(f"bare detector     : {det_fps:7.1f} frames/s (re-run after: {det_fps_after:.1f})")
    print(f"whole processor   : {proc_fps:7.1f} frames/s")
    print(f"ratio processor/detector: {proc_fps / det_fps:.2f}  (aim >= 0.80)")
    print(
        f"real time: clip is {info.fps:g} fps -> processor at {proc_fps / info.fps:.2f}x real time "
        "(aim >= 1.00)"
    )
    return 0
