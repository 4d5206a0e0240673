"""Source offsets/paging/trim, sink idempotence, and the stages' frame handling, on a real Redis
and without Spark (and without the detector model)."""

from __future__ import annotations

import json
import pickle
import random
import time

import cv2
import numpy as np
import pandas as pd
import pytest
import redis
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows
from streaming_helpers import start_redis
from traffic_processing.detections import FrameDetections
from traffic_processing.schemas import FrameConfig, ProcessedFrame, Summary, VideoFrame, Violation
from traffic_processing.streams import (
    PROCESSED_FRAMES,
    SINK_LAST_BATCH_KEY,
    VIDEO_FRAMES,
    analytics_key,
    progress_key,
    violations_key,
)

from spark.streaming import stages
from spark.streaming.redis_source import RedisStreamReader, parse_id
from spark.streaming.sink import reset_if_fresh_checkpoint, write_batch

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
    assert parse_id(end2["id"]) == parse_id(ids[-1])
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


def test_source_pages_large_ranges(client, redis_port):
    ids = add_frames(client, 2, 40)
    reader = RedisStreamReader({"port": str(redis_port), "pageSize": "7", "numPartitions": "1"})
    end = reader.latestOffset(reader.initialOffset(), ReadAllAvailable())
    assert end == {"id": ids[-1]}
    (part,) = reader.partitions(reader.initialOffset(), end)
    assert [r[1] for r in reader.read(part)] == list(range(40))


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
    summary = Summary(
        total_vehicles_count=2, avg_dwell_time=1.0, vehicle_type_distribution={"car": 2}, speeding_count=1
    )
    violation = Violation(track_id=3, class_name="car", speed_kmh=99.0, frame_number=2, timestamp=0.1)
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
    progress = {k.decode(): v.decode() for k, v in client.hgetall(progress_key(7)).items()}
    assert progress["processed"] == "4" and progress["processed_last_frame"] == "3"
    assert progress["skipped"] == "1" and progress["frame_errors"] == "1"
    assert progress["eos_processed"] == "1" and Summary.model_validate_json(progress["summary"]) == summary
    assert float(progress["updated_at"]) > 0 and client.ttl(progress_key(7)) > 0
    assert client.hget(progress_key(8), "fatal_error") == b"detector cannot load"
    assert [Violation.model_validate_json(v) for v in client.lrange(violations_key(7), 0, -1)] == [violation]
    assert Summary.model_validate_json(client.get(analytics_key(7))) == summary
    assert 0 < client.ttl(analytics_key(7)) <= 3600
    assert client.get(SINK_LAST_BATCH_KEY) == b"5"

    assert write_batch(client, [out_row(7, 5)], 6) is True
    assert client.xlen(PROCESSED_FRAMES) == 7
    assert client.hget(progress_key(7), "processed") == b"5"

    # A fresh checkpoint numbers batches from 0 again: the stored id is forgotten.
    assert reset_if_fresh_checkpoint(client, tmp_path / "ckpt") is True
    assert client.get(SINK_LAST_BATCH_KEY) is None
    (tmp_path / "ckpt" / "commits").mkdir(parents=True)
    (tmp_path / "ckpt" / "commits" / "0").write_text("v1")
    client.set(SINK_LAST_BATCH_KEY, 0)
    assert reset_if_fresh_checkpoint(client, tmp_path / "ckpt") is False
    assert client.get(SINK_LAST_BATCH_KEY) == b"0"


# -- stages (no model needed for these paths) -------------------------------------------------------
def source_row(n, data=None, eos=False, config=CONFIG, produced_at=None):
    return {
        "video_id": 9,
        "frame_number": n,
        "stream_id": f"2000-{n}",
        "frame_data": jpeg() if data is None else data,
        "timestamp": n / 20,
        "produced_at": time.time() if produced_at is None else produced_at,
        "config": config.model_dump_json() if config else "",
        "end_of_stream": eos,
    }


def test_stateless_stage_reports_errors_skips_and_eos_without_raising():
    live = CONFIG.model_copy(update={"realtime": True})
    rows = [
        source_row(0, data=b"not a jpeg"),
        source_row(1, config=live, produced_at=time.time() - 10),  # stale live frame
        source_row(2, config=None),
        source_row(3, data=b"", eos=True),
    ]
    (out,) = list(stages.analyze_partitions(iter([pd.DataFrame(rows)])))
    assert list(out["status"]) == ["error", "skipped", "error", "eos"]
    assert "decode" in out["error"][0] and "config" in out["error"][2]


