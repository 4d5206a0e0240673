"""watch_processing on a real Redis, with the producer's and Spark's progress fields written as
they write them (``StreamProgress``)."""

from __future__ import annotations

import time

import pytest
from traffic_pipeline.config import PipelineSettings
from traffic_pipeline.monitor import ProcessingError, ProcessingStalled, watch_processing

from contracts import streams
from contracts.messages import ProgressWriter, StreamProgress, StreamState, Summary

from .conftest import Background

VID = 11
SUMMARY = {
    "total_vehicles_count": 3,
    "avg_dwell_time": 1.5,
    "vehicle_type_distribution": {"car": 2, "truck": 1},
    "speeding_count": 1,
}
PRODUCER, PROCESSOR = ProgressWriter.PRODUCER, ProgressWriter.PROCESSOR


def write(r, writer: ProgressWriter, **fields) -> str:
    """HSET progress fields as ``writer`` writes them; returns the key."""
    key = streams.progress_key(VID)
    r.hset(key, mapping=StreamProgress.update(writer, **fields))
    return key


def start(r, run_id: str = "run-a", **fields) -> str:
    """The producer's first write of a run, then ``fields`` (of either writer)."""
    now = time.time()
    key = write(
        r,
        PRODUCER,
        state=StreamState.PRODUCING,
        produced=0,
        produce_done=False,
        run_id=run_id,
        started_at=now,
        producer_heartbeat=now,
    )
    if fields:
        r.hset(key, mapping=StreamProgress(**fields).to_hash())
    return key


def watch(r, stall_timeout_s: float = 1.0, processor_wait_s: float | None = None, **kwargs):
    """``watch_processing`` with the settings' PIPELINE_STALL_TIMEOUT_S and (when given)
    PIPELINE_PROCESSOR_WAIT_S set."""
    kwargs.setdefault("poll_s", 0.02)
    timeouts = {"PIPELINE_STALL_TIMEOUT_S": stall_timeout_s}
    if processor_wait_s is not None:
        timeouts["PIPELINE_PROCESSOR_WAIT_S"] = processor_wait_s
    settings = PipelineSettings(_env_file=None, **timeouts)
    return watch_processing(VID, redis=r, settings=settings, **kwargs)


def test_returns_when_the_end_of_stream_is_processed(r):
    start(r)
    run = Background(lambda: watch(r, run_id="run-a", stall_timeout_s=2.0))
    for n in range(1, 11):  # producer and processor advancing together
        write(r, PRODUCER, produced=n, producer_heartbeat=time.time())
        write(r, PROCESSOR, processed=n - 1)
        time.sleep(0.05)
    write(r, PRODUCER, produce_done=True, state=StreamState.PRODUCED)
    write(r, PROCESSOR, processed=10, skipped=2)
    time.sleep(0.1)
    assert run.thread.is_alive()  # the end of stream is not processed yet
    write(r, PROCESSOR, eos_processed=True, summary=Summary(**SUMMARY))
    result = run.result(5)
    assert result["processed"] == 10 and result["produced"] == 10 and result["skipped"] == 2
    assert result["producer_state"] == "produced" and result["summary"] == SUMMARY
    assert r.get(streams.stop_key(VID)) is None


def test_raises_on_the_processors_fatal_error_and_stops_the_producer(r):
    key = start(r, produced="5")
    run = Background(lambda: watch(r, run_id="run-a", stall_timeout_s=30))
    time.sleep(0.1)
    write(r, PROCESSOR, fatal_error="no model at models/yolov8n.pt")
    with pytest.raises(ProcessingError, match="no model"):
        run.result(5)
    assert r.get(streams.stop_key(VID)) == b"1"
    # the same lifetime as the backend's stop (one constant: streams.STOP_FLAG_TTL_S)
    assert streams.STOP_FLAG_TTL_S - 5 < r.ttl(streams.stop_key(VID)) <= streams.STOP_FLAG_TTL_S
    assert "no model" in (StreamProgress.from_hash(r.hgetall(key)).monitor_error or "")


