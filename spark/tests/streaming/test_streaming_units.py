"""Source offsets/paging/trim, sink idempotence, and the stages' frame handling, on a real Redis
and without Spark (and without the detector model)."""

from __future__ import annotations

import json
import random
import time

import cv2
import numpy as np
import pandas as pd
import pytest
import redis
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows
from streaming_helpers import start_redis

from contracts.messages import (
    FrameConfig,
    Passage,
    ProcessedFrame,
    StreamProgress,
    Summary,
    VideoFrame,
    Violation,
)
from contracts.streams import (
    PROCESSED_FRAMES,
    SINK_LAST_BATCH_KEY,
    VIDEO_FRAMES,
    analytics_key,
    parse_stream_id,
    progress_key,
    violations_key,
)
from spark.streaming import stages
from spark.streaming import state as video_state
from spark.streaming.redis_source import RedisStreamReader
from spark.streaming.settings import SparkSettings
from spark.streaming.sink import reset_if_fresh_checkpoint, write_batch
from spark.streaming.state import LiveTuning, loads

CONFIG = FrameConfig(roi_polygon=[[0, 0], [640, 0], [640, 360], [0, 360]], fps=20.0, realtime=False)


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("units"))
    yield server.port
    server.stop()


@pytest.fixture
def client(redis_port):
    c = redis.Redis(port=redis_port)
    c.flushall()
    yield c
    c.close()


