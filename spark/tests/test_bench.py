"""python -m benchmarks.processor's measurement plan and statistics (no model: the variants are stand-ins)."""

from __future__ import annotations

import pytest

from benchmarks.processor import Spread, interleave, ratios


def test_interleave_runs_abba_and_keeps_values_per_variant():
    calls: list[str] = []

    def variant(name: str, values: list[float]):
        it = iter(values)

        def run() -> float:
            calls.append(name)
            return next(it)

        return run

    values, order = interleave(
        {"a": variant("a", [10, 11, 12, 13, 14]), "b": variant("b", [20, 21, 22, 23, 24])}, reps=5
    )
    assert order == calls == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert values == {"a": [10, 11, 12, 13, 14], "b": [20, 21, 22, 23, 24]}
    assert ratios(values["a"], values["b"]) == pytest.approx([0.5, 11 / 21, 12 / 22, 13 / 23, 14 / 24])


def test_spread_median_range_iqr():
    s = Spread.of([27.4, 47.0, 45.0, 46.0, 44.0])
    assert (s.median, s.low, s.high, s.n) == (45.0, 27.4, 47.0, 5)
    assert (s.q1, s.q3) == pytest.approx((44.0, 46.0))
    assert s.relative_range == pytest.approx((47.0 - 27.4) / 45.0)
    one = Spread.of([3.0])
    assert (one.median, one.low, one.high, one.q1, one.q3) == (3.0, 3.0, 3.0, 3.0, 3.0)
    with pytest.raises(ValueError):
        Spread.of([])


def test_box_recall_counts_reference_boxes_matched_at_iou():
    import numpy as np
    from traffic_processing.detections import FrameDetections

    from benchmarks.processor import box_recall

    def dets(*boxes):
        return FrameDetections(
            xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            confidence=np.ones(len(boxes)),
            class_id=np.full(len(boxes), 2),
        )

    ref = [dets([0, 0, 10, 10], [20, 20, 30, 30]), dets([0, 0, 10, 10]), dets()]
    got = [dets([1, 0, 11, 10]), dets(), dets([5, 5, 9, 9])]
    assert box_recall(ref, got) == (1, 3)  # IoU 9/11 matches; the empty frame matches nothing
    assert box_recall(ref, got, iou=0.9) == (0, 3)


def test_baseline_config_is_the_old_detector_and_embedder_only():
    from traffic_processing.config import ProcessorConfig

    from benchmarks.processor import baseline_config

    config = ProcessorConfig()
    config.detector.confidence = 0.4
    old = baseline_config(config)
    assert (old.detector.backend, old.tracker.embed_backend) == ("ultralytics", "torch")
    assert old.detector.confidence == 0.4 and old.detector.imgsz == config.detector.imgsz
    assert (config.detector.backend, config.tracker.embed_backend) == ("auto", "auto")  # untouched
