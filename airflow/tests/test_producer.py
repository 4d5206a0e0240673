"""produce_frames on a real Redis and PostgreSQL with small generated videos."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from traffic_pipeline.config import PipelineSettings
from traffic_pipeline.producer import BackpressureTimeout, produce_frames, resolve_video_path
from traffic_processing.video import VideoError

from contracts import streams
from contracts.messages import StreamProgress, StreamState, VideoFrame

from .conftest import HOMOGRAPHY, ROI, Background, wait_until


def backlog(settings: PipelineSettings, frames: int) -> PipelineSettings:
    """The settings with MAX_BACKLOG_FRAMES = frames."""
    return settings.model_copy(update={"MAX_BACKLOG_FRAMES": frames})


def entries(r, video_id: int | None = None) -> list[VideoFrame]:
    out = [VideoFrame.from_fields(f) for _, f in r.xrange(streams.VIDEO_FRAMES)]
    return [e for e in out if video_id is None or e.video_id == video_id]


def progress(r, video_id: int) -> StreamProgress:
    return StreamProgress.from_hash(r.hgetall(streams.progress_key(video_id)))


def test_every_frame_once_then_one_end_of_stream(r, engine, add_video, settings):
    vid = add_video(frames=24, fps=20.0)
    result = produce_frames(
        vid, redis=r, engine=engine, settings=settings, realtime=False, speed_limit_kmh=50.0, run_id="run-1"
    )

    got = entries(r, vid)
    assert [e.frame_number for e in got] == [*range(24), 24]
    assert [e.end_of_stream for e in got] == [False] * 24 + [True]
    assert r.xlen(streams.VIDEO_FRAMES) == 25  # nothing trimmed
    for e in got[:-1]:
        img = cv2.imdecode(np.frombuffer(e.frame_data, np.uint8), cv2.IMREAD_COLOR)  # raw JPEG
        assert img is not None and img.shape == (64, 96, 3)
        assert e.timestamp == pytest.approx(e.frame_number / 20.0)
        assert e.config is not None and e.config.fps == 20.0 and e.config.realtime is False
        assert e.config.roi_polygon == ROI and e.config.homography_matrix == HOMOGRAPHY
        assert e.config.speed_limit_kmh == 50.0
    assert got[-1].frame_data == b""
    assert {e.run_id for e in got} == {"run-1"}  # every entry, end of stream included
    assert {f[b"run_id"] for _, f in r.xrange(streams.VIDEO_FRAMES)} == {b"run-1"}

    p = progress(r, vid)
    assert p.state == StreamState.PRODUCED and p.produce_done is True and p.realtime is False
    assert p.produced == 24 and p.frames_total == 24 and p.run_id == "run-1"
    assert 0 < r.ttl(streams.progress_key(vid)) <= streams.PROGRESS_TTL_S
    assert result["state"] == "produced" and result["produced"] == 24 and result["eos_written"]
    assert result["run_id"] == "run-1"


def test_speed_limit_from_env_and_stale_progress_reset(r, add_video, monkeypatch, postgres):
    monkeypatch.setenv("SPEED_LIMIT_KMH", "42")
    vid = add_video(frames=3, calibrated=False)
    stale = StreamProgress(state=StreamState.DONE, eos_processed=True, processed=99)
    r.hset(streams.progress_key(vid), mapping=stale.to_hash())
    settings = PipelineSettings(_env_file=None, DATABASE_URL=postgres.url)  # as a task reads it
    produce_frames(vid, redis=r, settings=settings, realtime=False)
    first = entries(r, vid)[0]
    assert first.config.speed_limit_kmh == 42.0
    assert first.config.roi_polygon is None and first.config.homography_matrix is None
    p = progress(r, vid)
    assert p.eos_processed is None and p.processed is None  # a previous run's fields are gone
    # Called without a run_id (not from Airflow): a generated one, the same on every entry.
    run_ids = {e.run_id for e in entries(r, vid)}
    assert len(run_ids) == 1 and p.run_id in run_ids and len(p.run_id or "") == 32


def test_speed_limit_of_the_video_calibration(r, engine, add_video, settings):
    """The limit set with the video's calibration (``calibrate_coordinates.speed_limit_kmh``) goes
    into every frame's config, over SPEED_LIMIT_KMH; an explicit argument wins over both."""
    import json

    from sqlalchemy import text

    settings = settings.model_copy(update={"SPEED_LIMIT_KMH": 42.0})
    vid = add_video(frames=3)
    coords = {"image_points": [], "world_points": [], "speed_limit_kmh": 90.0}
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE videos SET calibrate_coordinates = CAST(:c AS JSONB) WHERE id = :v"),
            {"c": json.dumps(coords), "v": vid},
        )
    produce_frames(vid, redis=r, engine=engine, settings=settings, realtime=False)
    assert {e.config.speed_limit_kmh for e in entries(r, vid)} == {90.0}
    r.delete(streams.VIDEO_FRAMES)
    produce_frames(vid, redis=r, engine=engine, settings=settings, realtime=False, speed_limit_kmh=30.0)
    assert {e.config.speed_limit_kmh for e in entries(r, vid)} == {30.0}


