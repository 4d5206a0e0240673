"""Health, OpenAPI document and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backend.handlers.base import BaseHandler
from backend.openapi import Operation, Response, openapi_json
from backend.schemas import HealthOut
from backend.services import camera_health, health, metrics


class HealthHandler(BaseHandler):
    """``GET /api/health``: 200 when PostgreSQL and Redis answer, else 503 with the details."""

    access = {"GET": "public"}  # liveness for compose and the stack: "ok" or what is down
    openapi = {
        "GET": Operation(
            "Database and Redis reachability",
            {200: Response("Healthy", HealthOut), 503: Response("Degraded", HealthOut)},
            operation_id="health",
        )
    }

    async def get(self) -> None:
        out = await health.check(db=self.application.db, redis=self.application.redis)
        self.send_model(out, 200 if out.status == "ok" else 503)


class OpenApiHandler(BaseHandler):
    access = {"GET": "viewer"}
    openapi = {
        "GET": Operation(
            "This document",
            {200: Response("OpenAPI 3.1", media="application/json")},
            operation_id="openapiDocument",
        )
    }

    def get(self) -> None:
        self.finish(openapi_json())


class MetricsHandler(BaseHandler):
    access = {"GET": "viewer"}  # Prometheus scrapes with a viewer's API token (bearer_token)
    openapi = {
        "GET": Operation(
            "Prometheus metrics",
            {200: Response("Text exposition", media="text/plain")},
            operation_id="metrics",
        )
    }

    async def get(self) -> None:
        """The registry's text; the cameras' health read for this scrape and rendered with no
        await in between (a concurrent scrape cannot interleave its own reading)."""
        app = self.application
        cameras = await camera_health.camera_samples(db=app.db, redis=app.redis)
        metrics.CAMERAS.set(cameras)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest())


routes: list[tuple[str, Any]] = [
    (r"/api/health", HealthHandler),
    (r"/api/openapi.json", OpenApiHandler),
    (r"/metrics", MetricsHandler),
]
