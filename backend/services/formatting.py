"""How the REST bodies and CSV columns write stored values (presentation: the rows themselves are
``backend.db.models``')."""

from __future__ import annotations

from datetime import UTC, datetime

from backend.db.models import utc_datetime


def utc_iso(value: datetime | float | None) -> str | None:
    """A stored (naive, UTC) datetime or epoch seconds -> ISO 8601 with ``+00:00``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = utc_datetime(value)
    return value.replace(tzinfo=UTC).isoformat()
