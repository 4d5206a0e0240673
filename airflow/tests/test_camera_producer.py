"""A camera's producer against a real RTSP server on loopback (stack/rtsp.py: GStreamer's RTSP
server serving a clip in a loop): paced by arrival and stamped at read, reconnecting by itself
after an outage with a frame-number gap as long as the outage, bounded when the processor lags,
and stopped within a second or two."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from traffic_pipeline.camera_producer import _Numbering
from traffic_pipeline.producer import produce_frames
from traffic_processing import camera

from contracts import streams
from contracts.assets import SAMPLE_VIDEO
from contracts.messages import CameraState, StreamProgress, VideoFrame

from .conftest import HOMOGRAPHY, ROI, Background, wait_until

CLIP = SAMPLE_VIDEO
USER, PASSWORD = "operator7", "pw-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def rtsp(workdir: Path):
    from stack.rtsp import RtspCamera, server_available, transcode

    missing = server_available()
    assert missing is None, missing  # .ci/run installs it (make rtsp-deps): never skipped
    clip = transcode(CLIP, workdir / "producer-camera.mp4", max_frames=50, size=(320, 180))
    with RtspCamera(clip, user=USER, password=PASSWORD) as cam:
        yield cam


def add_camera(engine, url: str, fps: float | None = 25.0) -> int:
    import json

    with engine.begin() as conn:
        return conn.execute(
            text(
                "INSERT INTO videos (name, file_path, status, fps, width, height, roi, homography_matrix,"
                " source_kind, source_url) VALUES ('cam', '', 'processing', :fps, 320, 180,"
                " CAST(:roi AS JSONB), CAST(:h AS JSONB), 'camera', :url) RETURNING id"
            ),
            {"fps": fps, "roi": json.dumps(ROI), "h": json.dumps(HOMOGRAPHY), "url": url},
        ).scalar_one()


def entries(r, video_id: int) -> list[VideoFrame]:
    return [
        f
        for f in (VideoFrame.from_fields(fields) for _, fields in r.xrange(streams.VIDEO_FRAMES))
        if f.video_id == video_id
    ]


def progress(r, video_id: int) -> StreamProgress:
    return StreamProgress.from_hash(r.hgetall(streams.progress_key(video_id)))


class FakeProcessor:
    """Reads every entry as the Spark stage does when it reads ahead (``streams.PULLED_KEY``:
    the last stream id of the video it read)."""

    def __init__(self, r, video_id: int) -> None:
        self.r, self.video_id, self.on = r, video_id, True

    def __call__(self) -> bool:
        if self.on:
            last = self.r.xrevrange(streams.VIDEO_FRAMES, count=1)
            if last:
                self.r.hset(streams.PULLED_KEY, str(self.video_id), last[0][0])
        return False


def pump(fake: FakeProcessor, predicate, timeout: float) -> bool:
    return wait_until(lambda: fake() or predicate(), timeout=timeout, step=0.05)


def test_numbering_follows_the_camera_clock_and_leaves_a_gap_for_an_outage():
    n = _Numbering(25.0)
    frame = lambda pts, at: camera.CameraFrame(np.zeros((1, 1, 3), np.uint8), pts, at)  # noqa: E731
    # jitter in arrival (pairs) does not move the numbers: the presentation times do
    assert [n(frame(i / 25, 100 + (i // 2) * 0.08), 1) for i in range(6)] == [0, 1, 2, 3, 4, 5]
    # a new connection 10 s later (its pts start again at 0): numbers go on after a 250-frame gap
    assert n(frame(0.0, 100.16 + 10.0), 2) == 5 + 250
    assert n(frame(0.04, 110.2), 2) == 256
    # a frame without a presentation time is the next one; numbers never go back
    assert n(frame(None, 110.28), 2) == 257
    assert n(frame(0.0, 110.3), 2) == 258


def test_a_camera_streams_live_reconnects_after_an_outage_and_stops_promptly(r, engine, settings, rtsp):
    vid = add_camera(engine, rtsp.url)
    settings.CAMERA_STALL_S = 2.0
    settings.CAMERA_BACKOFF_S = 0.2
    settings.CAMERA_BACKOFF_MAX_S = 1.0
    run = Background(lambda: produce_frames(vid, redis=r, settings=settings, run_id="cam-run"))
    fake = FakeProcessor(r, vid)

    # live: frames arrive at the camera's rate, stamped at read
    assert pump(fake, lambda: len(entries(r, vid)) >= 40, timeout=30), progress(r, vid)
    assert pump(fake, lambda: (progress(r, vid).input_fps or 0) > 0, timeout=10)
    p = progress(r, vid)
    assert p.camera_state == CameraState.LIVE and p.reconnects == 0
    assert 20 <= (p.input_fps or 0) <= 30, p.input_fps
    got = entries(r, vid)
    assert all(f.run_id == "cam-run" and f.config is not None and f.config.fps == 25.0 for f in got)
    numbers = [f.frame_number for f in got]
    assert numbers == sorted(set(numbers))
    assert all(abs(f.produced_at - time.time()) < 30 for f in got)
    # paced by arrival (once FFmpeg's first burst is over): 25 frames take about a second
    assert 0.7 < got[-1].produced_at - got[-26].produced_at < 1.5
    # the camera URL's password is in no entry nor in the progress hash
    assert PASSWORD not in str(r.hgetall(streams.progress_key(vid)))

    # outage: the server is killed for 4 s
    before = entries(r, vid)[-1]
    n_before = len(entries(r, vid))
    rtsp.stop()
    assert pump(fake, lambda: progress(r, vid).camera_state == CameraState.RECONNECTING, timeout=10)
    assert progress(r, vid).camera_error
    time.sleep(max(0.0, 4.0 - settings.CAMERA_STALL_S))
    rtsp.start()
    assert pump(
        fake,
        lambda: progress(r, vid).camera_state == CameraState.LIVE and len(entries(r, vid)) > n_before + 25,
        timeout=30,
    )
    p = progress(r, vid)
    assert p.reconnects >= 1
    after = [f for f in entries(r, vid) if f.produced_at > before.produced_at]
    assert after, "no frame after the outage"
    gap_frames = after[0].frame_number - before.frame_number
    gap_wall = after[0].produced_at - before.produced_at
    assert abs(gap_frames / 25.0 - gap_wall) < 1.0, (gap_frames, gap_wall)  # the gap is the outage's

    # stop: answered within about a second, one end of stream
    stop_at = time.monotonic()
    r.set(streams.stop_key(vid), "1")
    result = run.result(timeout=10)
    assert time.monotonic() - stop_at < 2.5
    assert result["state"] == "stopped"
    eos = [f for f in entries(r, vid) if f.end_of_stream]
    assert len(eos) == 1


def test_a_lagging_pipeline_makes_the_camera_drop_its_oldest_frames_not_queue_them(r, engine, settings, rtsp):
    if rtsp.proc is None:
        rtsp.start()
    vid = add_camera(engine, rtsp.url)
    settings.CAMERA_MAX_BACKLOG_S = 1.0  # 25 frames
    run = Background(lambda: produce_frames(vid, redis=r, settings=settings, run_id="lag-run"))
    # no processor at all: the camera's frames in video-frames stop at the bound
    assert wait_until(lambda: (progress(r, vid).camera_dropped or 0) >= 25, timeout=30), progress(r, vid)
    queued = len(entries(r, vid))
    assert 25 <= queued <= 27, queued
    time.sleep(1.0)
    assert len(entries(r, vid)) == queued  # still bounded
    assert progress(r, vid).camera_state == CameraState.LIVE  # the camera is fine; the pipeline lags
    # the processor catches up: the newest frames flow again (the held-back ones were dropped)
    newest_before = entries(r, vid)[-1]
    fake = FakeProcessor(r, vid)
    assert pump(fake, lambda: len(entries(r, vid)) > queued + 10, timeout=20)
    resumed = [f for f in entries(r, vid) if f.frame_number > newest_before.frame_number]
    assert time.time() - resumed[-1].produced_at < 2.0  # fresh frames, not a backlog
    r.set(streams.stop_key(vid), "1")
    assert run.result(timeout=10)["state"] == "stopped"


def test_a_camera_that_refuses_us_is_failed_with_a_redacted_error_and_still_stops(r, engine, settings, rtsp):
    if rtsp.proc is None:
        rtsp.start()
    wrong = rtsp.url.replace(PASSWORD, "nope-" + PASSWORD[-4:])
    vid = add_camera(engine, wrong)
    settings.CAMERA_BACKOFF_MAX_S = 1.0
    run = Background(lambda: produce_frames(vid, redis=r, settings=settings, run_id="bad-run"))
    assert wait_until(lambda: progress(r, vid).camera_state == CameraState.FAILED, timeout=15), progress(
        r, vid
    )
    p = progress(r, vid)
    assert "camera_auth_failed" in (p.camera_error or "")
    assert "nope-" not in str(r.hgetall(streams.progress_key(vid)))
    stop_at = time.monotonic()
    r.set(streams.stop_key(vid), "1")
    assert run.result(timeout=10)["state"] == "stopped"
    assert time.monotonic() - stop_at < 2.5
    assert entries(r, vid)[-1].end_of_stream