def test_live_frames_thinned_evenly_newest_kept_others_untouched():
    live = CONFIG.model_copy(update={"realtime": True})
    rows = [source_row(n, config=live) for n in range(20)]
    rows += [source_row(n, config=CONFIG) | {"video_id": 8} for n in range(10)]  # not live: all kept
    rows.append(source_row(20, config=live, eos=True))  # the end of stream is never skipped
    for row in rows:
        row["_settings"] = FrameConfig.model_validate_json(row["config"])
    random.Random(3).shuffle(rows)  # a task's rows need not come in stream order
    kept = stages.thin_live_rows(rows, 5)
    live_kept = sorted(r["frame_number"] for r in kept if r["video_id"] == 9 and not r["end_of_stream"])
    assert live_kept == [3, 7, 11, 15, 19]  # every 4th, ending with the newest
    assert sorted(r["frame_number"] for r in kept if r["video_id"] == 8) == list(range(10))
    assert any(r["end_of_stream"] for r in kept)
    skipped = sorted(r["frame_number"] for r in rows if r.get("status") == "skipped")
    assert skipped == sorted(set(range(20)) - set(live_kept))
    assert stages.thin_live_rows(rows, 0) == rows  # 0: no limit


def test_missing_model_marks_frames_fatal(monkeypatch, tmp_path):
    monkeypatch.setattr(stages, "_DETECTOR", None)
    monkeypatch.setattr(stages, "_DETECTOR_ERROR", None)
    monkeypatch.setattr(stages, "_ANALYZERS", stages.OrderedDict())
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "missing.onnx"))
    (out,) = list(stages.analyze_partitions(iter([pd.DataFrame([source_row(0), source_row(1)])])))
    assert list(out["status"]) == ["fatal", "fatal"]
    assert "model not found" in out["error"][0]


def analyzed_row(n, status="ok", eos=False, data=None):
    row = source_row(n, data=data, eos=eos)
    empty = FrameDetections.empty()
    empty.embeddings = np.zeros((0, 1280), np.float32)
    row.update(
        status=status,
        error="decode: bad" if status == "error" else None,
        detections=pickle.dumps(empty) if status == "ok" else None,
        timings=json.dumps({"decode": 1.0, "detection": 2.0}) if status == "ok" else None,
    )
    return row


def test_stateful_stage_orders_rows_keeps_state_and_ends_the_video():
    rows = [
        analyzed_row(2),
        analyzed_row(0),
        analyzed_row(1, status="skipped"),
        analyzed_row(3, status="error"),
    ]
    out, blob = stages.process_video_rows(9, pd.DataFrame(rows), None)
    assert [r["frame_number"] for r in out] == [0, 1, 2, 3]
    assert [r["status"] for r in out] == ["ok", "skipped", "ok", "error"]
    frames = [ProcessedFrame.model_validate_json(r["message"]) for r in out]
    assert out[0]["processed_frame"][:2] == b"\xff\xd8" and frames[0].produced_at is not None
    assert frames[1].skipped_frames == 1 and out[1]["processed_frame"][:2] == b"\xff\xd8"
    assert frames[3].error == "decode: bad" and out[3]["processed_frame"] == b""
    assert out[-1]["summary"] is not None and blob is not None
    state = pickle.loads(blob)
    assert state.last_frame == 3 and state.skipped == 1 and state.processor.detector is None

    out2, blob2 = stages.process_video_rows(
        9, pd.DataFrame([analyzed_row(5, status="eos", eos=True, data=b"")]), blob
    )
    final = ProcessedFrame.model_validate_json(out2[0]["message"])
    assert final.end_of_stream and final.summary is not None and final.skipped_frames == 1
    assert blob2 is None  # state dropped

    # A video that streams again from frame 0 starts from a fresh state.
    _, blob3 = stages.process_video_rows(9, pd.DataFrame([analyzed_row(0)]), blob)
    assert pickle.loads(blob3).last_frame == 0 and pickle.loads(blob3).frames == 1
