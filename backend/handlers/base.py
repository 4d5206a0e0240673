"""Base handler: JSON responses and JSON errors everywhere (``{"error": {"code", "message"}}``)."""

from __future__ import annotations

import csv
import hmac
import io
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError
from tornado.httputil import HTTPServerRequest
from tornado.web import HTTPError, RequestHandler

from backend.openapi import Operation
from backend.schemas import error_body
from backend.services import access, audit
from backend.services.accounts import Principal
from backend.services.errors import ServiceError

M = TypeVar("M", bound=BaseModel)

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
    501: "not_implemented",
    503: "service_unavailable",
    507: "insufficient_storage",
}


# An error the client gets as JSON with a stable ``code`` (raised by handlers and services alike).
ApiError = ServiceError


class BaseHandler(RequestHandler):
    """JSON in and out, and every request through ``prepare``: its Host checked, its caller
    authenticated and held to the method's access rule (``access``: "public" or the least role,
    per method; a method without a rule is refused), and a state-changing request sent with the
    session cookie held to the cross-site rules (``services.access``)."""

    application: TrafficApplication
    access: ClassVar[Mapping[str, str]] = {}
    # Methods whose every answer (once the caller is known) goes to the audit log as this action
    audit_actions: ClassVar[Mapping[str, str]] = {}
    audit_target: str | None = None  # set by the handler when it knows better than the path
    # The OpenAPI operation of each method (backend.openapi builds the document from these, for
    # exactly the methods of ``access``) and the names of the route's id groups, in order
    openapi: ClassVar[Mapping[str, Operation]] = {}
    path_params: ClassVar[tuple[str, ...]] = ()
    principal: Principal | None = None

    async def prepare(self) -> None:
        await access.admit(self)

    @property
    def client_ip(self) -> str:
        return self.request.remote_ip or ""

    async def audit(
        self,
        action: str,
        target: str | None = None,
        *,
        outcome: str = "ok",
        username: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append to the audit log: this caller, its address, ``action`` on ``target``."""
        principal, ip = self.principal, self.client_ip
        await self.application.db.run(
            lambda s: audit.record(
                session=s,
                action=action,
                principal=principal,
                username=username,
                target=target,
                ip=ip,
                outcome=outcome,
                detail=detail,
            )
        )

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        for name, value in access.SECURITY_HEADERS.items():
            self.set_header(name, value)
        origin = self.request.headers.get("Origin")
        if origin and self.application.origin_allowed(origin):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
            self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
            self.set_header("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Requested-With")
            if "*" not in self.application.config.allowed_origins:  # a named origin may send the cookie
                self.set_header("Access-Control-Allow-Credentials", "true")

    def options(self, *args: Any) -> None:
        self.set_status(204)
        self.finish()

    def send_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload, default=str))

    def send_model(self, model: BaseModel, status: int = 200, *, exclude_unset: bool = False) -> None:
        """Write a response model of ``backend.schemas`` (what the OpenAPI document declares)."""
        self.set_status(status)
        self.finish(model.model_dump_json(exclude_unset=exclude_unset))

    def send_csv(self, filename: str, columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
        self.set_header("Content-Type", "text/csv; charset=UTF-8")
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.finish(out.getvalue())

    def send_jpeg(self, jpeg: bytes, max_age_s: int = 3600) -> None:
        self.set_header("Content-Type", "image/jpeg")
        # behind a login: browsers may keep it, shared caches and proxies may not
        self.set_header("Cache-Control", f"private, max-age={max_age_s}")
        self.finish(jpeg)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        field = None
        if isinstance(exc, ServiceError):
            code, message, field = exc.code, exc.message, exc.field
        else:
            code = STATUS_CODES.get(status_code, "error")
            message = self._reason if status_code < 500 else "internal server error"
            if isinstance(exc, HTTPError) and exc.log_message and status_code < 500:
                message = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(error_body(code, message, field)))

    def json_body(self) -> Any:
        """The body as JSON; 415 when a body comes with another Content-Type (a cross-site form
        can send ``text/plain`` without a preflight: it is never read as JSON)."""
        if self.request.body and self.request.body.strip() and not access.is_json(self.request):
            raise ApiError(
                415, "unsupported_media_type", "the body must be sent as Content-Type: application/json"
            )
        try:
            return json.loads(self.request.body or b"")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc

    def body_of(self, model: type[M]) -> M:
        """The JSON body validated by ``model``; 400 ``invalid_body`` naming the refused field."""
        try:
            return model.model_validate(self.json_body())
        except ValidationError as exc:
            raise validation_error(exc) from exc

    def on_finish(self) -> None:
        self.application.record_request(self)
        action = self.audit_actions.get(self.request.method or "")
        if action and self.principal is not None:
            status = self.get_status()
            detail = {"status": status, "method": self.request.method}
            outcome = "ok" if status < 400 else "refused"
            target = self.audit_target or self.request.path
            self.application.spawn(self.audit(action, target, outcome=outcome, detail=detail))


def bearer_ok(request: HTTPServerRequest, expected: str, fallback_header: str | None = None) -> bool:
    """Whether the request carries ``expected`` as ``Authorization: Bearer ...`` (or in
    ``fallback_header``), compared in constant time; never when ``expected`` is empty."""
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else request.headers.get(fallback_header or "", "")
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def validation_error(exc: ValidationError, code: str = "invalid_body") -> ApiError:
    """The 400 of a body its model refuses: the first error's message, naming its field (its
    location joined by ".", ``image_points.2.0``; none for the body as a whole)."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    return ApiError(400, code, f"{field or 'body'}: {first['msg']}", field=field)


def parse_id(raw: str, code: str, what: str) -> int:
    """A path id (a positive PostgreSQL integer), else 404 ``code``."""
    if not raw.isdigit() or len(raw) > 10 or not 0 < int(raw) <= PG_INT_MAX:
        raise ApiError(404, code, f"no {what} with id {raw[:40]!r}")
    return int(raw)


def parse_video_id(raw: str) -> int:
    return parse_id(raw, "video_not_found", "video")


class NotFoundHandler(BaseHandler):
    async def prepare(self) -> None:
        access.check_host(self.application, self.request)
        raise ApiError(404, "not_found", f"no route for {self.request.method} {self.request.path}")
