"""Prometheus metrics of the backend (served at /metrics).

The WebSocket hub's counters (frames dropped for slow clients, ingest repeats) are not kept
here: ``HubCollector`` reads them from the application's hub at each scrape, so that
``/metrics`` and ``GET /api/websocket/status`` report the same numbers (one source of truth).

The cameras' health (``traffic_camera_*``, labels ``video_id`` and ``name``) is computed at each
scrape as the API computes it (``services.camera_health``): the handler reads the cameras and
their progress (async), hands them to ``CAMERAS.set`` and renders at once; a deleted camera is
gone from the next scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, get_args

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from backend.schemas import CameraHealth, CameraHealthState

HTTP_REQUESTS = Counter("backend_http_requests_total", "HTTP requests", ["method", "handler", "status"])
HTTP_LATENCY = Histogram("backend_http_request_seconds", "HTTP request latency", ["handler"])
WS_CLIENTS = Gauge("backend_ws_clients", "Connected WebSocket clients")
WS_MESSAGES_SENT = Counter("backend_ws_messages_sent_total", "Messages written to WebSocket clients")
INGEST_MESSAGES = Counter("backend_ingest_messages_total", "Ingest messages received", ["kind"])
UPLOADS = Counter("backend_uploads_total", "Upload attempts", ["result"])


class HubCounters(Protocol):
    def counters(self) -> dict[str, int]: ...


class HubCollector:
    """``backend_ws_frames_dropped_total`` and ``backend_ingest_repeats_total``, read from the
    bound hub's ``counters()`` (0 before one is bound)."""

    METRICS = (
        (
            "backend_ws_frames_dropped",
            "dropped_frames",
            "Frames dropped for slow clients (the hub's dropped_frames, as in /api/websocket/status)",
        ),
        (
            "backend_ingest_repeats",
            "repeats_dropped",
            "Ingest messages dropped as repeats (bridge redelivery after a crash)",
        ),
    )

    def __init__(self) -> None:
        self._source: Callable[[], dict[str, int]] | None = None

    def bind(self, hub: HubCounters) -> None:
        self._source = hub.counters

    def collect(self) -> Iterator[Metric]:
        values = self._source() if self._source is not None else {}
        for name, key, doc in self.METRICS:
            yield CounterMetricFamily(name, doc, value=values.get(key, 0))

    def describe(self) -> Iterator[Metric]:
        for name, _, doc in self.METRICS:
            yield CounterMetricFamily(name, doc, value=0)


HUB = HubCollector()
REGISTRY.register(HUB)


def bind_hub(hub: HubCounters) -> None:
    """Expose this hub's counters (the application's; the last bound wins)."""
    HUB.bind(hub)


@dataclass(frozen=True)
class CameraSample:
    """One camera at a scrape: its id, its name and its health (None: unknown, no series)."""

    video_id: int
    name: str
    health: CameraHealth | None


CAMERA_STATES: tuple[str, ...] = get_args(CameraHealthState)
CAMERA_LABELS = ["video_id", "name"]


class CameraCollector:
    """``traffic_camera_*`` gauges of the cameras last ``set`` (the scrape's own reading)."""

    def __init__(self) -> None:
        self._cameras: tuple[CameraSample, ...] = ()

    def set(self, cameras: Sequence[CameraSample]) -> None:
        self._cameras = tuple(cameras)

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        def gauge(name: str, doc: str, labels: list[str] = CAMERA_LABELS) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        return {
            "up": gauge("traffic_camera_up", "1 while the camera is live (frames arrive), else 0"),
            "state": gauge(
                "traffic_camera_state",
                f"1 for the camera's current state, 0 for the others ({', '.join(CAMERA_STATES)})",
                [*CAMERA_LABELS, "state"],
            ),
            "age": gauge(
                "traffic_camera_last_frame_age_seconds", "Seconds since the camera's last frame read"
            ),
            "fps": gauge("traffic_camera_input_fps", "Frames per second the camera delivers (measured)"),
            "reconnects": gauge("traffic_camera_reconnects", "Reconnections in the camera's current run"),
            "dropped": gauge(
                "traffic_camera_dropped_frames",
                "Frames the camera's producer dropped (pipeline lagging) in the current run",
            ),
        }

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        for cam in self._cameras:
            health = cam.health
            if health is None:
                continue
            labels = [str(cam.video_id), cam.name]
            families["up"].add_metric(labels, 1.0 if health.state == "live" else 0.0)
            for state in CAMERA_STATES:
                families["state"].add_metric([*labels, state], 1.0 if health.state == state else 0.0)
            if health.last_frame_age_s is not None:
                families["age"].add_metric(labels, health.last_frame_age_s)
            if health.input_fps is not None:
                families["fps"].add_metric(labels, health.input_fps)
            families["reconnects"].add_metric(labels, health.reconnects)
            families["dropped"].add_metric(labels, health.dropped_frames)
        yield from families.values()

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()


CAMERAS = CameraCollector()
REGISTRY.register(CAMERAS)
