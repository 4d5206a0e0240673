"""cleanup on a real PostgreSQL (migrated) and Redis."""

from __future__ import annotations

import json
import time
from datetime import UTC

import pytest
from sqlalchemy import text
from traffic_pipeline.cleanup import cleanup, final_status

from contracts import streams
from contracts.messages import (
    Passage,
    ProcessedFrame,
    StreamProgress,
    StreamState,
    Summary,
    VideoFrame,
    VideoStatus,
    Violation,
)

SUMMARY = Summary(
    total_vehicles_count=5,
    avg_dwell_time=2.5,
    vehicle_type_distribution={"car": 4, "bus": 1},
    speeding_count=2,
)


def violation(track_id: int, speed: float = 80.0) -> str:
    return Violation(
        track_id=track_id,
        vehicle_class="car",
        speed_kmh=speed,
        frame_number=10 * track_id,
        video_time_s=track_id / 2,
    ).model_dump_json()


def analytics_row(engine, vid: int) -> dict | None:
    with engine.connect() as conn:
        row = (
            conn.execute(text("SELECT * FROM video_analytics WHERE video_id = :v"), {"v": vid})
            .mappings()
            .all()
        )
    assert len(row) <= 1
    return dict(row[0]) if row else None


def violation_rows(engine, vid: int) -> list[dict]:
    with engine.connect() as conn:
        q = text("SELECT * FROM speeding_violations WHERE video_id = :v ORDER BY track_id")
        return [dict(m) for m in conn.execute(q, {"v": vid}).mappings()]


def video_status(engine, vid: int) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT status FROM videos WHERE id = :v"), {"v": vid}).scalar_one()


def add_frames(r, vid: int, n: int) -> None:
    for i in range(n):
        f = VideoFrame(
            video_id=vid, frame_number=i, frame_data=b"\xff\xd8jpeg", timestamp=i / 10, produced_at=0.0
        )
        r.xadd(streams.VIDEO_FRAMES, f.to_fields())
        p = ProcessedFrame(video_id=vid, frame_number=i, timestamp=i / 10, processed_frame=b"\xff\xd8x")
        r.xadd(streams.PROCESSED_FRAMES, p.to_fields())


def progress(r, vid: int, **fields) -> None:
    """Write progress hash fields as their writers do (encoded by ``StreamProgress``)."""
    r.hset(streams.progress_key(vid), mapping=StreamProgress(**fields).to_hash())


def finished(r, vid: int, **fields) -> None:
    values = {"state": StreamState.PRODUCED, "produce_done": True, "eos_processed": True, "summary": SUMMARY}
    progress(r, vid, **{**values, **fields})


def test_completed_run_stores_everything_and_clears_redis(r, engine, add_video, settings):
    vid, other = add_video(frames=2), add_video(frames=2)
    add_frames(r, vid, 4)
    add_frames(r, other, 3)
    finished(r, vid)
    r.rpush(streams.violations_key(vid), violation(1), violation(2, 95.5), violation(1))
    r.set(streams.stop_key(vid), "1")
    r.set(streams.analytics_key(vid), SUMMARY.model_dump_json())

    result = cleanup(vid, redis=r, engine=engine, settings=settings, tasks_ok=True)

    assert result["status"] == "completed" and video_status(engine, vid) == "completed"
    row = analytics_row(engine, vid)
    assert row["total_vehicles_count"] == 5 and row["avg_dwell_time"] == 2.5
    assert row["vehicle_type_distribution"] == {"car": 4, "bus": 1} and row["speeding_count"] == 2
    rows = violation_rows(engine, vid)
    assert [(v["track_id"], v["vehicle_class"], v["speed_kmh"]) for v in rows] == [
        (1, "car", 80.0),
        (2, "car", 95.5),
    ]
    assert rows[1]["frame_number"] == 20 and rows[1]["video_time_s"] == 1.0
    # Only this video's entries are gone from both streams.
    for stream, n_other in ((streams.VIDEO_FRAMES, 3), (streams.PROCESSED_FRAMES, 3)):
        ids = [int(f[b"video_id"]) for _, f in r.xrange(stream)]
        assert ids == [other] * n_other
    assert r.exists(streams.stop_key(vid), streams.violations_key(vid), streams.analytics_key(vid)) == 0
    p = StreamProgress.from_hash(r.hgetall(streams.progress_key(vid)))
    assert p.state == StreamState.DONE and p.status == VideoStatus.COMPLETED
    assert 0 < r.ttl(streams.progress_key(vid)) <= streams.PROGRESS_TTL_S
    assert video_status(engine, other) == "uploaded"


