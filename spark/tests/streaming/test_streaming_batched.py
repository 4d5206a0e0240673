"""The GPU deployment's plan on the CPU: with ``BATCHED_DETECT=1`` the Spark application detects
the frames of a micro-batch (two videos at once here) in a batched stage before the per-video
stage, and the results are those of the single pass: every frame once, the true counts, the
speeding vehicles."""

from __future__ import annotations

import pytest
import redis
from streaming_helpers import SparkApp, short_scenario, start_redis
from test_streaming_app import STARTUP_AND_RUN_S, check_video

from testing.feed import clip_jpegs, feed, frame_config, wait_for_eos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from testing.synthetic import render

    tmp = tmp_path_factory.mktemp("streaming-batched")
    server = start_redis(tmp)
    truth = render(short_scenario(), tmp / "clip", "short")
    app = SparkApp(
        server.port,
        tmp / "checkpoint",
        tmp / "app.log",
        MAX_ENTRIES_PER_BATCH="32",
        BATCHED_DETECT="1",
        DETECT_BATCH="8",
    ).start()
    client = redis.Redis(port=server.port)
    yield {
        "client": client,
        "app": app,
        "truth": truth,
        "jpegs": clip_jpegs(truth["video"]),
        "config": frame_config(tmp / "clip" / "short_calib.json", truth["fps"], realtime=False),
        "checkpoint": tmp / "checkpoint",
    }
    app.stop()
    client.close()
    server.stop()


def test_two_videos_through_the_batched_detection_stage(env):
    client = env["client"]
    for video_id in (201, 202):  # both queued before the app reads: batches hold frames of both
        feed(client, video_id, env["jpegs"], env["config"], paced=False)
    try:
        for video_id in (201, 202):
            wait_for_eos(client, video_id, STARTUP_AND_RUN_S, env["app"].proc)
    except (TimeoutError, RuntimeError):
        pytest.fail(f"no end of stream; app log:\n{env['app'].log_tail()}")
    check_video(env, 201)
    check_video(env, 202)
    log = env["app"].log_tail(200_000)
    assert "batched detection" in log
    assert (env["checkpoint"] / "v2-batched-detect").is_dir()
