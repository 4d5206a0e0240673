"""Errors the services raise for the API to answer, and the one mapping of Airflow failures.

A ``ServiceError`` carries its HTTP status, a stable ``code`` and, when the refusal is about one
field of the request, that ``field`` (the body's field, its pydantic location joined by ".":
``roi_polygon``, ``image_points.2``; a form field: ``roi``); ``BaseHandler.write_error`` answers
it as ``{"error": {"code", "message", "field"?}}`` (``schemas.ErrorResponse``), so a handler lets
it through instead of catching and re-raising it. It is a ``tornado.web.HTTPError`` for that reason:
Tornado keeps its status instead of answering 500.
"""

from __future__ import annotations

from tornado.web import HTTPError

from backend.services.airflow_client import AirflowError, AirflowUnavailable


class ServiceError(HTTPError):
    """A request the API refuses (or cannot serve) with ``status`` and a stable ``code``."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(status, reason=None)
        self.code = code
        self.message = message
        self.field = field

    @property
    def status(self) -> int:
        return self.status_code

    def __str__(self) -> str:
        return self.message


def not_found(code: str, message: str) -> ServiceError:
    return ServiceError(404, code, message)


def video_not_found(video_id: int | str) -> ServiceError:
    return not_found("video_not_found", f"no video with id {video_id}")


# Airflow failures -> API statuses: unreachable or failing (5xx, timeouts, after the client's
# retries) is 503, nothing changed; any other unexpected answer (a refused login, a 4xx) is 502.
AIRFLOW_STATUSES: dict[type[Exception], tuple[int, str]] = {
    AirflowUnavailable: (503, "airflow_unavailable"),
    AirflowError: (502, "airflow_error"),
}


def airflow_failure(exc: AirflowUnavailable | AirflowError) -> ServiceError:
    """The API error of an Airflow failure (``AIRFLOW_STATUSES``)."""
    for kind, (status, code) in AIRFLOW_STATUSES.items():
        if isinstance(exc, kind):
            return ServiceError(status, code, str(exc))
    raise TypeError(f"not an Airflow failure: {exc!r}")