def test_cleanup_is_idempotent_and_upserts(r, engine, add_video, settings):
    vid = add_video(frames=2)
    finished(r, vid)
    r.rpush(streams.violations_key(vid), violation(1), violation(2))
    cleanup(vid, redis=r, engine=engine, settings=settings)
    # A later cleanup (retry, or a second run): newer summary, one known and one new violation.
    newer = SUMMARY.model_copy(update={"total_vehicles_count": 7})
    finished(r, vid, summary=newer.model_dump_json())
    r.rpush(streams.violations_key(vid), violation(2), violation(3))
    result = cleanup(vid, redis=r, engine=engine, settings=settings)
    assert result["violations_added"] == 1
    assert [v["track_id"] for v in violation_rows(engine, vid)] == [1, 2, 3]
    assert analytics_row(engine, vid)["total_vehicles_count"] == 7
    assert cleanup(vid, redis=r, engine=engine, settings=settings)["violations_added"] == 0


def test_stopped_run_stores_the_partial_summary_from_the_analytics_key(r, engine, add_video, settings):
    vid = add_video(frames=2)
    progress(r, vid, state=StreamState.STOPPED, produce_done=True)
    partial = SUMMARY.model_copy(update={"total_vehicles_count": 2})
    r.set(streams.analytics_key(vid), partial.model_dump_json())
    result = cleanup(vid, redis=r, engine=engine, settings=settings, tasks_ok=True)
    assert result["status"] == "stopped" and result["summary_source"] == "analytics"
    assert analytics_row(engine, vid)["total_vehicles_count"] == 2
    assert video_status(engine, vid) == "stopped"


@pytest.mark.parametrize(
    ("fields", "tasks_ok", "status"),
    [
        ({"state": "produced", "eos_processed": "1"}, True, VideoStatus.COMPLETED),
        ({"state": "produced", "eos_processed": "1"}, False, VideoStatus.FAILED),
        ({"state": "produced"}, None, VideoStatus.FAILED),
        ({"state": "failed", "eos_processed": "1"}, None, VideoStatus.FAILED),
        ({"state": "stopped"}, False, VideoStatus.STOPPED),
        ({"state": "stopped", "monitor_error": "stall"}, False, VideoStatus.FAILED),
        ({"state": "produced", "eos_processed": "1", "fatal_error": "x"}, None, VideoStatus.FAILED),
        ({}, None, VideoStatus.FAILED),
    ],
)
def test_final_status(fields, tasks_ok, status):
    """From the hash as Redis returns it (bytes)."""
    raw = {k.encode(): v.encode() for k, v in fields.items()}
    assert final_status(StreamProgress.from_hash(raw), tasks_ok=tasks_ok) == status


def test_failed_run_without_anything_in_redis(r, engine, add_video, settings):
    vid = add_video(frames=2)
    result = cleanup(vid, redis=r, engine=engine, settings=settings, tasks_ok=False)
    assert result["status"] == "failed" and result["summary"] is None
    assert analytics_row(engine, vid) is None and video_status(engine, vid) == "failed"


def test_processed_entries_not_yet_delivered_to_the_bridge_are_kept(r, engine, add_video, settings):
    vid = add_video(frames=2)
    group = streams.REDIS_CONSUMER_GROUP
    r.xgroup_create(streams.PROCESSED_FRAMES, group, id="0", mkstream=True)
    add_frames(r, vid, 6)
    # The bridge has read 4 entries and acked 3 of them.
    read = r.xreadgroup(group, "bridge-1", {streams.PROCESSED_FRAMES: ">"}, count=4)[0][1]
    r.xack(streams.PROCESSED_FRAMES, group, *[i for i, _ in read[:3]])
    finished(r, vid)
    started = time.monotonic()
    result = cleanup(vid, redis=r, engine=engine, settings=settings, delivery_wait_s=0.3)
    assert time.monotonic() - started < 3
    assert result["removed_processed_frames"] == 3 and result["kept_processed_frames"] == 3
    left = [int(f[b"frame_number"]) for _, f in r.xrange(streams.PROCESSED_FRAMES)]
    assert left == [3, 4, 5]
    assert r.xlen(streams.VIDEO_FRAMES) == 0


