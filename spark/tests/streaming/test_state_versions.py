"""The per-video state of the Spark job is explicit and versioned: a state written by the previous
version (the whole ``FrameProcessor`` pickled) is restored and the stream goes on with the same
results as a run from scratch; a newer or unreadable state is refused with a clear message."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streaming_helpers import short_scenario

from contracts.messages import ProcessedFrame
from spark.streaming import stages
from spark.streaming.state import MAGIC, STATE_VERSION, StateVersionError, VideoState, dumps, loads
from testing.feed import clip_jpegs, frame_config

V1_BLOB = Path(__file__).resolve().parents[1] / "data" / "video_state_v1.bin"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory, detector):
    from testing.synthetic import render

    tmp = tmp_path_factory.mktemp("short")
    truth = render(short_scenario(), tmp, "short")
    config = frame_config(tmp / "short_calib.json", truth["fps"], realtime=False)
    return clip_jpegs(truth["video"]), config, truth


def rows(jpegs, config, frames, fps, eos_at=None):
    return pd.DataFrame(
        [
            {
                "video_id": 7,
                "frame_number": n,
                "stream_id": f"{5000 + n}-0",
                "frame_data": jpegs[n] if n < len(jpegs) else b"",
                "timestamp": n / fps,
                "produced_at": 0.0,
                "config": config.model_dump_json(),
                "end_of_stream": n == eos_at,
                "run_id": "run-v1",
            }
            for n in frames
        ]
    )


def summary_of(out):
    return ProcessedFrame.model_validate_json(out[-1]["message"]).summary


def test_version_1_state_is_restored_and_the_stream_goes_on(clip, detector, monkeypatch):
    monkeypatch.setattr(stages, "_DETECTOR", detector)
    jpegs, config, truth = clip
    n, fps = len(jpegs), truth["fps"]
    state = loads(V1_BLOB.read_bytes())
    assert isinstance(state, VideoState) and state.last_frame == 39 and state.frames == 40
    assert state.processor is not None and state.processor.analytics.total_vehicles == 3
    assert state.frame_config is not None and state.frame_config.fps == fps
    # ... the rest of the stream on the restored state, against the whole stream from scratch
    rest = rows(jpegs, config, range(40, n + 1), fps, eos_at=n)
    resumed, blob = stages.process_video_rows(7, rest, V1_BLOB.read_bytes())
    scratch, _ = stages.process_video_rows(7, rows(jpegs, config, range(n + 1), fps, eos_at=n), None)
    assert blob is None  # the stream ended: its state is dropped
    a, b = summary_of(resumed), summary_of(scratch)
    assert a.total_vehicles_count == b.total_vehicles_count == len(truth["vehicles"])
    assert a.speeding_count == b.speeding_count == sum(v["speeding"] for v in truth["vehicles"])
    # The version-1 state's estimates were made under the speed rule of its time (ROI-only tracks,
    # fixed 0.4 s spans); the rest of the stream uses today's: the same vehicles, speeds within 1 km/h.
    assert np.allclose(
        sorted(p.speed_kmh for p in a.vehicles), sorted(p.speed_kmh for p in b.vehicles), atol=1.0
    )
    frames = [ProcessedFrame.model_validate_json(r["message"]) for r in resumed]
    assert frames[0].frame_number == 40 and frames[0].stats.total_vehicles >= 3  # no restart at 0


def test_state_round_trips_in_the_current_version():
    state = VideoState(settings='{"fps": 25.0}', frames=3, last_frame=2, run_id="r")
    blob = dumps(state)
    assert blob.startswith(MAGIC)
    back = loads(blob)
    assert (back.frames, back.last_frame, back.run_id, back.settings) == (3, 2, "r", '{"fps": 25.0}')


def test_a_newer_state_version_is_refused_with_the_way_out():
    blob = MAGIC + (STATE_VERSION + 1).to_bytes(2, "big") + pickle.dumps(VideoState())
    with pytest.raises(StateVersionError, match=rf"version {STATE_VERSION + 1}.*SPARK_CHECKPOINT_DIR"):
        loads(blob)
    with pytest.raises(StateVersionError):  # the stage does not silently start the video over
        stages.process_video_rows(7, pd.DataFrame([]), blob)


def test_an_unreadable_state_is_refused():
    with pytest.raises(StateVersionError, match="no version header"):
        loads(b"not a pickle at all")
    with pytest.raises(StateVersionError, match="not a version-1 VideoState"):
        loads(pickle.dumps({"a": 1}))


def test_a_state_written_before_the_contracts_moved_still_loads():
    """Checkpoints written before issue 19 name ``traffic_processing.schemas`` for the messages
    (now ``contracts.messages``): such a state loads, with its message objects intact."""
    from contracts.messages import FrameConfig

    state = VideoState(settings='{"fps": 25.0}', frames=3, last_frame=2, run_id="r")
    state.run_id = FrameConfig(fps=12.5)  # type: ignore[assignment]  # any field holding a message
    payload = pickle.dumps(state, protocol=0)  # text opcodes: the module name can be rewritten
    assert b"contracts.messages" in payload
    old = payload.replace(b"contracts.messages", b"traffic_processing.schemas")
    back = loads(MAGIC + STATE_VERSION.to_bytes(2, "big") + old)
    assert isinstance(back.run_id, FrameConfig) and back.run_id.fps == 12.5
    with pytest.raises(ModuleNotFoundError):  # what the old path alone does now
        pickle.loads(old)
