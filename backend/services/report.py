"""The traffic report of one video, computed from its ``vehicle_passages`` rows
(``GET /api/videos/{id}/report``): totals, class mix, speed distribution and volume per minute;
with a window (``?from=&to=&interval=``) the traffic study per interval and in total: volume by
class and direction, mean speed, V50, V85, the 10 km/h pace band, the share over the limit and the
mean headway. Pure functions: the rows come from ``services.results``."""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from backend.services.errors import ServiceError
from backend.services.formatting import utc_iso

BIN_WIDTH_KMH = 10


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def speed_histogram(speeds: list[float], limit_kmh: float, width: int = BIN_WIDTH_KMH) -> dict[str, Any]:
    """Contiguous bins ``[from_kmh, to_kmh)`` from 0 up to the bin holding the fastest vehicle
    (and the limit, so that a chart can mark it); no bins without speeds."""
    if not speeds:
        return {"bin_width_kmh": width, "bins": []}
    top = max(max(speeds), limit_kmh)
    n_bins = int(math.floor(top / width)) + 1
    counts = Counter(min(int(math.floor(s / width)), n_bins - 1) for s in speeds)
    bins = [
        {"from_kmh": i * width, "to_kmh": (i + 1) * width, "count": counts.get(i, 0)} for i in range(n_bins)
    ]
    return {"bin_width_kmh": width, "bins": bins}


def traffic_report(video_id: int, passages: Iterable[Mapping[str, Any]], limit_kmh: float) -> dict[str, Any]:
    """``passages``: dicts with the ``vehicle_passages`` columns. ``mean_kmh`` and ``p85_kmh`` are
    over the vehicles with a measured speed (None when none has one); the 85th percentile is
    interpolated linearly between the ordered speeds."""
    rows = list(passages)
    classes = Counter(str(p["class_name"]) for p in rows)
    class_mix = dict(sorted(classes.items()))
    speeds = [float(p["speed_kmh"]) for p in rows if p.get("speed_kmh") is not None]
    dwell = [float(p["dwell_time_s"]) for p in rows]
    minutes: dict[int, Counter] = {}
    for p in rows:
        minutes.setdefault(int(math.floor(float(p["first_time_s"]) / 60.0)), Counter())[p["class_name"]] += 1
    last_minute = max(minutes, default=-1)
    volume = [
        {"minute": m, "counts": {c: minutes.get(m, Counter()).get(c, 0) for c in class_mix}}
        for m in range(last_minute + 1)
    ]
    return {
        "video_id": video_id,
        "total_vehicles": len(rows),
        "speeding_count": sum(1 for p in rows if p.get("speeding")),
        "avg_dwell_time_s": round(float(np.mean(dwell)), 3) if dwell else 0.0,
        "class_mix": class_mix,
        "speed": {
            "limit_kmh": limit_kmh,
            "mean_kmh": _round(float(np.mean(speeds))) if speeds else None,
            "p85_kmh": _round(float(np.percentile(speeds, 85))) if speeds else None,
            "measured_vehicles": len(speeds),
            "histogram": speed_histogram(speeds, limit_kmh),
        },
        "volume_per_minute": volume,
    }


# ---- the time-window traffic study (``?from=&to=&interval=``) ---------------------------------

UTC_EPOCH = datetime(1970, 1, 1)  # naive UTC, as ``vehicle_passages.passed_at``
INTERVALS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
}
DEFAULT_INTERVAL = "15m"
DEFAULT_SPAN = timedelta(hours=24)
MAX_INTERVALS = 2000
PACE_WIDTH_KMH = 10
UNKNOWN_DIRECTION = "unknown"  # a passage without a direction (NULL)
WINDOW_CSV_HEAD = ("start", "end", "volume")
WINDOW_CSV_TAIL = (
    "measured_vehicles",
    "mean_kmh",
    "v50_kmh",
    "v85_kmh",
    "pace_from_kmh",
    "pace_to_kmh",
    "pace_share",
    "over_limit_share",
    "mean_headway_s",
)

