"""Model in the loop: the real detector, tracker and speed estimator against generated truth."""

import subprocess

import numpy as np
import pytest
from conftest import BIN, read_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analyzed(truth_clip):
    out, truth = truth_clip
    results = out / "results.json"
    proc = subprocess.run(
        [
            str(BIN / "traffic-analyze"),
            truth["video"],
            "--calibration",
            str(out / "speeds_calib.json"),
            "--out",
            str(results),
            "--tracks-csv",
            str(out / "tracks.csv"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return read_json(results), truth


def match(results, truth):
    """One-to-one pairing of truth vehicles and detected vehicles, greedily by the temporal IoU of
    their in-ROI frame intervals; a truth vehicle with no overlapping track pairs with None."""
    candidates = []
    for t in truth["vehicles"]:
        for v in results["vehicles"]:
            a0, a1 = t["first_frame_in_roi"], t["last_frame_in_roi"]
            b0, b1 = v["first_frame"], v["last_frame"]
            inter = min(a1, b1) - max(a0, b0) + 1
            if inter > 0:
                candidates.append((inter / (max(a1, b1) - min(a0, b0) + 1), t["id"], v["track_id"], v))
    pairs, used = {t["id"]: None for t in truth["vehicles"]}, set()
    for _, tid, track, v in sorted(candidates, key=lambda c: -c[0]):
        if pairs[tid] is None and track not in used:
            pairs[tid] = v
            used.add(track)
    return pairs


def test_truth_covers_30_to_120_kmh(analyzed):
    _, truth = analyzed
    speeds = [t["speed_kmh"] for t in truth["vehicles"]]
    assert min(speeds) <= 30 and max(speeds) >= 120


def test_every_vehicle_counted_exactly_once(analyzed):
    results, truth = analyzed
    assert results["summary"]["total_vehicles_count"] == len(truth["vehicles"])
    pairs = match(results, truth)
    matched_ids = [v["track_id"] for v in pairs.values() if v is not None]
    assert len(matched_ids) == len(truth["vehicles"]), pairs


def test_speed_mean_absolute_error_within_2_kmh(analyzed):
    results, truth = analyzed
    pairs = match(results, truth)
    errors = [abs(pairs[t["id"]]["speed_kmh"] - t["speed_kmh"]) for t in truth["vehicles"]]
    print("speed errors km/h:", [round(e, 2) for e in errors])
    assert np.mean(errors) <= 2.0
    assert max(errors) <= 5.0


def test_speeding_flagged_exactly_for_vehicles_above_the_limit(analyzed):
    results, truth = analyzed
    pairs = match(results, truth)
    for t in truth["vehicles"]:
        assert pairs[t["id"]]["speeding"] == t["speeding"], (t, pairs[t["id"]])
    assert results["summary"]["speeding_count"] == sum(t["speeding"] for t in truth["vehicles"])


def test_tracks_csv_has_one_row_per_confirmed_track_per_frame(analyzed, truth_clip):
    import csv

    out, _ = truth_clip
    with open(out / "tracks.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "frame_number",
        "track_id",
        "class_name",
        "x1",
        "y1",
        "x2",
        "y2",
        "confidence",
        "speed_kmh",
        "in_roi",
    ]
    keys = [(r["frame_number"], r["track_id"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert any(r["speed_kmh"] == "" for r in rows) and any(r["speed_kmh"] != "" for r in rows)


def test_type_mix_matches_truth(analyzed):
    from collections import Counter

    results, truth = analyzed
    expected = Counter(t["class_name"] for t in truth["vehicles"])
    assert results["summary"]["vehicle_type_distribution"] == dict(expected)