def test_waits_for_the_bridge_to_deliver_the_last_frames(r, engine, add_video, settings):
    import threading

    vid = add_video(frames=2)
    group = streams.REDIS_CONSUMER_GROUP
    r.xgroup_create(streams.PROCESSED_FRAMES, group, id="0", mkstream=True)
    add_frames(r, vid, 3)
    finished(r, vid)

    def bridge() -> None:
        time.sleep(0.3)
        for entry_id, _ in r.xreadgroup(group, "bridge-1", {streams.PROCESSED_FRAMES: ">"})[0][1]:
            r.xack(streams.PROCESSED_FRAMES, group, entry_id)

    threading.Thread(target=bridge, daemon=True).start()
    result = cleanup(vid, redis=r, engine=engine, settings=settings, delivery_wait_s=5)
    assert result["removed_processed_frames"] == 3 and result["kept_processed_frames"] == 0
    assert r.xlen(streams.PROCESSED_FRAMES) == 0


def test_unreadable_violations_are_skipped(r, engine, add_video, settings):
    vid = add_video(frames=2)
    finished(r, vid)
    r.rpush(streams.violations_key(vid), "not json", json.dumps({"track_id": 1}), violation(4))
    result = cleanup(vid, redis=r, engine=engine, settings=settings)
    assert result["violations_read"] == 3 and result["violations_added"] == 1
    assert r.exists(streams.violations_key(vid)) == 0


def test_an_unprocessed_end_of_stream_stays_for_the_processor(r, engine, add_video, settings):
    vid = add_video(frames=2)
    add_frames(r, vid, 3)
    eos = VideoFrame(video_id=vid, frame_number=3, timestamp=0.3, produced_at=0.0, end_of_stream=True)
    r.xadd(streams.VIDEO_FRAMES, eos.to_fields())
    progress(r, vid, state=StreamState.PRODUCED, produce_done=True)  # no eos_processed
    result = cleanup(vid, redis=r, engine=engine, settings=settings, tasks_ok=False)
    assert result["status"] == "failed" and result["removed_video_frames"] == 3
    left = [VideoFrame.from_fields(f) for _, f in r.xrange(streams.VIDEO_FRAMES)]
    assert [(e.video_id, e.end_of_stream) for e in left] == [(vid, True)]


def passage(track_id: int, *, speed: float | None = 50.0, speeding: bool = False, **kw) -> Passage:
    first = 10 * track_id
    values = {
        "track_id": track_id,
        "class_name": "car",
        "first_frame": first,
        "last_frame": first + 20,
        "first_time_s": first / 10,
        "last_time_s": (first + 20) / 10,
        "dwell_time_s": 2.0,
        "speed_kmh": speed,
        "max_speed_kmh": None if speed is None else speed + 3,
        "speeding": speeding,
        **kw,
    }
    return Passage(**values)


def passage_rows(engine, vid: int) -> list[dict]:
    with engine.connect() as conn:
        q = text("SELECT * FROM vehicle_passages WHERE video_id = :v ORDER BY first_frame")
        return [dict(m) for m in conn.execute(q, {"v": vid}).mappings()]


def test_passages_come_from_the_final_summary_and_violations_from_the_flags(r, engine, add_video, settings):
    """What the processor sent: each flagged vehicle once in new_violations (the Redis list), every
    counted vehicle in the end-of-stream summary; cleanup stores both, and they agree."""
    vid, other = add_video(frames=2), add_video(frames=2)
    passages = [
        passage(1, speed=48.0),
        passage(2, speed=82.5, speeding=True, class_name="truck"),
        passage(3, speed=None),
        passage(4, speed=97.0, speeding=True),
    ]
    summary = SUMMARY.model_copy(
        update={
            "total_vehicles_count": 4,
            "speeding_count": 2,
            "vehicle_type_distribution": {"car": 3, "truck": 1},
        }
    )
    summary.vehicles = passages
    finished(r, vid, summary=summary.model_dump_json())
    r.rpush(streams.violations_key(vid), violation(2, 82.5), violation(4, 97.0))
    finished(r, other, summary=summary.model_copy(update={"vehicles": [passage(9)]}).model_dump_json())
    cleanup(other, redis=r, engine=engine, settings=settings)

    result = cleanup(vid, redis=r, engine=engine, settings=settings, tasks_ok=True)

    assert result["passages"] == 4 and "vehicles" not in result["summary"]  # a small XCom
    rows = passage_rows(engine, vid)
    assert [Passage(**{k: v for k, v in row.items() if k in Passage.model_fields}) for row in rows] == [
        p.model_copy(update={"run_id": ""}) for p in passages
    ]  # no run id in this hash
    assert all(row["video_id"] == vid for row in rows)
    speeders = {row["track_id"] for row in rows if row["speeding"]}
    assert speeders == {v["track_id"] for v in violation_rows(engine, vid)} == {2, 4}
    assert len(speeders) == analytics_row(engine, vid)["speeding_count"]
    assert [row["track_id"] for row in passage_rows(engine, other)] == [9]  # another video's rows stay


