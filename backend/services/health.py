"""``GET /api/health``: PostgreSQL and Redis reachability, and whether the Spark processor runs."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.db.session import Database
from backend.schemas import HealthOut
from contracts import streams

TIMEOUT_S = 5.0


async def check(*, db: Database, redis: aioredis.Redis, timeout_s: float = TIMEOUT_S) -> HealthOut:
    """``ok`` when PostgreSQL and Redis answer, else ``degraded`` with the failing check's error
    kind. ``processor`` (informational, not part of the status): ``ready`` while the Spark
    application keeps its heartbeat key in Redis, else ``not running``; ``unknown`` without Redis."""
    checks: dict[str, str] = {}

    def ping_db(session: Session) -> None:
        session.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(db.run(ping_db), timeout_s)
        checks["database"] = "ok"
    except Exception as exc:  # report, never raise
        checks["database"] = f"error: {exc.__class__.__name__}"
    processor = "unknown"
    try:
        await asyncio.wait_for(redis.ping(), timeout_s)
        checks["redis"] = "ok"
        beat = await asyncio.wait_for(redis.exists(streams.PROCESSOR_HEARTBEAT_KEY), timeout_s)
        processor = "ready" if beat else "not running"
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return HealthOut.model_validate(
        {"status": "ok" if healthy else "degraded", "checks": checks, "processor": processor}
    )
