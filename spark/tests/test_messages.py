import numpy as np
import pytest
from pydantic import ValidationError
from traffic_processing.detections import FrameDetections

from contracts.messages import (
    BBox,
    FrameConfig,
    Passage,
    ProcessedFrame,
    ProgressWriter,
    Stats,
    StreamProgress,
    StreamState,
    Summary,
    Vehicle,
    VideoFrame,
    VideoStatus,
    Violation,
)
from contracts.streams import parse_stream_id, text


def test_detections_validate_lengths_and_index():
    d = FrameDetections(xyxy=[[0, 0, 1, 1], [2, 2, 4, 6]], confidence=[0.5, 0.9], class_id=[2, 7])
    assert len(d) == 2 and d.tracker_id.tolist() == [-1, -1]
    assert d[d.confidence > 0.6].class_name == ["truck"]
    np.testing.assert_allclose(d.bottom_center, [[0.5, 1], [3, 6]])
    with pytest.raises(ValueError, match="confidence"):
        FrameDetections(xyxy=[[0, 0, 1, 1]], confidence=[0.5, 0.2], class_id=[2])
    assert len(FrameDetections.merge([d, FrameDetections.empty(), d])) == 4


def test_video_frame_roundtrip_through_redis_fields():
    msg = VideoFrame(
        video_id=3,
        frame_number=12,
        frame_data=b"\xff\xd8jpeg\x00",
        timestamp=0.48,
        produced_at=1.7e9,
        config=FrameConfig(fps=25, homography_matrix=np.eye(3).tolist()),
        run_id="video_3__0123abcd",
    )
    fields = {k.encode(): (v if isinstance(v, bytes) else v.encode()) for k, v in msg.to_fields().items()}
    assert VideoFrame.from_fields(fields) == msg
    no_run = msg.model_copy(update={"run_id": None})
    assert VideoFrame.from_fields(no_run.to_fields()).run_id is None


def test_processed_frame_roundtrip_and_data_url():
    msg = ProcessedFrame(
        video_id=1,
        frame_number=5,
        timestamp=0.2,
        processed_frame=b"\xff\xd8abc",
        vehicles=[
            Vehicle(
                track_id=4,
                bbox=BBox(x1=1, y1=2, x2=3, y2=4),
                speed=72.5,
                class_id=2,
                class_name="car",
                confidence=0.8,
                in_roi=True,
                speeding=True,
            )
        ],
        stats=Stats(total_vehicles=3, speeding_count=1, current_in_roi=1),
        roi_polygon=[[0, 0], [1, 0], [1, 1]],
        has_homography=True,
        end_of_stream=True,
        new_violations=[
            Violation(track_id=4, vehicle_class="car", speed_kmh=72.5, frame_number=5, video_time_s=0.2)
        ],
        summary=Summary(
            total_vehicles_count=3,
            avg_dwell_time=1.5,
            vehicle_type_distribution={"car": 3},
            speeding_count=1,
            vehicles=[
                Passage(
                    track_id=4,
                    class_name="car",
                    first_frame=0,
                    last_frame=5,
                    first_time_s=0.0,
                    last_time_s=0.2,
                    dwell_time_s=0.2,
                    speed_kmh=72.5,
                    max_speed_kmh=75.0,
                    speeding=True,
                )
            ],
        ),
    )
    assert ProcessedFrame.from_fields(msg.to_fields()) == msg
    assert ProcessedFrame.from_fields(msg.to_fields()).vehicles[0].speeding is True
    assert ProcessedFrame.from_fields(msg.to_fields()).summary.vehicles[0].max_speed_kmh == 75.0
    with_run = msg.model_copy(update={"run_id": "run-7"})
    assert ProcessedFrame.from_fields(with_run.to_fields()) == with_run
    assert msg.frame_data_url().startswith("data:image/jpeg;base64,/9h")


def test_unknown_fields_and_bad_values_are_rejected():
    with pytest.raises(ValidationError):
        FrameConfig(fps=0)
    with pytest.raises(ValidationError):
        Stats(total_vehicles=1, bogus=2)


def test_older_messages_without_the_new_fields_still_parse():
    """A vehicle without ``speeding`` is not speeding; a summary without ``vehicles`` has none."""
    fields = ProcessedFrame(video_id=1, frame_number=0, timestamp=0.0).to_fields()
    fields["vehicles"] = (
        '[{"track_id": 1, "bbox": {"x1": 0, "y1": 0, "x2": 1, "y2": 1}, "speed": 99.0, "speed_unit": "km/h",'
        ' "class_id": 2, "class_name": "car", "confidence": 0.9, "in_roi": true}]'
    )
    fields["summary"] = (
        '{"total_vehicles_count": 1, "avg_dwell_time": 1.0, "vehicle_type_distribution": {"car": 1},'
        ' "speeding_count": 0}'
    )
    frame = ProcessedFrame.from_fields(fields)
    assert frame.vehicles[0].speeding is False
    assert frame.summary is not None and frame.summary.vehicles is None


