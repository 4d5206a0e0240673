"""Calibration files (CALIB.json) and processing knobs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.messages import DEFAULT_SPEED_LIMIT_KMH

from .analytics import AnalyticsConfig
from .detector import DetectorConfig
from .speed import SpeedConfig
from .tracker import TrackerConfig


class ConfigError(ValueError):
    """A calibration or configuration file that cannot be used."""


class CalibrationFile(BaseModel):
    """CALIB.json: ROI (pixels, optional: whole frame), >= 4 image points (pixels) paired with
    road-plane points (metres), optional fps override and speed limit (km/h)."""

    model_config = ConfigDict(extra="ignore")

    roi_polygon: list[tuple[float, float]] | None = None
    image_points: list[tuple[float, float]] = Field(min_length=4)
    world_points: list[tuple[float, float]] = Field(min_length=4)
    fps: float | None = Field(default=None, gt=0)
    speed_limit_kmh: float = Field(default=DEFAULT_SPEED_LIMIT_KMH, gt=0)

    @field_validator("world_points")
    @classmethod
    def _same_count(cls, v: list, info: Any) -> list:
        img = info.data.get("image_points")
        if img is not None and len(img) != len(v):
            raise ValueError(f"world_points has {len(v)} points, image_points has {len(img)}")
        return v

    @classmethod
    def load(cls, path: str | Path) -> CalibrationFile:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read calibration {path}: {exc.strerror or exc}") from exc
        try:
            return cls.model_validate(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"calibration {path} is not valid JSON: {exc}") from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"calibration {path} is invalid: {problems}") from exc


def _strict_dataclass(cls: type, values: dict[str, Any] | None) -> Any:
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {sorted(unknown)} (known: {sorted(known)})")
    return cls(**values)


@dataclass
class ProcessorConfig:
    """All algorithm knobs, grouped by stage. ``from_dict`` rejects unknown keys."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    jpeg_quality: int = 80
    # Detections are tracked and measured over the ROI grown by this many metres of road (on the
    # road plane, through the homography; 0 or uncalibrated: the ROI only), so that a vehicle
    # crossing a short zone fast has track points before and after it: 20 m is 0.5 s at
    # 140 km/h, two detections or more on each side at 5 Hz. Counting stays in the ROI. Each
    # extra box tracked costs its embedding and association (urban sample: 1.5 -> 2.8 boxes a
    # frame, +2-3 ms a detected frame; 30 m: 3.5 boxes, +4 ms).
    margin_m: float = 20.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProcessorConfig:
        values = dict(values)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown ProcessorConfig keys: {sorted(unknown)}")
        return cls(
            detector=_strict_dataclass(DetectorConfig, values.get("detector")),
            tracker=_strict_dataclass(TrackerConfig, values.get("tracker")),
            speed=_strict_dataclass(SpeedConfig, values.get("speed")),
            analytics=_strict_dataclass(AnalyticsConfig, values.get("analytics")),
            jpeg_quality=int(values.get("jpeg_quality", 80)),
            margin_m=float(values.get("margin_m", cls.margin_m)),
        )
