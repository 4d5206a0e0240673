"""The progress hash on a real Redis: ``StreamProgress`` round trip through HSET/HGETALL (bytes),
and partial updates by the producer and the processor that never overwrite each other."""

from __future__ import annotations

import threading

from contracts import streams
from contracts.messages import ProgressWriter, StreamProgress, StreamState, Summary, VideoStatus

VID = 21
SUMMARY = Summary(
    total_vehicles_count=2, avg_dwell_time=1.25, vehicle_type_distribution={"car": 2}, speeding_count=1
)


def read(r) -> StreamProgress:
    return StreamProgress.from_hash(r.hgetall(streams.progress_key(VID)))


def test_round_trip_through_redis_bytes(r):
    written = StreamProgress(
        run_id="video_21__x",
        state=StreamState.PRODUCED,
        realtime=False,
        frames_total=40,
        produced=40,
        produce_done=True,
        started_at=1_750_000_000.125,
        processed=40,
        processed_last_frame=39,
        stride=1,
        eos_processed=True,
        summary=SUMMARY,
        updated_at=1_750_000_012.5,
    )
    r.hset(streams.progress_key(VID), mapping=written.to_hash())
    raw = r.hgetall(streams.progress_key(VID))
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in raw.items())
    assert raw[b"state"] == b"produced" and raw[b"produce_done"] == b"1" and raw[b"realtime"] == b"0"
    back = read(r)
    assert back == written
    assert back.summary == SUMMARY and back.started_at == 1_750_000_000.125


def test_partial_updates_touch_only_the_writers_fields(r):
    key = streams.progress_key(VID)
    r.hset(
        key, mapping=StreamProgress.update(ProgressWriter.PRODUCER, state=StreamState.PRODUCING, produced=0)
    )
    # The processor counts and reports; the producer moves on; neither names the other's fields.
    for name, n in StreamProgress.increments(ProgressWriter.PROCESSOR, processed=3, skipped=1).items():
        r.hincrby(key, name, n)
    r.hset(key, mapping=StreamProgress.update(ProgressWriter.PROCESSOR, processed_last_frame=2, stride=2))
    r.hset(key, mapping=StreamProgress.update(ProgressWriter.PRODUCER, produced=5, updated_at=10.0))
    p = read(r)
    assert (p.state, p.produced, p.processed, p.skipped, p.stride) == (StreamState.PRODUCING, 5, 3, 1, 2)
    assert p.processed_last_frame == 2 and p.updated_at == 10.0 and p.eos_processed is None
    r.hset(
        key,
        mapping=StreamProgress.update(
            ProgressWriter.CLEANUP, state=StreamState.DONE, status=VideoStatus.COMPLETED
        ),
    )
    p = read(r)
    assert p.state == StreamState.DONE and p.status == VideoStatus.COMPLETED and p.produced == 5


def test_concurrent_writers_keep_each_others_fields(r):
    key = streams.progress_key(VID)
    rounds = 200

    def producer() -> None:
        for n in range(1, rounds + 1):
            r.hset(
                key, mapping=StreamProgress.update(ProgressWriter.PRODUCER, produced=n, producer_heartbeat=n)
            )

    def processor() -> None:
        for n in range(rounds):
            for name, amount in StreamProgress.increments(ProgressWriter.PROCESSOR, processed=1).items():
                r.hincrby(key, name, amount)
            r.hset(key, mapping=StreamProgress.update(ProgressWriter.PROCESSOR, processed_last_frame=n))

    threads = [threading.Thread(target=producer), threading.Thread(target=processor)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    p = read(r)
    assert (p.produced, p.producer_heartbeat) == (rounds, float(rounds))
    assert (p.processed, p.processed_last_frame) == (rounds, rounds - 1)
