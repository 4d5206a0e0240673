"""``make bench-e2e``: the whole stack on the urban clip, against the offline processor.

Starts PostgreSQL, Redis, the backend, the bridge, Spark and Airflow; uploads and calibrates the
clip through REST (once the Spark application's heartbeat is there); a WebSocket viewer
subscribes and the stream is started twice:
- as fast as possible (realtime=false): end-to-end frames/s;
- live (realtime: frames paced at 25 fps): delivered frames/s, the share of frames detected and
  the detection stride, and the live latency from ``produced_at`` (producer) to arrival at the
  viewer, p50/p95 (also after the first 10 s of the stream).
Spark's own phases per micro-batch (``durationMs`` of its progress, LOG_PROGRESS=1) are printed
as medians for each run.
During the live run a headless Chromium (``/usr/bin/chromium``, ``e2e/browser/page_fps.mjs``) has
the dashboard's live view of the video open: the frames/s the page actually draws (counted in the
page) beside the frames/s it receives and those delivered to the plain WebSocket client, and the
share of received frames it draws (aim >= 95 %).
Then the offline processor's frames/s on the same frames, in the same run, and the ratios.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from e2e.harness import REPO, Api, Viewer, start_stack, stop_stack
from stack.run import SAMPLE_CALIBRATION, SAMPLE_VIDEO

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
PAGE_SCRIPT = REPO / "e2e" / "browser" / "page_fps.mjs"


class BrowserPage:
    """The dashboard's live view of one video in headless Chromium (``page_fps.mjs``), open
    before the stream starts; ``finish()`` gives what the page received and drew."""

    def __init__(self, base_url: str, video_id: int, timeout_s: float) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="bench-page-"))
        self.result = self.work / "page.json"
        (self.work / "config.json").write_text(
            json.dumps(
                {
                    "base_url": base_url,
                    "video_id": video_id,
                    "result": str(self.result),
                    "timeout_s": timeout_s,
                }
            )
        )
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()

    @staticmethod
    def unavailable() -> str | None:
        if not CHROMIUM.exists():
            return f"{CHROMIUM} missing (apt-get install chromium)"
        if not shutil.which("node"):
            return "node missing"
        if not (PAGE_SCRIPT.parent / "node_modules" / "playwright-core").exists():
            return "e2e/browser/node_modules missing (make install)"
        return None

    def start(self, ready_timeout_s: float = 90) -> BrowserPage:
        self.proc = subprocess.Popen(
            ["node", str(PAGE_SCRIPT), str(self.work / "config.json")],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.put(line.rstrip())
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line == "READY":
                return self
            if line is None:
                raise RuntimeError(f"the browser page exited before subscribing: {self.finish(5)}")
            print(f"[page] {line}")
        raise TimeoutError(f"the browser page did not subscribe within {ready_timeout_s} s")

    def finish(self, timeout_s: float) -> dict:
        if self.proc is not None:
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            return json.loads(self.result.read_text())
        except (OSError, ValueError) as exc:
            return {"ok": False, "error": f"no result: {exc}"}
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


def stream_once(
    stack, api: Api, video_id: int, realtime: bool, timeout_s: float = 900, page: bool = False
) -> dict:
    viewer = Viewer(f"ws://127.0.0.1:{stack.infra.backend_port}/ws/client/stream", video_id).start()
    browser: BrowserPage | None = None
    page_result: dict | None = None
    if page:
        reason = BrowserPage.unavailable()
        if reason:
            page_result = {"ok": False, "error": reason}
        else:
            browser = BrowserPage(stack.infra.env["BACKEND_URL"], video_id, timeout_s).start()
    deadline = time.monotonic() + 180
    while True:  # the previous run of this video may still be cleaning up (409)
        status, run = api.json("POST", f"/api/videos/{video_id}/stream/start", {"realtime": realtime})
        if status != 409 or time.monotonic() > deadline:
            break
        time.sleep(2)
    try:
        assert status in (200, 201, 202), run
        if not viewer.wait(timeout_s):
            raise TimeoutError(f"no end of stream within {timeout_s} s ({len(viewer.frames)} frames)")
    finally:
        if browser is not None:
            page_result = browser.finish(60)
    frames = [f for f in viewer.frames if not f["end_of_stream"]]
    arrived = np.array([f["_arrived"] for f in frames])
    timed = [f for f in frames if f.get("produced_at")]
    latency = np.array([f["_arrived"] - f["produced_at"] for f in timed])
    # After the first 10 s of the stream (the first micro-batches of a run start slower).
    start = min((f["produced_at"] for f in timed), default=0.0)
    steady = np.array([f["_arrived"] - f["produced_at"] for f in timed if f["produced_at"] - start >= 10])
    span = arrived[-1] - arrived[0] if len(arrived) > 1 else float("nan")
    skipped = max((f.get("skipped_frames", 0) for f in viewer.frames), default=0)
    detected = max((f.get("detected_frames", 0) for f in viewer.frames), default=0)
    strides = [f.get("detect_stride", 1) for f in frames]
    return {
        "page": page_result,
        "frames": len(frames),
        "skipped": skipped,
        "detected": detected,
        "stride_median": float(np.median(strides)) if strides else float("nan"),
        "stride_range": (min(strides), max(strides)) if strides else (0, 0),
        "fps": (len(frames) - 1) / span if span > 0 else float("nan"),
        "latency_p50": float(np.percentile(latency, 50)) if len(latency) else float("nan"),
        "latency_p95": float(np.percentile(latency, 95)) if len(latency) else float("nan"),
        "steady_p50": float(np.percentile(steady, 50)) if len(steady) else float("nan"),
        "steady_p95": float(np.percentile(steady, 95)) if len(steady) else float("nan"),
        "timeline": [
            (
                f["frame_number"],
                round(f["produced_at"] - start, 3),
                round(f["_arrived"] - start, 3),
                f.get("skipped_frames", 0),
            )
            for f in timed
        ],
    }


PROGRESS_LINE = re.compile(r"\[SPARK-APP\] batch (\d+): (\d+) rows, durations (\{.*\})")


def spark_phases(log_text: str, since_batch: int = -1) -> tuple[int, dict[str, float]]:
    """(last batch id, median ms per phase) of the micro-batches with rows after ``since_batch``,
    from the Spark application's LOG_PROGRESS lines."""
    per_phase: dict[str, list[float]] = {}
    last = since_batch
    for m in PROGRESS_LINE.finditer(log_text):
        batch, rows = int(m.group(1)), int(m.group(2))
        if batch <= since_batch:
            continue
        last = max(last, batch)
        if rows == 0:
            continue
        for phase, ms in ast.literal_eval(m.group(3)).items():
            per_phase.setdefault(phase, []).append(float(ms))
    return last, {k: float(np.median(v)) for k, v in sorted(per_phase.items())}


