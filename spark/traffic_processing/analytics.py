"""ROI analytics as in the seed's ``VehicleAnalyticsTracker``: cumulative count of vehicles
entering the ROI, current occupancy, dwell times, type distribution, speeding vehicles."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from contracts.messages import DEFAULT_SPEED_LIMIT_KMH

from .detections import VEHICLE_CLASSES, FrameDetections


@dataclass
class VehicleRecord:
    """What we know of one vehicle (one track id) that entered the ROI."""

    track_id: int
    first_frame: int
    last_frame: int
    first_time_s: float
    last_time_s: float
    class_votes: dict[int, float] = field(default_factory=dict)  # class id -> weighted votes
    speeds_kmh: list[float] = field(default_factory=list)
    speeding: bool = False
    speeding_frame: int | None = None
    # No estimate while in the ROI (or counted once out of it): its speed is from estimates made
    # on the margin after it (``VehicleAnalyticsTracker._outside``).
    counted_late: bool = False
    # Bottom centre of its box (image px) when first and last tracked (inside the ROI or on the
    # margin): its direction of travel. Wall clock of its last frame in the ROI (the frame's
    # ``produced_at``; None offline). Class-level defaults: records pickled by earlier versions.
    first_point: tuple[float, float] | None = None
    last_point: tuple[float, float] | None = None
    last_seen_at: float | None = None

    @property
    def class_id(self) -> int:
        return max(self.class_votes.items(), key=lambda kv: kv[1])[0] if self.class_votes else -1

    @property
    def class_name(self) -> str:
        return VEHICLE_CLASSES.get(self.class_id, str(self.class_id))

    @property
    def speed_kmh(self) -> float | None:
        """Representative speed: median of the windowed estimates while in the ROI."""
        return float(np.median(self.speeds_kmh)) if self.speeds_kmh else None

    @property
    def max_speed_kmh(self) -> float | None:
        return float(np.max(self.speeds_kmh)) if self.speeds_kmh else None

    @property
    def dwell_time_s(self) -> float:
        return self.last_time_s - self.first_time_s

    @property
    def direction(self) -> str | None:
        """``schemas.DIRECTIONS``: the main axis of its image motion; None when it moved less
        than ``MIN_DIRECTION_PX``."""
        if self.first_point is None or self.last_point is None:
            return None
        dx = self.last_point[0] - self.first_point[0]
        dy = self.last_point[1] - self.first_point[1]
        if max(abs(dx), abs(dy)) < MIN_DIRECTION_PX:
            return None
        if abs(dy) >= abs(dx):
            return "approaching" if dy > 0 else "receding"
        return "left_to_right" if dx > 0 else "right_to_left"

    def passage(self) -> dict[str, object]:
        """This vehicle's passage record (``schemas.Passage`` fields): what results.json lists
        under ``vehicles`` and the end-of-stream summary carries into ``vehicle_passages``."""

        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 2)

        return {
            "track_id": self.track_id,
            "class_name": self.class_name,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "first_time_s": round(self.first_time_s, 4),
            "last_time_s": round(self.last_time_s, 4),
            "dwell_time_s": round(self.dwell_time_s, 3),
            "speed_kmh": r(self.speed_kmh),
            "max_speed_kmh": r(self.max_speed_kmh),
            "speeding": self.speeding,
            "passed_at": self.last_seen_at,
            "direction": self.direction,
        }


# A vehicle whose box moved less than this (px) has no direction of travel.
MIN_DIRECTION_PX = 8.0


def _bottom_centres(xyxy: np.ndarray) -> np.ndarray:
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1) if len(xyxy) else np.zeros((0, 2))


@dataclass
class AnalyticsConfig:
    speed_limit_kmh: float = DEFAULT_SPEED_LIMIT_KMH
    # A vehicle is flagged once the median of its speed estimates inside the ROI is above the
    # limit. The evidence is in the estimates themselves: the speed estimator makes one only
    # when its standard error is small (``SpeedConfig.max_se_kmh``, over track points that may
    # lie on the margin of road around the ROI), so one noisy window never flags anyone, and a
    # vehicle crossing a short zone fast is flagged from its first estimate, whatever the
    # detection rate. A vehicle counted without an estimate inside the ROI (a sparse stride)
    # takes its first estimates made after it left the ROI, while it is still tracked. Optional
    # extra conditions (0 / 1: none): the track inside the ROI covers ``min_evidence_s`` of video
    # time, and there are ``min_speed_samples`` estimates. A flag is never taken back.
    min_evidence_s: float = 0.0
    min_speed_samples: int = 1

    def has_evidence(self, rec: VehicleRecord) -> bool:
        return (
            len(rec.speeds_kmh) >= self.min_speed_samples
            and rec.last_time_s - rec.first_time_s >= self.min_evidence_s - 1e-9
        )


class VehicleAnalyticsTracker:
    """Feed it each frame's tracked detections; ``stats()`` is the live view, ``finalize()``
    the ``video_analytics`` summary, ``passages()`` the per-vehicle records."""

    def __init__(self, config: AnalyticsConfig | None = None) -> None:
        self.config = config or AnalyticsConfig()
        self.vehicles: dict[int, VehicleRecord] = {}
        self.current_in_roi = 0
        self.current_speeding = 0
        self.newly_speeding: list[int] = []
        # track -> (first frame, time, (last frame, time) | None) in the ROI before confirmation
        # (states pickled by earlier versions hold (first frame, time))
        self._first_seen: dict[int, tuple] = {}
        self._ended = _Ended()

    def __setstate__(self, state: dict) -> None:  # states pickled by earlier versions lack these
        self.__dict__.update(state)
        self.__dict__.setdefault("_ended", _Ended())

    def seed(
        self,
        track_id: int,
        frame_number: int,
        timestamp_s: float,
        last_frame: int | None = None,
        last_time_s: float | None = None,
    ) -> None:
        """The track was detected inside the ROI before it was confirmed, first at this frame:
        its time in the ROI starts there. ``last_frame``/``last_time_s``: its last detection in
        the ROI before confirmation; given, the vehicle is counted even if it is confirmed only
        after it left the ROI (a fast vehicle at a sparse detection stride)."""
        last = None if last_frame is None else (int(last_frame), float(last_time_s or 0.0))
        self._first_seen[int(track_id)] = (int(frame_number), float(timestamp_s), last)

    def update(
        self,
        detections: FrameDetections,
        frame_number: int,
        timestamp_s: float,
        wall_s: float | None = None,
    ) -> FrameDetections:
        """``wall_s``: the frame's wall clock (``produced_at``), a passage's ``passed_at``."""
        self.newly_speeding = []
        self._outside(detections[~detections.in_roi & (detections.tracker_id >= 0)], frame_number, wall_s)
        in_roi = detections[detections.in_roi & (detections.tracker_id >= 0)]
        self.current_in_roi = len(in_roi)
        current_speeding = 0
        areas = (in_roi.xyxy[:, 2] - in_roi.xyxy[:, 0]) * (in_roi.xyxy[:, 3] - in_roi.xyxy[:, 1])
        for tid, cls, conf, area, speed, point in zip(
            in_roi.tracker_id,
            in_roi.class_id,
            in_roi.confidence,
            areas,
            in_roi.speed_kmh,
            _bottom_centres(in_roi.xyxy),
        ):
            tid = int(tid)
            rec = self.vehicles.get(tid)
            if rec is None:
                first, first_t = self._first_seen.pop(tid, (frame_number, timestamp_s))[:2]
                rec = self.vehicles[tid] = VehicleRecord(tid, first, frame_number, first_t, timestamp_s)
            rec.last_frame, rec.last_time_s, rec.last_seen_at = frame_number, timestamp_s, wall_s
            _moved(rec, point)
            # Class vote weighted by confidence and box area: the detector tells a bus from a
            # car far better when the vehicle is near and large than as a few pixels far away.
            vote = float(conf) * max(float(area), 1.0)
            rec.class_votes[int(cls)] = rec.class_votes.get(int(cls), 0.0) + vote
            if np.isfinite(speed):
                rec.speeds_kmh.append(float(speed))
                self._judge(rec, frame_number)
            if rec.speeding:
                current_speeding += 1
        self.current_speeding = current_speeding
        return detections

    def _judge(self, rec: VehicleRecord, frame_number: int) -> None:
        median = rec.speed_kmh
        if (
            not rec.speeding
            and self.config.has_evidence(rec)
            and median is not None
            and median > self.config.speed_limit_kmh
        ):
            rec.speeding, rec.speeding_frame = True, frame_number
            self.newly_speeding.append(rec.track_id)

    def _outside(self, outside: FrameDetections, frame_number: int, wall_s: float | None = None) -> None:
        """Tracked vehicles on the margin outside the ROI: one seen in the ROI only before its
        track was confirmed is counted now (its passage from its hits in the ROI); one counted
        without a speed estimate in the ROI takes the estimates made after it left, so that
        every counted vehicle gets a speed and its flag while it is still tracked."""
        areas = (outside.xyxy[:, 2] - outside.xyxy[:, 0]) * (outside.xyxy[:, 3] - outside.xyxy[:, 1])
        for tid, cls, conf, area, speed, point in zip(
            outside.tracker_id,
            outside.class_id,
            outside.confidence,
            areas,
            outside.speed_kmh,
            _bottom_centres(outside.xyxy),
        ):
            tid = int(tid)
            rec = self.vehicles.get(tid)
            if rec is None:
                seen = self._first_seen.get(tid)
                if seen is None or len(seen) < 3 or seen[2] is None:
                    continue
                del self._first_seen[tid]
                (first, first_t, (last, last_t)) = seen
                rec = self.vehicles[tid] = VehicleRecord(tid, first, last, first_t, last_t)
                rec.class_votes[int(cls)] = float(conf) * max(float(area), 1.0)
                rec.counted_late = True
                rec.last_seen_at = wall_s
            _moved(rec, point)
            if np.isfinite(speed) and (not rec.speeds_kmh or rec.counted_late):
                rec.counted_late = True  # its estimates are those made outside the ROI
                rec.speeds_kmh.append(float(speed))
                self._judge(rec, frame_number)

    def is_speeding(self, track_id: int) -> bool:
        rec = self.vehicles.get(int(track_id))
        return bool(rec and rec.speeding)

    def pop_ended(self, alive: set[int]) -> list[dict[str, object]]:
        """The passages of the counted vehicles whose track is no longer in ``alive`` (the
        tracker's live track ids): their record is final. Each is returned once and forgotten,
        only its share of the totals kept, so that a camera's state stays small over days."""
        ended = [tid for tid in self.vehicles if tid not in alive]
        out = []
        for tid in sorted(ended, key=lambda t: (self.vehicles[t].first_frame, t)):
            rec = self.vehicles.pop(tid)
            self._ended.add(rec)
            out.append(rec.passage())
        for tid in [t for t in self._first_seen if t not in alive]:  # never confirmed in the ROI
            del self._first_seen[tid]
        return out

    @property
    def total_vehicles(self) -> int:
        return len(self.vehicles) + self._ended.count

    @property
    def speeding_count(self) -> int:
        return sum(1 for v in self.vehicles.values() if v.speeding) + self._ended.speeding

    def stats(self) -> dict[str, int]:
        """Live stats of DESIGN.md: total_vehicles, speeding_count, current_in_roi."""
        return {
            "total_vehicles": self.total_vehicles,
            "speeding_count": self.speeding_count,
            "current_in_roi": self.current_in_roi,
        }

    def passages(self) -> list[dict[str, object]]:
        """The passage record of every counted vehicle not yet returned by ``pop_ended`` (all of
        them when it is never called), by first frame (then track id)."""
        ordered = sorted(self.vehicles.values(), key=lambda v: (v.first_frame, v.track_id))
        return [v.passage() for v in ordered]

    def finalize(self) -> dict[str, object]:
        """The ``video_analytics`` row over every counted vehicle (those ``pop_ended`` returned
        too): total_vehicles_count, avg_dwell_time (s), vehicle_type_distribution ({class name:
        count}), speeding_count."""
        dwell_sum = sum(v.dwell_time_s for v in self.vehicles.values()) + self._ended.dwell_sum
        types = Counter(v.class_name for v in self.vehicles.values()) + self._ended.types
        total = self.total_vehicles
        return {
            "total_vehicles_count": total,
            "avg_dwell_time": round(dwell_sum / total, 3) if total else 0.0,
            "vehicle_type_distribution": dict(sorted(types.items())),
            "speeding_count": self.speeding_count,
        }


@dataclass
class _Ended:
    """The totals of the vehicles whose passage was handed out (``pop_ended``)."""

    count: int = 0
    speeding: int = 0
    dwell_sum: float = 0.0
    types: Counter = field(default_factory=Counter)

    def add(self, rec: VehicleRecord) -> None:
        self.count += 1
        self.speeding += int(rec.speeding)
        self.dwell_sum += rec.dwell_time_s
        self.types[rec.class_name] += 1


def _moved(rec: VehicleRecord, point: np.ndarray) -> None:
    p = (round(float(point[0]), 1), round(float(point[1]), 1))
    if rec.first_point is None:
        rec.first_point = p
    rec.last_point = p
