"""``traffic-analyze``: run the frame processor over a video file, offline.

traffic-analyze VIDEO --calibration CALIB.json --out RESULTS.json [--tracks-csv TRACKS.csv]
                [--model PATH] [--annotated OUT.mp4] [--device cpu|cuda|cuda:N] [--batch N] [--half]

``--batch N`` detects and embeds N frames per call (then tracks them one by one, in order): the
GPU path; on the CPU the OpenVINO model runs a frame at a time anyway, so 1 is the default there.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from contracts.messages import FrameConfig, ProcessedFrame

from .calibration import CalibrationError, fit_homography
from .config import CalibrationFile, ConfigError, ProcessorConfig
from .detector import DetectorConfig, ModelLoadError, VehicleDetector
from .processor import FrameProcessor
from .roi import RoiError, parse_polygon
from .video import VideoError, iter_frames, probe_video

TRACK_COLUMNS = [
    "frame_number",
    "track_id",
    "class_name",
    "x1",
    "y1",
    "x2",
    "y2",
    "confidence",
    "speed_kmh",
    "in_roi",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="traffic-analyze",
        description="Detect, track and measure the speed of vehicles in a fixed-camera video.",
    )
    p.add_argument("video", help="input video file")
    p.add_argument("--calibration", required=True, help="CALIB.json (ROI, image/world point pairs)")
    p.add_argument("--out", required=True, help="RESULTS.json to write")
    p.add_argument("--tracks-csv", help="per-frame tracks CSV to write")
    p.add_argument("--model", help="YOLOv8 model (default: $MODEL_PATH, then the shared OpenVINO model)")
    p.add_argument("--annotated", help="annotated video to write (.mp4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (detector and embedder)")
    p.add_argument("--batch", type=int, help="frames per detector call (default 1 on cpu, 32 on a GPU)")
    p.add_argument("--half", action="store_true", help="fp16 models (GPU only)")
    p.add_argument("--confidence", type=float, default=DetectorConfig.confidence)
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--log-level", default="WARNING", help="INFO prints the per-frame [PERFORMANCE] block")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def settings_from_calibration(calib: CalibrationFile, fps: float, *, realtime: bool = True) -> FrameConfig:
    """The one calibration -> ``FrameConfig`` builder (the CLI, the benches, the Spark feeder):
    the ROI checked, the homography fitted from the point pairs, the calibration's fps else
    ``fps`` (the video's), its speed limit (km/h)."""
    hom = fit_homography(calib.image_points, calib.world_points)
    roi = parse_polygon(calib.roi_polygon)
    return FrameConfig(
        roi_polygon=None if roi is None else roi.tolist(),
        homography_matrix=hom.matrix.tolist(),
        fps=calib.fps or fps,
        speed_limit_kmh=calib.speed_limit_kmh,
        realtime=realtime,
    )


def processed_frames(
    processor: FrameProcessor, video: str, batch: int, max_frames: int | None
) -> Iterator[tuple[int, ProcessedFrame, np.ndarray | None]]:
    """(frame number, result, annotated frame) of each frame, ``batch`` frames per detector call."""
    pending: list[np.ndarray] = []

    def flush(first: int) -> Iterator[tuple[int, ProcessedFrame, np.ndarray | None]]:
        if batch == 1:
            yield first, processor.process(pending[0], first), processor.last_annotated
            return
        for i, result in enumerate(processor.iter_batch(pending, first)):
            yield first + i, result, processor.last_annotated

    first = 0
    for n, frame in iter_frames(video):
        if max_frames and n >= max_frames:
            break
        if not pending:
            first = n
        pending.append(frame)
        if len(pending) == batch:
            yield from flush(first)
            pending = []
    if pending:
        yield from flush(first)


def run(args: argparse.Namespace) -> dict:
    info = probe_video(args.video)
    calib = CalibrationFile.load(args.calibration)
    settings = settings_from_calibration(calib, info.fps)
    config = ProcessorConfig()
    config.detector.device = args.device
    config.detector.confidence = args.confidence
    config.detector.half = args.half
    batch = args.batch or (1 if args.device == "cpu" else 32)
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    config.detector.batch = batch
    detector = VehicleDetector(args.model, config.detector)
    processor = FrameProcessor(settings, detector=detector, config=config, annotate=bool(args.annotated))

    writer = None
    if args.annotated:
        writer = cv2.VideoWriter(
            args.annotated, cv2.VideoWriter.fourcc(*"mp4v"), settings.fps, (info.width, info.height)
        )
        if not writer.isOpened():
            raise VideoError(f"cannot write annotated video {args.annotated}")
    csv_file = open(args.tracks_csv, "w", newline="") if args.tracks_csv else None
    tracks = csv.writer(csv_file) if csv_file else None
    if tracks:
        tracks.writerow(TRACK_COLUMNS)
    from tqdm import tqdm

    total = info.frame_count if not args.max_frames else min(info.frame_count, args.max_frames)
    frames = 0
    try:
        for n, result, annotated in tqdm(
            processed_frames(processor, args.video, batch, args.max_frames),
            total=total,
            unit="frame",
            disable=args.no_progress,
        ):
            frames += 1
            if writer is not None:
                writer.write(annotated)
            if tracks:
                for v in result.vehicles:
                    tracks.writerow(
                        [
                            n,
                            v.track_id,
                            v.class_name,
                            v.bbox.x1,
                            v.bbox.y1,
                            v.bbox.x2,
                            v.bbox.y2,
                            v.confidence,
                            "" if v.speed is None else v.speed,
                            int(v.in_roi),
                        ]
                    )
    finally:
        if writer is not None:
            writer.release()
        if csv_file:
            csv_file.close()
    if frames == 0:
        raise VideoError(f"{args.video} holds no readable video frame")
    summary = processor.finalize()
    return {
        "video": str(args.video),
        "frames": frames,
        "fps": settings.fps,
        "summary": summary.model_dump(exclude={"vehicles"}),
        # offline there is no stream run nor wall clock: those fields are the live results'
        "vehicles": [p.model_dump(exclude={"run_id", "passed_at"}) for p in summary.vehicles or []],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")
    try:
        results = run(args)
    except (VideoError, ConfigError, CalibrationError, RoiError, ModelLoadError) as exc:
        print(f"traffic-analyze: error: {exc}", file=sys.stderr)
        return 2
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    s = results["summary"]
    print(
        f"{results['frames']} frames, {s['total_vehicles_count']} vehicles, {s['speeding_count']} speeding "
        f"-> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
