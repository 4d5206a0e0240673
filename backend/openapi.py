"""The OpenAPI 3.1 document of the API (``GET /api/openapi.json``), generated from the pydantic
models of ``backend.schemas`` and the route table below (path, method, summary, request model,
response model per status). Every error answers ``ErrorResponse`` (``{"error": {"code",
"message"}}``). ``backend/tests/test_openapi.py`` checks that the table lists exactly the
application's routes and that every documented response is what the API really answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from traffic_processing.schemas import Passage

from backend.schemas import (
    AnalyticsOut,
    CalibrationIn,
    CalibrationOut,
    CameraIn,
    CameraUpdateIn,
    ErrorResponse,
    HealthOut,
    PassageListOut,
    StreamStartIn,
    StreamStartOut,
    StreamStopOut,
    TrafficReportOut,
    UploadForm,
    VideoListOut,
    VideoOut,
    ViolationListOut,
    ViolationOut,
    WebSocketStatusOut,
)
from backend.services.report import INTERVALS, WINDOW_CSV_HEAD, WINDOW_CSV_TAIL

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
    security: tuple[str, ...] = ()


VIDEO_404 = error("Unknown video id (video_not_found)")
CAMERA_401 = error("No or wrong Authorization: Bearer ADMIN_TOKEN (unauthorized)")
CAMERA_403 = error("ADMIN_TOKEN is unset: camera management is off (cameras_disabled)")
CAMERA_ACCESS = {401: CAMERA_401, 403: CAMERA_403}
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

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "/api/videos/upload",
        "post",
        "Upload a video (streamed to disk, probed with OpenCV)",
        {
            201: Response("Stored", VideoOut),
            400: error("Missing field, bad name, empty, unreadable or truncated video, bad ROI or fps"),
            413: error("Over MAX_UPLOAD_MB"),
            415: error("Not a video extension"),
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
        {200: Response("Cameras", VideoListOut), **CAMERA_ACCESS},
        security=("adminToken",),
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
            **CAMERA_ACCESS,
        },
        security=("adminToken",),
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
            **CAMERA_ACCESS,
        },
        security=("adminToken",),
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
            **CAMERA_ACCESS,
        },
        security=("adminToken",),
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
        {101: UPGRADE, 403: Response("Origin refused (Tornado's text answer)", media="text/html")},
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


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in OPERATIONS:
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
    refs, defs = models_json_schema(_models(), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Traffic monitoring backend",
            "version": "0.1.0",
            "description": 'Errors are always JSON: {"error": {"code", "message"}} (ErrorResponse).',
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "internalToken": {"type": "http", "scheme": "bearer"},
                "adminToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }


@cache
def openapi_json() -> bytes:
    """The document as served: generated once (the models and routes are fixed at start-up)."""
    return json.dumps(openapi_document()).encode()
