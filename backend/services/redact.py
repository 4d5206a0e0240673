"""Credentials out of camera URLs and of any text that may quote one: every API response and log
line goes through here (the one implementation is ``traffic_processing.camera``'s, shared with the
Airflow producer)."""

from __future__ import annotations

from traffic_processing.camera import HIDDEN, redact, redact_text, url_secrets

__all__ = ["HIDDEN", "redact", "redact_text", "url_secrets"]
