"""Fan-out benchmark of the WebSocket hub: frames/s delivered per client, 1 vs 100 clients.

Starts PostgreSQL and Redis (embedded, see backend/embedded.py), migrates, runs the backend
as its own process, registers one video, then for each client count: N clients subscribe to the
video's frame and analytics channels, the bridge's two ingest sockets push ``--frames`` frames of
``--frame-kb`` KB (plus one analytics message each) as fast as the hub takes them, and every
client counts what it receives. Prints frames/s per client for 1 and for 100 clients and the
ratio (100-client rate / 1-client rate; 1.0 means fan-out costs a client nothing).

    python -m benchmarks.fanout [--frame-kb 40] [--clients 1 100] [--fps 25]

Two modes: paced at a live video's rate (does every client keep up with the ingest rate?) and
unpaced (how many frames/s the hub can deliver to each client when frames arrive faster than
they can be sent; the per-client queue then drops the older frames, never analytics).

Clients run in this process (one asyncio loop), so on a small machine the figures are a lower
bound of what the hub delivers to independent browsers.

Every run is its own stream run (a fresh ``run_id`` on each message, as the producer does): the
hub's repeat filter would otherwise drop the second run of the same video, which starts again at
frame 0. A run whose clients did not get everything within ``--timeout`` s is reported as
INCOMPLETE (the benchmark then exits with status 1) instead of waiting for ever.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

MAX_MESSAGE = 64 * 1024 * 1024


@dataclass
class ClientStats:
    frames: int = 0
    analytics: int = 0
    first_frame_at: float = 0.0
    last_frame_at: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def frames_per_s(self) -> float:
        span = self.last_frame_at - self.first_frame_at
        return (self.frames - 1) / span if self.frames > 1 and span > 0 else 0.0


@dataclass
class FanoutResult:
    clients: int
    frames_sent: int
    analytics_sent: int
    elapsed_s: float
    per_client: list[ClientStats]
    complete: bool = True  # False: some client still missed messages when the timeout hit

    @property
    def mean_frames_per_s(self) -> float:
        return sum(c.frames_per_s() for c in self.per_client) / len(self.per_client)

    @property
    def min_frames(self) -> int:
        return min(c.frames for c in self.per_client)

    @property
    def min_analytics(self) -> int:
        return min(c.analytics for c in self.per_client)


def frame_payload(video_id: int, n: int, jpeg: bytes, last: bool, run_id: str | None = None) -> str:
    data = {
        "video_id": video_id,
        "frame_number": n,
        "timestamp": n / 25.0,
        "processed_frame": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode(),
        "roi_polygon": None,
        "end_of_stream": last,
        "run_id": run_id,
    }
    return json.dumps({"type": "processed_frame", "data": data})


def analytics_payload(video_id: int, n: int, run_id: str | None = None) -> str:
    data = {
        "video_id": video_id,
        "frame_number": n,
        "timestamp": n / 25.0,
        "stats": {"total_vehicles": n, "speeding_count": 0, "current_in_roi": 1},
        "speeding_vehicles": [],
        "run_id": run_id,
    }
    return json.dumps({"type": "analytics_update", "data": data})


async def _connect(url: str, headers: dict[str, str]) -> WebSocketClientConnection:
    return await websocket_connect(
        HTTPRequest(url, headers=headers, connect_timeout=30, request_timeout=60),
        max_message_size=MAX_MESSAGE,
    )


async def _client(
    url: str, headers: dict[str, str], video_id: int, expected: int, ready: asyncio.Event
) -> tuple:
    conn = await _connect(url, headers)
    for channel in (f"processed_frame_{video_id}", f"analytics_metrics_{video_id}"):
        await conn.write_message(json.dumps({"action": "subscribe", "channel": channel}))
        reply = await conn.read_message()
        if reply is None:
            raise RuntimeError("connection closed before the subscription ack")
        ack = json.loads(reply)
        if ack.get("type") != "subscription_ack":
            raise RuntimeError(f"subscription refused: {ack}")
    stats = ClientStats()
    await asyncio.sleep(0)

    async def reader() -> None:
        got_last = False
        while True:
            message = await conn.read_message()
            if message is None:
                break
            if isinstance(message, bytes):  # the hub sends text frames; a binary one is not ours
                continue
            if message.startswith('{"type":"frame"'):
                now = time.perf_counter()
                stats.frames += 1
                stats.first_frame_at = stats.first_frame_at or now
                stats.last_frame_at = now
                got_last = got_last or '"end_of_stream":true' in message
            elif message.startswith('{"type":"analytics"'):
                stats.analytics += 1
            if got_last and stats.analytics >= expected:
                stats.done.set()
                break

    task = asyncio.ensure_future(reader())
    ready.set()
    return conn, stats, task


async def run_fanout(
    ws_base: str,
    *,
    token: str,
    origin: str,
    video_id: int,
    clients: int,
    frames: int,
    frame_bytes: int,
    fps: float = 0.0,
    timeout_s: float = 120.0,
    run_id: str | None = None,
    client_headers: dict[str, str] | None = None,
) -> FanoutResult:
    """Connect ``clients`` subscribers, push ``frames`` frames (paced at ``fps``, 0 = unpaced).

    The messages carry ``run_id`` (default: a fresh one per call, i.e. each call is a new stream
    run of the video). When the clients have not got everything after ``timeout_s`` the result
    comes back with ``complete=False``. ``client_headers``: the subscribers' credentials (the
    client stream needs a viewer: ``Authorization: Bearer <API token>`` or a session cookie)."""
    run_id = run_id or uuid.uuid4().hex
    url = f"{ws_base}/ws/client/stream"
    readies = [asyncio.Event() for _ in range(clients)]
    connected = []
    for i in range(0, clients, 20):  # connect in small waves
        headers = {"Origin": origin, **(client_headers or {})}
        batch = [_client(url, headers, video_id, frames, readies[j]) for j in range(i, min(i + 20, clients))]
        connected.extend(await asyncio.gather(*batch))
    auth = {"Authorization": f"Bearer {token}"}
    frame_in = await _connect(f"{ws_base}/ws/backend/processed", auth)
    stats_in = await _connect(f"{ws_base}/ws/backend/analytics", auth)
    jpeg = os.urandom(frame_bytes)
    start = time.perf_counter()
    for n in range(frames):
        if fps > 0:
            delay = start + n / fps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await frame_in.write_message(frame_payload(video_id, n, jpeg, n == frames - 1, run_id))
        await stats_in.write_message(analytics_payload(video_id, n, run_id))
    complete = True
    try:
        await asyncio.wait_for(asyncio.gather(*(s.done.wait() for _, s, _ in connected)), timeout_s)
    except TimeoutError:
        complete = False
    finally:
        elapsed = time.perf_counter() - start
        for conn, _, task in connected:
            task.cancel()
            conn.close()
        frame_in.close()
        stats_in.close()
    return FanoutResult(clients, frames, frames, elapsed, [s for _, s, _ in connected], complete)


# ---- standalone benchmark ------------------------------------------------------------------


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"backend exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"backend not healthy at {url}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame-kb", type=float, default=40.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--fps", type=float, default=25.0, help="paced ingest rate (a live video)")
    parser.add_argument("--paced-frames", type=int, default=125)
    parser.add_argument("--capacity-frames", type=int, default=1000, help="unpaced run; 0 skips it")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take")
    args = parser.parse_args(argv)
    incomplete = 0

    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from backend.db.migrate import migrate
    from backend.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
    from backend.services import accounts

    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    pg = EmbeddedPostgres(work / "pg").start()
    rd = EmbeddedRedis(work / "redis").start()
    proc = None
    try:
        migrate(pg.url)
        engine = create_engine(pg.url)
        with engine.begin() as conn:
            video_id = conn.execute(
                text("INSERT INTO videos (name, file_path) VALUES ('bench', '/dev/null') RETURNING id")
            ).scalar_one()
        with Session(engine) as session, session.begin():  # the subscribers log in as a viewer
            viewer = accounts.create_user(
                session=session, username="bench", password=accounts.generate_password(), role="viewer"
            )
            viewer_token = accounts.create_token(session=session, user_id=viewer.id, name="bench")[1]
        engine.dispose()
        port, token, origin = free_port(), uuid.uuid4().hex + uuid.uuid4().hex, "http://localhost:4200"
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(rd.port),
            "BACKEND_HOST": "127.0.0.1",
            "BACKEND_PORT": str(port),
            "INTERNAL_TOKEN": token,
            "ALLOWED_ORIGINS": origin,
            "VIDEO_STORAGE_PATH": str(work / "videos"),
        }
        log = open(work / "backend.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend.app"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        _wait_http(f"http://127.0.0.1:{port}/api/health", 60, proc)

        frame_bytes = int(args.frame_kb * 1024 * 3 / 4)  # base64 makes it frame_kb on the wire
        modes = [(f"paced at {args.fps:g} fps", args.fps, args.paced_frames)]
        if args.capacity_frames:
            modes.append(("unpaced (capacity)", 0.0, args.capacity_frames))
        for label, fps, frames in modes:
            print(f"== {label}: {args.frame_kb:g} KB frames, {frames} frames, 1 analytics message per frame")
            results = []
            for n in args.clients:
                result = asyncio.run(
                    run_fanout(
                        f"ws://127.0.0.1:{port}",
                        token=token,
                        origin=origin,
                        video_id=video_id,
                        clients=n,
                        frames=frames,
                        frame_bytes=frame_bytes,
                        fps=fps,
                        timeout_s=args.timeout,
                        client_headers={"Authorization": f"Bearer {viewer_token}"},
                    )
                )
                results.append(result)
                incomplete += not result.complete
                print(
                    f"{n:4d} client(s): {result.mean_frames_per_s:8.1f} frames/s per client "
                    f"(fewest frames {result.min_frames}/{result.frames_sent}, "
                    f"analytics {result.min_analytics}/{result.analytics_sent} to every client, "
                    f"{result.elapsed_s:.2f} s)"
                    + ("" if result.complete else f"  INCOMPLETE: timed out after {args.timeout:g} s"),
                    flush=True,
                )
            if len(results) >= 2 and all(r.complete for r in results) and results[0].mean_frames_per_s > 0:
                ratio = results[-1].mean_frames_per_s / results[0].mean_frames_per_s
                print(f"ratio {results[-1].clients} vs {results[0].clients} clients: {ratio:.2f}", flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        rd.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)  # the database and Redis files (~46 MB)
    if incomplete:
        print(f"bench_fanout: {incomplete} run(s) incomplete; their figures are not valid", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
