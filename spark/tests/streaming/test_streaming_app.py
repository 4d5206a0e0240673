"""The Spark application end to end on a real Redis and Spark local mode, as a separate process:
a generated truth clip goes through ``video-frames`` and comes back once per frame, in order, in
``processed-frames``, with the true count and the speeding vehicles; then kill -9 mid-stream and
a restart on the same checkpoint lose and duplicate nothing."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import redis
from streaming_helpers import SparkApp, short_scenario, start_redis

from contracts.messages import StreamProgress, Summary, Violation
from contracts.streams import analytics_key, progress_key, violations_key
from testing.feed import clip_jpegs, feed, frame_config, read_processed, wait_for_eos

pytestmark = pytest.mark.slow

STARTUP_AND_RUN_S = 300


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from testing.synthetic import render

    tmp = tmp_path_factory.mktemp("streaming-app")
    server = start_redis(tmp)
    truth = render(short_scenario(), tmp / "clip", "short")
    clip = {
        "truth": truth,
        "jpegs": clip_jpegs(truth["video"]),
        "config": frame_config(tmp / "clip" / "short_calib.json", truth["fps"], realtime=False),
    }
    app = SparkApp(
        server.port,
        tmp / "checkpoint",
        tmp / "app.log",
        MAX_ENTRIES_PER_BATCH="16",
        SOURCE_PARTITIONS="1",
    ).start()
    client = redis.Redis(port=server.port)
    yield {"client": client, "app": app, **clip}
    app.stop()
    client.close()
    server.stop()


def check_video(env, video_id: int) -> None:
    client, truth = env["client"], env["truth"]
    n = truth["frames"]
    entries = [pf for _, pf in read_processed(client, video_id)]
    # Every frame exactly once, in frame order, then the end of stream.
    assert [pf.frame_number for pf in entries] == list(range(n)) + [n]
    assert [pf.end_of_stream for pf in entries] == [False] * n + [True]
    for pf in entries[:n]:
        assert pf.error is None, pf.error
        image = cv2.imdecode(np.frombuffer(pf.processed_frame, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (360, 640, 3)
    assert max(pf.stats.total_vehicles for pf in entries) == len(truth["vehicles"])

    summary = entries[-1].summary
    speeding = [v for v in truth["vehicles"] if v["speeding"]]
    assert summary is not None
    assert summary.total_vehicles_count == len(truth["vehicles"])
    assert summary.vehicle_type_distribution == {"car": len(truth["vehicles"])}
    assert summary.speeding_count == len(speeding)

    violations = [Violation.model_validate_json(v) for v in client.lrange(violations_key(video_id), 0, -1)]
    assert len({v.track_id for v in violations}) == len(violations) == len(speeding)
    got = sorted(v.speed_kmh for v in violations)
    want = sorted(v["speed_kmh"] for v in speeding)
    assert np.allclose(got, want, atol=5.0), (got, want)

    progress = StreamProgress.from_hash(client.hgetall(progress_key(video_id)))
    assert progress.processed == n
    assert progress.processed_last_frame == n - 1
    assert progress.eos_processed is True
    assert not progress.skipped and not progress.frame_errors
    assert progress.fatal_error is None
    assert progress.summary == summary
    assert Summary.model_validate_json(client.get(analytics_key(video_id))) == summary


def test_clip_streams_through_once_in_order_with_the_true_counts(env):
    feed(env["client"], 101, env["jpegs"], env["config"], paced=False)
    try:
        wait_for_eos(env["client"], 101, STARTUP_AND_RUN_S, env["app"].proc)
    except (TimeoutError, RuntimeError):
        pytest.fail(f"no end of stream; app log:\n{env['app'].log_tail()}")
    check_video(env, 101)


def test_kill_9_mid_stream_and_restart_loses_and_duplicates_nothing(env):
    client, app = env["client"], env["app"]
    feed(client, 102, env["jpegs"], env["config"], paced=False)
    deadline = time.monotonic() + STARTUP_AND_RUN_S

    def processed() -> int:
        return StreamProgress.from_hash(client.hgetall(progress_key(102))).processed or 0

    while processed() < 16:
        assert time.monotonic() < deadline, app.log_tail()
        assert app.proc.poll() is None, app.log_tail()
        time.sleep(0.05)
    app.kill9()
    processed_at_kill = processed()
    assert processed_at_kill < env["truth"]["frames"], "the run ended before the kill"

    app.start()  # same checkpoint
    try:
        wait_for_eos(client, 102, STARTUP_AND_RUN_S, app.proc)
    except (TimeoutError, RuntimeError):
        pytest.fail(f"no end of stream after the restart; app log:\n{app.log_tail()}")
    check_video(env, 102)
    # The first video is untouched by the replay.
    assert len(read_processed(client, 101)) == env["truth"]["frames"] + 1
