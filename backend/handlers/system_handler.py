"""Health, OpenAPI document and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from traffic_processing import streams

from backend.handlers.base import BaseHandler
from backend.openapi import openapi_document


class HealthHandler(BaseHandler):
    """``GET /api/health``: 200 when PostgreSQL and Redis answer, else 503 with the details.

    ``processor`` (informational, not part of the status): ``ready`` while the Spark application
    keeps its heartbeat key in Redis, else ``not running`` (a stream started then waits for it).
    """

    async def get(self) -> None:
        checks: dict[str, str] = {}

        def ping_db(session) -> None:
            session.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(self.application.db.run(ping_db), 5)
            checks["database"] = "ok"
        except Exception as exc:  # report, never raise
            checks["database"] = f"error: {exc.__class__.__name__}"
        processor = "unknown"
        try:
            await asyncio.wait_for(self.application.redis.ping(), 5)
            checks["redis"] = "ok"
            beat = await asyncio.wait_for(self.application.redis.exists(streams.PROCESSOR_HEARTBEAT_KEY), 5)
            processor = "ready" if beat else "not running"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
        healthy = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if healthy else "degraded", "checks": checks, "processor": processor}
        self.send_json(body, 200 if healthy else 503)


class OpenApiHandler(BaseHandler):
    def get(self) -> None:
        self.send_json(openapi_document())


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest())


routes: list[tuple[str, Any]] = [
    (r"/api/health", HealthHandler),
    (r"/api/openapi.json", OpenApiHandler),
    (r"/metrics", MetricsHandler),
]