def jpeg(value: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((360, 640, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def add_frames(client, video_id: int, n: int) -> list[str]:
    ids = []
    for i in range(n):
        frame = VideoFrame(
            video_id=video_id,
            frame_number=i,
            frame_data=jpeg(),
            timestamp=i / 20,
            produced_at=time.time(),
            config=CONFIG,
        )
        ids.append(client.xadd(VIDEO_FRAMES, frame.to_fields()).decode())
    return ids


# -- source -----------------------------------------------------------------------------------
def test_source_offsets_are_bounded_and_partitions_cover_the_range(client, redis_port):
    ids = add_frames(client, 1, 10)
    client.xadd(VIDEO_FRAMES, {"video_id": "x", "frame_number": "1"})  # malformed: skipped
    ids += add_frames(client, 1, 1)
    reader = RedisStreamReader({"port": str(redis_port), "maxEntriesPerBatch": "4", "numPartitions": "2"})
    start = reader.initialOffset()
    assert start == {"id": "0-0"}
    assert reader.getDefaultReadLimit() == ReadMaxRows(4)

    end = reader.latestOffset(start, ReadMaxRows(4))
    assert end == {"id": ids[3]}
    parts = reader.partitions(start, end)
    assert len(parts) == 2 and parts[0].start == "0-0" and parts[-1].end == ids[3]
    assert parts[0].end == parts[1].start  # contiguous, no overlap
    rows = [row for p in parts for row in reader.read(p)]
    assert [r[1] for r in rows] == [0, 1, 2, 3]
    assert [r[2] for r in rows] == ids[:4]
    assert rows[0][0] == 1 and rows[0][3][:2] == b"\xff\xd8" and rows[0][7] is False
    assert json.loads(rows[0][6])["fps"] == 20.0

    # Next batch starts after the end; the malformed entry is skipped by read().
    end2 = reader.latestOffset(end, ReadMaxRows(100))
    assert parse_stream_id(end2["id"]) == parse_stream_id(ids[-1])
    rows2 = [row for p in reader.partitions(end, end2) for row in reader.read(p)]
    assert [r[1] for r in rows2] == [4, 5, 6, 7, 8, 9, 0]
    # Nothing new: latestOffset returns the start itself (no batch).
    assert reader.latestOffset(end2, ReadMaxRows(4)) == end2
    assert reader.latestOffset(end2, ReadAllAvailable()) == end2
    assert reader.latestOffset(start, ReadAllAvailable()) == end2

    # A replayed batch (planned from the offset log after a restart) re-reads the same range.
    fresh = RedisStreamReader({"port": str(redis_port), "numPartitions": "3"})
    again = [row for p in fresh.partitions(start, end) for row in fresh.read(p)]
    assert [r[2] for r in again] == ids[:4]

    # commit trims only what is committed: entries after the end stay.
    reader.commit(end)
    remaining = [e[0].decode() for e in client.xrange(VIDEO_FRAMES)]
    assert remaining[0] == ids[4] and len(remaining) == 8
    reader.commit(end2)
    assert client.xlen(VIDEO_FRAMES) == 0
    reader.stop()


def test_simple_source_reads_on_the_driver_with_admission_control(client, redis_port):
    from spark.streaming.redis_source import RedisSimpleStreamReader, RedisStreamDataSource

    ids = add_frames(client, 5, 10)
    reader = RedisSimpleStreamReader({"port": str(redis_port), "maxEntriesPerBatch": "4"})
    start = reader.initialOffset()
    rows, end = reader.read(start)
    assert [r[2] for r in rows] == ids[:4] and end == {"id": ids[3]}  # at most 4 a batch
    rows2, end2 = reader.read(end)
    assert [r[1] for r in rows2] == [4, 5, 6, 7]
    assert [r[2] for r in reader.readBetweenOffsets(start, end)] == ids[:4]  # replay after a restart
    reader.commit(end)  # trims what is committed only
    assert client.xrange(VIDEO_FRAMES)[0][0].decode() == ids[4]
    _, end3 = reader.read(end2)
    assert list(reader.read(end3)[0]) == [] and reader.read(end3)[1] == end3  # nothing new
    reader.stop()
    # The data source picks the simple reader unless asked for partitions.
    with pytest.raises(Exception, match="NOT_IMPLEMENTED|not implemented"):
        RedisStreamDataSource({"port": str(redis_port)}).streamReader(None)
    assert isinstance(RedisStreamDataSource({"reader": "partitioned"}).streamReader(None), RedisStreamReader)


def test_source_pages_large_ranges(client, redis_port):
    ids = add_frames(client, 2, 40)
    reader = RedisStreamReader({"port": str(redis_port), "pageSize": "7", "numPartitions": "1"})
    end = reader.latestOffset(reader.initialOffset(), ReadAllAvailable())
    assert end == {"id": ids[-1]}
    (part,) = reader.partitions(reader.initialOffset(), end)
    assert [r[1] for r in reader.read(part)] == list(range(40))


def test_source_rows_carry_the_run_id():
    from spark.streaming.redis_source import SCHEMA, entry_to_row

    columns = [c.split()[0] for c in SCHEMA.split(", ")]
    frame = VideoFrame(video_id=3, frame_number=5, timestamp=0.25, produced_at=1.0, run_id="video_3__ab12")
    fields = {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in frame.to_fields().items()}
    row = dict(zip(columns, entry_to_row("1-0", fields), strict=True))
    assert row["run_id"] == "video_3__ab12" and row["frame_number"] == 5
    del fields[b"run_id"]  # an entry of an older producer: no run
    assert dict(zip(columns, entry_to_row("1-1", fields), strict=True))["run_id"] is None


# -- sink ---------------------------------------------------------------------------------------
def out_row(video_id, n, status="ok", eos=False, violations=(), summary=None, error=None):
    pf = ProcessedFrame(
        video_id=video_id,
        frame_number=n,
        timestamp=n / 20,
        produced_at=1.0,
        end_of_stream=eos,
        error=error,
        summary=summary if eos else None,
        new_violations=list(violations),
    )
    return {
        "video_id": video_id,
        "frame_number": n,
        "stream_id": f"1000-{n}",
        "produced_at": 1.0,
        "status": status,
        "end_of_stream": eos,
        "processed_frame": bytearray(jpeg()) if status == "ok" else b"",
        "message": pf.model_dump_json(),
        "summary": summary.model_dump_json() if summary else None,
    }


def test_sink_writes_a_batch_once(client, tmp_path):
    passage = Passage(
        track_id=3,
        class_name="car",
        first_frame=0,
        last_frame=4,
        first_time_s=0.0,
        last_time_s=0.2,
        dwell_time_s=0.2,
        speed_kmh=98.5,
        max_speed_kmh=99.0,
        speeding=True,
    )
    summary = Summary(
        total_vehicles_count=2,
        avg_dwell_time=1.0,
        vehicle_type_distribution={"car": 2},
        speeding_count=1,
        vehicles=[passage, passage.model_copy(update={"track_id": 4, "speeding": False, "speed_kmh": None})],
    )
    violation = Violation(track_id=3, vehicle_class="car", speed_kmh=99.0, frame_number=2, video_time_s=0.1)
    rows = [
        out_row(7, 2, violations=[violation]),
        out_row(7, 0),
        out_row(7, 1, status="skipped"),
        out_row(7, 3, status="error", error="decode: bad"),
        out_row(7, 4, status="eos", eos=True, summary=summary),
        out_row(8, 0, status="fatal", error="detector cannot load", summary=summary),
    ]
    assert write_batch(client, rows, 5) is True
    assert write_batch(client, rows, 5) is False  # replay: nothing written
    assert write_batch(client, rows, 3) is False
    entries = client.xrange(PROCESSED_FRAMES)
    assert len(entries) == 6
    frames = [ProcessedFrame.from_fields(f) for _, f in entries]
    assert [(f.video_id, f.frame_number) for f in frames] == [(7, 0), (7, 1), (7, 2), (7, 3), (7, 4), (8, 0)]
    assert frames[0].processed_frame[:2] == b"\xff\xd8"
    assert frames[4].end_of_stream and frames[4].summary == summary
    progress = StreamProgress.from_hash(client.hgetall(progress_key(7)))
    assert progress.processed == 4 and progress.processed_last_frame == 3
    assert progress.skipped == 1 and progress.frame_errors == 1
    assert progress.eos_processed and progress.summary == summary
    assert (progress.updated_at or 0) > 0 and client.ttl(progress_key(7)) > 0
    assert StreamProgress.from_hash(client.hgetall(progress_key(8))).fatal_error == "detector cannot load"
    assert [Violation.model_validate_json(v) for v in client.lrange(violations_key(7), 0, -1)] == [violation]
    assert Summary.model_validate_json(client.get(analytics_key(7))) == summary
    assert 0 < client.ttl(analytics_key(7)) <= 3600
    assert client.get(SINK_LAST_BATCH_KEY) == b"5"

    assert write_batch(client, [out_row(7, 5)], 6) is True
    assert client.xlen(PROCESSED_FRAMES) == 7
    assert StreamProgress.from_hash(client.hgetall(progress_key(7))).processed == 5

    # Live: frames the stage published itself are counted, not written again; dropped ones are
    # counted (processed and dropped), never written.
    published = {**out_row(7, 6, status="skipped"), "published": True}
    dropped = out_row(7, 7, status="dropped")
    skipped_before = StreamProgress.from_hash(client.hgetall(progress_key(7))).skipped or 0
    assert write_batch(client, [published, dropped, out_row(7, 8)], 7) is True
    assert client.xlen(PROCESSED_FRAMES) == 8  # only frame 8
    progress = StreamProgress.from_hash(client.hgetall(progress_key(7)))
    assert progress.processed == 8 and progress.dropped == 1 and progress.skipped == skipped_before + 1
    assert progress.processed_last_frame == 8

    # A fresh checkpoint numbers batches from 0 again: the stored id is forgotten.
    assert reset_if_fresh_checkpoint(client, tmp_path / "ckpt") is True
    assert client.get(SINK_LAST_BATCH_KEY) is None
    (tmp_path / "ckpt" / "commits").mkdir(parents=True)
    (tmp_path / "ckpt" / "commits" / "0").write_text("v1")
    client.set(SINK_LAST_BATCH_KEY, 0)
    assert reset_if_fresh_checkpoint(client, tmp_path / "ckpt") is False
    assert client.get(SINK_LAST_BATCH_KEY) == b"0"


# -- stages -------------------------------------------------------------------------------------
def source_row(n, data=None, eos=False, config=CONFIG, produced_at=None, run_id=None):
    return {
        "video_id": 9,
        "frame_number": n,
        "stream_id": f"2000-{n}",
        "frame_data": jpeg() if data is None else data,
        "timestamp": n / 20,
        "produced_at": time.time() if produced_at is None else produced_at,
        "config": config.model_dump_json() if config else "",
        "end_of_stream": eos,
        "run_id": run_id,
    }


def run_stage(rows, blob=None, settings=None):
    out, blob = stages.process_video_rows(9, pd.DataFrame(rows), blob, settings=settings)
    return out, blob, [ProcessedFrame.model_validate_json(r["message"]) for r in out]


def test_stage_reports_errors_and_eos_without_raising():
    rows = [source_row(0, data=b"not a jpeg"), source_row(1, config=None), source_row(2, data=b"", eos=True)]
    out, _, frames = run_stage(rows)
    assert [r["status"] for r in out] == ["error", "error", "eos"]
    assert "decode" in frames[0].error and "config" in frames[1].error
    assert frames[2].end_of_stream and frames[2].summary is not None
    assert frames[2].summary.vehicles == []  # no frame was processed: no passage


def test_missing_model_marks_frames_fatal(monkeypatch, tmp_path):
    monkeypatch.setattr(stages, "_DETECTOR", None)
    monkeypatch.setattr(stages, "_DETECTOR_ERROR", None)
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "missing.onnx"))
    out, _, frames = run_stage([source_row(0), source_row(1)])
    assert [r["status"] for r in out] == ["fatal", "fatal"]
    assert "model not found" in frames[0].error


def test_embed_batch_and_half_mean_the_same_on_both_detection_paths(monkeypatch):
    # A frame detected by the batched stage (BATCHED_DETECT=1) and one detected by the per-video
    # stage itself reach the embedder with the same settings: EMBED_BATCH crops per call, fp16
    # as DETECTOR_HALF says, on the detector's device.
    import inspect

    from traffic_processing import processor

    from spark.streaming.detect_stage import detect_rows

    real, calls = processor.embed_many, []

    def recording(*args, **kwargs):
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append({k: v for k, v in bound.arguments.items() if k not in ("frames", "detections")})
        return real(*args, **kwargs)

    monkeypatch.setattr(processor, "embed_many", recording)
    settings = SparkSettings(EMBED_BATCH=5, DETECTOR_HALF=True)
    expected = {"batch": 5, "size": 64, "device": "cpu", "half": True, "backend": "auto"}

    detections = detect_rows(pd.DataFrame([source_row(0), source_row(1)]), settings)
    assert all(d is not None for d in detections)
    assert calls == [expected]  # both frames in one call
    calls.clear()

    out, _, _ = run_stage([source_row(0)], settings=settings)
    assert out[0]["status"] == "ok" and calls == [expected]


def test_stateful_stage_orders_rows_keeps_state_and_ends_the_video():
    rows = [source_row(2), source_row(0), source_row(1), source_row(3, data=b"bad")]
    out, blob, frames = run_stage(rows)
    assert [r["frame_number"] for r in out] == [0, 1, 2, 3]
    assert [r["status"] for r in out] == ["ok", "ok", "ok", "error"]  # not live: every frame detected
    assert out[0]["processed_frame"][:2] == b"\xff\xd8" and frames[0].produced_at is not None
    assert frames[2].detected_frames == 3 and frames[2].skipped_frames == 0
    assert frames[3].error.startswith("decode") and out[3]["processed_frame"] == b""
    assert out[-1]["summary"] is not None and blob is not None
    state = loads(blob)
    assert state.last_frame == 3 and state.detected == 3 and state.processor.tracker is not None

    out2, blob2, frames2 = run_stage([source_row(5, data=b"", eos=True)], blob)
    assert frames2[0].end_of_stream and frames2[0].summary is not None and frames2[0].detected_frames == 3
    assert blob2 is None  # state dropped

    # A video that streams again from frame 0, or under another run id, starts from a fresh state.
    _, blob3, _ = run_stage([source_row(0)], blob)
    assert loads(blob3).last_frame == 0 and loads(blob3).frames == 1
    _, blob4, _ = run_stage([source_row(0, run_id="a")])
    _, blob5, _ = run_stage([source_row(1, run_id="b")], blob4)
    assert loads(blob5).frames == 1 and loads(blob5).run_id == "b"


def test_live_stream_detects_an_even_stride_and_draws_the_others(monkeypatch):
    # A processor far slower than the frame rate, no degradation allowed: the stride goes to its
    # most, fps / 5 Hz = 4, right after the first detected frame (measured within the batch).
    slow = SparkSettings(LIVE_CPU_SHARE=0.001, LIVE_DEGRADED_MIN_DETECT_HZ=5)
    monkeypatch.setattr(video_state, "_COST_PRIOR", {})
    monkeypatch.setattr(stages, "_MEASURED", True)
    live = CONFIG.model_copy(update={"realtime": True})
    rows = [source_row(n, config=live) for n in range(12)]
    random.Random(3).shuffle(rows)  # a task's rows need not come in stream order
    out, blob, frames = run_stage(rows, settings=slow)
    statuses = {r["frame_number"]: r["status"] for r in out}
    assert [n for n, s in sorted(statuses.items()) if s == "ok"] == [0, 4, 8]
    assert all(r["processed_frame"][:2] == b"\xff\xd8" for r in out)  # every frame reaches viewers
    assert frames[-1].skipped_frames == 9 and frames[-1].detected_frames == 3
    assert [f.detect_stride for f in frames] == [4] * 12
    assert frames[-1].detect_hz == 5.0 and not any(f.degraded for f in frames)
    # Frames already older than the latency budget when reached are dropped (counted, nothing
    # drawn nor delivered); a fresh one after them is processed.
    stale = [source_row(n, config=live, produced_at=time.time() - 10) for n in (12, 13, 14)]
    out2, blob2, frames2 = run_stage([*stale, source_row(15, config=live)], blob, settings=slow)
    assert [r["status"] for r in out2] == ["dropped", "dropped", "dropped", "ok"]  # 15 is due
    assert [r["processed_frame"] for r in out2[:3]] == [b""] * 3 and out2[3]["processed_frame"][
        :2
    ] == b"\xff\xd8"
    assert [f.dropped_frames for f in frames2] == [1, 2, 3, 3]
    # an end of stream is never dropped, and always detected
    out3, _, _ = run_stage(
        [source_row(16, config=live, eos=True, produced_at=time.time() - 10)], blob2, settings=slow
    )
    assert out3[0]["status"] == "ok"


def test_late_frames_are_still_detected_now_and_then_and_their_flags_reach_the_viewers(monkeypatch):
    # A hole of late frames (Spark's gap between two batches): dropped from the view, but every
    # 4th (LIVE_LATE_DETECT_HZ=5 at 20 fps) is detected for the tracks, without a drawing; a
    # vehicle flagged on one of them goes out with the next frame delivered.
    from traffic_processing.processor import FrameProcessor

    from contracts.messages import Violation

    settings = SparkSettings(LIVE_LATE_DETECT_HZ=5)
    monkeypatch.setattr(video_state, "_COST_PRIOR", {})
    monkeypatch.setattr(stages, "_MEASURED", True)
    flag = Violation(track_id=7, vehicle_class="car", speed_kmh=99.0, frame_number=8, video_time_s=0.4)
    real = FrameProcessor._new_violations
    monkeypatch.setattr(
        FrameProcessor,
        "_new_violations",
        lambda self, frame, tracked: [flag] if self.tracker.last_frame == 8 else real(self, frame, tracked),
    )
    live = CONFIG.model_copy(update={"realtime": True})
    old = time.time() - 10
    rows = [source_row(n, config=live, produced_at=old) for n in range(10)] + [source_row(10, config=live)]
    out, blob, frames = run_stage(rows, settings=settings)
    assert [r["status"] for r in out[:10]] == ["dropped"] * 10
    assert all(r["processed_frame"] == b"" for r in out[:10])  # nothing late reaches the viewers
    assert out[10]["processed_frame"][:2] == b"\xff\xd8"  # the frame on time is delivered
    # 0, 4 and 8 detected late, for the tracks (and 10 if the stride makes it due)
    assert loads(blob).detected == 3 + (out[10]["status"] == "ok")
    assert frames[-1].dropped_frames == 10
    assert [v.track_id for f in frames[:10] for v in f.new_violations] == []
    assert [v.track_id for v in frames[10].new_violations] == [7]  # with the next frame delivered
    # LIVE_LATE_DETECT_HZ=0: late frames are never detected
    _, blob0, _ = run_stage(rows[:10], settings=SparkSettings(LIVE_LATE_DETECT_HZ=0))
    assert loads(blob0).detected == 0


def test_live_stream_degrades_below_the_floor_rather_than_fall_behind(monkeypatch):
    # Too slow even at 5 Hz: detection goes under the floor, down to LIVE_DEGRADED_MIN_DETECT_HZ,
    # and the frames say so.
    slow = SparkSettings(LIVE_CPU_SHARE=0.001, LIVE_DEGRADED_MIN_DETECT_HZ=2)
    monkeypatch.setattr(video_state, "_COST_PRIOR", {})
    monkeypatch.setattr(stages, "_MEASURED", True)
    live = CONFIG.model_copy(update={"realtime": True})
    out, _, frames = run_stage([source_row(n, config=live) for n in range(25)], settings=slow)
    assert [r["frame_number"] for r in out if r["status"] == "ok"] == [0, 10, 20]  # 20 fps / 2 Hz
    assert frames[-1].detect_stride == 10 and frames[-1].detect_hz == 2.0 and frames[-1].degraded
    not_live, _, nl_frames = run_stage([source_row(n) for n in range(3)], settings=slow)
    assert [r["status"] for r in not_live] == ["ok"] * 3 and not nl_frames[-1].degraded
    assert nl_frames[-1].detect_hz == 20.0


class FakePublisher:
    def __init__(self, ok=True):
        self.ok, self.frames, self.limits = ok, [], []

    def frame(self, pf):
        self.frames.append((pf.frame_number, pf.processed_frame))
        return self.ok

    def read_limit(self, video_id, rows, wall=None):
        self.limits.append((video_id, rows))

    def other_streams(self, video_id):
        return True  # no reading ahead here


def test_live_frames_are_published_as_soon_as_drawn_and_the_read_limit_kept(monkeypatch):
    monkeypatch.setattr(video_state, "_COST_PRIOR", {})
    monkeypatch.setattr(stages, "_MEASURED", True)
    live = CONFIG.model_copy(update={"realtime": True})
    pub = FakePublisher()
    rows = [source_row(n, config=live) for n in range(3)]
    out, blob = stages.process_video_rows(9, pd.DataFrame(rows), None, publisher=pub)
    assert [n for n, _ in pub.frames] == [0, 1, 2] and all(j[:2] == b"\xff\xd8" for _, j in pub.frames)
    assert [r["published"] for r in out] == [True] * 3 and [r["processed_frame"] for r in out] == [b""] * 3
    ((video_id, rows_limit),) = pub.limits
    assert video_id == 9 and rows_limit == int(np.ceil(20 * LiveTuning().budget_s)) + 2
    # Redis refused: the sink writes the frame (with its JPEG) as before
    refused = FakePublisher(ok=False)
    out2, blob2 = stages.process_video_rows(
        9, pd.DataFrame([source_row(3, config=live)]), blob, publisher=refused
    )
    assert out2[0]["published"] is False and out2[0]["processed_frame"][:2] == b"\xff\xd8"
    # not live: nothing published early, the allowance is the source's maximum; eos: removed
    fast = FakePublisher()
    out3, _ = stages.process_video_rows(
        8, pd.DataFrame([{**source_row(0), "video_id": 8}]), None, publisher=fast
    )
    assert fast.frames == [] and out3[0]["published"] is False
    assert fast.limits == [(8, SparkSettings().MAX_ENTRIES_PER_BATCH)]
    end = FakePublisher()
    stages.process_video_rows(
        9, pd.DataFrame([source_row(4, config=live, eos=True, data=b"")]), blob2, publisher=end
    )
    assert end.frames == [] and end.limits == [(9, None)]


def test_source_reads_at_most_the_live_allowances(client):
    from spark.streaming.publisher import Publisher, read_limit

    port = client.connection_pool.connection_kwargs["port"]
    pub = Publisher("127.0.0.1", port)
    assert read_limit(client, 128) == 128  # no allowance: the maximum
    pub.read_limit(1, 27)
    pub.read_limit(2, 12)
    assert read_limit(client, 128) == 39
    assert read_limit(client, 8) == 32  # never above four times the maximum
    pub.read_limit(3, 5, wall=time.time() - 60)  # stale: ignored
    assert read_limit(client, 128) == 39
    pub.read_limit(1, None)
    pub.read_limit(2, None)
    assert read_limit(client, 128) == 128
    ids = add_frames(client, 7, 10)
    pub.read_limit(7, 4)
    reader = RedisStreamReader({"port": str(port), "maxEntriesPerBatch": "8", "numPartitions": "1"})
    assert reader.latestOffset({"id": "0-0"}, ReadMaxRows(8)) == {"id": ids[3]}
    from spark.streaming.redis_source import RedisSimpleStreamReader

    simple = RedisSimpleStreamReader({"port": str(port), "maxEntriesPerBatch": "8"})
    rows, end = simple.read({"id": "0-0"})
    assert len(list(rows)) == 4 and end == {"id": ids[3]}
    pub.frame(ProcessedFrame(video_id=7, frame_number=0, timestamp=0.0, processed_frame=b"x"))
    assert ProcessedFrame.from_fields(client.xrange(PROCESSED_FRAMES)[0][1]).processed_frame == b"x"


def test_a_lone_live_stream_reads_ahead_and_skips_what_it_read_when_spark_brings_it(client, monkeypatch):
    from spark.streaming.publisher import Publisher

    monkeypatch.setattr(video_state, "_COST_PRIOR", {})
    monkeypatch.setattr(stages, "_MEASURED", True)
    port = client.connection_pool.connection_kwargs["port"]
    settings = SparkSettings(REDIS_PORT=port, LIVE_PULL_S=1.0)
    live = CONFIG.model_copy(update={"realtime": True})

    def entry(n, eos=False, run_id="r1"):
        frame = VideoFrame(
            video_id=9,
            frame_number=n,
            frame_data=b"" if eos else jpeg(),
            timestamp=n / 20,
            produced_at=time.time(),
            config=live,
            end_of_stream=eos,
            run_id=run_id,
        )
        return client.xadd(VIDEO_FRAMES, frame.to_fields()).decode()

    def rows_of(ids):
        return pd.DataFrame(
            [{**source_row(n, config=live, run_id="r1"), "stream_id": sid} for n, sid in enumerate(ids)]
        )

    first = [entry(n) for n in range(2)]
    later = [entry(n) for n in range(2, 5)]
    other_run = entry(0, run_id="r2")
    pub = Publisher("127.0.0.1", port)
    t0 = time.monotonic()
    out, blob = stages.process_video_rows(9, rows_of(first), None, settings=settings, publisher=pub)
    # the batch's 2 rows, then 2..4 read ahead from Redis; never the other run's entry
    assert [r["frame_number"] for r in out] == [0, 1, 2, 3, 4]
    assert [r["stream_id"] for r in out[2:]] == later and all(r["published"] for r in out)
    assert time.monotonic() - t0 < 1.5  # stopped at the other run's entry, not at the deadline
    assert ProcessedFrame.from_fields(client.xrange(PROCESSED_FRAMES)[-1][1]).frame_number == 4
    assert loads(blob).pulled_upto == later[-1]
    # the source hands Spark what was read ahead without its JPEG (never an end of stream)
    from spark.streaming.redis_source import RedisSimpleStreamReader

    source, end_id = RedisSimpleStreamReader({"port": str(port), "maxEntriesPerBatch": "20"}).read(
        {"id": "0-0"}
    )
    data = {r[2]: r[3] for r in source}
    assert [bool(data[sid]) for sid in first + later] == [False] * 5 and data[other_run][:2] == b"\xff\xd8"
    # Spark delivers 2..4 (and the other run's first frame) later: only the new run is processed
    rows = pd.concat(
        [
            rows_of(first + later).iloc[2:],
            pd.DataFrame([{**source_row(0, config=live, run_id="r2"), "stream_id": other_run}]),
        ]
    )
    out2, blob2 = stages.process_video_rows(9, rows, blob, settings=settings, publisher=pub)
    assert [(r["frame_number"], r["stream_id"]) for r in out2] == [(0, other_run)]
    assert loads(blob2).run_id == "r2"
    # another stream is served: no reading ahead (it would make that one wait)
    pub.read_limit(5, 10)
    sid = entry(1, run_id="r2")
    entry(2, run_id="r2")
    one = pd.DataFrame([{**source_row(1, config=live, run_id="r2"), "stream_id": sid}])
    out3, _ = stages.process_video_rows(9, one, blob2, settings=settings, publisher=pub)
    assert [r["frame_number"] for r in out3] == [1]


def stride(detect_ms, hold_ms, overhead_s=None):
    s = video_state.LiveStride(detect_ms=detect_ms, hold_ms=hold_ms, overhead_s=overhead_s)
    return s


def test_live_stride_follows_the_measured_costs_the_overhead_and_the_lag():
    t = LiveTuning()
    budget = t.cpu_share * 1000 / 25  # no overhead measured: the CPU share bounds it
    assert stride(budget * 0.5, 2.0).adapt(25, lag_s=0.1) == 1  # detection fits: every frame
    s = stride(60.0, 8.0)
    k = s.adapt(25, lag_s=0.1)
    assert k == int(np.ceil((60 - 8) / (budget - 8)))
    assert (60 + (k - 1) * 8) / k <= budget < (60 + (k - 2) * 8) / (k - 1)  # the smallest that fits
    assert s.adapt(25, lag_s=t.room_s + 0.1) == k + 1  # frames reach us late: one more
    assert not s.degraded
    # Spark's overhead per batch leaves less of the budget for processing: a larger stride
    assert stride(60.0, 8.0, overhead_s=0.3).adapt(25, lag_s=0.1) > k
    # Too slow for 5 Hz within the budget: beyond the floor, degraded, down to 1 Hz at most
    slow = stride(500.0, 10.0, overhead_s=0.5)
    assert slow.adapt(25, lag_s=0.0) == 25 and slow.degraded and slow.detect_hz(25) == 1.0
    assert stride(500.0, 100.0, overhead_s=2.0).adapt(25, lag_s=5.0) == 25  # never below 1 Hz
    # What gives first is the drawing: rather than detect under 5 Hz, every other frame between
    # two detections is drawn (25 fps: 12.5 drawn frames/s, over LIVE_MIN_VIEW_FPS) ...
    thin = stride(100.0, 20.0)
    assert stride(100.0, 20.0).adapt(25, lag_s=0.1) == 5 and t.max_view_every(25) == 2
    assert thin.adapt(25, lag_s=0.1) == 5 and thin.view_every == 2 and not thin.degraded
    assert int(np.ceil((100 - 20) / (budget - 20))) > 5  # (drawing them all: under 5 Hz)
    thin.last_detected = 10
    assert [thin.drawn(n) for n in range(11, 15)] == [False, True, False, True]
    # ... late all the same at the normal stride: still the drawing first, then the detection
    late = stride(60.0, 8.0)
    late.k = 5
    assert late.adapt(25, lag_s=t.room_s + 0.1) == 5 and late.view_every == 2
    assert late.adapt(25, lag_s=t.room_s + 0.1) == 6 and late.view_every == 2 and late.degraded
    # ... and never under LIVE_MIN_VIEW_FPS
    assert stride(500.0, 100.0).adapt(25, lag_s=5.0) == 25 and t.max_view_every(25) == 2
    # the read limit: one budget's frames (or one batch period's, when longer) and two more
    assert stride(60.0, 8.0).read_limit(25, t) == 25 + 2
    p = stride(60.0, 8.0)
    p.period_s = 1.6
    assert p.read_limit(25, t) == 40 + 2


def test_live_stride_measures_costs_and_overhead_and_seeds_new_videos(monkeypatch):
    monkeypatch.setattr(video_state, "_COST_PRIOR", {})
    monkeypatch.setattr(stages, "_MEASURED", True)
    s = video_state.LiveStride()
    assert s.adapt(25, lag_s=0.0) == 1  # nothing measured yet
    s.batch_started(100.0)
    for _ in range(5):
        s.observe("detect", 80.0)
        s.observe("hold", 5.0)
    s.last_call_end = 100.5
    s.batch_started(101.0)  # 0.5 s between the end of one batch and the start of the next
    assert s.detect_ms > 60 and s.overhead_s == pytest.approx(0.5)
    fresh = video_state.LiveStride()  # a new video starts from the costs this worker measured ...
    assert fresh.detect_ms == s.detect_ms and fresh.hold_ms == s.hold_ms and fresh.adapt(25, lag_s=0.0) > 1
    # ... not from another video's overhead (a stream processed every frame has batches of
    # seconds, which says nothing of a live one's): a new live stream does not start degraded
    assert fresh.overhead_s is None and fresh.adapt(25, lag_s=0.0) <= s.adapt(25, lag_s=0.0)


def test_reading_ahead_keeps_the_read_mark_fresh_for_a_cameras_producer(client):
    """A camera's producer holds back while its unread frames pile up; while the stage reads
    ahead (a micro-batch may last seconds), ``PULLED_KEY`` says how far it read, every
    ``PULLED_MARK_S``, not only once the batch ends."""
    from contracts.streams import PULLED_KEY
    from spark.streaming import publisher as pubmod

    port = client.connection_pool.connection_kwargs["port"]
    pub = pubmod.Publisher("127.0.0.1", port)
    live = CONFIG.model_copy(update={"realtime": True})

    def entry(n):
        frame = VideoFrame(
            video_id=11,
            frame_number=n,
            frame_data=jpeg(),
            timestamp=n / 20,
            produced_at=time.time(),
            config=live,
        )
        return client.xadd(VIDEO_FRAMES, frame.to_fields()).decode()

    ids = [entry(n) for n in range(3)]
    marks = []
    rows = pub.pull(11, "0-0", None, time.time() + 1.2)
    for n, row in enumerate(rows):
        time.sleep(0.3)  # processing the row
        marks.append(client.hget(PULLED_KEY, "11"))
        if n == 1:
            later = entry(3)
        if row["frame_number"] == 3:
            break
    # each mark, taken while the next row is processed, names the rows already handed over
    assert marks[0] is None  # no row processed yet when the first mark would be due
    assert [m.decode() for m in marks[1:]] == [ids[0], ids[1], ids[2]]
    assert later
