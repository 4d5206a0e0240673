"""The traffic report of one video, computed from its ``vehicle_passages`` rows
(``GET /api/videos/{id}/report``): totals, class mix, speed distribution and volume per minute."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

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
