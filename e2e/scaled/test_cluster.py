"""The streaming application on a real Spark standalone cluster (a master and two workers on
loopback, started by the test's stack with ``spark-class``): four generated-truth videos at once,
and one worker killed with SIGKILL (its JVM, its executor and their Python workers: a machine
lost) in the middle of them. The query goes on with the other worker's executor; the videos whose
state partition was on the lost one resume from their checkpointed state; every frame comes out
of ``processed-frames`` exactly once and the counts and speeders match the truth."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from contracts import streams
from contracts.messages import ProcessedFrame
from e2e.harness import Api, wait_dag_run
from e2e.test_pipeline import RUN_TIMEOUT_S, analytics_row, run_id

pytestmark = pytest.mark.slow
VIDEOS = 4


class ProcessedLog:
    """Every entry of ``processed-frames`` as it is written (read from the start, following the
    stream in a thread): (video id, frame number) of each, with the times of the first and the
    last per video."""

    def __init__(self, env: dict[str, str]) -> None:
        self.client = redis.Redis(
            host=env["REDIS_HOST"], port=int(env["REDIS_PORT"]), password=env["REDIS_PASSWORD"]
        )
        self.entries: list[tuple[int, int, bool]] = []
        self.times: list[float] = []  # monotonic time each entry was read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ProcessedLog:
        self._thread.start()
        return self

    def _run(self) -> None:
        last = "0-0"
        while not self._stop.is_set():
            reply = self.client.xread({streams.PROCESSED_FRAMES: last}, count=500, block=500)
            for _name, items in reply or []:
                for entry_id, fields in items:
                    last = entry_id
                    frame = ProcessedFrame.from_fields(fields)
                    self.entries.append((frame.video_id, frame.frame_number, frame.end_of_stream))
                    self.times.append(time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()

    def first_after(self, videos: set[int], t: float) -> float | None:
        """When the first entry of one of ``videos`` came after ``t``."""
        return next((at for at, e in zip(self.times, self.entries) if at > t and e[0] in videos), None)

    def frames_of(self, video_id: int) -> Counter[int]:
        return Counter(n for v, n, eos in self.entries if v == video_id and not (eos and n < 0))


def videos_on_workers(stack) -> dict[str, dict[int, set[str]]]:
    """worker name -> video id -> the states it was found in there ("new", "checkpointed"), from
    the executors' logs (the stateful stage logs a video the first time a Python worker sees it)."""
    base = Path(stack.infra.env["SPARK_WORKER_DIR_BASE"])
    found: dict[str, dict[int, set[str]]] = {}
    for n in range(1, stack.infra.spark_workers + 1):
        seen = found.setdefault(f"spark-worker-{n}", {})
        for stderr in (base / f"worker-{n}").glob("app-*/*/stderr"):
            for m in VIDEO_HERE.finditer(stderr.read_text(errors="replace")):
                seen.setdefault(int(m[1]), set()).add(m[2])
    return found


VIDEO_HERE = re.compile(r"\[SPARK-APP\] video (\d+) is processed in pid \d+ \((\w+) state\)")


def executor_losses(stack) -> list[str]:
    """The driver's log lines about an executor it lost (the worker's kill, seen by the app)."""
    text = (stack.logs / "spark.log").read_text(errors="replace")
    return [line for line in text.splitlines() if re.search(r"Lost executor|ExecutorLostFailure", line)]


def test_four_videos_on_the_cluster_survive_a_worker_kill(scaled_stack, truth):
    stack = scaled_stack
    clip, calib, data = truth
    assert stack.infra.env["SPARK_MASTER"].startswith("spark://")
    api = Api.of(stack)
    ids = []
    for n in range(VIDEOS):
        video = api.upload(clip, f"cluster {n}")
        api.calibrate(video["id"], calib)
        ids.append(video["id"])
    processed = ProcessedLog(stack.infra.env).start()
    runs = {}
    try:
        for video_id in ids:  # every frame processed (realtime=false): the counts are exact
            status, run = api.json("POST", f"/api/videos/{video_id}/stream/start", {"realtime": False})
            assert status == 201, run
            runs[video_id] = run_id(run)
        # Mid-stream: a quarter of all the frames out, then the first worker is lost
        total = VIDEOS * data["frames"]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while sum(1 for v, _, _ in processed.entries if v in ids) < total // 4:
            assert time.monotonic() < deadline, f"only {len(processed.entries)} frames out"
            time.sleep(0.2)
        out_before = sum(1 for v, _, _ in processed.entries if v in ids)
        # the worker that holds videos of ours (both may: the first then)
        before = videos_on_workers(stack)
        victim = next(w for w, seen in sorted(before.items()) if set(seen) & set(ids))
        moved = set(before[victim]) & set(ids)
        killed_at = time.monotonic()
        stack.kill(victim)  # SIGKILL to its process group: the worker, its executor, their Python
        for video_id in ids:
            assert wait_dag_run(stack, runs[video_id], RUN_TIMEOUT_S) == "success", video_id
        finished = time.monotonic() - killed_at
    finally:
        processed.stop()

    resumed = processed.first_after(moved, killed_at)
    assert resumed is not None, f"videos {moved} never went on after the kill"
    print(
        f"\n[cluster] the moved videos' next frame {resumed - killed_at:.1f} s after the kill; "
        f"{VIDEOS} videos x {data['frames']} frames; {victim} (videos {sorted(moved)}) killed "
        f"after {out_before} frames; the rest done {finished:.1f} s later"
    )
    losses = executor_losses(stack)
    assert losses, "the driver never saw its executor on the killed worker go"
    print("[cluster] the driver:", losses[0][:200])
    after = videos_on_workers(stack)
    survivor = next(w for w in after if w != victim)
    for video_id in moved:  # went on on the other worker, from the state of the last batch
        assert "checkpointed" in after[survivor].get(video_id, set()), (video_id, after)
    for video_id in ids:
        counts = processed.frames_of(video_id)
        missing = sorted(set(range(data["frames"])) - set(counts))
        twice = sorted(n for n, c in counts.items() if c > 1)
        assert not missing, f"video {video_id}: frames {missing[:20]} never reached processed-frames"
        assert not twice, f"video {video_id}: frames {twice[:20]} written more than once"
        total_vehicles, types, speeding, _ = analytics_row(stack, video_id)
        assert total_vehicles == len(data["vehicles"]), (video_id, total_vehicles)
        assert types == dict(Counter(t["class_name"] for t in data["vehicles"])), (video_id, types)
        assert speeding == sum(1 for t in data["vehicles"] if t["speeding"]), (video_id, speeding)
