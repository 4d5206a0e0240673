"""Which decoder reads cameras: PyAV against OpenCV's FFmpeg backend on a real RTSP server on
loopback (``stack/rtsp.py``), interleaved (``make bench-decoders``; a benchmark, not a test).

For each decoder and clip size, over ``--reps`` interleaved repetitions:
- connect: from opening the URL to the first decoded frame;
- decode: CPU time per frame (this process's user + system time over ``--frames`` frames, which
  the server paces at the clip's rate: what a camera producer spends per frame);
- jitter: p95 of |inter-arrival - frame interval|;
- outage: the server killed mid-stream, how long until the reader says so (an error or the end);
- frozen: the server stopped (SIGSTOP: connected, silent), how long until the reader says so,
  with a 2 s read timeout asked of each decoder (PyAV ``timeout=(open, read)``; OpenCV
  ``CAP_PROP_READ_TIMEOUT_MSEC``), ``never`` past 20 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from contracts.assets import SAMPLE_VIDEO
from stack.rtsp import RtspCamera, transcode

CLIP = SAMPLE_VIDEO
READ_TIMEOUT_S = 2.0
GIVE_UP_S = 20.0


def pyav_frames(url: str) -> Iterator[object]:
    import av

    options = {"rtsp_transport": "tcp", "timeout": str(int(READ_TIMEOUT_S * 1e6))}
    with av.open(url, options=options, timeout=(5.0, READ_TIMEOUT_S)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="bgr24")


def opencv_frames(url: str) -> Iterator[object]:
    import cv2

    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        5000,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(READ_TIMEOUT_S * 1000),
    ]
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


DECODERS: dict[str, Callable[[str], Iterator[object]]] = {"pyav": pyav_frames, "opencv": opencv_frames}


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def steady(decoder: Callable[[str], Iterator[object]], url: str, frames: int, fps: float) -> dict[str, float]:
    started = time.monotonic()
    it = decoder(url)
    next(it)
    connect = time.monotonic() - started
    arrivals, c0 = [], cpu()
    for _ in range(frames):
        next(it)
        arrivals.append(time.monotonic())
    used = cpu() - c0
    it.close()  # type: ignore[attr-defined]
    gaps = [abs(b - a - 1 / fps) for a, b in zip(arrivals, arrivals[1:])]
    return {
        "connect_s": connect,
        "decode_ms": 1000 * used / frames,
        "jitter_p95_ms": 1000 * quantile(gaps, 0.95),
    }


def noticed_after(
    decoder: Callable[[str], Iterator[object]],
    cam: RtspCamera,
    fault: Callable[[], None],
    undo: Callable[[], None],
) -> float | None:
    """Seconds from ``fault`` (after 25 frames) until the reader ends or raises; None past GIVE_UP_S."""
    it = decoder(cam.url)
    for _ in range(25):
        next(it)
    done = threading.Event()
    at: list[float] = []

    def drain() -> None:
        try:
            for _ in it:
                pass
        except Exception:  # noqa: BLE001, S110 - an error is how a decoder may say so
            pass
        at.append(time.monotonic())
        done.set()

    t0 = time.monotonic()
    fault()
    threading.Thread(target=drain, daemon=True).start()
    noticed = done.wait(GIVE_UP_S)
    undo()
    done.wait(GIVE_UP_S)
    return at[0] - t0 if noticed and at else None


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-decoders-"))
    sizes = {"640x360": None, "1280x720": (1280, 720)}
    print(
        f"bench-decoders: {CLIP.name} as H.264 over RTSP/TCP on loopback (GStreamer), {args.frames} frames, "
        f"{args.reps} interleaved repetitions, {os.cpu_count()} CPUs"
    )
    for label, size in sizes.items():
        clip = transcode(CLIP, work / f"{label}.mp4", max_frames=250, size=size)
        results: dict[str, dict[str, list[float]]] = {name: {} for name in DECODERS}
        faults: dict[str, dict[str, list[float | None]]] = {
            name: {"outage": [], "frozen": []} for name in DECODERS
        }
        with RtspCamera(clip) as cam:
            for rep in range(args.reps):
                order = list(DECODERS) if rep % 2 == 0 else list(reversed(DECODERS))
                for name in order:
                    for key, value in steady(DECODERS[name], cam.url, args.frames, 25.0).items():
                        results[name].setdefault(key, []).append(value)
            for name in DECODERS:
                faults[name]["outage"].append(noticed_after(DECODERS[name], cam, cam.stop, cam.start))
                proc = cam.proc
                assert proc is not None
                faults[name]["frozen"].append(
                    noticed_after(
                        DECODERS[name],
                        cam,
                        lambda p=proc: os.kill(p.pid, signal.SIGSTOP),
                        lambda p=proc: os.kill(p.pid, signal.SIGCONT),
                    )
                )
        print(f"\n{label}: median (min - max)")
        print(
            f"  {'decoder':8} {'connect s':>18} {'decode ms/frame':>20} {'jitter p95 ms':>18}"
            f" {'outage s':>9} {'frozen s':>9}"
        )
        for name, r in results.items():
            cells = [f"{statistics.median(v):6.2f} ({min(v):.2f}-{max(v):.2f})" for v in r.values()]
            fault = [
                "never" if faults[name][k][0] is None else f"{faults[name][k][0]:.1f}"
                for k in ("outage", "frozen")
            ]
            print(f"  {name:8} {cells[0]:>18} {cells[1]:>20} {cells[2]:>18} {fault[0]:>9} {fault[1]:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
