"""``python -m benchmarks.processor``: per-stage timings and frames/s of the whole processor against the bare
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

``--baseline`` adds a third variant interleaved with the two: the whole processor in the
configuration before the cheaper detected frame (ultralytics' OpenVINO wrapper on the shipped
fixed 640x640 IR, i.e. a 640x640 letterbox, and the torch MobileNetV2 embedder), and reports the
cost split of a detected frame (detector / embedder / tracker / rest, ms per frame: median of the
per-repetition means, with min-max) of both, with the ratio after/before; the recall of the
current detector against the baseline's boxes (vehicle boxes matched at IoU >= 0.5) on the timed
frames; and the per-frame cost of ``detect`` given 1, 2, 4 or 8 frames at once (the Spark live
stage detects the frames the stride selects in a micro-batch in one call).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
from traffic_processing import processor as processor_module
from traffic_processing.cli import settings_from_calibration
from traffic_processing.config import CalibrationFile, ProcessorConfig
from traffic_processing.detections import FrameDetections
from traffic_processing.detector import VehicleDetector
from traffic_processing.processor import STAGES, FrameProcessor
from traffic_processing.video import iter_frames, probe_video
from traffic_processing.visualize import encode_jpeg

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


SPLIT = ("detector", "embedder", "tracker", "rest")  # parts of a detected frame
BATCH_SIZES = (1, 2, 4, 8)


def bench_split(processor: FrameProcessor, jpegs: list[bytes]) -> tuple[float, dict[str, float]]:
    """frames/s of one pass and the mean ms per frame of each part of ``SPLIT``: the detector
    (``VehicleDetector.detect``), the embedder (the appearance embeddings of the ROI's crops),
    the tracker (DeepSORT association, ``VehicleTracker.update``) and the rest (decode, ROI
    filter, speed, analytics, drawing, encode)."""
    spent = dict.fromkeys(("embedder", "tracker"), 0.0)
    embed_detections = processor_module.embed_detections
    update = processor.tracker.update

    def timed_embed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        t = time.perf_counter()
        try:
            return embed_detections(*args, **kwargs)
        finally:
            spent["embedder"] += time.perf_counter() - t

    def timed_update(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        t = time.perf_counter()
        try:
            return update(*args, **kwargs)
        finally:
            spent["tracker"] += time.perf_counter() - t

    processor_module.embed_detections = timed_embed
    processor.tracker.update = timed_update  # type: ignore[method-assign]
    detector_ms = 0.0
    try:
        start = time.perf_counter()
        for n, data in enumerate(jpegs):
            processor.process(data, n)
            detector_ms += processor.last_timings.get("detection", 0.0)
        wall = time.perf_counter() - start
    finally:
        processor_module.embed_detections = embed_detections
        del processor.tracker.update
    n = len(jpegs)
    parts = {"detector": detector_ms / n, "embedder": spent["embedder"] * 1000 / n}
    parts["tracker"] = spent["tracker"] * 1000 / n
    parts["rest"] = wall * 1000 / n - sum(parts.values())
    return n / wall, parts


def bench_batched(detector: VehicleDetector, frames: list[np.ndarray], size: int) -> float:
    """ms per frame of detecting ``frames`` in calls of ``size`` frames."""
    start = time.perf_counter()
    for i in range(0, len(frames), size):
        detector.detect(frames[i : i + size])
    return (time.perf_counter() - start) * 1000 / len(frames)


def box_recall(
    reference: list[FrameDetections], got: list[FrameDetections], iou: float = 0.5
) -> tuple[int, int]:
    """(matched, total): boxes of ``reference`` with a box of ``got`` at IoU >= ``iou`` in the
    same frame."""
    matched = total = 0
    for ref, new in zip(reference, got, strict=True):
        total += len(ref)
        if not len(ref) or not len(new):
            continue
        a, b = ref.xyxy.astype(np.float64), new.xyxy.astype(np.float64)
        lt = np.maximum(a[:, None, :2], b[None, :, :2])
        rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
        area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)[:, None]
        area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)[None, :]
        ious = inter / np.maximum(area_a + area_b - inter, 1e-9)
        matched += int((ious.max(axis=1) >= iou).sum())
    return matched, total


def baseline_config(config: ProcessorConfig) -> ProcessorConfig:
    """The configuration before the cheaper detected frame: ultralytics on the model as it is
    (the shipped IR: a fixed 640x640 letterbox) and the torch embedder."""
    from dataclasses import replace

    return replace(
        config,
        detector=replace(config.detector, backend="ultralytics"),
        tracker=replace(config.tracker, embed_backend="torch"),
    )


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
    p = argparse.ArgumentParser(prog="python -m benchmarks.processor", description=__doc__.split("\n\n")[0])
    p.add_argument("--video", required=True)
    p.add_argument("--calibration", required=True)
    p.add_argument(
        "--frames", type=int, default=150, help="frames timed per repetition (from the start of the clip)"
    )
    p.add_argument("--reps", type=int, default=5, help="timed repetitions of each variant (interleaved)")
    p.add_argument("--warmup", type=int, default=40, help="frames of the untimed warm-up of each variant")
    p.add_argument("--model")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also run the configuration before the cheaper detected frame (ultralytics, 640x640 "
        "letterbox, torch embedder) interleaved, and print the detected-frame split of both",
    )
    p.add_argument(
        "--batch-frames", type=int, default=48, help="frames per repetition of the batched-detect figures"
    )
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
    splits: dict[str, list[dict[str, float]]] = {"after": [], "before": []}

    def processor_run() -> float:
        if not args.baseline:
            fps, totals = bench_processor(
                FrameProcessor(settings, detector=detector, config=config), timed_jpegs
            )
            for k, v in totals.items():
                stage_totals[k] = stage_totals.get(k, 0.0) + v
            return fps
        proc = FrameProcessor(settings, detector=detector, config=config)
        fps, parts = bench_split(proc, timed_jpegs)
        splits["after"].append(parts)
        return fps

    def detector_run() -> float:
        return bench_detector(detector, timed_frames)

    variants = {"processor": processor_run, "detector": detector_run}
    if args.baseline:
        old_config = baseline_config(ProcessorConfig())
        old_config.detector.device = args.device
        old_detector = VehicleDetector(args.model, old_config.detector)
        old_warm = FrameProcessor(settings, detector=old_detector, config=old_config)
        for n, data in enumerate(jpegs[: args.warmup]):
            old_warm.process(data, n)

        def baseline_run() -> float:
            fps, parts = bench_split(
                FrameProcessor(settings, detector=old_detector, config=old_config), timed_jpegs
            )
            splits["before"].append(parts)
            return fps

        variants["baseline"] = baseline_run

    values, _ = interleave(variants, args.reps)
    proc, det = Spread.of(values["processor"]), Spread.of(values["detector"])
    per_rep = Spread.of(ratios(values["processor"], values["detector"]))
    load_after = os.getloadavg()
    n_timed = len(timed_frames)

    print(
        f"python -m benchmarks.processor: {args.video} ({info.width}x{info.height} @ {info.fps:g} fps), "
        f"{n_timed} frames x {args.reps} repetitions per variant (interleaved ABBA, after a "
        f"{min(args.warmup, len(frames))}-frame warm-up), model {detector.model_path}, device {args.device}, "
        f"{cv2.getNumberOfCPUs()} CPUs, load average {load_before[0]:.2f} before / {load_after[0]:.2f} after"
    )
    if not args.baseline:
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
    if args.baseline:
        report_baseline(args, detector, old_detector, values, splits, frames, timed_frames)
    print(f"python -m benchmarks.processor took {time.perf_counter() - started:.0f} s")
    return 0


def report_baseline(
    args: argparse.Namespace,
    detector: VehicleDetector,
    old_detector: VehicleDetector,
    values: dict[str, list[float]],
    splits: dict[str, list[dict[str, float]]],
    frames: list[np.ndarray],
    timed_frames: list[np.ndarray],
) -> None:
    """The ``--baseline`` lines: detected-frame split before/after, recall, batched detect."""
    print("  baseline   " + " ".join(f"{v:6.1f}" for v in values["baseline"]))
    print(
        f"detected-frame cost split, ms per frame (median of {args.reps} interleaved repetitions, min - max):"
    )
    print(
        f"  before: {old_detector.backend} backend, model input {_input_desc(old_detector)}, torch embedder"
    )
    print(
        f"  after:  {detector.backend} backend, model input {_input_desc(detector)}, "
        f"embedder {_embed_desc(detector)}"
    )
    print(
        f"  {'part':<10}{'before':>8}   {'min - max':^15}{'after':>8}   {'min - max':^15}{'after/before':>13}"
    )
    for part in (*SPLIT, "total"):

        def get(d: dict[str, float], part: str = part) -> float:
            return sum(d.values()) if part == "total" else d[part]

        b = Spread.of([get(d) for d in splits["before"]])
        a = Spread.of([get(d) for d in splits["after"]])
        print(
            f"  {part:<10}{b.median:8.2f}   {b.low:6.2f} - {b.high:6.2f}{a.median:8.2f}   "
            f"{a.low:6.2f} - {a.high:6.2f}{a.median / b.median if b.median else float('nan'):13.2f}"
        )
    per_rep = Spread.of(
        ratios([sum(d.values()) for d in splits["after"]], [sum(d.values()) for d in splits["before"]])
    )
    print(
        f"detected frame after/before, per-repetition ratios: median {per_rep.median:.2f}, range "
        f"{per_rep.low:.2f} - {per_rep.high:.2f}  (aim <= 0.60)"
    )
    matched, total = box_recall(old_detector.detect(timed_frames), detector.detect(timed_frames))
    print(
        f"recall vs baseline detector: {matched} of {total} vehicle boxes matched at IoU >= 0.5 "
        f"({matched / max(total, 1):.1%}, aim >= 95 %)"
    )
    step = max(BATCH_SIZES)
    count = max(step, min(args.batch_frames, len(frames)) // step * step)
    batch_frames = (frames * (-(-count // len(frames))))[:count]
    reps = max(3, args.reps)
    runs: dict[str, Callable[[], float]] = {
        str(n): partial(bench_batched, detector, batch_frames, n) for n in BATCH_SIZES
    }
    batched, _ = interleave(runs, reps)
    one = Spread.of(batched["1"]).median
    print(f"detect(N frames) in one call, ms per frame ({count} frames x {reps} repetitions, interleaved):")
    for n in BATCH_SIZES:
        s = Spread.of(batched[str(n)])
        print(f"  N={n:<3}{s.median:7.2f}   {s.low:6.2f} - {s.high:6.2f}   x{s.median / one:.2f} of N=1")


def _input_desc(detector: VehicleDetector) -> str:
    if detector.openvino is not None:
        _, _, _, ih, iw = detector.openvino.letterbox_shape(360, 640)
        return f"{iw}x{ih} for a 16:9 frame (per frame aspect)"
    return f"{detector.config.imgsz}x{detector.config.imgsz} letterbox (fixed IR) / rect (.pt)"


def _embed_desc(detector: VehicleDetector) -> str:
    return "OpenVINO fp32" if detector.device == "cpu" else f"torch on {detector.device}"


if __name__ == "__main__":
    raise SystemExit(main())
