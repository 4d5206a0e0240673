"""``make bench-streams``'s arithmetic without a stack: a step summed up from its streams'
results, the capacity line (the largest N within the budget, every smaller N within it too), the
stream list of ``--streams``; and the Airflow settings that ``MAX_STREAMS`` sizes."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from e2e.bench_streams import Step, capacity_line, format_row, parse_streams, streams_within_budget, summarize

AIRFLOW_DIR = Path(__file__).resolve().parents[1] / "airflow"
if str(AIRFLOW_DIR) not in sys.path:  # traffic_pipeline without `pip install -e airflow`
    sys.path.insert(0, str(AIRFLOW_DIR))


def run(latencies: list[float], detect_hz: float, degraded: float = 0.0, dropped: int = 0) -> dict:
    """What ``e2e.bench.stream_once`` returns, the fields ``summarize`` reads."""
    timeline = [(i, i / 25, i / 25 + lat, 0) for i, lat in enumerate(latencies)]
    return {
        "timeline": timeline,
        "frames": len(latencies),
        "dropped": dropped,
        "lat_p95": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "detect_rate_hz": detect_hz,
        "degraded_share": degraded,
    }


def step(n: int, p95: float, hz: float) -> Step:
    return Step(n, 100 * n, p95 / 2, p95, p95, hz, hz, 0.0, 0.0)


def test_a_step_pools_the_frames_of_its_streams() -> None:
    fast, slow = run([0.2] * 100, 9.0), run([0.2] * 50 + [1.4] * 50, 4.0, degraded=0.5, dropped=100)
    s = summarize(2, [fast, slow])
    assert s.streams == 2 and s.frames == 200
    assert s.lat_p50 == pytest.approx(0.2)
    assert s.lat_p95 == pytest.approx(1.4)  # a quarter of all frames at 1.4 s
    assert s.worst_p95 == pytest.approx(1.4)
    assert (s.detect_hz_min, s.detect_hz_median) == (4.0, 6.5)
    assert s.degraded_share == pytest.approx(0.25)  # 50 of the 200 delivered frames
    assert s.dropped_share == pytest.approx(100 / 300)
    assert not s.within(1.0, 5.0)
    assert summarize(1, [fast]).within(1.0, 5.0)


def test_no_frames_is_not_within_the_budget() -> None:
    s = summarize(1, [run([], float("nan"))])
    assert math.isnan(s.lat_p95) and not s.within(1.0, 5.0)
    assert "no" in format_row(s, 1.0, 5.0)


def test_capacity_is_the_largest_n_with_every_smaller_one_within() -> None:
    steps = [step(1, 0.5, 10), step(2, 0.7, 6), step(4, 1.3, 3), step(8, 0.9, 5)]
    assert streams_within_budget(steps, 1.0, 5.0) == 2  # 8 passing alone (noise) does not count
    assert streams_within_budget(list(reversed(steps)), 1.0, 5.0) == 2
    assert streams_within_budget([step(1, 1.5, 10)], 1.0, 5.0) == 0
    line = capacity_line(steps, 1.0, 5.0, " (2 cores)")
    assert line == (
        "streams per machine within the latency budget (p95 < 1 s) at >= 5 Hz detection: 2 (2 cores)"
    )


def test_stream_counts() -> None:
    assert parse_streams("4,1,2,2") == [1, 2, 4]
    for bad in ("", "0,2", "a"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            parse_streams(bad)


def test_max_streams_sizes_airflow() -> None:
    from traffic_pipeline import capacity

    assert capacity.airflow_settings(8) == {
        "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "8",
        "AIRFLOW__CORE__PARALLELISM": "24",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "24",
    }
    assert capacity.pool_slots(8) == 16
    env = {"AIRFLOW__CORE__PARALLELISM": "64"}  # one given explicitly wins
    assert capacity.apply(env, 4)["AIRFLOW__CORE__PARALLELISM"] == "64"
    assert env["AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG"] == "4"
    with pytest.raises(ValueError):
        capacity.airflow_settings(0)
    dag = (AIRFLOW_DIR / "dags" / "video_streaming_pipeline.py").read_text()
    assert f'STREAM_POOL = "{capacity.STREAM_POOL}"' in dag  # the pool the service creates
    assert dag.count("pool=STREAM_POOL") == 2  # produce_frames and process_frames