def test_passages_are_stored_once_per_run_and_a_camera_keeps_every_run(r, engine, add_video, settings):
    """A vehicle is (video, run, track): a retried cleanup stores nothing twice, and a second run
    (a camera started again: its track ids start again too) adds its own rows. A file's rerun
    forgets the previous run's results when it starts (the backend's start, tested there)."""
    vid = add_video(frames=2)
    two = SUMMARY.model_copy(update={"vehicles": [passage(1), passage(2)]}).model_dump_json()
    finished(r, vid, summary=two, run_id="run-1")
    assert cleanup(vid, redis=r, engine=engine, settings=settings)["passages"] == 2
    finished(r, vid, summary=two, run_id="run-1")  # the same cleanup again (a retry)
    assert cleanup(vid, redis=r, engine=engine, settings=settings)["passages"] == 0
    assert [(row["run_id"], row["track_id"]) for row in passage_rows(engine, vid)] == [
        ("run-1", 1),
        ("run-1", 2),
    ]
    # the next run: its own rows beside the first run's
    finished(
        r,
        vid,
        summary=SUMMARY.model_copy(update={"vehicles": [passage(2, speed=70.0)]}).model_dump_json(),
        run_id="run-2",
    )
    cleanup(vid, redis=r, engine=engine, settings=settings)
    rows = sorted((row["run_id"], row["track_id"], row["speed_kmh"]) for row in passage_rows(engine, vid))
    assert rows == [("run-1", 1, 50.0), ("run-1", 2, 50.0), ("run-2", 2, 70.0)]
    # a summary without per-vehicle records (an older processor) adds nothing
    finished(r, vid, run_id="run-3")
    assert cleanup(vid, redis=r, engine=engine, settings=settings)["passages"] == 0
    assert len(passage_rows(engine, vid)) == 3


def test_continuous_passages_and_violations_in_redis_are_stored_with_their_run(
    r, engine, add_video, settings
):
    """The processor's passages pushed as tracks ended, and the violations, still in Redis when
    the run ends: stored once each; the violation takes its passage's final speed and class."""
    vid = add_video(frames=2)
    r.rpush(
        streams.passages_key(vid),
        passage(
            5,
            speed=91.0,
            speeding=True,
            class_name="truck",
            run_id="live",
            passed_at=1_800_000_000.5,
            direction="approaching",
        ).model_dump_json(),
        passage(6, speed=40.0).model_dump_json(),  # an older message without its run: the hash's
    )
    r.rpush(streams.violations_key(vid), violation(5, 85.0))
    finished(
        r, vid, summary=SUMMARY.model_copy(update={"vehicles": [passage(7)]}).model_dump_json(), run_id="live"
    )
    result = cleanup(vid, redis=r, engine=engine, settings=settings)
    assert result["passages"] == 3 and result["violations_added"] == 1
    rows = {row["track_id"]: row for row in passage_rows(engine, vid)}
    assert sorted(rows) == [5, 6, 7] and {row["run_id"] for row in rows.values()} == {"live"}
    assert rows[5]["direction"] == "approaching"
    assert rows[5]["passed_at"].replace(tzinfo=UTC).timestamp() == 1_800_000_000.5
    (v,) = violation_rows(engine, vid)
    assert (v["track_id"], v["speed_kmh"], v["vehicle_class"], v["run_id"]) == (5, 91.0, "truck", "live")
    assert r.llen(streams.passages_key(vid)) == 0 and r.llen(streams.violations_key(vid)) == 0


