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
Before the first stream: the idle CPU of the ready stack, per service (``measure_idle``). For
each live run: latency p50 / p95 / max, the p95 of the first and the last 10 s of the clip and
their difference (the bound), the detection rate, the degraded share and the frames dropped.
Then the stack is started again confined to core 0 (``--also-cores``; ``--cores N`` confines the
one stack instead) for a live run without the page, after a first live stream stopped after 10 s.
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

from e2e.browser_run import make_account
from e2e.harness import REPO, Api, Viewer, format_idle, measure_idle, start_stack, stop_stack
from stack.sample import SAMPLE_CALIBRATION, SAMPLE_VIDEO

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
PAGE_SCRIPT = REPO / "e2e" / "browser" / "page_fps.mjs"


class BrowserPage:
    """The dashboard's live view of one video in headless Chromium (``page_fps.mjs``), open
    before the stream starts; ``finish()`` gives what the page received and drew."""

    def __init__(self, base_url: str, video_id: int, timeout_s: float, account: dict[str, str]) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="bench-page-"))
        self.result = self.work / "page.json"
        (self.work / "config.json").write_text(
            json.dumps(
                {
                    "base_url": base_url,
                    "video_id": video_id,
                    "viewer": account,  # the page logs in as this viewer
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
    stack,
    api: Api,
    video_id: int,
    realtime: bool,
    timeout_s: float = 900,
    page: bool = False,
    video_fps: float = 25.0,
) -> dict:
    viewer = Viewer(
        f"ws://127.0.0.1:{stack.infra.backend_port}/ws/client/stream",
        video_id,
        stack.infra.env["TRAFFIC_API_TOKEN"],
    ).start()
    browser: BrowserPage | None = None
    page_result: dict | None = None
    if page:
        reason = BrowserPage.unavailable()
        if reason:
            page_result = {"ok": False, "error": reason}
        else:
            account = make_account(api, "viewer")
            browser = BrowserPage(stack.infra.env["BACKEND_URL"], video_id, timeout_s, account).start()
    deadline = time.monotonic() + 180
    while True:  # the previous run of this video may still be cleaning up (409)
        status, run = api.json("POST", f"/api/videos/{video_id}/stream/start", {"realtime": realtime})
        if status != 409 or time.monotonic() > deadline:
            break
        time.sleep(2)
    try:
        assert status == 201, run  # the contract: 201 with the Airflow run
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
        **latency_stats(timed),
        **detection_stats(viewer.frames, video_fps),
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


def warm_stream(stack, api: Api, video_id: int, seconds: float = 10.0, timeout_s: float = 180) -> int:  # noqa: ANN001
    """A first live stream of the video, stopped through the API after ``seconds`` of frames at
    the viewer: the one-off costs of a stack's first stream (as the fast run takes them before
    the main live run), so that the measured live run's first 10 s are not a cold start. The
    frames it delivered."""
    viewer = Viewer(
        f"ws://127.0.0.1:{stack.infra.backend_port}/ws/client/stream",
        video_id,
        stack.infra.env["TRAFFIC_API_TOKEN"],
    ).start()
    status, run = api.json("POST", f"/api/videos/{video_id}/stream/start", {"realtime": True})
    assert status == 201, run  # the contract: 201 with the Airflow run
    deadline = time.monotonic() + timeout_s
    first: float | None = None
    while time.monotonic() < deadline and not viewer.done.is_set():
        if viewer.frames and first is None:
            first = time.monotonic()
        if first is not None and time.monotonic() - first >= seconds:
            break
        time.sleep(0.2)
    api.json("POST", f"/api/videos/{video_id}/stream/stop")
    viewer.wait(60)
    viewer.stop()
    return len(viewer.frames)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def latency_stats(timed: list[dict], window_s: float = 10.0) -> dict[str, float]:
    """Live latency (arrival at the viewer - ``produced_at``) of the frames that carry
    ``produced_at``: p50 / p95 / max over the run, p95 of the first and of the last ``window_s``
    of the stream (its own time: ``produced_at``), and how much the last exceeds the first
    (``growth``; the bound: <= 0.5 s)."""
    if not timed:
        nan = float("nan")
        return dict(lat_p50=nan, lat_p95=nan, lat_max=nan, first_p95=nan, last_p95=nan, growth=nan)
    start = min(f["produced_at"] for f in timed)
    end = max(f["produced_at"] for f in timed)
    lat = [f["_arrived"] - f["produced_at"] for f in timed]
    first = [f["_arrived"] - f["produced_at"] for f in timed if f["produced_at"] - start < window_s]
    last = [f["_arrived"] - f["produced_at"] for f in timed if end - f["produced_at"] < window_s]
    first_p95, last_p95 = _pct(first, 95), _pct(last, 95)
    return {
        "lat_p50": _pct(lat, 50),
        "lat_p95": _pct(lat, 95),
        "lat_max": float(max(lat)),
        "first_p95": first_p95,
        "last_p95": last_p95,
        "growth": last_p95 - first_p95,
    }


def detection_stats(messages: list[dict], fps: float) -> dict[str, float]:
    """What the processor did with a live run's frames, from the frame messages (their optional
    ``dropped_frames`` (cumulative), ``detect_hz`` and ``degraded``; defaults when absent: 0,
    fps / stride, False): frames detected per second of video and their share of the video's
    frames (delivered + dropped), the share of delivered frames in the degraded state, the
    frames the processor dropped, and the median detection rate it announced."""
    frames = [f for f in messages if not f.get("end_of_stream")]
    detected = max((int(f.get("detected_frames") or 0) for f in messages), default=0)
    dropped = max((int(f.get("dropped_frames") or 0) for f in messages), default=0)
    total = len(frames) + dropped
    hz = [
        float(f["detect_hz"])
        if f.get("detect_hz") is not None
        else fps / max(int(f.get("detect_stride") or 1), 1)
        for f in frames
    ]
    degraded = sum(1 for f in frames if f.get("degraded"))
    return {
        "dropped": dropped,
        "video_s": total / fps if fps else float("nan"),
        "detect_rate_hz": detected * fps / total if total else float("nan"),
        "detected_share": detected / total if total else float("nan"),
        "degraded_share": degraded / len(frames) if frames else float("nan"),
        "detect_hz_median": float(np.median(hz)) if hz else float("nan"),
    }


def print_live(name: str, live: dict) -> None:
    """The live run's latency and detection lines."""
    bound = "ok" if live["growth"] <= 0.5 else "NOT MET"
    print(
        f"live latency {name}: p50 {live['lat_p50']:.2f} s, p95 {live['lat_p95']:.2f} s, "
        f"max {live['lat_max']:.2f} s; p95 first 10 s {live['first_p95']:.2f} s, last 10 s "
        f"{live['last_p95']:.2f} s, difference {live['growth']:+.2f} s (bound <= +0.5 s: {bound})"
    )
    print(
        f"live detection {name}: {live['detected']} frames detected, {live['detect_rate_hz']:.1f} per "
        f"second of video ({100 * live['detected_share']:.0f}% of frames; announced rate median "
        f"{live['detect_hz_median']:.1f} Hz), degraded {100 * live['degraded_share']:.0f}% of frames, "
        f"dropped by the processor {live['dropped']}; {live['frames']} frames delivered, "
        f"{live['fps']:.1f} frames/s"
    )


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
    delay = page.get("page_delay_ms") or {}
    if delay:
        print(
            f"browser page's own delay (arrival -> drawn): p50 {delay.get('p50', float('nan')):.1f} ms, "
            f"p95 {delay.get('p95', float('nan')):.1f} ms, max {delay.get('max', float('nan')):.1f} ms "
            f"(aim < one frame interval, 40 ms at 25 fps); dropped by the page itself: "
            f"{page.get('page_dropped', 0)}"
        )


def offline_fps(frames_limit: int, cores: int | None = None) -> float:
    """The offline processor's frames/s in this process (on the first ``cores`` CPUs if given)."""
    if cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    from traffic_processing.cli import settings_from_calibration
    from traffic_processing.config import CalibrationFile
    from traffic_processing.detector import VehicleDetector
    from traffic_processing.processor import FrameProcessor
    from traffic_processing.visualize import encode_jpeg

    from benchmarks.processor import bench_processor, load_frames

    settings = settings_from_calibration(CalibrationFile.load(SAMPLE_CALIBRATION), 25.0)
    detector = VehicleDetector()
    jpegs = [encode_jpeg(f, 85) for f in load_frames(str(SAMPLE_VIDEO), frames_limit)]
    FrameProcessor(settings, detector=detector).process(jpegs[0], 0)  # warm-up
    fps, _ = bench_processor(FrameProcessor(settings, detector=detector), jpegs)
    return fps


def run_stack_pass(
    data_dir: Path,
    cores: int | None,
    fast: bool,
    page: bool,
    idle_s: float,
    live: bool = True,
    warm_s: float = 0.0,
) -> dict:
    """One start of the stack (confined to the first ``cores`` CPUs if given): its idle CPU
    (``idle_s`` > 0), the fast run, ``warm_s`` of a first live stream (stopped), the live run
    (with the Chromium page), then stopped."""
    os.environ["LOG_PROGRESS"] = "1"  # the Spark application logs its phases per batch
    t0 = time.monotonic()
    stack = start_stack(data_dir, cores=cores)
    out: dict = {"boot_s": time.monotonic() - t0, "idle": None, "fast": None, "live": None}
    try:
        api = Api.of(stack)
        row = api.upload(SAMPLE_VIDEO, "bench")
        video_id, fps = row["id"], float(row.get("fps") or 25.0)
        api.calibrate(video_id, json.loads(SAMPLE_CALIBRATION.read_text()))
        if idle_s > 0:  # ready, no stream yet
            out["idle"] = measure_idle(stack, idle_s)
        # The fast run first: it also takes the first micro-batches' one-off costs (Python workers
        # of the stateful stage, RocksDB), which the live run would otherwise count as latency.
        if fast:
            out["fast"] = stream_once(stack, api, video_id, realtime=False, video_fps=fps)
        if warm_s > 0:
            warm_stream(stack, api, video_id, warm_s)
        mark, out["fast_phases"] = spark_phases(stack.log_tail("spark", 50_000_000))
        if live:
            out["live"] = stream_once(stack, api, video_id, realtime=True, page=page, video_fps=fps)
            _, out["live_phases"] = spark_phases(stack.log_tail("spark", 50_000_000), mark)
    finally:
        stop_stack(stack)
    return out


def cores_label(cores: int | None) -> str:
    n = cores or len(os.sched_getaffinity(0))
    return f"({n} core{'s' if n > 1 else ''}{'' if cores else ', all'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-e2e", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--live-only", action="store_true", help="skip the fast run and the offline one")
    parser.add_argument("--dump", type=Path, help="write the live run's per-frame timeline (JSON)")
    parser.add_argument("--no-page", action="store_true", help="no headless Chromium page on the live run")
    parser.add_argument(
        "--cores",
        type=int,
        default=None,
        metavar="N",
        help="confine the whole stack (every service and its children) to the first N CPUs; "
        "then no second, one-core live run",
    )
    parser.add_argument(
        "--also-cores",
        type=int,
        default=None,
        metavar="N",
        help="after the main run, start the stack again confined to N CPUs for a live run without "
        "the page (default 1 for the full bench, 0 = none, the default with --live-only or --cores)",
    )
    parser.add_argument(
        "--idle-s", type=float, default=45.0, help="idle CPU window before the first stream (0: none)"
    )
    parser.add_argument(
        "--idle-only", action="store_true", help="only the idle CPU of the ready stack (no stream)"
    )
    args = parser.parse_args(argv)
    also = args.also_cores
    if also is None:
        also = 0 if (args.live_only or args.cores or args.idle_only) else 1
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    label = cores_label(args.cores)
    if args.idle_only:
        first = run_stack_pass(data_dir, args.cores, fast=False, page=False, idle_s=args.idle_s, live=False)
        print(f"stack boot {first['boot_s']:.0f} s {label}")
        print(f"idle CPU of the stack {label}: {format_idle(first['idle'])}")
        return 0
    first = run_stack_pass(
        data_dir,
        args.cores,
        fast=not args.live_only,
        page=not args.no_page,
        idle_s=0 if args.live_only else args.idle_s,
    )
    live, fast = first["live"], first["fast"]
    if args.dump:
        args.dump.write_text(json.dumps(live["timeline"]))
    second: dict | None = None
    second_error = None
    if also:
        try:
            second = run_stack_pass(
                Path(tempfile.mkdtemp(prefix="bench-e2e-cores-")),
                also,
                fast=False,
                page=False,
                idle_s=0,
                warm_s=10.0,
            )
            if args.dump:
                args.dump.with_suffix(f".cores{also}.json").write_text(json.dumps(second["live"]["timeline"]))
        except Exception as exc:  # noqa: BLE001 - the main run's figures are printed anyway
            second_error = repr(exc)
    page_note = "Chromium page open" if not args.no_page else "no page"
    if fast is None:
        print(live | {"timeline": len(live["timeline"])})
        print_phases("live", first["live_phases"])
        print_live(f"{label}, {page_note}", live)
        print_page(live)
        print_second(also, second, second_error)
        return 0
    offline = offline_fps(live["frames"] + live["skipped"] + live["dropped"], args.cores)
    print(
        f"bench-e2e: {SAMPLE_VIDEO.name} (1190 frames @ 25 fps), stack boot {first['boot_s']:.0f} s {label}"
    )
    if first["idle"] is not None:
        print(
            f"idle CPU of the stack (ready, before the first stream, {args.idle_s:.0f} s) {label}: "
            f"{format_idle(first['idle'])}"
        )
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
    print_live(f"{label}, {page_note}", live)
    print(f"as fast as possible   : {fast['frames']} frames, {fast['fps']:.1f} frames/s end to end")
    print(f"offline processor     : {offline:.1f} frames/s (same frames, same run, stack stopped)")
    print(
        f"ratio end-to-end / offline: {fast['fps'] / offline:.2f} (aim >= 0.85); "
        f"real time: {fast['fps'] / 25.0:.2f}x"
    )
    print_phases("as fast as possible", first["fast_phases"])
    print_phases("live", first["live_phases"])
    print_page(live)
    print_second(also, second, second_error)
    return 0


def print_second(cores: int, second: dict | None, error: str | None) -> None:
    """The live run of the stack started again, confined to ``cores`` CPUs (no page)."""
    if not cores:
        return
    label = cores_label(cores)
    if second is None:
        print(f"live {label}: not measured: {error}")
        return
    print(
        f"stack boot {second['boot_s']:.0f} s {label} (started again; a first live stream stopped "
        "after 10 s, then the live run, no page)"
    )
    print_live(f"{label}, no page", second["live"])
    print_phases(f"live {label}", second["live_phases"])


if __name__ == "__main__":
    raise SystemExit(main())
