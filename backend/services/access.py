"""Access rules of every request (issue 17), applied by ``BaseHandler.prepare`` and the client
WebSocket before its upgrade:

1. **Host**: the Host header must name an allowed host (``ALLOWED_HOSTS``): a DNS-rebinding page
   reaches the backend under a name of its own and is refused (400 ``host_not_allowed``).
2. **Who**: ``Authorization: Bearer <API token>`` or the signed session cookie, looked up in
   PostgreSQL (``services.accounts``); 401 without either on a route that is not public.
3. **Role**: the handler's ``access`` names, per method, "public" or the least role; 403 below it.
   A method without a rule is refused (fail closed), so that a new handler cannot be forgotten.
4. **Cross-site**: a state-changing request (POST, PUT, DELETE) with an ``Origin`` must come from
   an allowed origin (403 ``origin_refused``); one authenticated by the cookie must also be JSON or
   carry ``X-Requested-With`` (403 ``csrf_refused``), which a cross-site form cannot send without
   a CORS preflight. A bearer token is never sent by a browser on its own: no such check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from tornado.httputil import HTTPServerRequest
from tornado.web import RequestHandler

from backend.db.account_models import ROLES
from backend.services import accounts
from backend.services.accounts import Principal
from backend.services.errors import ServiceError

if TYPE_CHECKING:
    from backend.app import TrafficApplication
    from backend.handlers.base import BaseHandler

SESSION_COOKIE = "traffic_session"
PUBLIC = "public"
WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # API answers are data, never a page: nothing loads from them, nothing frames them
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# The dashboard's page (``FrontendHandler``): its own scripts and styles (Angular sets inline
# styles), images from the API and blob/data URLs (the live canvas), the WebSocket on its origin.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self' ws: wss:; font-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def hostname(host: str) -> str:
    """``Host`` without its port (``[::1]:8686`` -> ``::1``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_host(app: TrafficApplication, request: HTTPServerRequest) -> None:
    allowed = app.config.allowed_hosts
    if "*" in allowed or hostname(request.host or "") in allowed:
        return
    raise ServiceError(
        400, "host_not_allowed", f"host {request.host[:80]!r} is not served here (ALLOWED_HOSTS)"
    )


def origin_allowed(app: TrafficApplication, request: HTTPServerRequest, origin: str) -> bool:
    """An allowed origin (``ALLOWED_ORIGINS``), or the backend's own origin: the one the request
    names in its Host (which ``check_host`` has already held to ``ALLOWED_HOSTS``)."""
    if app.origin_allowed(origin):
        return True
    parsed = urlparse(origin)
    return bool(parsed.netloc) and parsed.netloc.lower() == (request.host or "").lower()


def is_json(request: HTTPServerRequest) -> bool:
    kind = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return kind == "application/json"


async def authenticate(handler: RequestHandler, app: TrafficApplication) -> Principal | None:
    """The caller by its bearer token, else by its session cookie; None when it shows neither.
    A bearer token that is not valid is a 401 (never silently ignored for the cookie)."""
    header = handler.request.headers.get("Authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise ServiceError(401, "unauthorized", "Authorization must be 'Bearer <API token>'")
        found = await app.db.run(lambda s: accounts.token_principal(session=s, secret=secret))
        if found is None:
            raise ServiceError(401, "unauthorized", "the API token is not valid (revoked or mistyped)")
        return found
    raw = handler.get_signed_cookie(SESSION_COOKIE, max_age_days=app.config.SESSION_TTL_H / 24 + 1)
    if not raw:
        return None
    secret = raw.decode()
    return await app.db.run(lambda s: accounts.session_principal(session=s, secret=secret))


def rule_of(handler: BaseHandler) -> str | None:
    method = handler.request.method or ""
    rules = type(handler).access
    return rules.get(method) or (rules.get("GET") if method == "HEAD" else None)


async def admit(handler: BaseHandler) -> None:
    app, request = handler.application, handler.request
    check_host(app, request)
    method = request.method or ""
    if method == "OPTIONS":  # the CORS preflight carries no credentials; it grants nothing
        return
    rule = rule_of(handler)
    if rule is None:
        implemented = getattr(type(handler), method.lower(), None) is not getattr(
            RequestHandler, method.lower(), None
        )
        if implemented:
            raise ServiceError(500, "internal_error", f"{type(handler).__name__}.{method} has no access rule")
        raise ServiceError(405, "method_not_allowed", f"{method} is not allowed on {request.path}")
    origin = request.headers.get("Origin")
    if method in WRITE_METHODS and origin is not None and not origin_allowed(app, request, origin):
        raise ServiceError(403, "origin_refused", f"requests from {origin[:80]!r} are not allowed")
    if rule == PUBLIC:
        return
    principal = await authenticate(handler, app)
    if principal is None:
        raise ServiceError(
            401, "unauthorized", "log in first (session cookie) or send Authorization: Bearer <API token>"
        )
    handler.principal = principal
    if not principal.may(rule):
        raise ServiceError(
            403,
            "forbidden",
            f"{method} {request.path} needs the {rule} role; {principal.username} is {principal.role}",
        )
    if (
        method in WRITE_METHODS
        and principal.via == "session"
        and not (is_json(request) or request.headers.get("X-Requested-With"))
    ):
        raise ServiceError(
            403, "csrf_refused", "a request with the session cookie must be JSON or carry X-Requested-With"
        )


def role_at_least(role: str) -> list[str]:
    return list(ROLES[ROLES.index(role) :])
