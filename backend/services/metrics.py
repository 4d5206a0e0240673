"""Prometheus metrics of the backend (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("backend_http_requests_total", "HTTP requests", ["method", "handler", "status"])
HTTP_LATENCY = Histogram("backend_http_request_seconds", "HTTP request latency", ["handler"])
WS_CLIENTS = Gauge("backend_ws_clients", "Connected WebSocket clients")
WS_MESSAGES_SENT = Counter("backend_ws_messages_sent_total", "Messages written to WebSocket clients")
FRAMES_DROPPED = Counter("backend_ws_frames_dropped_total", "Frames dropped for slow clients")
INGEST_MESSAGES = Counter("backend_ingest_messages_total", "Ingest messages received", ["kind"])
UPLOADS = Counter("backend_uploads_total", "Upload attempts", ["result"])
INGEST_REPEATS = Counter(
    "backend_ingest_repeats_total", "Ingest messages dropped as repeats (bridge redelivery after a crash)"
)
