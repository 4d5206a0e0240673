"""FrameProcessor: the processed-frames payload and the [PERFORMANCE] block, on generated truth."""

import logging
import time
from collections import Counter

import cv2
import numpy as np
import pytest
from conftest import match
from traffic_processing.cli import settings_from_calibration
from traffic_processing.config import CalibrationFile, ConfigError, ProcessorConfig
from traffic_processing.detections import FrameDetections
from traffic_processing.processor import STAGES, FrameProcessor
from traffic_processing.tracker import VehicleTracker
from traffic_processing.video import iter_frames
from traffic_processing.visualize import decode_jpeg, encode_jpeg

from contracts.messages import ProcessedFrame

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(truth_clip):
    out, truth = truth_clip
    settings = settings_from_calibration(CalibrationFile.load(out / "speeds_calib.json"), truth["fps"])
    frames = [f for n, f in iter_frames(truth["video"]) if n < 60]
    return settings, frames


def box_colour(image: np.ndarray, xyxy: np.ndarray) -> str | None:
    """ "red" or "green": the colour of the box drawn at ``xyxy`` on ``image`` (a decoded JPEG),
    read on its left, right and bottom edges; None when no box of either colour is there."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in xyxy)
    ym, xm = (y1 + y2) // 2, (x1 + x2) // 2
    strips = (
        image[ym - 2 : ym + 3, x1 - 1 : x1 + 2],
        image[ym - 2 : ym + 3, x2 - 1 : x2 + 2],
        image[y2 - 1 : y2 + 2, xm - 3 : xm + 3],
    )
    b, g, r = np.concatenate([s.reshape(-1, 3) for s in strips]).astype(float).mean(axis=0)
    if r > g + 80 and r > b + 80:
        return "red"
    if g > r + 80 and g > b + 80:
        return "green"
    return None


def test_payload_from_jpeg_bytes_with_performance_block(clip, truth_clip, detector, caplog):
    settings, frames = clip
    # the truth's vehicles that enter the ROI within these frames: what the processor must count
    seen = [
        t
        for t in truth_clip[1]["vehicles"]
        if t["first_frame_in_roi"] is not None and t["first_frame_in_roi"] < len(frames)
    ]
    speeding = [t for t in seen if t["speeding"]]
    assert seen and speeding  # the expectations below are not empty
    proc = FrameProcessor(settings, video_id=9, detector=detector)
    started = time.time()
    with caplog.at_level(logging.INFO, logger="traffic_processing.performance"):
        results = [proc.process(encode_jpeg(f), n) for n, f in enumerate(frames)]
    last = results[-1]
    assert isinstance(last, ProcessedFrame) and last.video_id == 9 and last.frame_number == 59
    assert last.timestamp == pytest.approx(59 / settings.fps)
    image = cv2.imdecode(np.frombuffer(last.processed_frame, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == frames[0].shape
    assert last.has_homography and last.roi_polygon == settings.roi_polygon
    assert last.stats.total_vehicles >= 2 and last.vehicles
    v = last.vehicles[0]
    assert (
        v.track_id >= 1 and v.speed_unit == "km/h" and v.class_name in {"car", "bus", "truck", "motorcycle"}
    )
    assert any(v.speed is not None for v in last.vehicles)
    block = caplog.records[-1].getMessage()
    assert block.startswith("[PERFORMANCE] frame 59")
    for stage in (*STAGES, "total", "fps"):
        assert f"  {stage}" in block
    assert ProcessedFrame.from_fields(last.to_fields()) == last
    # each speeding vehicle is reported once, in the frame where it was flagged
    reported = [v.track_id for r in results for v in r.new_violations]
    assert len(reported) == len(set(reported)) == len(speeding)
    flagged = sorted(reported)
    assert all(v.speed_kmh > settings.speed_limit_kmh for r in results for v in r.new_violations)
    # ... with the wall-clock time of the flag and a JPEG crop of the vehicle from that frame
    for r in results:
        for violation in r.new_violations:
            assert started <= violation.detected_at <= time.time()
            crop = cv2.imdecode(np.frombuffer(violation.snapshot_jpeg, np.uint8), cv2.IMREAD_COLOR)
            box = next(v.bbox for v in r.vehicles if v.track_id == violation.track_id)
            assert crop is not None
            assert crop.shape[1] >= 0.9 * (box.x2 - box.x1) and crop.shape[0] >= 0.9 * (box.y2 - box.y1)
            assert crop.shape[1] < frames[0].shape[1] and crop.shape[0] < frames[0].shape[0]
    # One speeding rule: each vehicle's ``speeding`` is the analytics' flag, raised in the frame of
    # its violation, never taken back, and counted in ``speeding_count``.
    flagged_at = {v.track_id: v.frame_number for r in results for v in r.new_violations}
    for r in results:
        for v in r.vehicles:
            assert v.speeding is (v.track_id in flagged_at and r.frame_number >= flagged_at[v.track_id])
        assert r.stats.speeding_count == sum(f <= r.frame_number for f in flagged_at.values())
    first_seen_speeding: dict[int, int] = {}
    for r in results:
        for v in r.vehicles:
            if v.speeding:
                first_seen_speeding.setdefault(v.track_id, r.frame_number)
    assert first_seen_speeding == flagged_at
    # The summary carries every counted vehicle's passage, by first frame: one per vehicle of
    # the truth, the truth's speeding ones flagged (and reported above).
    summary = proc.finalize()
    assert summary.total_vehicles_count == len(summary.vehicles) == len(seen)
    assert summary.vehicle_type_distribution == dict(Counter(t["class_name"] for t in seen))
    assert summary.speeding_count == sum(p.speeding for p in summary.vehicles) == len(speeding)
    assert [p.first_frame for p in summary.vehicles] == sorted(p.first_frame for p in summary.vehicles)
    pairs = match({"vehicles": [p.model_dump() for p in summary.vehicles]}, {"vehicles": seen})
    assert all(pairs[t["id"]] is not None for t in seen)
    assert sorted(pairs[t["id"]]["track_id"] for t in speeding) == flagged
    assert sorted(p.track_id for p in summary.vehicles if p.speeding) == flagged
    violations = {v.track_id: v for r in results for v in r.new_violations}
    for t in speeding:  # flagged at about the truth's speed
        assert violations[pairs[t["id"]]["track_id"]].speed_kmh == pytest.approx(t["speed_kmh"], abs=5.0)
    # Frames not detected are drawn with the tracks predicted to their frame number, with the
    # same flags (red = flagged, whatever the speed).
    predicted = proc.predicted(61)
    mask = proc.speeding_mask(predicted)
    assert mask.tolist() == [int(t) in flagged_at for t in predicted.tracker_id]
    colours = ["red" if int(t) in flagged_at else "green" for t in predicted.tracker_id]
    assert set(colours) == {"red", "green"}  # both kinds are checked
    held = decode_jpeg(proc.hold(frames[0], 61))
    assert [box_colour(held, b) for b in predicted.xyxy] == colours
    # A frame left out of detection (thinned live stream) is drawn with the last tracked boxes.
    assert proc.hold(decode_jpeg(encode_jpeg(frames[59]))) == last.processed_frame
    assert proc.last_tracked is not None and proc.last_tracked.embeddings is None
    assert len(proc.last_tracked)
    held = decode_jpeg(proc.hold(np.zeros_like(frames[0])))
    colours = ["red" if int(t) in flagged_at else "green" for t in proc.last_tracked.tracker_id]
    assert [box_colour(held, b) for b in proc.last_tracked.xyxy] == colours
    assert box_colour(held, np.array([5, 5, 60, 60])) is None  # no box where none is drawn


def test_precomputed_embeddings_give_the_same_tracks(clip, detector):
    """The Spark job embeds in a parallel stage, then tracks: same ids as tracking from frames."""
    settings, frames = clip
    proc = FrameProcessor(settings, detector=detector, annotate=False)
    analyzed = proc.analyze(frames[:40])
    assert all(d.embeddings is not None and d.embeddings.shape[1:] == (1280,) for d in analyzed if len(d))
    a, b = VehicleTracker(), VehicleTracker()
    for frame, dets in zip(frames[:40], analyzed):
        with_embeds = a.update(dets[np.arange(len(dets))])
        plain = dets[np.arange(len(dets))]
        plain.embeddings = None
        from_frame = b.update(plain, frame)
        assert with_embeds.tracker_id.tolist() == from_frame.tracker_id.tolist()
    assert len(with_embeds) >= 1


def test_processor_config_rejects_unknown_keys():
    assert ProcessorConfig.from_dict({"tracker": {"max_age_s": 0.5}}).tracker.max_age_s == 0.5
    with pytest.raises(ConfigError, match="unknown"):
        ProcessorConfig.from_dict({"tracker": {"max_age": 5}})  # frames: now max_age_s
    with pytest.raises(ConfigError, match="unknown"):
        ProcessorConfig.from_dict({"colour": "red"})


def test_boxes_are_red_by_the_speeding_flag_not_by_the_speed():
    from traffic_processing.visualize import GREEN, RED, Visualizer

    dets = FrameDetections(
        xyxy=[[20, 40, 80, 90], [120, 40, 180, 90]],
        confidence=[0.9, 0.9],
        class_id=[2, 2],
        tracker_id=[1, 2],
        speed_kmh=[45.0, 130.0],  # the flagged one is slow now, the unflagged one fast
    )
    out = Visualizer().annotate(np.zeros((120, 200, 3), np.uint8), dets, np.array([True, False]))
    assert tuple(out[70, 20]) == RED  # left edge of the flagged box
    assert tuple(out[70, 120]) == GREEN
    plain = Visualizer().annotate(np.zeros((120, 200, 3), np.uint8), dets)  # no flags: none red
    assert tuple(plain[70, 20]) == tuple(plain[70, 120]) == GREEN
