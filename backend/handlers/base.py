"""Base handler: JSON responses and JSON errors everywhere (``{"error": {"code", "message"}}``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tornado.web import HTTPError, RequestHandler

from backend.schemas import error_body

if TYPE_CHECKING:
    from backend.app import TrafficApplication

PG_INT_MAX = 2**31 - 1

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(HTTPError):
    """An error the client gets as JSON with a stable ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, reason=None)
        self.code = code
        self.message = message


class BaseHandler(RequestHandler):
    application: TrafficApplication

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        origin = self.request.headers.get("Origin")
        if origin and self.application.origin_allowed(origin):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
            self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
            self.set_header("Access-Control-Allow-Headers", "Content-Type, Authorization")

    def options(self, *args: Any) -> None:
        self.set_status(204)
        self.finish()

    def send_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
        else:
            code = STATUS_CODES.get(status_code, "error")
            message = self._reason if status_code < 500 else "internal server error"
            if isinstance(exc, HTTPError) and exc.log_message and status_code < 500:
                message = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(error_body(code, message)))

    def json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc

    def on_finish(self) -> None:
        self.application.record_request(self)


def parse_video_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 10 or not 0 < int(raw) <= PG_INT_MAX:
        raise ApiError(404, "video_not_found", f"no video with id {raw!r}")
    return int(raw)


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise ApiError(404, "not_found", f"no route for {self.request.method} {self.request.path}")