def print_phases(name: str, phases: dict[str, float]) -> None:
    keys = ("triggerExecution", "latestOffset", "queryPlanning", "addBatch", "walCommit", "commitOffsets")
    shown = ", ".join(f"{k} {phases[k]:.0f}" for k in keys if k in phases)
    print(f"spark phases ({name}), median ms per batch: {shown}")


def print_page(live: dict) -> None:
    """The browser page's drawn frames/s beside what it and the plain WebSocket client received."""
    page = live.get("page")
    if page is None:
        return
    if not page.get("ok"):
        print(f"browser page (Chromium): not measured: {page.get('error', '?')[:300]}")
        return
    share = page["drawn_share"] if page["drawn_share"] is not None else float("nan")
    print(
        f"browser page (Chromium): drew {page['drawn']} of {page['received_pictures']} frames received "
        f"({100 * share:.1f}%, aim >= 95%), {page['draw_fps'] or float('nan'):.1f} frames/s drawn, "
        f"{page['receive_fps'] or float('nan'):.1f} frames/s received; plain WebSocket client: "
        f"{live['frames']} frames, {live['fps']:.1f} frames/s"
    )


def offline_fps(frames_limit: int) -> float:
    from traffic_processing.bench import bench_processor, load_frames
    from traffic_processing.cli import settings_from_calibration
    from traffic_processing.config import CalibrationFile
    from traffic_processing.detector import VehicleDetector
    from traffic_processing.processor import FrameProcessor
    from traffic_processing.visualize import encode_jpeg

    settings = settings_from_calibration(CalibrationFile.load(SAMPLE_CALIBRATION), 25.0)
    detector = VehicleDetector()
    jpegs = [encode_jpeg(f, 85) for f in load_frames(str(SAMPLE_VIDEO), frames_limit)]
    FrameProcessor(settings, detector=detector).process(jpegs[0], 0)  # warm-up
    fps, _ = bench_processor(FrameProcessor(settings, detector=detector), jpegs)
    return fps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-e2e", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--live-only", action="store_true", help="skip the fast run and the offline one")
    parser.add_argument("--dump", type=Path, help="write the live run's per-frame timeline (JSON)")
    parser.add_argument("--no-page", action="store_true", help="no headless Chromium page on the live run")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    os.environ["LOG_PROGRESS"] = "1"  # the Spark application logs its phases per batch
    t0 = time.monotonic()
    stack = start_stack(data_dir)
    boot_s = time.monotonic() - t0
    try:
        api = Api(stack.infra.env["BACKEND_URL"])
        video_id = api.upload(SAMPLE_VIDEO, "bench")["id"]
        api.calibrate(video_id, json.loads(SAMPLE_CALIBRATION.read_text()))
        # The fast run first: it also takes the first micro-batches' one-off costs (Python workers
        # of the stateful stage, RocksDB), which the live run would otherwise count as latency.
        fast = None if args.live_only else stream_once(stack, api, video_id, realtime=False)
        mark, fast_phases = spark_phases(stack.log_tail("spark", 50_000_000))
        live = stream_once(stack, api, video_id, realtime=True, page=not args.no_page)
        _, live_phases = spark_phases(stack.log_tail("spark", 50_000_000), mark)
        if args.dump:
            args.dump.write_text(json.dumps(live["timeline"]))
    finally:
        stop_stack(stack)
    if fast is None:
        print(live | {"timeline": len(live["timeline"])})
        print_phases("live", live_phases)
        print_page(live)
        return 0
    offline = offline_fps(live["frames"] + live["skipped"])
    print(f"bench-e2e: {SAMPLE_VIDEO.name} (1190 frames @ 25 fps), stack boot {boot_s:.0f} s")
    print(
        f"live (realtime)       : {live['frames']} frames delivered, {live['fps']:.1f} frames/s, "
        f"latency p50 {live['latency_p50']:.2f} s, p95 {live['latency_p95']:.2f} s (aim p95 <= 1.2 s); "
        f"after the first 10 s: p50 {live['steady_p50']:.2f} s, p95 {live['steady_p95']:.2f} s"
    )
    total = live["detected"] + live["skipped"]
    print(
        f"live detection        : {live['detected']} of {total} frames detected "
        f"({100.0 * live['detected'] / max(total, 1):.0f}%, aim >= 40%), stride median "
        f"{live['stride_median']:.0f} (range {live['stride_range'][0]}-{live['stride_range'][1]})"
    )
    print(f"as fast as possible   : {fast['frames']} frames, {fast['fps']:.1f} frames/s end to end")
    print(f"offline processor     : {offline:.1f} frames/s (same frames, same run, stack stopped)")
    print(
        f"ratio end-to-end / offline: {fast['fps'] / offline:.2f} (aim >= 0.85); "
        f"real time: {fast['fps'] / 25.0:.2f}x"
    )
    print_phases("as fast as possible", fast_phases)
    print_phases("live", live_phases)
    print_page(live)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
