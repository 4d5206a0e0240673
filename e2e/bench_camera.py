"""``make bench-camera``: one live camera through the real stack for half an hour (a soak, not a
test): the sample clip on a loopback RTSP server (GStreamer's, ``stack/rtsp.py``), added, calibrated
and started through the REST API, watched by a WebSocket viewer.

Per window (5 min): frames the viewer got, latency camera -> viewer (p50/p95 of arrival minus the
wall clock at read), the detection rate, frames the producer dropped, reconnects, passages stored,
Redis memory and the two streams' lengths; every service's RSS (its whole process tree) at the
start and at the end. Flat memory and latency is the claim; the table is the evidence.

    make bench-camera                       # 30 min, 5-min windows
    BENCH_CAMERA_MINUTES=6 BENCH_CAMERA_WINDOW_MIN=1 make bench-camera
    BENCH_CAMERA_CORES=1 make bench-camera    # every service confined to one core
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from contracts import streams
from contracts.messages import StreamProgress
from e2e.harness import Api, connect_viewer, proc_table, service_roots, start_stack, stop_stack, tree
from stack.sample import SAMPLE_CALIBRATION, SAMPLE_VIDEO


class TimingViewer:
    """A WebSocket viewer of one video that keeps only each frame's timing (half an hour of JPEGs
    would not fit in memory): (arrival, produced_at, frame_number, detect_hz)."""

    def __init__(self, ws_url: str, video_id: int, token: str, origin: str = "http://localhost:4200") -> None:
        self.ws_url, self.video_id, self.token, self.origin = ws_url, video_id, token, origin
        self.frames: list[tuple[float, float, int]] = []
        self.analytics = 0
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.ready = threading.Event()

    def start(self) -> TimingViewer:
        threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True).start()
        assert self.ready.wait(30), self.errors
        return self

    async def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn = await connect_viewer(self.ws_url, self.origin, self.token, self.video_id)
                self.ready.set()
                while not self.stop_event.is_set():
                    try:
                        raw = await asyncio.wait_for(conn.read_message(), 0.5)
                    except TimeoutError:
                        continue
                    if raw is None:
                        self.errors.append("closed")
                        break
                    msg = json.loads(raw)
                    if msg["type"] == "frame" and msg["data"].get("produced_at"):
                        data = msg["data"]
                        self.frames.append(
                            (time.time(), float(data["produced_at"]), int(data["frame_number"]))
                        )
                    elif msg["type"] == "analytics":
                        self.analytics += 1
                conn.close()
            except Exception as exc:  # noqa: BLE001 - reconnects, as the page does
                self.errors.append(repr(exc))
                self.ready.set()
                await asyncio.sleep(1)


def rss_mb(stack) -> dict[str, float]:  # noqa: ANN001
    """MB of resident memory of each service's process tree (Airflow by component)."""
    table = proc_table()
    out = {}
    for label, (root, exclude) in service_roots(stack, table).items():
        total = 0
        for pid in tree(table, root, exclude):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        out[label] = total / 1024
    return out


