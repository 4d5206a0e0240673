"""The OpenAPI 3.1 document of the API (``GET /api/openapi.json``), generated from the pydantic
models of ``backend.schemas`` and the route table below (path, method, summary, request model,
response model per status). Every error answers ``ErrorResponse`` (``{"error": {"code",
"message"}}``).

Access (issue 17) is derived from each route's handler, not written twice: its ``access`` rule
for the method gives the operation's security (none when "public", else the session cookie or a
bearer API token), its 401 (any role) and 403 (operator and admin: the role; POST, PUT and DELETE:
the cross-site refusals ``origin_refused`` / ``csrf_refused``); a JSON request body adds 415.
``backend/tests/test_openapi.py`` checks that the table lists exactly the application's routes
and that every documented response is what the API really answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from backend.schemas import (
    AnalyticsOut,
    AuditListOut,
    CalibrationIn,
    CalibrationOut,
    CameraIn,
    CameraUpdateIn,
    ErrorResponse,
    HealthOut,
    LoginIn,
    LoginOut,
    PassageListOut,
    PasswordChangeIn,
    SessionUserOut,
    StreamStartIn,
    StreamStartOut,
    StreamStopOut,
    TokenCreatedOut,
    TokenIn,
    TokenListOut,
    TrafficReportOut,
    UploadForm,
    UserIn,
    UserListOut,
    UserOut,
    UserUpdateIn,
    VideoListOut,
    VideoOut,
    ViolationListOut,
    ViolationOut,
    WebSocketStatusOut,
)
from backend.services.access import PUBLIC, SESSION_COOKIE
from backend.services.report import INTERVALS, WINDOW_CSV_HEAD, WINDOW_CSV_TAIL
from contracts.messages import Passage

REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Response:
    """One documented response: a JSON ``model``, or another ``media`` type, or no body."""

    description: str
    model: type[BaseModel] | None = None
    media: str | None = None  # e.g. "image/jpeg"; with ``model`` too: an alternative (CSV) body
    csv_of: type[BaseModel] | None = None  # the CSV alternative's rows: one column per field
    # or its columns named here; "prefix_<name>..." stands for zero or more columns prefix_*
    csv_columns: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # (name, description) of response headers


def error(description: str) -> Response:
    return Response(description, ErrorResponse)


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    summary: str
    responses: dict[int, Response]
    request: type[BaseModel] | None = None
    request_media: str = "application/json"
    request_required: bool = True
    query: tuple[dict[str, Any], ...] = ()
    description: str = ""
    # Only for the WebSocket endpoints (their handlers check credentials before the upgrade, and
    # have no ``access`` rule): the security schemes. Every other operation's comes from its rule.
    security: tuple[str, ...] = ()


USER_SECURITY = ("sessionCookie", "bearerToken")  # either one
WRITE_METHODS = ("post", "put", "delete", "patch")
VIDEO_404 = error("Unknown video id (video_not_found)")
USER_404 = error("Unknown user id (user_not_found)")
TOKEN_404 = error("Unknown token id, or another user's (token_not_found)")
LAST_ADMIN_409 = error("It would leave no enabled admin (last_admin)")
UNAUTHORIZED_401 = error(
    "No credentials, or a session or API token that is not valid (expired, logged out, revoked, "
    "the user disabled): log in (session cookie) or send Authorization: Bearer <API token> "
    "(unauthorized)"
)
CAMERA_422 = error(
    "The camera cannot be read: camera_unreachable, camera_auth_failed, camera_not_found, "
    "camera_no_video, camera_unsupported_codec or camera_timeout"
)
AIRFLOW_502 = error("Airflow answered unexpectedly (airflow_error); nothing was changed")
AIRFLOW_503 = error("Airflow unreachable (airflow_unavailable); nothing was changed")
FORMAT = {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}}
JPEG = Response("JPEG", media="image/jpeg")
REPORT_WINDOW = (
    {
        "name": "from",
        "in": "query",
        "description": "ISO 8601 (Z or an offset; without one: UTC), inclusive; default: to - 24 h",
        "schema": {"type": "string"},
    },
    {
        "name": "to",
        "in": "query",
        "description": "ISO 8601 (Z or an offset; without one: UTC), exclusive; default: now",
        "schema": {"type": "string"},
    },
    {
        "name": "interval",
        "in": "query",
        "description": "default 15m; intervals start on the UTC clock boundaries of their length",
        "schema": {"type": "string", "enum": list(INTERVALS)},
    },
)
REPORT_CSV_COLUMNS = (
    *WINDOW_CSV_HEAD,
    "volume_<class>...",
    "volume_<direction>...",
    *WINDOW_CSV_TAIL,
)
UPGRADE = Response("Switching protocols (WebSocket)")
AUDIT_QUERY = (
    {
        "name": "limit",
        "in": "query",
        "description": "at most this many entries (default 100)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    {
        "name": "before",
        "in": "query",
        "description": "only entries older than this id (the next page: the last id seen)",
        "schema": {"type": "integer", "minimum": 1},
    },
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "/api/videos/upload",
        "post",
        "Upload a video (streamed to disk, probed with OpenCV)",
        {
            201: Response("Stored", VideoOut),
            400: error(
                "A missing field (missing_field, missing_filename); a name over 255 characters or "
                "not UTF-8 (invalid_name: refused as soon as its part ends, before a later file part "
                "is written); a file name that is a path (invalid_filename); a malformed body or "
                "field (invalid_multipart, invalid_field, field_too_large); an empty, unreadable or "
                "truncated video (empty_file, invalid_video); a bad ROI or fps (invalid_roi, invalid_fps)"
            ),
            413: error("Over MAX_UPLOAD_MB (payload_too_large)"),
            415: error("Not a video extension (unsupported_type)"),
            422: error(
                "The video is beyond a limit, as its headers declare (read in a subprocess before "
                "anything decodes it) or as decoded: video_too_large (a frame over MAX_VIDEO_PIXELS, "
                "or the header probe over PROBE_MEMORY_MB), video_too_long (over "
                "MAX_VIDEO_DURATION_S, at the form's fps too), frame_rate_too_high (over "
                "MAX_VIDEO_FPS, the form's fps too), probe_timeout (reading the headers took over "
                "PROBE_TIMEOUT_S); nothing is stored"
            ),
            507: error(
                "The video storage is full (insufficient_storage): a Content-Length over its free "
                "space (answered before the body is read), or the disk filled while the file or "
                "its thumbnail was written; nothing is left"
            ),
        },
        request=UploadForm,
        request_media="multipart/form-data",
    ),
    Operation("/api/videos", "get", "List videos", {200: Response("Videos", VideoListOut)}),
    Operation(
        "/api/videos/{video_id}", "get", "One video", {200: Response("The video", VideoOut), 404: VIDEO_404}
    ),
    Operation(
        "/api/videos/{video_id}",
        "delete",
        "Delete the video, its file and its results (analytics, violations, passages)",
        {204: Response("Deleted"), 404: VIDEO_404, 409: error("The video is being streamed (stop it first)")},
    ),
    Operation(
        "/api/cameras",
        "get",
        "List cameras",
        {200: Response("Cameras", VideoListOut)},
    ),
    Operation(
        "/api/cameras",
        "post",
        "Add a camera: a frame is grabbed to test the connection first",
        {
            201: Response("Added (a video row, source_kind camera; its thumbnail is the snapshot)", VideoOut),
            400: error(
                "Malformed JSON or body (invalid_body), unsupported scheme or malformed URL (invalid_url)"
            ),
            422: CAMERA_422,
        },
        request=CameraIn,
        description="Nothing is stored when the camera cannot be read. The URL's credentials are "
        "kept for the connection and shown as *** in every response.",
    ),
    Operation(
        "/api/cameras/{video_id}",
        "put",
        "Rename a camera and/or point it at another URL (tested first)",
        {
            200: Response("Updated", VideoOut),
            400: error("Malformed JSON or body, bad URL"),
            404: VIDEO_404,
            409: error("The id is an uploaded video, not a camera (not_a_camera)"),
            422: CAMERA_422,
        },
        request=CameraUpdateIn,
    ),
    Operation(
        "/api/cameras/{video_id}/snapshot",
        "post",
        "Grab a new frame from the camera to calibrate on (the thumbnail)",
        {
            200: Response("Refreshed", VideoOut),
            404: VIDEO_404,
            409: error("Not a camera (not_a_camera)"),
            422: CAMERA_422,
        },
    ),
    Operation(
        "/api/videos/{video_id}/calibration",
        "put",
        "Store ROI and fit the image -> road homography",
        {
            200: Response("Calibrated", CalibrationOut),
            400: error(
                "Malformed JSON, unknown field, ROI, points, a point outside the frame, or speed limit "
                "(invalid_speed_limit)"
            ),
            404: VIDEO_404,
            422: error("Degenerate points (collinear, duplicates): degenerate_calibration"),
        },
        request=CalibrationIn,
    ),
    Operation(
        "/api/videos/{video_id}/thumbnail",
        "get",
        "First frame as JPEG",
        {200: JPEG, 404: error("Unknown video, or its file is unreadable (thumbnail_unavailable)")},
    ),
    Operation(
        "/api/videos/{video_id}/stream/start",
        "post",
        "Trigger DAG video_streaming_pipeline with conf {video_id, realtime}",
        {
            201: Response("The DAG run", StreamStartOut),
            400: error(
                "Malformed JSON or body (invalid_json, invalid_body), or realtime false for a camera "
                "(invalid_realtime: a camera streams live only)"
            ),
            404: VIDEO_404,
            409: error("Already streaming"),
            502: AIRFLOW_502,
            503: AIRFLOW_503,
        },
        request=StreamStartIn,
        request_required=False,
        description="Clears the video's stop flag, progress, violations list and live analytics in "
        "Redis, then triggers the DAG. The body is optional (empty: realtime true). A file's stored "
        "results of a previous run are replaced; a camera's accumulate over its runs (run_id).",
    ),
    Operation(
        "/api/videos/{video_id}/stream/stop",
        "post",
        "Ask the running pipeline to stop",
        {
            202: Response("Stopping", StreamStopOut),
            404: VIDEO_404,
            409: error("Not streaming"),
            502: AIRFLOW_502,
            503: AIRFLOW_503,
        },
    ),
    Operation(
        "/api/videos/{video_id}/analytics",
        "get",
        "Final analytics (video_analytics) or the live snapshot",
        {200: Response("Analytics", AnalyticsOut), 404: error("Unknown video or no analytics yet")},
    ),
    Operation(
        "/api/videos/{video_id}/violations",
        "get",
        "Speeding violations (JSON or CSV)",
        {
            200: Response("Violations", ViolationListOut, media="text/csv", csv_of=ViolationOut),
            400: error("Unknown format"),
            404: VIDEO_404,
        },
        query=(FORMAT,),
    ),
    Operation(
        "/api/videos/{video_id}/passages",
        "get",
        "Every counted vehicle of the last stream, by first frame (JSON or CSV)",
        {
            200: Response("Passages", PassageListOut, media="text/csv", csv_of=Passage),
            400: error("Unknown format"),
            404: VIDEO_404,
        },
        query=(FORMAT,),
    ),
    Operation(
        "/api/videos/{video_id}/report",
        "get",
        "Traffic report: totals, class mix, speed histogram, mean and 85th percentile, volume per "
        "minute; over a window: the traffic study per interval (JSON or CSV)",
        {
            200: Response(
                "Report (ReportOut), or with a window WindowReportOut or its CSV (one row per "
                "interval, then start total)",
                TrafficReportOut,
                media="text/csv",
                csv_columns=REPORT_CSV_COLUMNS,
            ),
            400: error(
                "Unknown format (invalid_format); unreadable date, from >= to or more than 2000 "
                "intervals (invalid_window); interval not 5m, 15m or 1h (invalid_interval)"
            ),
            404: VIDEO_404,
        },
        query=(*REPORT_WINDOW, FORMAT),
        description="Without from, to and interval (and format json): the report of every passage "
        "of the video. With any of them, or format=csv: the traffic study over [from, to) of "
        "wall-clock time (passages without passed_at are left out), per interval and in total: "
        "volume by class and direction, mean speed, V50, V85, the 10 km/h pace band and its share, "
        "the share over the video's limit, mean headway.",
    ),
    Operation(
        "/api/violations/{violation_id}/snapshot",
        "get",
        "JPEG crop of the flagged vehicle",
        {
            200: JPEG,
            404: error("Unknown violation (violation_not_found) or no snapshot (snapshot_not_found)"),
        },
    ),
    Operation(
        "/api/auth/login",
        "post",
        "Log in: sets the session cookie",
        {
            200: Response(
                "Logged in",
                LoginOut,
                headers=(
                    (
                        "Set-Cookie",
                        "traffic_session: signed, HttpOnly, SameSite=Strict, Path=/ (Secure on HTTPS)",
                    ),
                ),
            ),
            400: error("Malformed JSON (invalid_json) or body (invalid_body)"),
            401: error(
                "Wrong username or password, or the user is disabled (invalid_credentials; the "
                "same answer for an unknown user)"
            ),
            429: Response(
                "Too many failed logins from this address within a minute (too_many_attempts)",
                ErrorResponse,
                headers=(("Retry-After", "seconds until a login is accepted again"),),
            ),
        },
        request=LoginIn,
        description="Failed logins are counted per client address: after LOGIN_FAILURES_PER_MINUTE "
        "of them, 429 until the minute ends. Every login and failed login is audited.",
    ),
    Operation(
        "/api/auth/logout",
        "post",
        "Log out: ends the session (if any) and clears the cookie",
        {204: Response("Logged out")},
    ),
    Operation("/api/auth/me", "get", "The caller", {200: Response("The logged-in user", SessionUserOut)}),
    Operation(
        "/api/auth/password",
        "post",
        "Change the caller's own password",
        {
            204: Response(
                "Changed: every session of the user ended; with the session cookie, a fresh one",
                headers=(
                    (
                        "Set-Cookie",
                        "only when the request came with the session cookie: traffic_session of a "
                        "new session (signed, HttpOnly, SameSite=Strict, Path=/; Secure on HTTPS)",
                    ),
                ),
            ),
            400: error(
                "Malformed JSON or body: new_password 12 characters at least, not the current "
                "password (invalid_json, invalid_body)"
            ),
            401: error(
                "current_password is wrong (invalid_credentials); or no credentials, or a session or "
                "API token that is not valid (unauthorized)"
            ),
            429: Response(
                "Too many failed logins (or wrong current passwords) from this address within a "
                "minute (too_many_attempts)",
                ErrorResponse,
                headers=(("Retry-After", "seconds until an attempt is accepted again"),),
            ),
        },
        request=PasswordChangeIn,
        description="Any logged-in user, with the session cookie or an API token. A wrong current "
        "password counts as a failed login of the address (LOGIN_FAILURES_PER_MINUTE, then 429 until "
        "the minute ends). The new password logs the user out everywhere (API tokens stay valid); a "
        "request with the session cookie gets a new session in its place. Audited (password_change).",
    ),
    Operation("/api/users", "get", "List users", {200: Response("Users", UserListOut)}),
    Operation(
        "/api/users",
        "post",
        "Create a user",
        {
            201: Response("Created", UserOut),
            400: error(
                "Malformed JSON or body: username 1-64 of A-Z a-z 0-9 _ . @ -, password 12 characters "
                "at least, role viewer, operator or admin (invalid_json, invalid_body)"
            ),
            409: error("A user of that name exists (user_exists)"),
        },
        request=UserIn,
    ),
    Operation(
        "/api/users/{user_id}",
        "put",
        "Change a user's role, password or disabled flag",
        {
            200: Response("Updated", UserOut),
            400: error("Malformed JSON or body (invalid_json, invalid_body)"),
            404: USER_404,
            409: LAST_ADMIN_409,
        },
        request=UserUpdateIn,
        description="A new password or disabling the user ends its sessions; disabling it also "
        "revokes its API tokens.",
    ),
    Operation(
        "/api/users/{user_id}",
        "delete",
        "Delete a user (its sessions and API tokens with it)",
        {204: Response("Deleted"), 404: USER_404, 409: LAST_ADMIN_409},
    ),
    Operation(
        "/api/tokens",
        "get",
        "The caller's API tokens (an admin's list: everyone's)",
        {200: Response("Tokens (never their secret)", TokenListOut)},
    ),
    Operation(
        "/api/tokens",
        "post",
        "A new API token of the caller (it acts with the caller's role)",
        {
            201: Response("Created: the secret is in this answer only", TokenCreatedOut),
            400: error("Malformed JSON or body (invalid_json, invalid_body)"),
        },
        request=TokenIn,
    ),
    Operation(
        "/api/tokens/{token_id}",
        "delete",
        "Revoke an API token (one's own; an admin: any)",
        {204: Response("Revoked"), 404: TOKEN_404},
    ),
    Operation(
        "/api/audit",
        "get",
        "The audit log, newest first",
        {
            200: Response("Entries", AuditListOut),
            400: error("limit not in [1, 1000] (invalid_limit), before not an id (invalid_before)"),
        },
        query=AUDIT_QUERY,
        description="Logins and failed logins, uploads, calibrations, starts, stops, deletions, camera, "
        "user and token changes: who, with which role, from which address, and whether it was "
        "refused.",
    ),
    Operation(
        "/api/websocket/status",
        "get",
        "WebSocket connections, channel subscribers, dropped frames and repeats (totals since start)",
        {200: Response("Status", WebSocketStatusOut)},
    ),
    Operation(
        "/api/health",
        "get",
        "Database and Redis reachability",
        {200: Response("Healthy", HealthOut), 503: Response("Degraded", HealthOut)},
    ),
    Operation(
        "/api/openapi.json", "get", "This document", {200: Response("OpenAPI 3.1", media="application/json")}
    ),
    Operation(
        "/metrics", "get", "Prometheus metrics", {200: Response("Text exposition", media="text/plain")}
    ),
    Operation(
        "/ws/client/stream",
        "get",
        "WebSocket: subscribe to processed_frame_{id} / analytics_metrics_{id}",
        {
            101: UPGRADE,
            401: UNAUTHORIZED_401,
            403: Response("Origin refused (Tornado's text answer)", media="text/html"),
        },
        description="Needs a viewer at least: the session cookie (or a bearer API token), checked "
        "before the upgrade. The Origin must be allowed (ALLOWED_ORIGINS) or the backend's own.",
        security=USER_SECURITY,
    ),
    Operation(
        "/ws/backend/processed",
        "get",
        "WebSocket ingest of processed frames (internal token)",
        {101: UPGRADE, 401: error("No or wrong token")},
        security=("internalToken",),
    ),
    Operation(
        "/ws/backend/analytics",
        "get",
        "WebSocket ingest of analytics updates (internal token)",
        {101: UPGRADE, 401: error("No or wrong token")},
        security=("internalToken",),
    ),
)


def access_rule(path: str, method: str, routes: list[tuple[str, Any]]) -> str | None:
    """The ``access`` rule ("public" or the least role) of the handler that serves ``method`` on
    ``path`` in the application's route table; None for a WebSocket handler (it checks its
    credentials itself, before the upgrade: its operation names its ``security``)."""
    sample = re.sub(r"{\w+}", "1", path)
    for pattern, handler in routes:
        if re.fullmatch(pattern, sample):
            rules = getattr(handler, "access", None)
            if rules is None:
                return None
            rule = rules.get(method.upper())
            if rule is None:  # the API refuses it (fail closed): never documented as open
                raise ValueError(f"{handler.__name__} has no access rule for {method.upper()}")
            return str(rule)
    raise ValueError(f"{method.upper()} {path}: no such route")


def forbidden(method: str, rule: str) -> Response:
    """The 403 of an operation: a role too low, and/or a cross-site write refused."""
    reasons = []
    if rule in ("operator", "admin"):
        reasons.append(f"the caller's role is below {rule} (forbidden)")
    if method in WRITE_METHODS:
        reasons.append("an Origin that is not allowed (origin_refused)")
        if rule != PUBLIC:
            reasons.append(
                "sent with the session cookie, neither JSON nor with X-Requested-With (csrf_refused)"
            )
    return error("Refused: " + "; or ".join(reasons))


def with_access(op: Operation, rule: str | None) -> Operation:
    """``op`` with the security and the 401, 403 and 415 answers its access rule implies (the
    responses it lists itself win)."""
    implied: dict[int, Response] = {}
    security, note = op.security, ""
    if rule is not None:
        if rule != PUBLIC:
            security = USER_SECURITY
            implied[401] = UNAUTHORIZED_401
            note = f"Needs the {rule} role at least (session cookie or bearer API token)."
        else:
            note = "Public: no credentials needed."
        if rule in ("operator", "admin") or op.method in WRITE_METHODS:
            implied[403] = forbidden(op.method, rule)
    if op.request is not None and op.request_media == "application/json":
        implied[415] = error("A body that is not Content-Type: application/json (unsupported_media_type)")
    description = " ".join(part for part in (op.description, note) if part)
    return replace(op, responses={**implied, **op.responses}, security=security, description=description)


def operations() -> list[Operation]:
    """``OPERATIONS`` with their access (from the application's own route table)."""
    from backend.app import all_routes  # the handlers import this module: not at import time

    routes = all_routes()
    return [with_access(op, access_rule(op.path, op.method, routes)) for op in OPERATIONS]


def _models(ops: list[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in ops:
        if op.request is not None:
            seen[(op.request, "validation")] = None
        for response in op.responses.values():
            if response.model is not None:
                seen[(response.model, "serialization")] = None
            if response.csv_of is not None:
                seen[(response.csv_of, "serialization")] = None
    return list(seen)


def _parameters(op: Operation) -> list[dict[str, Any]]:
    path = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    return [*path, *op.query]


def _content(response: Response, refs: dict[Any, Any]) -> dict[str, Any] | None:
    content: dict[str, Any] = {}
    if response.model is not None:
        content["application/json"] = {"schema": refs[(response.model, "serialization")]}
    if response.media == "application/json":
        content["application/json"] = {"schema": {"type": "object"}}
    elif response.media is not None:
        schema: dict[str, Any] = {"type": "string"}
        if response.media.startswith("image/"):
            schema["contentMediaType"] = response.media
        columns = response.csv_columns or tuple(response.csv_of.model_fields if response.csv_of else ())
        if columns:
            schema["description"] = f"CSV with a header row; columns: {', '.join(columns)}"
        content[response.media] = {"schema": schema}
    return content or None


def _operation(op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": f"{op.method}_{_slug(op.path)}"}
    if op.description:
        out["description"] = op.description
    if parameters := _parameters(op):
        out["parameters"] = parameters
    if op.request is not None:
        out["requestBody"] = {
            "required": op.request_required,
            "content": {op.request_media: {"schema": refs[(op.request, "validation")]}},
        }
    responses: dict[str, Any] = {}
    for status, response in sorted(op.responses.items()):
        item: dict[str, Any] = {"description": response.description}
        if response.headers:
            item["headers"] = {
                name: {"description": text, "schema": {"type": "string"}} for name, text in response.headers
            }
        if (content := _content(response, refs)) is not None:
            item["content"] = content
        responses[str(status)] = item
    out["responses"] = responses
    if op.security:
        out["security"] = [{name: []} for name in op.security]
    return out


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")


def openapi_document() -> dict[str, Any]:
    """The document, generated from ``OPERATIONS`` and the models they name."""
    ops = operations()
    refs, defs = models_json_schema(_models(ops), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Traffic monitoring backend",
            "version": "0.1.0",
            "description": 'Errors are always JSON: {"error": {"code", "message"}} (ErrorResponse). '
            "Every route but GET /api/health, POST /api/auth/login and POST /api/auth/logout needs "
            "a user (roles viewer < operator < admin): the session cookie set by the login, or "
            "Authorization: Bearer <API token>. A POST, PUT or DELETE sent with the cookie must be "
            "JSON or carry X-Requested-With: XMLHttpRequest; one with an Origin must come from an "
            "allowed origin. A Host header not in ALLOWED_HOSTS gets 400 host_not_allowed.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "set by POST /api/auth/login (signed, HttpOnly, SameSite=Strict)",
                },
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (tms_...) of POST /api/tokens or traffic-admin create-token",
                },
                "internalToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "INTERNAL_TOKEN: the Spark -> backend bridge's ingest only",
                },
            },
        },
    }


@cache
def openapi_json() -> bytes:
    """The document as served: generated once (the models and routes are fixed at start-up)."""
    return json.dumps(openapi_document()).encode()
