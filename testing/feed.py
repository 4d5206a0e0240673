"""A minimal producer and reader for tests and measurements of the Spark application (the real
producer is the Airflow task). ``python -m testing.feed CLIP CALIB.json`` streams a clip
into ``video-frames`` (paced at its fps unless ``--fast``), waits for its end of stream in
``processed-frames`` and prints throughput and latency (produced_at -> XADD to
processed-frames, from the entry id's time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from contracts.messages import FrameConfig, ProcessedFrame, StreamProgress, VideoFrame
from contracts.settings import CommonSettings
from contracts.streams import PROCESSED_FRAMES, VIDEO_FRAMES, parse_stream_id, progress_key, text


def clip_jpegs(video: str | Path, quality: int = 90) -> list[bytes]:
    import cv2
    from traffic_processing.video import iter_frames

    out = []
    for _, frame in iter_frames(video):
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        out.append(buf.tobytes())
    return out


def frame_config(calib_path: str | Path, fps: float, realtime: bool) -> FrameConfig:
    """CALIB.json -> the stream's ``FrameConfig`` (``cli.settings_from_calibration``: the
    calibration's fps, else ``fps``)."""
    from traffic_processing.cli import settings_from_calibration
    from traffic_processing.config import CalibrationFile

    return settings_from_calibration(CalibrationFile.load(calib_path), fps, realtime=realtime)


def feed(
    client: Any,
    video_id: int,
    jpegs: list[bytes],
    config: FrameConfig,
    *,
    paced: bool,
    start_frame: int = 0,
    end_of_stream: bool = True,
) -> None:
    """XADD the frames (from ``start_frame``) and then the end-of-stream entry."""
    t0 = time.time() - start_frame / config.fps
    for n in range(start_frame, len(jpegs)):
        if paced:
            delay = t0 + n / config.fps - time.time()
            if delay > 0:
                time.sleep(delay)
        frame = VideoFrame(
            video_id=video_id,
            frame_number=n,
            frame_data=jpegs[n],
            timestamp=n / config.fps,
            produced_at=time.time(),
            config=config,
        )
        client.xadd(VIDEO_FRAMES, frame.to_fields())
    if end_of_stream:
        eos = VideoFrame(
            video_id=video_id,
            frame_number=len(jpegs),
            timestamp=len(jpegs) / config.fps,
            produced_at=time.time(),
            config=config,
            end_of_stream=True,
        )
        client.xadd(VIDEO_FRAMES, eos.to_fields())


def read_processed(client: Any, video_id: int) -> list[tuple[str, ProcessedFrame]]:
    """(entry id, frame) of this video in processed-frames, in stream order."""
    out = []
    for entry_id, fields in client.xrange(PROCESSED_FRAMES, "-", "+"):
        frame = ProcessedFrame.from_fields(fields)
        if frame.video_id == video_id:
            out.append((text(entry_id), frame))
    return out


def wait_for_eos(client: Any, video_id: int, timeout_s: float, proc: Any = None) -> float:
    """Seconds until the video's progress says eos_processed; raises TimeoutError."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if StreamProgress.from_hash(client.hgetall(progress_key(video_id))).eos_processed:
            return time.monotonic() - start
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the Spark app exited with {proc.returncode}")
        time.sleep(0.2)
    raise TimeoutError(f"video {video_id}: no end of stream after {timeout_s} s")


def latencies_ms(entries: list[tuple[str, ProcessedFrame]]) -> np.ndarray:
    """produced_at -> XADD time (the processed-frames entry id is its millisecond clock)."""
    vals = [
        parse_stream_id(entry_id)[0] - pf.produced_at * 1000.0
        for entry_id, pf in entries
        if pf.produced_at is not None and not pf.end_of_stream
    ]
    return np.asarray(vals)


def main(argv: list[str] | None = None) -> int:
    import redis
    from traffic_processing.cli import settings_from_calibration
    from traffic_processing.config import CalibrationFile

    p = argparse.ArgumentParser(prog="python -m testing.feed", description=__doc__.split("\n\n")[0])
    p.add_argument("video")
    p.add_argument("calibration")
    p.add_argument("--video-id", type=int, default=int(time.time()) % 100000)
    p.add_argument("--fps", type=float, default=None, help="default: the calibration's fps or 25")
    p.add_argument("--fast", action="store_true", help="realtime=false, no pacing")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args(argv)
    settings = CommonSettings()
    client = redis.Redis(
        host=settings.REDIS_HOST, port=settings.REDIS_PORT, password=settings.REDIS_PASSWORD or None
    )
    calib = CalibrationFile.load(args.calibration)
    if args.fps:  # --fps wins over the calibration's
        calib = calib.model_copy(update={"fps": args.fps})
    config = settings_from_calibration(calib, 25.0, realtime=not args.fast)
    jpegs = clip_jpegs(args.video)
    start = time.monotonic()
    feed(client, args.video_id, jpegs, config, paced=not args.fast)
    fed = time.monotonic() - start
    waited = wait_for_eos(client, args.video_id, args.timeout)
    total = time.monotonic() - start
    entries = read_processed(client, args.video_id)
    lat = latencies_ms(entries)
    progress = StreamProgress.from_hash(client.hgetall(progress_key(args.video_id)))
    first = min(parse_stream_id(e)[0] for e, _ in entries) / 1000.0
    last = max(parse_stream_id(e)[0] for e, _ in entries) / 1000.0
    report = {
        "video_id": args.video_id,
        "frames": len(jpegs),
        "realtime": not args.fast,
        "feed_s": round(fed, 2),
        "total_s": round(total, 2),
        "wait_after_feed_s": round(waited, 2),
        "frames_per_s_end_to_end": round(len(jpegs) / total, 2),
        "frames_per_s_first_to_last_output": round((len(entries) - 1) / max(last - first, 1e-9), 2),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        "latency_ms_max": round(float(lat.max()), 1) if len(lat) else None,
        "progress": progress.model_dump(mode="json", exclude={"summary"}, exclude_none=True),
        "summary": progress.summary.model_dump(mode="json") if progress.summary else None,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
