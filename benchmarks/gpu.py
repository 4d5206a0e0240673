"""``python -m benchmarks.gpu`` (``make bench-gpu``): what one GPU carries.

1. The bare network through ultralytics (letterbox, forward, NMS: ``VehicleDetector.detect``)
   at batch 1/8/32/64, fp32 and fp16 (and a TensorRT ``--engine`` when given), plus the network
   alone on tensors already on the GPU (the ceiling the pre/post-processing is measured against).
2. The whole processor on one stream: per frame (``process``, the live path) and batched
   (``process_batch``).
3. N streams through the batched path, as the Spark job runs them: each tick (``--tick-s`` of
   video, 5 frames a stream at 25 fps) the frames of all N streams are decoded, detected in batched
   calls and embedded in one call in this process (the batched detection stage, the library's
   ``processor.analyze_frames`` with the job's config: the boxes in the ROI and its margin of
   road, ``spark.streaming.detect_stage``); ``--workers``
   forked processes then track, measure, draw and encode their streams (the per-video stage, one
   Python worker per shuffle partition). A stream keeps real time when the aggregate rate is at
   least N x the clip's fps. The largest such N is printed as "real-time streams per GPU", with the
   time per tick of each side: that says what bounds it (the GPU side or the CPU side).

On a machine without CUDA it says so and exits 0. ``--device cpu`` runs the same code on the CPU
(for the tests, and to compare).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from multiprocessing.connection import Connection

import cv2
import numpy as np
from traffic_processing.cli import settings_from_calibration
from traffic_processing.config import CalibrationFile, ProcessorConfig
from traffic_processing.detector import DetectorConfig, ModelLoadError, VehicleDetector
from traffic_processing.device import DeviceError, cuda_available, resolve_device
from traffic_processing.processor import FrameProcessor, analyze_frames, tracking_filter
from traffic_processing.tracker import TrackerConfig
from traffic_processing.video import probe_video
from traffic_processing.visualize import decode_jpeg, encode_jpeg

from contracts.assets import REPO_ROOT as REPO
from contracts.assets import SAMPLE_VIDEO, SHARED_MODELS
from contracts.messages import FrameConfig
from spark.streaming.settings import SparkSettings

DEFAULT_VIDEO = SAMPLE_VIDEO
DEFAULT_MODEL = SHARED_MODELS / "yolov8n_rebuilt_from_int8.pt"
DEFAULT_CALIBRATION = REPO / "calibrations" / "urban_cctv_640x360_25fps.json"


def _sync(device: str) -> None:
    if device != "cpu":
        import torch

        torch.cuda.synchronize()


def timed_fps(fn: Callable[[], object], frames: int, device: str, reps: int = 3) -> float:
    """Median frames/s of ``reps`` runs of ``fn`` (which handles ``frames`` frames), after one
    untimed run."""
    fn()
    _sync(device)
    values = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        values.append(frames / (time.perf_counter() - start))
    return statistics.median(values)


def network_only_fps(
    detector: VehicleDetector, batch: int, half: bool, shape: tuple[int, int]
) -> float | None:
    """The torch network alone on a (batch, 3, h, w) tensor already on the device, ``shape`` the
    letterboxed frame ultralytics feeds it (``.pt`` weights only)."""
    import torch

    net = getattr(detector.model, "model", None)
    if not isinstance(net, torch.nn.Module):
        return None
    dtype = torch.float16 if half else torch.float32
    net = net.to(detector.device).to(dtype).eval()
    x = torch.zeros((batch, 3, *shape), device=detector.device, dtype=dtype)

    def run() -> None:
        with torch.inference_mode():
            net(x)

    try:
        return timed_fps(run, batch, detector.device)
    finally:
        net.float()


def letterboxed_shape(frame: np.ndarray, imgsz: int, stride: int = 32) -> tuple[int, int]:
    """(h, w) of a frame letterboxed to ``imgsz`` on its long side, padded to the stride
    (ultralytics' rectangular batches: 640x360 -> 384x640)."""
    h, w = frame.shape[:2]
    scale = imgsz / max(h, w)
    return tuple(int(np.ceil(round(v * scale) / stride) * stride) for v in (h, w))  # type: ignore[return-value]


def bench_network(args: argparse.Namespace, frames: list[np.ndarray]) -> None:
    print("\n1. bare network, frames/s (ultralytics: letterbox + forward + NMS | network alone)")
    print(f"   {'weights':<34}{'precision':<10}" + "".join(f"{f'batch {b}':>20}" for b in args.batches))
    variants: list[tuple[str, bool | None]] = [(args.model, False), (args.model, True)]  # None: engine
    if args.engine:
        variants.append((args.engine, None))
    for model, half in variants:
        if half and args.device == "cpu":
            continue  # fp16 is a GPU feature
        cells = []
        for b in args.batches:
            cfg = DetectorConfig(device=args.device, half=bool(half), batch=b)
            try:
                det = VehicleDetector(str(model), cfg)
            except ModelLoadError as exc:
                cells.append("error")
                print(f"   {model}: {exc}", file=sys.stderr)
                continue
            batch = (frames * (b // len(frames) + 1))[:b]
            full = timed_fps(partial(det.detect, batch), b, args.device)
            shape = letterboxed_shape(frames[0], args.imgsz)
            alone = network_only_fps(det, b, bool(half), shape) if half is not None else None
            cells.append(f"{full:8.0f} | {alone:7.0f}" if alone else f"{full:8.0f} |     n/a")
        precision = "engine" if half is None else ("fp16" if half else "fp32")
        print(f"   {os.path.basename(str(model)):<34}{precision:<10}" + "".join(f"{c:>20}" for c in cells))


def bench_one_stream(args: argparse.Namespace, settings: FrameConfig, frames: list[np.ndarray]) -> None:
    print("\n2. whole processor, one stream, frames/s (detect, embed, track, speed, draw, encode)")
    cfg = DetectorConfig(device=args.device, half=args.half, batch=args.batch)
    det = VehicleDetector(str(args.model), cfg)
    config = ProcessorConfig(detector=det.config)

    def per_frame() -> None:
        proc = FrameProcessor(settings, detector=det, config=config)
        for n, f in enumerate(frames):
            proc.process(f, n)

    def batched() -> None:
        proc = FrameProcessor(settings, detector=det, config=config)
        for i in range(0, len(frames), args.batch):
            proc.process_batch(frames[i : i + args.batch], i)

    n = len(frames)
    print(f"   per frame (live path)       {timed_fps(per_frame, n, args.device, 2):8.1f}")
    print(f"   batched ({args.batch:>3} frames)        {timed_fps(batched, n, args.device, 2):8.1f}")


# -- N streams ---------------------------------------------------------------------------------
# Fork-shared by the stream workers (copy-on-write): the clip's JPEGs and the settings.
_JPEGS: list[bytes] = []
_SETTINGS: FrameConfig | None = None


def _stream_worker(conn: Connection, annotate: bool) -> None:
    """Tracks the streams it is sent: [(stream, frame_number, jpeg index, detections bytes)]."""
    from traffic_processing.detections import FrameDetections

    processors: dict[int, FrameProcessor] = {}
    while True:
        work = conn.recv()
        if work is None:
            return
        started = time.perf_counter()
        for stream, frame_number, index, blob in work:
            proc = processors.get(stream)
            if proc is None:
                assert _SETTINGS is not None  # set before the workers fork
                proc = processors[stream] = FrameProcessor(_SETTINGS, annotate=annotate)
            proc.track(decode_jpeg(_JPEGS[index]), FrameDetections.from_bytes(blob), frame_number)
        conn.send(time.perf_counter() - started)


@dataclass
class StreamsResult:
    streams: int
    fps: float  # aggregate frames/s
    gpu_ms: float  # per tick: decode + detect + embed (this process)
    cpu_ms: float  # per tick: the slowest worker's track + draw + encode

    def realtime(self, clip_fps: float) -> bool:
        return self.fps >= self.streams * clip_fps


def run_streams(
    n: int,
    detector: VehicleDetector,
    settings: FrameConfig,
    workers: int,
    seconds: float,
    tick_frames: int,
) -> StreamsResult:
    ctx = mp.get_context("fork")
    pipes = []
    procs = []
    for _ in range(max(1, min(workers, n))):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_stream_worker, args=(child, True), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    # the Spark job's batched detection stage (``spark.streaming.detect_stage``): its config (the
    # deployment's default EMBED_BATCH, the embedder on the detector's device and precision) and
    # its boxes to track (the ROI and its margin of road)
    embed_batch = SparkSettings.model_fields["EMBED_BATCH"].default
    config = ProcessorConfig(detector=detector.config, tracker=TrackerConfig(embed_batch=embed_batch))
    select = tracking_filter(settings, config)  # analyze_frames binds config to the detector
    offsets = [(s * 37) % len(_JPEGS) for s in range(n)]
    frame_number = 0
    done = 0
    gpu: list[float] = []
    cpu: list[float] = []
    started = None
    try:
        tick = 0
        while True:
            if tick == 1:  # tick 0 warms the workers up
                started, done, gpu, cpu = time.perf_counter(), 0, [], []
            if started is not None and time.perf_counter() - started >= seconds:
                break
            t0 = time.perf_counter()
            items = [
                (s, frame_number + k, (offsets[s] + frame_number + k) % len(_JPEGS))
                for s in range(n)
                for k in range(tick_frames)
            ]
            frames = [decode_jpeg(_JPEGS[i]) for _, _, i in items]
            embedded = analyze_frames(frames, detector, repeat(select), config)
            work: list[list] = [[] for _ in pipes]
            for (s, fn, i), dets in zip(items, embedded):
                work[s % len(pipes)].append((s, fn, i, dets.to_bytes()))
            gpu.append(time.perf_counter() - t0)
            for pipe, w in zip(pipes, work):
                pipe.send(w)
            cpu.append(max(pipe.recv() for pipe in pipes))
            frame_number += tick_frames
            done += len(items)
            tick += 1
        elapsed = time.perf_counter() - started
    finally:
        for pipe in pipes:
            pipe.send(None)
        for p in procs:
            p.join(timeout=10)
    return StreamsResult(n, done / elapsed, 1000 * statistics.median(gpu), 1000 * statistics.median(cpu))


def bench_streams(
    args: argparse.Namespace, settings: FrameConfig, clip_fps: float, detector: VehicleDetector
) -> int:
    tick_frames = max(1, round(clip_fps * args.tick_s))
    print(
        f"\n3. N streams through the batched path ({tick_frames} frames a stream per tick, "
        f"{args.workers} tracking workers, {args.seconds:g} s each)"
    )
    print(
        f"   {'N':>4}{'frames/s':>10}{'per stream':>12}{'GPU side ms/tick':>18}"
        f"{'CPU side ms/tick':>18}  real time"
    )
    best = 0
    for n in args.streams:
        r = run_streams(n, detector, settings, args.workers, args.seconds, tick_frames)
        ok = r.realtime(clip_fps)
        print(
            f"   {n:>4}{r.fps:>10.1f}{r.fps / n:>12.1f}{r.gpu_ms:>18.1f}{r.cpu_ms:>18.1f}  "
            f"{'yes' if ok else 'no'}"
        )
        if not ok:
            bound = (
                "GPU side (decode, detect, embed)" if r.gpu_ms >= r.cpu_ms else "CPU side (tracking workers)"
            )
            print(f"   bound at N = {n}: {bound}")
            break
        best = n
    print(f"real-time streams per GPU: {best} (clip at {clip_fps:g} fps, device {args.device})")
    return best


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default=str(DEFAULT_VIDEO))
    p.add_argument("--calibration", default=str(DEFAULT_CALIBRATION))
    p.add_argument("--model", default=os.environ.get("MODEL_PATH_GPU") or str(DEFAULT_MODEL), help=".pt")
    p.add_argument("--engine", help="a TensorRT .engine to compare (traffic-export-engine)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--half", action="store_true", help="fp16 for sections 2 and 3")
    p.add_argument("--frames", type=int, default=200, help="frames of the clip used")
    p.add_argument("--batches", type=_ints, default=[1, 8, 32, 64])
    p.add_argument("--batch", type=int, default=32, help="detector batch of sections 2 and 3")
    p.add_argument("--streams", type=_ints, default=[1, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 64])
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per N")
    p.add_argument("--tick-s", type=float, default=0.2, help="video seconds per tick (a micro-batch)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--sections", default="1,2,3")
    args = p.parse_args(argv)
    if args.device != "cpu" and not cuda_available():
        print(
            "python -m benchmarks.gpu: no CUDA device here (torch.cuda.is_available() is False): nothing to "
            "measure. Run `make bench-gpu` on a machine with an NVIDIA GPU (or --device cpu to try "
            "the code on the CPU)."
        )
        return 0
    try:
        args.device = resolve_device(args.device)
    except DeviceError as exc:
        p.error(str(exc))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    global _JPEGS, _SETTINGS
    info = probe_video(args.video)
    settings = settings_from_calibration(CalibrationFile.load(args.calibration), info.fps)
    cap = cv2.VideoCapture(args.video)
    frames: list[np.ndarray] = []
    while len(frames) < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    _JPEGS, _SETTINGS = [encode_jpeg(f, 90) for f in frames], settings
    name = "CPU"
    if args.device != "cpu":
        import torch

        name = torch.cuda.get_device_name(args.device)
    print(
        f"python -m benchmarks.gpu: {name} ({args.device}), {args.video} ({info.width}x{info.height} @ "
        f"{info.fps:g} fps, {len(frames)} frames), model {args.model}, {os.cpu_count()} CPUs"
    )
    sections = set(args.sections.split(","))
    if "1" in sections:
        bench_network(args, frames)
    if "2" in sections:
        bench_one_stream(args, settings, frames)
    if "3" in sections:
        detector = VehicleDetector(
            str(args.model), DetectorConfig(device=args.device, half=args.half, batch=args.batch)
        )
        bench_streams(args, settings, info.fps, detector)
    return 0


if __name__ == "__main__":
    sys.exit(main())