# ---- detected_at and snapshots ----------------------------------------------------------------


def jpeg(value: int) -> bytes:
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".jpg", np.full((16, 24, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def flagged(track_id: int, detected_at: float | None, snapshot: bytes | None = None) -> str:
    """A violation as the Spark sink RPUSHes it (``model_dump_json``)."""
    return Violation(
        track_id=track_id,
        vehicle_class="car",
        speed_kmh=90.0,
        frame_number=10 * track_id,
        video_time_s=track_id / 2,
        detected_at=detected_at,
        snapshot_jpeg=snapshot,
    ).model_dump_json()


def test_detected_at_is_the_processor_wall_clock_not_the_cleanup_time(
    r, engine, add_video, settings, tmp_path
):
    from datetime import UTC, datetime

    vid = add_video(frames=2)
    finished(r, vid)
    t0 = 1_750_000_000.125
    r.rpush(streams.violations_key(vid), flagged(1, t0), flagged(2, t0 + 42.5), flagged(3, None))
    cleanup(
        vid,
        redis=r,
        engine=engine,
        settings=settings.model_copy(update={"VIDEO_STORAGE_PATH": tmp_path}),
        now=lambda: t0 + 3600,
    )
    rows = {row["track_id"]: row for row in violation_rows(engine, vid)}

    def utc(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)  # stored naive, in UTC

    assert rows[1]["detected_at"] == utc(t0)
    assert rows[2]["detected_at"] == utc(t0 + 42.5)  # flagged later: a later time, kept apart
    assert rows[3]["detected_at"] == utc(t0 + 3600)  # an older message: the clean-up's time
    assert all(row["snapshot_path"] is None for row in rows.values())


def test_snapshots_are_written_next_to_the_videos(r, engine, add_video, settings, tmp_path):
    vid = add_video(frames=2)
    finished(r, vid)
    a, b = jpeg(30), jpeg(200)
    r.rpush(streams.violations_key(vid), flagged(4, 1.0, a), flagged(7, 2.0, b), flagged(9, 3.0, None))
    storage = tmp_path / "video_storage"
    result = cleanup(
        vid, redis=r, engine=engine, settings=settings.model_copy(update={"VIDEO_STORAGE_PATH": storage})
    )
    assert result["violations_added"] == 3 and result["snapshots_written"] == 2
    rows = {row["track_id"]: row for row in violation_rows(engine, vid)}
    directory = (storage / "snapshots" / str(vid)).resolve()
    assert rows[4]["snapshot_path"] == str(directory / "4.jpg")
    assert rows[7]["snapshot_path"] == str(directory / "7.jpg")
    assert rows[9]["snapshot_path"] is None
    assert (directory / "4.jpg").read_bytes() == a and (directory / "7.jpg").read_bytes() == b
    assert sorted(p.name for p in directory.iterdir()) == ["4.jpg", "7.jpg"]  # no temporary left

    # a retry: the stored track is skipped and its file is not rewritten
    r.rpush(streams.violations_key(vid), flagged(4, 1.0, jpeg(99)))
    assert (
        cleanup(
            vid, redis=r, engine=engine, settings=settings.model_copy(update={"VIDEO_STORAGE_PATH": storage})
        )["snapshots_written"]
        == 0
    )
    assert (directory / "4.jpg").read_bytes() == a


def test_a_snapshot_that_cannot_be_written_leaves_the_row_without_one(
    r, engine, add_video, settings, tmp_path
):
    vid = add_video(frames=2)
    finished(r, vid)
    storage = tmp_path / "blocked"
    storage.mkdir()
    (storage / "snapshots").write_text("a file where the directory should be")  # mkdir fails
    r.rpush(streams.violations_key(vid), flagged(1, 1.0, jpeg(50)), flagged(2, 2.0, b"not a jpeg"))
    result = cleanup(
        vid, redis=r, engine=engine, settings=settings.model_copy(update={"VIDEO_STORAGE_PATH": storage})
    )
    assert result["violations_added"] == 2 and result["snapshots_written"] == 0
    assert [row["snapshot_path"] for row in violation_rows(engine, vid)] == [None, None]
    assert r.exists(streams.violations_key(vid)) == 0