def main() -> int:
    from stack.rtsp import RtspCamera, server_available, transcode

    minutes = float(os.environ.get("BENCH_CAMERA_MINUTES", "30"))
    window_s = 60 * float(os.environ.get("BENCH_CAMERA_WINDOW_MIN", "5"))
    missing = server_available()
    if missing:
        print(missing)
        return 1
    cores = int(os.environ.get("BENCH_CAMERA_CORES", "0")) or None
    work = Path(tempfile.mkdtemp(prefix="bench-camera-"))
    clip = transcode(SAMPLE_VIDEO, work / "camera.mp4")
    password = secrets.token_hex(8)
    print(
        f"[bench-camera] {minutes:g} min of one camera (the urban clip, 25 fps, in a loop), windows of "
        f"{window_s / 60:g} min, {cores or 'all'} core(s); starting the stack ...",
        flush=True,
    )
    stack = start_stack(work / "stack", cores=cores)
    import redis as redis_lib

    r = redis_lib.Redis(
        port=int(stack.infra.env["REDIS_PORT"]), password=stack.infra.env.get("REDIS_PASSWORD") or None
    )
    try:
        with RtspCamera(clip, user="bench", password=password) as cam:
            api = Api.of(stack)
            headers = {"Content-Type": "application/json"}
            status, body = api.call(
                "POST", "/api/cameras", json.dumps({"name": "soak", "url": cam.url}).encode(), headers
            )
            assert status == 201, body
            vid = body["id"]
            api.calibrate(vid, json.loads(SAMPLE_CALIBRATION.read_text()))
            viewer = TimingViewer(
                f"ws://127.0.0.1:{stack.infra.backend_port}/ws/client/stream",
                vid,
                stack.infra.env["TRAFFIC_API_TOKEN"],
            ).start()
            status, run = api.json("POST", f"/api/videos/{vid}/stream/start", {"realtime": True})
            assert status == 201, run
            t0 = time.time()
            while time.time() - t0 < 120 and not viewer.frames:
                time.sleep(1)
            start_rss = rss_mb(stack)
            rows = []
            began = time.time()
            next_at = began + window_s
            while time.time() < began + 60 * minutes:
                time.sleep(max(0.0, min(next_at, began + 60 * minutes) - time.time()))
                now = time.time()
                since = rows[-1]["end"] if rows else began
                frames = [f for f in viewer.frames if since <= f[0] < now]
                lat = [a - p for a, p, _ in frames]
                _, video = api.json("GET", f"/api/videos/{vid}")
                h = video.get("health") or {}
                progress = StreamProgress.from_hash(r.hgetall(streams.progress_key(vid)))
                _, passages = api.json("GET", f"/api/videos/{vid}/passages")
                rows.append(
                    {
                        "end": now,
                        "minute": round((now - began) / 60, 1),
                        "frames": len(frames),
                        "p50": float(np.percentile(lat, 50)) if lat else float("nan"),
                        "p95": float(np.percentile(lat, 95)) if lat else float("nan"),
                        "detect_hz": progress.detect_hz,
                        "dropped": h.get("dropped_frames"),
                        "reconnects": h.get("reconnects"),
                        "state": h.get("state"),
                        "passages": len(passages.get("passages", [])),
                        "redis_mb": r.info("memory")["used_memory"] / 2**20,
                        "video_frames": r.xlen(streams.VIDEO_FRAMES),
                        "processed_frames": r.xlen(streams.PROCESSED_FRAMES),
                        "rss_mb": sum(rss_mb(stack).values()),
                    }
                )
                row = rows[-1]
                print(
                    f"[bench-camera] {row['minute']:5.1f} min: {row['frames']} frames, latency p50 "
                    f"{row['p50']:.2f} s p95 {row['p95']:.2f} s, {row['detect_hz']} Hz, {row['state']}, "
                    f"{row['passages']} passages, RSS {row['rss_mb']:.0f} MB",
                    flush=True,
                )
                next_at += window_s
            end_rss = rss_mb(stack)
            viewer.stop_event.set()
            api.json("POST", f"/api/videos/{vid}/stream/stop")
    finally:
        stop_stack(stack)
    print(
        "\n| until | frames | latency p50 | p95 | detect Hz | producer dropped | reconnects | passages "
        "| Redis MB | video-frames | processed-frames | RSS all MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['minute']:g} min | {row['frames']} | {row['p50']:.2f} s | {row['p95']:.2f} s | "
            f"{row['detect_hz']} | {row['dropped']} | {row['reconnects']} | {row['passages']} | "
            f"{row['redis_mb']:.1f} | {row['video_frames']} | {row['processed_frames']} | "
            f"{row['rss_mb']:.0f} |"
        )
    print("\n| service | RSS start MB | RSS end MB | change |")
    print("|---|---|---|---|")
    for label in sorted(set(start_rss) | set(end_rss)):
        a, b = start_rss.get(label, 0.0), end_rss.get(label, 0.0)
        print(f"| {label} | {a:.0f} | {b:.0f} | {b - a:+.0f} |")
    first, last = rows[0], rows[-1]
    print(
        f"\nlatency p95 first -> last window: {first['p95']:.2f} -> {last['p95']:.2f} s; "
        f"RSS (all services) {first['rss_mb']:.0f} -> {last['rss_mb']:.0f} MB; "
        f"viewer errors {viewer.errors[:3]}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
