"""The time-window traffic study of ``GET /api/videos/{id}/report?from=&to=&interval=``: the pure
functions of ``services.report`` (window parsing, pace band, interval figures, CSV), then the
route on a real PostgreSQL against a seeded ground truth and a small case worked out by hand."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from sqlalchemy import text

from backend.schemas import WindowReportOut
from backend.services import report
from backend.services.errors import ServiceError
from backend.tests.client import request

LIMIT = 50.0
T0 = datetime(2025, 6, 15, 10, 0, 0)  # naive UTC, as passed_at is stored


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(value: datetime) -> str:
    return value.replace(tzinfo=UTC).isoformat()


# The case worked out by hand (limit 50 km/h), window [10:00, 10:45) in 15 min intervals:
#   [10:00, 10:15): six passages
#     10:00:00 car approaching 42.0      10:00:40 truck receding 51.0     10:01:30 car receding -
#     10:00:10 car approaching 47.5      10:01:00 car approaching 55.0    10:02:00 bus (none) 38.0
#     speeds 38, 42, 47.5, 51, 55: mean 233.5 / 5 = 46.7; V50 47.5; V85 at rank 0.85 * 4 = 3.4:
#     51 + 0.4 * (55 - 51) = 52.6. Pace: [38, 48) holds 38, 42, 47.5 (3); [42, 52) and [46, 56)
#     hold 3 too, none holds 4: the lowest, 38-48, share 3/5 = 0.6. Over 50: 51 and 55, 0.4.
#     Headways: approaching 10:00:00 -> :10 -> 10:01:00 (10 s, 50 s), receding 10:00:40 ->
#     10:01:30 (50 s), unknown alone: (10 + 50 + 50) / 3 = 36.667 s.
#   [10:15, 10:30): 10:20:00 car approaching 60.0: one vehicle, no gap; pace 60-70, all of it
#     over the limit.
#   [10:30, 10:45): nothing.
#   Left out: 09:59:59 (before from), 10:45:00 (to is exclusive), a passage without passed_at.
#   Total: 7 vehicles; speeds 38, 42, 47.5, 51, 55, 60: mean 293.5 / 6 = 48.9167; V50 at rank 2.5:
#     47.5 + 0.5 * 3.5 = 49.25; V85 at rank 4.25: 55 + 0.25 * 5 = 56.25; pace: [38, 48), [42, 52),
#     [46, 56), [51, 61) hold 3 each: 38-48, 0.5; over 50: 51, 55, 60, 0.5; headways 10, 50, 50
#     and approaching 10:01:00 -> 10:20:00 (1140 s): 1250 / 4 = 312.5 s.
HAND = [
    (0, "car", "approaching", 42.0),
    (10, "car", "approaching", 47.5),
    (40, "truck", "receding", 51.0),
    (60, "car", "approaching", 55.0),
    (90, "car", "receding", None),
    (120, "bus", None, 38.0),
    (20 * 60, "car", "approaching", 60.0),
]
HAND_OUTSIDE = [
    (-1, "car", "approaching", 99.0),
    (45 * 60, "car", "approaching", 99.0),
    (None, "car", "approaching", 99.0),
]
HAND_CLASSES = ["bus", "car", "truck"]
HAND_DIRECTIONS = ["approaching", "receding", "unknown"]
HAND_FIRST = {
    "volume": 6,
    "volume_by_class": {"bus": 1, "car": 4, "truck": 1},
    "volume_by_direction": {"approaching": 3, "receding": 2, "unknown": 1},
    "measured_vehicles": 5,
    "mean_kmh": 46.7,
    "v50_kmh": 47.5,
    "v85_kmh": 52.6,
    "pace_from_kmh": 38.0,
    "pace_to_kmh": 48.0,
    "pace_share": 0.6,
    "over_limit_share": 0.4,
    "mean_headway_s": 36.667,
}
HAND_SECOND = {
    "volume": 1,
    "volume_by_class": {"bus": 0, "car": 1, "truck": 0},
    "volume_by_direction": {"approaching": 1, "receding": 0, "unknown": 0},
    "measured_vehicles": 1,
    "mean_kmh": 60.0,
    "v50_kmh": 60.0,
    "v85_kmh": 60.0,
    "pace_from_kmh": 60.0,
    "pace_to_kmh": 70.0,
    "pace_share": 1.0,
    "over_limit_share": 1.0,
    "mean_headway_s": None,
}
NO_SPEED = {
    "measured_vehicles": 0,
    "mean_kmh": None,
    "v50_kmh": None,
    "v85_kmh": None,
    "pace_from_kmh": None,
    "pace_to_kmh": None,
    "pace_share": None,
    "over_limit_share": None,
    "mean_headway_s": None,
}
HAND_THIRD = {
    "volume": 0,
    "volume_by_class": {"bus": 0, "car": 0, "truck": 0},
    "volume_by_direction": {"approaching": 0, "receding": 0, "unknown": 0},
    **NO_SPEED,
}
HAND_TOTAL = {
    "volume": 7,
    "volume_by_class": {"bus": 1, "car": 5, "truck": 1},
    "volume_by_direction": {"approaching": 4, "receding": 2, "unknown": 1},
    "measured_vehicles": 6,
    "mean_kmh": 48.92,
    "v50_kmh": 49.25,
    "v85_kmh": 56.25,
    "pace_from_kmh": 38.0,
    "pace_to_kmh": 48.0,
    "pace_share": 0.5,
    "over_limit_share": 0.5,
    "mean_headway_s": 312.5,
}
HAND_REPORT_TAIL = {
    "interval": "15m",
    "interval_s": 900,
    "limit_kmh": LIMIT,
    "classes": HAND_CLASSES,
    "directions": HAND_DIRECTIONS,
    "total": HAND_TOTAL,
    "intervals": [
        {"start": "2025-06-15T10:00:00+00:00", "end": "2025-06-15T10:15:00+00:00", **HAND_FIRST},
        {"start": "2025-06-15T10:15:00+00:00", "end": "2025-06-15T10:30:00+00:00", **HAND_SECOND},
        {"start": "2025-06-15T10:30:00+00:00", "end": "2025-06-15T10:45:00+00:00", **HAND_THIRD},
    ],
}


def passage(seconds: float | None, class_name: str, direction: str | None, speed: float | None) -> dict:
    return {
        "passed_at": None if seconds is None else at(seconds),
        "class_name": class_name,
        "direction": direction,
        "speed_kmh": speed,
    }


def hand_passages() -> list[dict]:
    return [passage(*p) for p in HAND + HAND_OUTSIDE]


# ---- pure functions ---------------------------------------------------------------------------


NOW = datetime(2025, 6, 15, 12, 7, 30, 250000)


def test_window_defaults():
    window = report.parse_window(None, None, None, now=NOW)
    assert (window.start, window.end, window.interval) == (NOW - timedelta(hours=24), NOW, "15m")
    assert window.first == datetime(2025, 6, 14, 12, 0)
    assert window.count == 97  # 12:00 .. 12:00 next day, and the one holding 12:07:30 (now)
    window = report.parse_window(None, "2025-06-15T10:00:00Z", "1h", now=NOW)
    assert (window.start, window.end, window.count) == (datetime(2025, 6, 14, 10), T0, 24)
    window = report.parse_window("2025-06-15T09:00:00Z", None, "5m", now=NOW)
    assert (window.start, window.end, window.count) == (datetime(2025, 6, 15, 9), NOW, 38)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-06-15T10:00:00Z", T0),
        ("2025-06-15T10:00:00", T0),  # naive: UTC
        ("2025-06-15 10:00:00", T0),
        ("2025-06-15T12:00:00+02:00", T0),
        ("2025-06-15T12:00:00 02:00", T0),  # the "+" of an unencoded query string
        ("2025-06-15 12:00:00 02:00", T0),
        ("2025-06-15T07:30:00-02:30", T0),
        ("2025-06-15T10:00:00.250000Z", T0 + timedelta(microseconds=250000)),
        ("2025-06-15", datetime(2025, 6, 15)),
        (" 2025-06-15T10:00Z ", T0),
        ("20250615T120000+0200", T0),  # basic format
        ("2025-06-15T12+02", T0),
    ],
)
def test_dates_are_iso_8601_in_utc(raw, expected):
    assert report.parse_instant("from", raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "yesterday",
        "2025-13-01T00:00:00",
        "2025-06-15T25:00:00Z",
        "2025-06-15T10:00:00+25:00",
        "1718445600",
        "2025-06-15+02:00",
        "2025-06-15x10:00",
        "2025-06-15T10:00:00 Europe/Paris",
    ],
)
def test_unreadable_dates_are_invalid_window(raw):
    with pytest.raises(ServiceError) as err:
        report.parse_window(raw, None, None, now=NOW)
    assert (err.value.status, err.value.code) == (400, "invalid_window")
    assert err.value.message.startswith("from:")
    with pytest.raises(ServiceError) as err:
        report.parse_window(None, raw, None, now=NOW)
    assert err.value.code == "invalid_window" and err.value.message.startswith("to:")


@pytest.mark.parametrize(
    ("from_", "to", "interval"),
    [
        ("2025-06-15T10:00:00Z", "2025-06-15T10:00:00Z", None),  # empty
        ("2025-06-15T10:00:01Z", "2025-06-15T10:00:00Z", None),  # reversed
        ("2025-06-15T12:00:00+02:00", "2025-06-15T10:00:00Z", "1h"),  # the same instant
        ("2025-06-08T00:00:00Z", "2025-06-15T00:00:00Z", "5m"),  # 2016 intervals
        (None, "0001-01-01T12:00", None),  # the default from would be before the year 1
        ("9999-12-31T23:00:00Z", "9999-12-31T23:59:59Z", "1h"),  # ends in the year 10000: no
    ],
)
def test_bad_windows_are_invalid_window(from_, to, interval):
    with pytest.raises(ServiceError) as err:
        report.parse_window(from_, to, interval, now=NOW)
    assert (err.value.status, err.value.code) == (400, "invalid_window")


def test_at_most_2000_intervals():
    start = datetime(2025, 6, 1)
    end = start + 2000 * timedelta(minutes=5)
    window = report.parse_window(iso(start), iso(end), "5m", now=NOW)
    assert window.count == 2000
    for later in (end + timedelta(microseconds=1), end + timedelta(minutes=5)):
        with pytest.raises(ServiceError) as err:
            report.parse_window(iso(start), iso(later), "5m", now=NOW)
        assert err.value.code == "invalid_window" and "2000" in err.value.message
    # not aligned: the first interval starts before from and counts
    shifted = (iso(start + timedelta(minutes=1)), iso(end + timedelta(minutes=1)))
    with pytest.raises(ServiceError):
        report.parse_window(*shifted, "5m", now=NOW)
    assert report.parse_window(iso(start), iso(end), "15m", now=NOW).count == 667


@pytest.mark.parametrize("interval", ["", "10m", "15M", "1H", "60m", "900", "1d", "15m "])
def test_other_intervals_are_invalid_interval(interval):
    with pytest.raises(ServiceError) as err:
        report.parse_window(None, None, interval, now=NOW)
    assert (err.value.status, err.value.code) == (400, "invalid_interval")
    assert "5m, 15m, 1h" in err.value.message


@pytest.mark.parametrize(
    ("from_", "to", "interval", "first", "count"),
    [
        ("2025-06-15T10:07:30Z", "2025-06-15T10:50:00Z", "15m", "10:00", 4),
        ("2025-06-15T10:15:00Z", "2025-06-15T10:45:00Z", "15m", "10:15", 2),
        ("2025-06-15T10:14:59.999999Z", "2025-06-15T10:15:00.000001Z", "15m", "10:00", 2),
        ("2025-06-15T10:07:30Z", "2025-06-15T10:50:00Z", "5m", "10:05", 9),
        ("2025-06-15T10:59:59Z", "2025-06-15T11:00:00Z", "1h", "10:00", 1),
        ("2025-06-15T12:37:00+02:00", "2025-06-15T11:00:00Z", "1h", "10:00", 1),
        ("2025-06-15T16:07:00+05:30", "2025-06-15T11:00:00Z", "15m", "10:30", 2),  # 10:37 UTC
    ],
)
def test_intervals_start_on_utc_clock_boundaries(from_, to, interval, first, count):
    window = report.parse_window(from_, to, interval, now=NOW)
    hour, minute = map(int, first.split(":"))
    assert window.first == datetime(2025, 6, 15, hour, minute)
    assert window.count == count
    body = report.window_report(1, [], window, LIMIT)
    starts = [datetime.fromisoformat(i["start"]) for i in body["intervals"]]
    assert starts[0] == window.first.replace(tzinfo=UTC)
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [window.step] * (count - 1)
    assert body["intervals"][-1]["end"] >= iso(window.end)
    assert body["interval_s"] == window.step.total_seconds()


def brute_force_pace(speeds: list[float]) -> tuple[int, int]:
    """Every whole a from floor(min) to floor(max), the lowest on a tie."""
    best = None
    for a in range(math.floor(min(speeds)), math.floor(max(speeds)) + 1):
        count = sum(1 for s in speeds if a <= s < a + 10)
        if best is None or count > best[1]:
            best = (a, count)
    assert best is not None
    return best


def test_pace_band_by_hand():
    assert report.pace_band([]) is None
    assert report.pace_band([55.0]) == (55, 1)
    assert report.pace_band([55.9]) == (55, 1)
    assert report.pace_band([38, 42, 47.5, 51, 55]) == (38, 3)  # [38,48), [42,52), [46,56): lowest
    assert report.pace_band([30, 48, 49, 50, 57.5, 58.9]) == (48, 4)  # [48, 58) and [49, 59): 4
    assert report.pace_band([30, 48, 49.5, 57.5, 58.2, 58.9]) == (49, 4)  # [48, 58) holds 3
    assert report.pace_band([40, 50, 50]) == (41, 2)  # [40, 50) holds 1: 50 is out
    assert report.pace_band([40, 49.99, 50]) == (40, 2)
    assert report.pace_band([-3.5, 2.0]) == (-4, 2)


def test_pace_band_against_every_whole_start():
    rng = np.random.default_rng(7)
    for size in (1, 2, 3, 5, 20, 200):
        for _ in range(40):
            speeds = list(np.round(rng.normal(50, rng.uniform(2, 25), size), rng.integers(0, 3)))
            assert report.pace_band(speeds) == brute_force_pace(speeds), speeds


def test_window_figures_by_hand():
    window = report.parse_window("2025-06-15T10:00:00Z", "2025-06-15T10:45:00Z", "15m", now=NOW)
    body = report.window_report(9, hand_passages(), window, LIMIT)
    assert body == {
        "video_id": 9,
        "from": "2025-06-15T10:00:00+00:00",
        "to": "2025-06-15T10:45:00+00:00",
        **HAND_REPORT_TAIL,
    }
    WindowReportOut.model_validate(body)  # the response model takes it as it is
    # an interval's headway only pairs passages inside it; one stat over all of them:
    first = report.window_stats([passage(*p) for p in HAND[:6]], LIMIT, HAND_CLASSES, HAND_DIRECTIONS)
    assert first == HAND_FIRST


def test_window_figures_without_speeds_or_passages():
    only_unmeasured = [passage(0, "car", None, None), passage(30, "car", None, None)]
    stats = report.window_stats(only_unmeasured, LIMIT, ["car"], ["unknown"])
    assert stats == {
        "volume": 2,
        "volume_by_class": {"car": 2},
        "volume_by_direction": {"unknown": 2},
        **NO_SPEED,
        "mean_headway_s": 30.0,  # not a speed figure
    }
    assert report.window_stats([], LIMIT, [], []) == {
        "volume": 0,
        "volume_by_class": {},
        "volume_by_direction": {},
        **NO_SPEED,
    }
    nan = report.window_stats([passage(0, "car", None, float("nan"))], LIMIT, ["car"], ["unknown"])
    assert nan["measured_vehicles"] == 0 and nan["mean_kmh"] is None


def test_a_passage_on_a_boundary_counts_in_the_interval_it_starts():
    window = report.parse_window("2025-06-15T10:00:00Z", "2025-06-15T10:30:00Z", "15m", now=NOW)
    rows = [passage(s, "car", "approaching", 50.0) for s in (0, 899.999999, 900, 1799.999999)]
    body = report.window_report(1, rows, window, LIMIT)
    assert [i["volume"] for i in body["intervals"]] == [2, 2]
    assert body["intervals"][0]["mean_headway_s"] == 900.0  # 899.999999 s, rounded to ms


def test_window_csv_rows():
    window = report.parse_window("2025-06-15T10:00:00Z", "2025-06-15T10:45:00Z", "15m", now=NOW)
    columns, rows = report.window_csv(report.window_report(9, hand_passages(), window, LIMIT))
    assert columns == [
        "start",
        "end",
        "volume",
        "volume_bus",
        "volume_car",
        "volume_truck",
        "volume_approaching",
        "volume_receding",
        "volume_unknown",
        "measured_vehicles",
        "mean_kmh",
        "v50_kmh",
        "v85_kmh",
        "pace_from_kmh",
        "pace_to_kmh",
        "pace_share",
        "over_limit_share",
        "mean_headway_s",
    ]
    assert [list(r) for r in rows] == [columns] * 4
    assert [r["start"] for r in rows] == [
        "2025-06-15T10:00:00+00:00",
        "2025-06-15T10:15:00+00:00",
        "2025-06-15T10:30:00+00:00",
        "total",
    ]
    assert rows[-1]["end"] == "" and rows[-1]["volume_car"] == 5 and rows[-1]["mean_headway_s"] == 312.5
    assert rows[0]["v85_kmh"] == 52.6 and rows[2]["mean_kmh"] is None


# ---- the route, on PostgreSQL -------------------------------------------------------------------


@pytest.fixture
def video(db_engine) -> Iterator[int]:
    """A video row with a 50 km/h limit (no file: the report reads only its passages)."""
    with db_engine.begin() as conn:
        vid = conn.execute(
            text(
                "INSERT INTO videos (name, file_path, calibrate_coordinates)"
                " VALUES ('window report', '/nonexistent/window.mp4', CAST(:c AS JSONB)) RETURNING id"
            ),
            {"c": json.dumps({"speed_limit_kmh": LIMIT})},
        ).scalar_one()
    yield vid
    with db_engine.begin() as conn:
        conn.execute(text("DELETE FROM videos WHERE id = :v"), {"v": vid})


def insert_passages(engine, vid: int, rows: list[dict[str, Any]], run_id: str = "run-1") -> None:
    params = [
        {
            "v": vid,
            "t": n,
            "c": p["class_name"],
            "s": p["speed_kmh"],
            "r": run_id,
            "p": p["passed_at"],
            "d": p["direction"],
        }
        for n, p in enumerate(rows, start=1)
    ]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO vehicle_passages (video_id, track_id, class_name, first_frame, last_frame,"
                " first_time_s, last_time_s, dwell_time_s, speed_kmh, max_speed_kmh, speeding, run_id,"
                " passed_at, direction)"
                " VALUES (:v, :t, :c, 10 * :t, 10 * :t + 20, :t, :t + 2, 2, :s, :s, false, :r, :p, :d)"
            ),
            params,
        )


def get_report(api, vid: int | str, **params: str):
    query = urlencode({("from" if k == "from_" else k): v for k, v in params.items()})
    return request(api.port, "GET", f"/api/videos/{vid}/report" + (f"?{query}" if query else ""))


def csv_value(column: str, cell: str) -> Any:
    if column in ("start", "end"):
        return cell
    if cell == "":
        return None
    return float(cell) if "." in cell else int(cell)


def csv_rows(body: bytes) -> list[dict[str, Any]]:
    return [
        {k: csv_value(k, v) for k, v in row.items()}
        for row in csv.DictReader(io.StringIO(body.decode("utf-8")))
    ]


def flatten(stats: dict[str, Any], start: str, end: str) -> dict[str, Any]:
    """A JSON interval (or the total) as its CSV row."""
    row = {"start": start, "end": end}
    for key, value in stats.items():
        if key in ("volume_by_class", "volume_by_direction"):
            row.update({f"volume_{name}": n for name, n in value.items()})
        elif key not in ("start", "end"):
            row[key] = value
    return row


def assert_csv_is_the_json(api, vid: int, json_body: dict[str, Any], **params: str) -> None:
    r = get_report(api, vid, **params, format="csv")
    assert r.status == 200, r.body
    assert r.headers["Content-Type"].startswith("text/csv")
    disposition = r.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and f'filename="video_{vid}_report_' in disposition
    header = r.body.decode().splitlines()[0].split(",")
    assert header == [
        "start",
        "end",
        "volume",
        *(f"volume_{c}" for c in json_body["classes"]),
        *(f"volume_{d}" for d in json_body["directions"]),
        *report.WINDOW_CSV_TAIL,
    ]
    expected = [flatten(i, i["start"], i["end"]) for i in json_body["intervals"]]
    expected.append(flatten(json_body["total"], "total", ""))
    assert csv_rows(r.body) == expected


def test_the_hand_made_case_through_the_route(api, video, db_engine):
    insert_passages(db_engine, video, hand_passages())
    params = {"from_": "2025-06-15T10:00:00Z", "to": "2025-06-15T10:45:00Z"}
    r = get_report(api, video, **params)
    assert r.status == 200, r.body
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body == {
        "video_id": video,
        "from": "2025-06-15T10:00:00+00:00",
        "to": "2025-06-15T10:45:00+00:00",
        **HAND_REPORT_TAIL,
    }
    assert list(body) == [
        "video_id",
        "from",
        "to",
        "interval",
        "interval_s",
        "limit_kmh",
        "classes",
        "directions",
        "total",
        "intervals",
    ]
    assert list(body["intervals"][0])[:3] == ["start", "end", "volume"]
    assert_csv_is_the_json(api, video, body, **params)

    # the same window, in other words: naive dates (UTC), Z, offsets; interval given
    for other in (
        {"from_": "2025-06-15T10:00:00", "to": "2025-06-15T10:45:00"},
        {"from_": "2025-06-15T12:00:00+02:00", "to": "2025-06-15T06:45:00-04:00", "interval": "15m"},
        {"from_": "2025-06-15 10:00:00Z", "to": "2025-06-15T10:45:00.000000Z"},
    ):
        assert get_report(api, video, **other).json() == body, other
    # the limit is the default when the video has none
    with db_engine.begin() as conn:
        conn.execute(text("UPDATE videos SET calibrate_coordinates = NULL WHERE id = :v"), {"v": video})
    api.configure(SPEED_LIMIT_KMH=54.0)
    total = get_report(api, video, **params).json()["total"]
    assert total["over_limit_share"] == round(2 / 6, 4)  # 55 and 60
    api.configure(SPEED_LIMIT_KMH=60.0)
    assert get_report(api, video, **params).json()["limit_kmh"] == 60.0


def ground_truth(seed: int = 20250615) -> list[dict[str, Any]]:
    """300 passages over two hours from 08:00 UTC (microsecond times, a few exactly on 15 and 5
    min boundaries), classes and directions drawn with fixed weights, speeds ~ N(52, 9) km/h,
    about 5 % without a speed."""
    rng = np.random.default_rng(seed)
    start = datetime(2025, 6, 15, 8, 0)
    classes = ["car", "truck", "bus", "motorcycle", "bicycle"]
    directions = ["approaching", "receding", "left_to_right", "right_to_left", None]
    rows = []
    for n in range(300):
        if n < 6:  # on boundaries: 08:15, 08:30, 08:05, ...
            passed = start + timedelta(minutes=[15, 30, 5, 45, 60, 95][n])
        else:
            passed = start + timedelta(microseconds=int(rng.integers(0, 2 * 3600 * 10**6)))
        speed = float(np.round(rng.normal(52, 9), 3))
        rows.append(
            {
                "passed_at": passed,
                "class_name": str(rng.choice(classes, p=[0.6, 0.15, 0.1, 0.1, 0.05])),
                "direction": directions[int(rng.choice(5, p=[0.35, 0.35, 0.1, 0.1, 0.1]))],
                "speed_kmh": None if rng.random() < 0.05 else speed,
            }
        )
    return rows


@pytest.mark.parametrize(
    ("from_", "to", "interval", "window"),
    [
        ("2025-06-15T08:00:00Z", "2025-06-15T10:00:00Z", "15m", ("08:00", "08:00", "10:00")),
        ("2025-06-15T08:07:00Z", "2025-06-15T09:53:00Z", "5m", ("08:05", "08:07", "09:53")),
        ("2025-06-15T10:30:00+02:00", "2025-06-15T09:30:00", "1h", ("08:00", "08:30", "09:30")),
    ],
)
def test_volumes_and_v85_against_a_ground_truth(api, video, db_engine, from_, to, interval, window):
    truth = ground_truth()
    insert_passages(db_engine, video, truth)
    r = get_report(api, video, from_=from_, to=to, interval=interval)
    assert r.status == 200, r.body
    body = r.json()

    # the truth's counts, computed here: interval k holds [origin + k*step, origin + (k+1)*step)
    origin, start, end = (datetime(2025, 6, 15, *map(int, hm.split(":"))) for hm in window)
    step = {"5m": 300, "15m": 900, "1h": 3600}[interval]
    inside = [p for p in truth if start <= p["passed_at"] < end]
    n_intervals = math.ceil((end - origin).total_seconds() / step)
    assert len(body["intervals"]) == n_intervals
    classes = sorted({p["class_name"] for p in inside})
    directions = sorted({p["direction"] or "unknown" for p in inside})
    assert body["classes"] == classes and body["directions"] == directions
    by_interval: list[list[dict]] = [[] for _ in range(n_intervals)]
    for p in inside:
        by_interval[int((p["passed_at"] - origin).total_seconds() // step)].append(p)
    for k, (got, members) in enumerate(zip(body["intervals"], by_interval, strict=True)):
        assert got["start"] == iso(origin + timedelta(seconds=k * step))
        assert got["end"] == iso(origin + timedelta(seconds=(k + 1) * step))
        assert got["volume"] == len(members)
        count_class = Counter(p["class_name"] for p in members)
        count_direction = Counter(p["direction"] or "unknown" for p in members)
        assert got["volume_by_class"] == {c: count_class[c] for c in classes}
        assert got["volume_by_direction"] == {d: count_direction[d] for d in directions}
        speeds = [p["speed_kmh"] for p in members if p["speed_kmh"] is not None]
        assert got["measured_vehicles"] == len(speeds)
        if speeds:
            assert abs(got["v85_kmh"] - np.percentile(speeds, 85)) <= 1.0
        else:
            assert got["v85_kmh"] is None
    assert body["total"]["volume"] == len(inside) == sum(i["volume"] for i in body["intervals"])
    assert body["total"]["volume_by_class"] == dict(sorted(Counter(p["class_name"] for p in inside).items()))
    speeds = [p["speed_kmh"] for p in inside if p["speed_kmh"] is not None]
    assert abs(body["total"]["v85_kmh"] - np.percentile(speeds, 85)) <= 1.0
    assert abs(body["total"]["mean_kmh"] - np.mean(speeds)) <= 0.01
    assert body["total"]["over_limit_share"] == round(sum(s > LIMIT for s in speeds) / len(speeds), 4)
    assert_csv_is_the_json(api, video, body, from_=from_, to=to, interval=interval)


def test_passages_without_passed_at_never_count(api, video, db_engine):
    old = [passage(None, "car", None, 70.0), passage(None, "truck", "receding", 40.0)]
    insert_passages(db_engine, video, old, run_id="")
    insert_passages(db_engine, video, [passage(60, "bus", "approaching", 45.0)], run_id="run-2")
    day = {"from_": "2025-06-15T00:00:00Z", "to": "2025-06-16T00:00:00Z", "interval": "1h"}
    body = get_report(api, video, **day).json()
    assert body["classes"] == ["bus"] and body["directions"] == ["approaching"]
    assert body["total"]["volume"] == 1 and body["total"]["mean_kmh"] == 45.0
    # the report of every passage still counts them all
    assert get_report(api, video).json()["total_vehicles"] == 3


def test_an_empty_window(api, video, db_engine):
    insert_passages(db_engine, video, hand_passages())
    params = {"from_": "2025-06-16T00:00:00Z", "to": "2025-06-16T01:00:00Z", "interval": "15m"}
    body = get_report(api, video, **params).json()
    empty = {"volume": 0, "volume_by_class": {}, "volume_by_direction": {}, **NO_SPEED}
    assert body == {
        "video_id": video,
        "from": "2025-06-16T00:00:00+00:00",
        "to": "2025-06-16T01:00:00+00:00",
        "interval": "15m",
        "interval_s": 900,
        "limit_kmh": LIMIT,
        "classes": [],
        "directions": [],
        "total": empty,
        "intervals": [
            {"start": f"2025-06-16T00:{m:02d}:00+00:00", "end": f"2025-06-16T{e}:00+00:00", **empty}
            for m, e in ((0, "00:15"), (15, "00:30"), (30, "00:45"), (45, "01:00"))
        ],
    }
    r = get_report(api, video, **params, format="csv")
    lines = r.body.decode().splitlines()
    assert lines[0] == "start,end,volume," + ",".join(report.WINDOW_CSV_TAIL)
    assert lines[1] == "2025-06-16T00:00:00+00:00,2025-06-16T00:15:00+00:00,0,0,,,,,,,,"
    assert lines[-1] == "total,,0,0,,,,,,,," and len(lines) == 6


def test_default_window_is_the_last_24_hours(api, video, db_engine):
    now = datetime.now(UTC).replace(tzinfo=None)
    recent = [
        passage((now - T0).total_seconds() - 3600, "car", "receding", 40.0),  # an hour ago
        passage((now - T0).total_seconds() - 25 * 3600, "car", "receding", 40.0),  # 25 h ago
    ]
    insert_passages(db_engine, video, recent)
    for params in ({"interval": "1h"}, {"format": "csv"}, {"from_": iso(now - timedelta(hours=24))}):
        r = get_report(api, video, **params)
        assert r.status == 200, (params, r.body)
    body = get_report(api, video, interval="1h").json()
    to = datetime.fromisoformat(body["to"])
    assert to.utcoffset() == timedelta(0)
    assert abs(to.replace(tzinfo=None) - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=30)
    assert datetime.fromisoformat(body["from"]) == to - timedelta(hours=24)
    assert len(body["intervals"]) in (24, 25) and body["interval"] == "1h" and body["interval_s"] == 3600
    assert body["total"]["volume"] == 1
    body = get_report(api, video, to=iso(now)).json()
    assert body["interval"] == "15m" and len(body["intervals"]) in (96, 97)
    assert body["total"]["volume"] == 1
    # format=csv alone is the default window as CSV
    rows = csv_rows(get_report(api, video, format="csv").body)
    assert rows[-1]["start"] == "total" and rows[-1]["volume"] == 1 and len(rows) in (97, 98)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from_": "yesterday"}, "invalid_window"),
        ({"to": "2025-06-15T25:00:00Z"}, "invalid_window"),
        ({"from_": ""}, "invalid_window"),
        ({"from_": "2025-06-15T10:00:00Z", "to": "2025-06-15T10:00:00Z"}, "invalid_window"),
        ({"from_": "2025-06-15T11:00:00Z", "to": "2025-06-15T10:00:00Z"}, "invalid_window"),
        ({"from_": "2025-06-08T00:00:00Z", "to": "2025-06-15T00:00:00Z", "interval": "5m"}, "invalid_window"),
        ({"from_": "2025-06-15T11:00:00Z", "to": "2025-06-15T10:00:00Z", "format": "csv"}, "invalid_window"),
        ({"interval": "10m"}, "invalid_interval"),
        ({"interval": ""}, "invalid_interval"),
        ({"interval": "1H", "from_": "2025-06-15T10:00:00Z"}, "invalid_interval"),
        ({"interval": "15m", "format": "xml"}, "invalid_format"),
        ({"format": "xml"}, "invalid_format"),
    ],
)
def test_bad_parameters_are_400(api, video, params, code):
    r = get_report(api, video, **params)
    assert r.status == 400, r.body
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"error": {"code": code, "message": r.json()["error"]["message"]}}
    assert r.error_code == code and r.json()["error"]["message"]


@pytest.mark.parametrize("vid", ["424242", "abc", "0"])
@pytest.mark.parametrize("params", [{"interval": "1h"}, {"format": "csv"}, {"interval": "bad"}])
def test_unknown_video_is_404(api, vid, params):
    r = get_report(api, vid, **params)
    assert r.status == 404 and r.error_code == "video_not_found"


def test_the_report_without_parameters_is_unchanged(api, video, db_engine):
    """The report of every passage (passed_at or not), in video time, as before the window."""
    rows = hand_passages()
    insert_passages(db_engine, video, rows)
    expected = {
        "video_id": video,
        "total_vehicles": 10,
        "speeding_count": 0,
        "avg_dwell_time_s": 2.0,
        "class_mix": {"bus": 1, "car": 8, "truck": 1},
    }
    for params in ({}, {"format": "json"}):
        body = get_report(api, video, **params).json()
        assert set(body) == {*expected, "speed", "volume_per_minute"}
        assert {k: body[k] for k in expected} == expected
        speeds = [p["speed_kmh"] for p in rows if p["speed_kmh"] is not None]
        assert body["speed"]["measured_vehicles"] == len(speeds) == 9
        assert body["speed"]["limit_kmh"] == LIMIT
        assert body["speed"]["p85_kmh"] == round(float(np.percentile(speeds, 85)), 2)
        # first_time_s = track number (1..10): all in minute 0
        assert body["volume_per_minute"] == [{"minute": 0, "counts": {"bus": 1, "car": 8, "truck": 1}}]
