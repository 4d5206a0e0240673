"""Prometheus metrics of the backend (served at /metrics).

The WebSocket hub's counters (frames dropped for slow clients, ingest repeats) are not kept
here: ``HubCollector`` reads them from the application's hub at each scrape, so that
``/metrics`` and ``GET /api/websocket/status`` report the same numbers (one source of truth).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

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