# "2025-06-15T10:00:00 02:00": the "+" of an offset decoded as a space in an unencoded query string
_OFFSET = re.compile(r"\d{2}(?::?\d{2})?")
# The ISO 8601 shapes taken (calendar date, optional time and offset; extended or basic), checked
# before ``datetime.fromisoformat``, which would also take any character between date and time
_ISO_8601 = re.compile(
    r"(?:\d{4}-\d{2}-\d{2}|\d{8})"
    r"(?:[T ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)


@dataclass(frozen=True)
class Window:
    """A report window: ``[start, end)`` in naive UTC (``from``/``to`` as asked) and the
    interval; ``first`` is ``start`` floored to the interval's UTC clock boundary."""

    start: datetime
    end: datetime
    interval: str

    @property
    def step(self) -> timedelta:
        return INTERVALS[self.interval]

    @property
    def first(self) -> datetime:
        return UTC_EPOCH + ((self.start - UTC_EPOCH) // self.step) * self.step

    @property
    def count(self) -> int:
        """How many intervals: from ``first`` until one ends at or after ``end``."""
        return -(-(self.end - self.first) // self.step)


def window_error(message: str) -> ServiceError:
    return ServiceError(400, "invalid_window", message)


def parse_instant(name: str, raw: str) -> datetime:
    """ISO 8601 (``Z`` or an offset; without one: UTC) -> naive UTC; 400 ``invalid_window``."""
    text = raw.strip()
    stamp, _, offset = text.rpartition(" ")
    if _OFFSET.fullmatch(offset) and ("T" in stamp or ":" in stamp):
        text = f"{stamp}+{offset}"
    try:
        if not _ISO_8601.fullmatch(text):
            raise ValueError(text)
        value = datetime.fromisoformat(text)
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise window_error(f"{name}: {raw[:60]!r} is not an ISO 8601 date and time") from None
    return value


def parse_window(from_: str | None, to: str | None, interval: str | None, *, now: datetime) -> Window:
    """The window of the query parameters (None: not given): ``to`` defaults to ``now`` (naive
    UTC), ``from`` to ``to`` - 24 h, ``interval`` to 15m. 400 ``invalid_interval`` for another
    interval, ``invalid_window`` for an unreadable date, ``from`` >= ``to`` or more than
    ``MAX_INTERVALS`` intervals."""
    name = DEFAULT_INTERVAL if interval is None else interval
    if name not in INTERVALS:
        raise ServiceError(
            400, "invalid_interval", f"interval must be one of {', '.join(INTERVALS)}, not {name[:40]!r}"
        )
    end = now if to is None else parse_instant("to", to)
    try:
        start = end - DEFAULT_SPAN if from_ is None else parse_instant("from", from_)
    except OverflowError:
        raise window_error("to: too early for the default 24 h window") from None
    if start >= end:
        raise window_error(f"from ({utc_iso(start)}) must be before to ({utc_iso(end)})")
    window = Window(start, end, name)
    count = window.count
    if count > MAX_INTERVALS:
        raise window_error(
            f"the window holds {count} intervals of {name}, more than {MAX_INTERVALS}: "
            "shorten it or take a longer interval"
        )
    if datetime.max - window.first < count * window.step:
        raise window_error("the last interval ends after the year 9999")
    return window


def pace_band(speeds: Sequence[float], width: int = PACE_WIDTH_KMH) -> tuple[int, int] | None:
    """The ``width`` km/h band ``[a, a + width)`` holding the most speeds, ``a`` in whole km/h
    from floor(min speed) up, the lowest ``a`` on a tie: ``(a, count)``; None without speeds.

    The lowest best ``a`` is floor(min) or floor(s) - width + 1 for some speed s: one step
    lower would lose a speed from its top (or pass below floor(min)); only those are tried."""
    if not speeds:
        return None
    ordered = sorted(speeds)
    low = math.floor(ordered[0])
    candidates = {low} | {math.floor(s) - width + 1 for s in ordered}
    best: tuple[int, int] | None = None
    for a in sorted(c for c in candidates if c >= low):
        count = bisect_left(ordered, a + width) - bisect_left(ordered, a)
        if best is None or count > best[1]:
            best = (a, count)
    return best


def mean_headway(passages: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean of the gaps (s) between consecutive ``passed_at`` of the same direction (NULL is a
    direction of its own, ``unknown``), over all the passages given; None without a gap."""
    last: dict[str, datetime] = {}
    gaps: list[float] = []
    for p in sorted(passages, key=lambda p: p["passed_at"]):
        direction = direction_of(p)
        if direction in last:
            gaps.append((p["passed_at"] - last[direction]).total_seconds())
        last[direction] = p["passed_at"]
    return round(float(np.mean(gaps)), 3) if gaps else None


def direction_of(passage: Mapping[str, Any]) -> str:
    return passage.get("direction") or UNKNOWN_DIRECTION


def measured_speed(passage: Mapping[str, Any]) -> float | None:
    speed = passage.get("speed_kmh")
    return float(speed) if speed is not None and math.isfinite(speed) else None


def window_stats(
    passages: Sequence[Mapping[str, Any]],
    limit_kmh: float,
    classes: Sequence[str],
    directions: Sequence[str],
) -> dict[str, Any]:
    """One interval's (or the whole window's) study figures: volume by class and direction
    (every one of ``classes`` and ``directions``, 0 included), speed figures over the vehicles
    with a speed (None without one), mean headway."""
    by_class = Counter(str(p["class_name"]) for p in passages)
    by_direction = Counter(direction_of(p) for p in passages)
    speeds = [s for p in passages if (s := measured_speed(p)) is not None]
    stats: dict[str, Any] = {
        "volume": len(passages),
        "volume_by_class": {c: by_class.get(c, 0) for c in classes},
        "volume_by_direction": {d: by_direction.get(d, 0) for d in directions},
        "measured_vehicles": len(speeds),
        "mean_kmh": None,
        "v50_kmh": None,
        "v85_kmh": None,
        "pace_from_kmh": None,
        "pace_to_kmh": None,
        "pace_share": None,
        "over_limit_share": None,
        "mean_headway_s": mean_headway(passages),
    }
    pace = pace_band(speeds)
    if pace is not None:
        v50, v85 = np.percentile(speeds, [50, 85])
        stats.update(
            mean_kmh=_round(float(np.mean(speeds))),
            v50_kmh=_round(v50),
            v85_kmh=_round(v85),
            pace_from_kmh=float(pace[0]),
            pace_to_kmh=float(pace[0] + PACE_WIDTH_KMH),
            pace_share=round(pace[1] / len(speeds), 4),
            over_limit_share=round(sum(1 for s in speeds if s > limit_kmh) / len(speeds), 4),
        )
    return stats


def window_report(
    video_id: int, passages: Iterable[Mapping[str, Any]], window: Window, limit_kmh: float
) -> dict[str, Any]:
    """The traffic study over ``window``: ``passages`` are dicts with ``passed_at`` (naive UTC),
    ``class_name``, ``direction`` and ``speed_kmh``; those without ``passed_at`` or outside
    ``[start, end)`` are left out. Each passage counts in the interval holding its
    ``passed_at`` (start inclusive); every interval is listed, empty ones too."""
    rows = [
        p for p in passages if p.get("passed_at") is not None and window.start <= p["passed_at"] < window.end
    ]
    first, step = window.first, window.step
    buckets: list[list[Mapping[str, Any]]] = [[] for _ in range(window.count)]
    for p in rows:
        buckets[(p["passed_at"] - first) // step].append(p)
    classes = sorted({str(p["class_name"]) for p in rows})
    directions = sorted({direction_of(p) for p in rows})
    intervals = [
        {
            "start": utc_iso(first + i * step),
            "end": utc_iso(first + (i + 1) * step),
            **window_stats(bucket, limit_kmh, classes, directions),
        }
        for i, bucket in enumerate(buckets)
    ]
    return {
        "video_id": video_id,
        "from": utc_iso(window.start),
        "to": utc_iso(window.end),
        "interval": window.interval,
        "interval_s": int(step.total_seconds()),
        "limit_kmh": limit_kmh,
        "classes": classes,
        "directions": directions,
        "total": window_stats(rows, limit_kmh, classes, directions),
        "intervals": intervals,
    }


def window_csv(report: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The CSV form of a window report: columns and rows, one per interval then ``total``
    (its ``end`` empty); the volumes by class and direction as ``volume_<name>`` columns,
    empty cells for null."""
    columns = [
        *WINDOW_CSV_HEAD,
        *(f"volume_{c}" for c in report["classes"]),
        *(f"volume_{d}" for d in report["directions"]),
        *WINDOW_CSV_TAIL,
    ]

    def row(start: str, end: str, stats: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"start": start, "end": end, "volume": stats["volume"]}
        out.update({f"volume_{c}": n for c, n in stats["volume_by_class"].items()})
        out.update({f"volume_{d}": n for d, n in stats["volume_by_direction"].items()})
        out.update({k: stats[k] for k in WINDOW_CSV_TAIL})
        return out

    rows = [row(i["start"], i["end"], i) for i in report["intervals"]]
    rows.append(row("total", "", report["total"]))
    return columns, rows