def test_a_violation_carries_the_tables_names_and_reads_an_older_processors():
    v = Violation(track_id=2, vehicle_class="bus", speed_kmh=81.0, frame_number=40, video_time_s=1.6)
    dumped = v.model_dump()
    assert dumped["vehicle_class"] == "bus" and dumped["video_time_s"] == 1.6
    assert "class_name" not in dumped and "timestamp" not in dumped
    old = '{"track_id": 2, "class_name": "bus", "speed_kmh": 81, "frame_number": 40, "timestamp": 1.6}'
    assert Violation.model_validate_json(old) == v


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1700000000123-4", (1700000000123, 4)), (b"5-0", (5, 0)), ("7", (7, 0)), (b"10-11", (10, 11))],
)
def test_stream_ids_parse_for_ordering(raw, expected):
    assert parse_stream_id(raw) == expected
    assert parse_stream_id("9-10") > parse_stream_id("9-9")  # not string order


def test_text_of_redis_replies():
    assert text(b"caf\xc3\xa9") == "café" and text("x") == "x" and text(3) == "3"


def test_stream_progress_encodes_only_the_fields_set():
    summary = Summary(
        total_vehicles_count=1, avg_dwell_time=2.0, vehicle_type_distribution={"car": 1}, speeding_count=0
    )
    p = StreamProgress(
        state=StreamState.PRODUCED, produced=24, produce_done=True, updated_at=1.5, summary=summary
    )
    assert p.to_hash() == {
        "state": "produced",
        "produced": "24",
        "produce_done": "1",
        "summary": summary.model_dump_json(),
        "updated_at": "1.5",
    }
    raw = {k.encode(): v.encode() for k, v in p.to_hash().items()}  # as HGETALL returns it
    back = StreamProgress.from_hash(raw)
    assert back == p and back.summary == summary and back.processed is None
    assert StreamProgress.from_hash({}) == StreamProgress() and StreamProgress().to_hash() == {}


def test_stream_progress_writers_own_their_fields():
    assert StreamProgress.update(ProgressWriter.PROCESSOR, stride=3, fatal_error=None, updated_at=2.0) == {
        "stride": "3",
        "updated_at": "2.0",
    }
    assert StreamProgress.update(
        ProgressWriter.CLEANUP, state=StreamState.DONE, status=VideoStatus.STOPPED
    ) == {
        "state": "done",
        "status": "stopped",
    }
    with pytest.raises(ValueError, match="producer does not write"):
        StreamProgress.update(ProgressWriter.PRODUCER, processed=3)
    with pytest.raises(ValueError, match="processor does not write"):
        StreamProgress.update(ProgressWriter.PROCESSOR, state=StreamState.DONE)
    with pytest.raises(ValueError, match="not a progress hash field"):
        StreamProgress.update(ProgressWriter.PRODUCER, bogus=1)
    assert StreamProgress.increments(ProgressWriter.PROCESSOR, processed=4, skipped=0) == {"processed": 4}
    with pytest.raises(ValueError, match="not a counter"):
        StreamProgress.increments(ProgressWriter.PROCESSOR, stride=1)
    assert StreamProgress.COUNTERS == {"processed", "skipped", "detected", "dropped", "frame_errors"}
    # every field has its writers
    assert all(StreamProgress.writers_of(name).writers for name in StreamProgress.model_fields)


def test_stream_progress_reads_past_unknown_and_unreadable_fields():
    raw = {
        b"state": b"stopped",
        b"produced": b"x",
        b"eos_processed": b"1",
        b"later_field": b"?",
        b"skipped": b"",
    }
    p = StreamProgress.from_hash(raw)
    assert p.state == StreamState.STOPPED and p.eos_processed is True
    assert p.produced is None and p.skipped is None  # unreadable / empty: absent


def test_the_lifecycle_names_keep_their_stored_strings():
    assert [s.value for s in StreamState] == ["producing", "produced", "stopped", "failed", "done"]
    assert [s.value for s in VideoStatus] == [
        "uploaded",
        "processing",
        "stopping",
        "completed",
        "stopped",
        "failed",
    ]