def test_realtime_paces_at_fps_without_drift(r, engine, add_video, settings):
    fps, frames = 20.0, 30
    vid = add_video(frames=frames, fps=fps)
    started = time.monotonic()
    produce_frames(vid, redis=r, engine=engine, settings=settings, realtime=True)
    elapsed = time.monotonic() - started
    assert (frames - 1) / fps - 0.05 <= elapsed <= (frames - 1) / fps + 0.5

    got = entries(r, vid)[:-1]
    t0 = got[0].produced_at
    for e in got:  # each frame at its slot on the schedule: start + n / fps
        assert e.produced_at - t0 == pytest.approx(e.frame_number / fps, abs=0.1)


def test_backpressure_when_not_realtime(r, engine, add_video, settings):
    vid = add_video(frames=40)
    pkey = streams.progress_key(vid)
    run = Background(
        lambda: produce_frames(
            vid, redis=r, engine=engine, settings=backlog(settings, 5), realtime=False, backlog_poll_s=0.01
        )
    )
    # Nothing processed: the producer stops at max_backlog + 1 frames and waits.
    assert wait_until(lambda: r.xlen(streams.VIDEO_FRAMES) >= 6, 10)
    time.sleep(0.5)
    assert r.xlen(streams.VIDEO_FRAMES) == 6
    assert progress(r, vid).state == StreamState.PRODUCING

    # A fake processor: follows the producer two frames at a time.
    processed, max_gap = 0, 0
    while run.thread.is_alive() and processed < 40:
        produced = progress(r, vid).produced or 0
        max_gap = max(max_gap, produced - processed)
        processed = min(produced, processed + 2)
        r.hset(pkey, mapping=StreamProgress(processed=processed).to_hash())
        time.sleep(0.01)
    result = run.result()
    assert result["produced"] == 40 and result["state"] == "produced"
    assert max_gap <= 6
    assert [e.frame_number for e in entries(r, vid)] == [*range(40), 40]


def test_backpressure_fails_on_processor_fatal_error(r, engine, add_video, settings):
    vid = add_video(frames=20)
    run = Background(
        lambda: produce_frames(
            vid, redis=r, engine=engine, settings=backlog(settings, 2), realtime=False, backlog_poll_s=0.01
        )
    )
    assert wait_until(lambda: r.xlen(streams.VIDEO_FRAMES) >= 3, 10)
    r.hset(streams.progress_key(vid), mapping=StreamProgress(fatal_error="model missing").to_hash())
    with pytest.raises(RuntimeError, match="model missing"):
        run.result()
    got = entries(r, vid)
    assert sum(e.end_of_stream for e in got) == 1 and got[-1].end_of_stream
    p = progress(r, vid)
    assert p.state == StreamState.FAILED and "model missing" in (p.producer_error or "")


def test_backpressure_times_out_when_nothing_is_processed(r, engine, add_video, settings):
    vid = add_video(frames=10)
    with pytest.raises(BackpressureTimeout):
        produce_frames(
            vid,
            redis=r,
            engine=engine,
            settings=backlog(settings, 2),
            realtime=False,
            backlog_poll_s=0.01,
            backlog_timeout_s=0.3,
        )
    assert sum(e.end_of_stream for e in entries(r, vid)) == 1


def test_stop_flag_is_honoured_within_a_frame(r, engine, add_video, settings):
    fps = 10.0
    vid = add_video(frames=60, fps=fps)
    run = Background(lambda: produce_frames(vid, redis=r, engine=engine, settings=settings, realtime=True))
    assert wait_until(lambda: r.xlen(streams.VIDEO_FRAMES) >= 5, 10)
    produced_at_stop = r.xlen(streams.VIDEO_FRAMES)
    r.set(streams.stop_key(vid), "1")
    stopped_at = time.monotonic()
    result = run.result(10)
    assert time.monotonic() - stopped_at < 2 / fps + 0.5
    assert result["state"] == "stopped"
    assert result["produced"] <= produced_at_stop + 1

    got = entries(r, vid)
    assert [e.frame_number for e in got] == [*range(result["produced"]), result["produced"]]
    assert sum(e.end_of_stream for e in got) == 1 and got[-1].end_of_stream
    p = progress(r, vid)
    assert p.state == StreamState.STOPPED and p.produce_done


def test_missing_file_fails_but_still_ends_the_stream(r, engine, add_video, settings):
    vid = add_video(frames=3, file_path="/nonexistent/video.mp4")
    with pytest.raises(VideoError):
        produce_frames(vid, redis=r, engine=engine, settings=settings, realtime=False)
    got = entries(r, vid)
    assert len(got) == 1 and got[0].end_of_stream
    p = progress(r, vid)
    assert p.state == StreamState.FAILED and p.produce_done and "VideoError" in (p.producer_error or "")


def test_unknown_video_fails(r, engine, settings):
    with pytest.raises(LookupError):
        produce_frames(987654, redis=r, engine=engine, settings=settings)
    assert sum(e.end_of_stream for e in entries(r, 987654)) == 1


def test_relative_paths_resolve_under_the_storage(tmp_path):
    storage = tmp_path / "video_storage"
    storage.mkdir()
    (storage / "7.mp4").write_bytes(b"x")
    assert resolve_video_path("video_storage/7.mp4", storage) == storage / "7.mp4"
    assert resolve_video_path("7.mp4", storage) == storage / "7.mp4"
