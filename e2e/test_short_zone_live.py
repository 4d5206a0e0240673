"""Short counting zones and fast traffic (issue 15) through the real stack, REST only: the two
generated short-zone clips (an 18 m ROI in perspective, a 15 m ROI seen obliquely; 52-140 km/h
both ways, limit 60 with vehicles at 52-55 and 70-72 km/h, vehicles entering the ROI in the first
second and leaving it in the last one), each streamed once with every frame processed and once
live. Each run counts every vehicle exactly once, gives every counted vehicle a speed (MAE
<= 1.5 km/h against the truth) and flags exactly the truth's speeders (no miss, no false flag).

Passages carry no boxes: they are paired with the truth vehicles by their frames in the ROI
(``synthetic.match_passages``); the flagged vehicles are also identified by the boxes the
subscribed viewer was sent (``speeding_vehicles``), never by their speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.harness import wait_dag_run
from e2e.test_pipeline import RUN_TIMEOUT_S, run_id, setup_video, watch_and_start
from testing.synthetic import PRESETS, identify_tracks, meets_truth, render, score, summary_line

pytestmark = pytest.mark.slow
CLIPS = ("shortzone", "oblique")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """name -> (clip, calibration, truth dict, Scenario), rendered once."""
    out = tmp_path_factory.mktemp("shortzone")
    rendered = {}
    for name in CLIPS:
        scenario = PRESETS[name]()
        data = render(scenario, out, name)
        rendered[name] = (
            Path(data["video"]),
            json.loads((out / f"{name}_calib.json").read_text()),
            data,
            scenario,
        )
    return rendered


def run_clip(stack, clip, name: str, realtime: bool) -> dict:
    path, calib, data, scenario = clip
    mode = "live" if realtime else "every frame"
    api, video_id = setup_video(stack, path, calib, f"{name} ({mode})")
    viewer, run = watch_and_start(stack, api, video_id, realtime=realtime)
    ended = viewer.wait(RUN_TIMEOUT_S)
    state = wait_dag_run(stack, run_id(run), 180) if ended else "not waited (no end of stream)"
    _, analytics = api.json("GET", f"/api/videos/{video_id}/analytics")
    _, violations = api.json("GET", f"/api/videos/{video_id}/violations")
    _, passages = api.json("GET", f"/api/videos/{video_id}/passages")
    observations = [
        (a["frame_number"], v["track_id"], tuple(v["bbox"][k] for k in ("x1", "y1", "x2", "y2")))
        for a in viewer.analytics
        for v in a["speeding_vehicles"]
    ]
    frames = [f for f in viewer.frames if not f.get("end_of_stream")]
    return {
        "mode": mode,
        "ended": ended,
        "errors": viewer.errors,
        "dag_state": state,
        "analytics": analytics,
        "violations": violations.get("violations", []),
        "passages": passages.get("passages", []),
        "identity": identify_tracks(scenario, observations),
        "live_log": {v["track_id"] for a in viewer.analytics for v in a["speeding_vehicles"]},
        "skipped": max((f.get("skipped_frames", 0) for f in frames), default=0),
        "stride": max((f.get("detect_stride") or 1 for f in frames), default=1),
    }


@pytest.mark.parametrize("realtime", [False, True], ids=["every-frame", "live"])
@pytest.mark.parametrize("name", CLIPS)
def test_short_zone_clip_through_the_stack_matches_truth(stack, clips, name, realtime):
    seen = run_clip(stack, clips[name], name, realtime)
    data = clips[name][2]
    truth = data["vehicles"]
    s = score(seen["passages"], data)
    speeders = {t["id"] for t in truth if t["speeding"]}
    flagged_tracks = {p["track_id"] for p in seen["passages"] if p["speeding"]}
    violation_tracks = {r["track_id"] for r in seen["violations"]}
    print(
        f"\n{name}, {seen['mode']}: end of stream {seen['ended']}, dag {seen['dag_state']}, detected "
        f"{data['frames'] - seen['skipped']}/{data['frames']} frames (max stride {seen['stride']})\n"
        f"  passages: {summary_line(s)}\n  truth -> measured km/h: {s['speeds']}\n"
        f"  violations {sorted(violation_tracks)}, speeding passages {sorted(flagged_tracks)}, live log "
        f"{sorted(seen['live_log'])}, identified {{track: truth}} "
        f"{ {t: seen['identity'].get(t) for t in sorted(seen['live_log'])} }"
    )
    assert seen["ended"] and not seen["errors"], seen["errors"]
    assert seen["dag_state"] == "success"
    if not realtime:
        assert seen["skipped"] == 0
    stored = seen["analytics"]
    assert stored["total_vehicles_count"] == len(truth)
    assert stored["speeding_count"] == len(speeders)
    assert meets_truth(s), summary_line(s)
    # one speeding rule: violations, speeding passages and the live log name the same tracks,
    # and by their boxes those are the truth's speeders
    assert violation_tracks == flagged_tracks == seen["live_log"]
    assert {seen["identity"].get(t) for t in seen["live_log"]} == speeders
