"""``traffic-bench``: per-stage timings and frames/s of the whole processor against the bare
detector, on the same frames in the same run.

The processor is fed JPEG bytes (as the Spark job is), so its figure includes decode,
tracking, speed, analytics, drawing and encode; the bare detector gets decoded frames.

Method: one untimed warm-up of each variant (model, embedder, allocator, thread pools), then
``--reps`` timed repetitions of each over the same ``--frames`` frames, interleaved in ABBA order
(processor, detector, detector, processor, ...) so that a drift of the machine (CPU clock, other
load) hits both variants alike. Each processor repetition starts from a fresh ``FrameProcessor``
(empty tracker). Reported: per-variant median frames/s with its min-max range and interquartile
range, the ratio of the medians, and the median and range of the per-repetition ratios (each
processor repetition over the detector repetition next to it). A spread above 15 % of the median
is flagged: the figures are then noisy (another process shared the CPUs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .cli import settings_from_calibration
from .config import CalibrationFile, ProcessorConfig
from .detector import VehicleDetector
from .processor import STAGES, FrameProcessor
from .video import iter_frames, probe_video
from .visualize import encode_jpeg

NOISY_SPREAD = 0.15  # (max - min) / median above this: flagged as noisy


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
    """frames/s and the summed per-stage ms (over all frames) of one pass."""
    totals = dict.fromkeys(STAGES, 0.0)
    start = time.perf_counter()
    for n, data in enumerate(jpegs):
        processor.process(data, n)
        for k, v in processor.last_timings.items():
            totals[k] = totals.get(k, 0.0) + v
    fps = len(jpegs) / (time.perf_counter() - start)
    return fps, totals


@dataclass(frozen=True)
class Spread:
    """Median, range and interquartile range of repeated measurements."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            raise ValueError("no measurements")
        ordered = sorted(values)
        q1, q3 = (
            statistics.quantiles(ordered, n=4, method="inclusive")[::2]
            if len(ordered) >= 2
            else (ordered[0], ordered[0])
        )
        return cls(statistics.median(ordered), ordered[0], ordered[-1], q1, q3, len(ordered))

    @property
    def relative_range(self) -> float:
        return (self.high - self.low) / self.median if self.median else float("inf")

    def describe(self) -> str:
        """``median   min - max   q1 - q3`` (the columns of ``TABLE_HEADER``)."""
        return f"{self.median:7.1f}   {self.low:6.1f} - {self.high:6.1f}   {self.q1:6.1f} - {self.q3:6.1f}"


TABLE_HEADER = f"{'frames/s':<18}{'median':>7}   {'min - max':^15}   {'IQR (q1 - q3)':^15}"


def interleave(
    variants: dict[str, Callable[[], float]], reps: int
) -> tuple[dict[str, list[float]], list[str]]:
    """Run each variant ``reps`` times in ABBA order (A B, B A, A B, ...); returns the values per
    variant (in repetition order) and the order that was run (for the record)."""
    names = list(variants)
    values: dict[str, list[float]] = {name: [] for name in names}
    order: list[str] = []
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            values[name].append(variants[name]())
            order.append(name)
    return values, order


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Per-repetition ratios (the i-th over the i-th: runs next to each other in time)."""
    return [a / b for a, b in zip(numerators, denominators, strict=True) if b > 0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="traffic-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--video", required=True)
    p.add_argument("--calibration", required=True)
    p.add_argument(
        "--frames", type=int, default=150, help="frames timed per repetition (from the start of the clip)"
    )
    p.add_argument("--reps", type=int, default=5, help="timed repetitions of each variant (interleaved)")
    p.add_argument("--warmup", type=int, default=40, help="frames of the untimed warm-up of each variant")
    p.add_argument("--model")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = p.parse_args(argv)
    if args.frames < 1 or args.reps < 1 or args.warmup < 0:
        p.error("--frames and --reps must be >= 1, --warmup >= 0")

    started = time.perf_counter()
    load_before = os.getloadavg()
    info = probe_video(args.video)
    settings = settings_from_calibration(CalibrationFile.load(args.calibration), info.fps)
    config = ProcessorConfig()
    config.detector.device = args.device
    detector = VehicleDetector(args.model, config.detector)
    frames = load_frames(args.video, max(args.frames, args.warmup))
    jpegs = [encode_jpeg(f, 90) for f in frames]
    timed_frames, timed_jpegs = frames[: args.frames], jpegs[: args.frames]

    # Untimed warm-up of both variants: model, embedder, allocator, thread pools.
    warm = FrameProcessor(settings, detector=detector, config=config)
    for n, data in enumerate(jpegs[: args.warmup]):
        warm.process(data, n)
    for frame in frames[: args.warmup]:
        detector.detect([frame])

    stage_totals = dict.fromkeys(STAGES, 0.0)

    def processor_run() -> float:
        fps, totals = bench_processor(FrameProcessor(settings, detector=detector, config=config), timed_jpegs)
        for k, v in totals.items():
            stage_totals[k] = stage_totals.get(k, 0.0) + v
        return fps

    def detector_run() -> float:
        return bench_detector(detector, timed_frames)

    values, _ = interleave({"processor": processor_run, "detector": detector_run}, args.reps)
    proc, det = Spread.of(values["processor"]), Spread.of(values["detector"])
    per_rep = Spread.of(ratios(values["processor"], values["detector"]))
    load_after = os.getloadavg()
    n_timed = len(timed_frames)

    print(
        f"traffic-bench: {args.video} ({info.width}x{info.height} @ {info.fps:g} fps), "
        f"{n_timed} frames x {args.reps} repetitions per variant (interleaved ABBA, after a "
        f"{min(args.warmup, len(frames))}-frame warm-up), model {detector.model_path}, device {args.device}, "
        f"{cv2.getNumberOfCPUs()} CPUs, load average {load_before[0]:.2f} before / {load_after[0]:.2f} after"
    )
    print(f"per-stage mean ms per frame (whole processor, all {args.reps} repetitions):")
    for k in STAGES:
        print(f"  {k:<14}{stage_totals[k] / (n_timed * args.reps):8.2f}")
    print(f"  {'total':<14}{sum(stage_totals[k] for k in STAGES) / (n_timed * args.reps):8.2f}")
    print("per repetition, frames/s:")
    print("  processor  " + " ".join(f"{v:6.1f}" for v in values["processor"]))
    print("  detector   " + " ".join(f"{v:6.1f}" for v in values["detector"]))
    print(TABLE_HEADER)
    print(f"{'bare detector':<18}{det.describe()}")
    print(f"{'whole processor':<18}{proc.describe()}")
    print(f"ratio processor/detector (medians): {proc.median / det.median:.2f}  (aim >= 0.80)")
    print(f"per-repetition ratios: median {per_rep.median:.2f}, range {per_rep.low:.2f} - {per_rep.high:.2f}")
    print(
        f"real time: clip is {info.fps:g} fps -> processor at {proc.median / info.fps:.2f}x real time "
        "(aim >= 1.00)"
    )
    noisy = [name for name, s in (("detector", det), ("processor", proc)) if s.relative_range > NOISY_SPREAD]
    if noisy:
        print(
            f"NOTE: {' and '.join(noisy)} varied by more than {NOISY_SPREAD:.0%} of the median between "
            "repetitions (other load on the machine?): read the medians with their ranges"
        )
    print(f"traffic-bench took {time.perf_counter() - started:.0f} s")
    return 0
