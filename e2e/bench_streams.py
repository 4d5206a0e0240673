"""``make bench-streams``: how many live streams one stack takes within the latency budget.

Starts the stack (local; ``--cluster W``: the Spark application on a standalone master with W
workers), uploads and calibrates the urban clip once per stream (one video each: a video streams
once at a time), takes a first stack's one-off costs with a 10 s live stream (stopped), then for
each N of ``--streams`` (default 1,2,4) starts N live streams at once (realtime, paced at 25 fps,
each with its WebSocket viewer: ``e2e.bench.stream_once``), stops them after ``--seconds`` (45)
and prints a row: the live latency (``produced_at`` to the viewer) p50 / p95 over every frame of
the N streams and the worst stream's p95, the detection rate per stream (frames detected per
second of video; the lowest and the median of the N), the share of delivered frames in the
degraded state and the share the processor dropped. Then one line: the largest N (every smaller
N measured passing too) whose latency p95 is under the budget (``LIVE_LATENCY_BUDGET_S``, 1 s)
with every stream detected at ``LIVE_MIN_DETECT_HZ`` (5 Hz) or more.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.messages import STREAMING_VIDEO_STATUSES as STREAMING
from e2e.bench import stream_once, warm_stream
from e2e.harness import Api, start_stack, stop_stack
from stack.sample import SAMPLE_CALIBRATION, SAMPLE_VIDEO


@dataclass(frozen=True)
class Step:
    """The N streams of one step, summed up."""

    streams: int
    frames: int  # delivered, all streams
    lat_p50: float
    lat_p95: float
    worst_p95: float  # the stream with the highest p95
    detect_hz_min: float  # frames detected per second of video, per stream
    detect_hz_median: float
    degraded_share: float  # of the delivered frames
    dropped_share: float  # of the frames produced (delivered + dropped by the processor)

    def within(self, budget_s: float, min_hz: float) -> bool:
        return self.lat_p95 < budget_s and self.detect_hz_min >= min_hz


def summarize(n: int, runs: list[dict]) -> Step:
    """One step from its streams' ``stream_once`` results (their ``timeline``: frame, produced,
    arrived, skipped; ``lat_p95``, ``detect_rate_hz``, ``degraded_share``, ``dropped``)."""
    latency = [arrived - produced for run in runs for _, produced, arrived, _ in run["timeline"]]
    frames = sum(run["frames"] for run in runs)
    dropped = sum(run["dropped"] for run in runs)
    rates = [run["detect_rate_hz"] for run in runs]
    nan = float("nan")
    return Step(
        streams=n,
        frames=frames,
        lat_p50=float(np.percentile(latency, 50)) if latency else nan,
        lat_p95=float(np.percentile(latency, 95)) if latency else nan,
        worst_p95=max((run["lat_p95"] for run in runs), default=nan),
        detect_hz_min=min(rates, default=nan),
        detect_hz_median=float(np.median(rates)) if rates else nan,
        degraded_share=(
            sum(run["degraded_share"] * run["frames"] for run in runs) / frames if frames else nan
        ),
        dropped_share=dropped / (frames + dropped) if frames + dropped else nan,
    )


def streams_within_budget(steps: list[Step], budget_s: float, min_hz: float) -> int:
    """The largest N measured within the budget with every smaller N measured within it too
    (0: not even the smallest)."""
    best = 0
    for step in sorted(steps, key=lambda s: s.streams):
        if not step.within(budget_s, min_hz):
            break
        best = step.streams
    return best


HEADER = (
    "streams  frames  latency p50    p95  worst p95  detect Hz/stream min  median  degraded  dropped  within"
)


def format_row(step: Step, budget_s: float, min_hz: float) -> str:
    ok = "yes" if step.within(budget_s, min_hz) else "no"
    return (
        f"{step.streams:7d}  {step.frames:6d}  {step.lat_p50:9.2f} s {step.lat_p95:4.2f} s  "
        f"{step.worst_p95:7.2f} s  {step.detect_hz_min:18.1f}  {step.detect_hz_median:6.1f}  "
        f"{100 * step.degraded_share:7.0f}%  {100 * step.dropped_share:6.0f}%  {ok:>6}"
    )


def capacity_line(steps: list[Step], budget_s: float, min_hz: float, where: str = "") -> str:
    k = streams_within_budget(steps, budget_s, min_hz)
    return (
        f"streams per machine within the latency budget (p95 < {budget_s:g} s) at >= {min_hz:g} Hz "
        f"detection: {k}{where}"
    )


def wait_idle(api: Api, video_ids: list[int], timeout_s: float = 180) -> None:
    """Until no run of these videos is going or ending (the previous step's clean-ups)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = [v for v in video_ids if api.json("GET", f"/api/videos/{v}")[1].get("status") in STREAMING]
        if not busy:
            return
        time.sleep(1)
    raise TimeoutError(f"videos {busy} still streaming after {timeout_s} s")


def run_step(stack, api: Api, video_ids: list[int], seconds: float, fps: float) -> list[dict]:
    """The streams of ``video_ids`` started at once, stopped after ``seconds`` (or at the clip's
    end, whichever comes first): each one's ``stream_once`` result."""
    wait_idle(api, video_ids)
    stop = threading.Event()

    def stopper() -> None:
        if not stop.wait(seconds):
            for video_id in video_ids:
                api.json("POST", f"/api/videos/{video_id}/stream/stop")

    def stream(video_id: int) -> dict:
        return stream_once(stack, api, video_id, realtime=True, timeout_s=seconds + 300, video_fps=fps)

    threading.Thread(target=stopper, daemon=True).start()
    try:
        with ThreadPoolExecutor(len(video_ids)) as pool:
            return list(pool.map(stream, video_ids))
    finally:
        stop.set()


def parse_streams(text: str) -> list[int]:
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"stream counts >= 1, comma-separated: {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    from spark.streaming.settings import SparkSettings

    live = SparkSettings()  # the processor's live settings, as the stack's Spark reads them
    parser = argparse.ArgumentParser(prog="bench-streams", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=parse_streams, default=[1, 2, 4], help="N to measure: 1,2,4")
    parser.add_argument("--seconds", type=float, default=45.0, help="each step's streams last this long")
    parser.add_argument("--cluster", type=int, default=0, metavar="W", help="Spark standalone, W workers")
    parser.add_argument("--budget-s", type=float, default=live.LIVE_LATENCY_BUDGET_S)
    parser.add_argument("--min-hz", type=float, default=live.LIVE_MIN_DETECT_HZ)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--dump", type=Path, help="every step's per-stream results (JSON)")
    args = parser.parse_args(argv)
    most = max(args.streams)
    # Airflow admits that many runs at once (more would wait queued, not stream)
    os.environ["MAX_STREAMS"] = str(max(most, int(os.environ.get("MAX_STREAMS") or 0)))
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-streams-"))
    cores = len(os.sched_getaffinity(0))
    where = f" ({cores} cores" + (f", Spark standalone with {args.cluster} workers)" if args.cluster else ")")
    t0 = time.monotonic()
    stack = start_stack(data_dir, spark_workers=args.cluster)
    print(f"bench-streams: stack up in {time.monotonic() - t0:.0f} s{where}", flush=True)
    steps: list[Step] = []
    dump: dict[int, list[dict]] = {}
    try:
        api = Api.of(stack)
        calibration = json.loads(SAMPLE_CALIBRATION.read_text())
        rows = [api.upload(SAMPLE_VIDEO, f"bench streams {i + 1}") for i in range(most)]
        for row in rows:
            api.calibrate(row["id"], calibration)
        fps = float(rows[0].get("fps") or 25.0)
        warm_stream(stack, api, rows[0]["id"])
        for n in args.streams:
            runs = run_step(stack, api, [row["id"] for row in rows[:n]], args.seconds, fps)
            steps.append(summarize(n, runs))
            dump[n] = [{k: v for k, v in run.items() if k != "page"} for run in runs]
            print(f"{n} stream(s): {format_row(steps[-1], args.budget_s, args.min_hz)}", flush=True)
    finally:
        stop_stack(stack)
    if args.dump:
        args.dump.write_text(json.dumps(dump))
    print(
        f"\nbench-streams: {SAMPLE_VIDEO.name} live (25 fps), {args.seconds:g} s a step, N streams "
        f"started at once{where}"
    )
    print(HEADER)
    for step in steps:
        print(format_row(step, args.budget_s, args.min_hz))
    print(capacity_line(steps, args.budget_s, args.min_hz, where))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