def test_raises_on_a_stall_with_frames_pending(r):
    start(r, produced=10, processed=3, produce_done=True, state=StreamState.PRODUCED)
    started = time.monotonic()
    with pytest.raises(ProcessingStalled, match="7 frames"):
        watch(r, run_id="run-a", stall_timeout_s=0.5)
    assert 0.5 <= time.monotonic() - started < 3
    assert r.get(streams.stop_key(VID)) == b"1"


def test_raises_when_the_end_of_stream_is_never_processed(r):
    start(r, produced=4, processed=4, produce_done=True, state=StreamState.PRODUCED)
    with pytest.raises(ProcessingStalled, match="end of stream"):
        watch(r, run_id="run-a", stall_timeout_s=0.4)


def test_no_stall_while_the_processor_keeps_up_with_a_slow_producer(r):
    start(r, produced=3, processed=3)
    run = Background(lambda: watch(r, run_id="run-a", stall_timeout_s=0.4))
    for _ in range(8):  # 1.2 s with nothing pending: not a stall
        write(r, PRODUCER, producer_heartbeat=time.time())
        time.sleep(0.15)
    assert run.thread.is_alive()
    write(r, PRODUCER, produce_done=True, state=StreamState.PRODUCED)
    write(r, PROCESSOR, eos_processed=True)
    assert run.result(5)["processed"] == 3


def test_raises_when_the_producer_stops_reporting(r):
    start(r, produced=3, processed=3, producer_heartbeat=time.time() - 100)
    with pytest.raises(ProcessingStalled, match="producer"):
        watch(r, run_id="run-a", stall_timeout_s=1.0)


def test_waits_for_its_own_run_and_ignores_a_previous_runs_hash(r):
    key = start(r, run_id="old-run", state=StreamState.DONE, eos_processed=True, produce_done=True)
    run = Background(lambda: watch(r, run_id="new-run", stall_timeout_s=2.0))
    time.sleep(0.3)
    assert run.thread.is_alive()  # the old run's eos_processed does not count
    r.delete(key)
    start(r, run_id="new-run", produced=1, processed=1, produce_done=True, eos_processed=True)
    assert run.result(5)["produced"] == 1


def test_without_run_id_a_done_hash_is_a_previous_run(r):
    start(r, run_id="x", state=StreamState.DONE, eos_processed=True)
    with pytest.raises(ProcessingStalled, match="did not start"):
        watch(r, start_timeout_s=0.3)


def test_raises_when_the_producer_never_starts(r):
    with pytest.raises(ProcessingStalled, match="did not start"):
        watch(r, run_id="run-a", start_timeout_s=0.3)


def test_without_a_heartbeat_key_a_stall_is_a_stall_at_once(r):
    """No key given (the Spark application's heartbeat not consulted): nothing waits for it."""
    start(r, produced=5, processed=0, produce_done=True, state=StreamState.PRODUCED)
    started = time.monotonic()
    with pytest.raises(ProcessingStalled, match="no progress"):
        watch(r, run_id="run-a", stall_timeout_s=0.3, processor_wait_s=30)
    assert time.monotonic() - started < 3


def test_a_processor_still_starting_is_not_a_stall(r):
    """Frames wait while the Spark application boots (no heartbeat yet): no stall before
    ``processor_wait_s``; once it runs, the normal stall timeout applies."""
    start(r, produced=5, processed=0, produce_done=True, state=StreamState.PRODUCED)
    kwargs = {
        "run_id": "run-a",
        "stall_timeout_s": 0.3,
        "processor_heartbeat_key": streams.PROCESSOR_HEARTBEAT_KEY,
    }
    run = Background(lambda: watch(r, processor_wait_s=30, **kwargs))
    time.sleep(1.0)
    assert run.thread.is_alive()  # three stall timeouts, no processor: still waiting
    r.set(streams.PROCESSOR_HEARTBEAT_KEY, repr(time.time()), ex=30)  # it is up, and does nothing
    with pytest.raises(ProcessingStalled, match="no progress"):
        run.result(5)
    r.delete(streams.PROCESSOR_HEARTBEAT_KEY)
    with pytest.raises(ProcessingStalled, match="no progress"):  # nobody came within the wait
        watch(r, processor_wait_s=0.5, **kwargs)
