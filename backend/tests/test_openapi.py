"""The generated OpenAPI document: valid OpenAPI 3.1, generated from the handlers' own declarations
(``openapi``, ``path_params``, ``access``) for exactly the application's routes, its enums and
error fields in the schemas, and every response it documents (each path, method and status) is
what the API really answers: JSON bodies validated against the document's schemas, CSV, JPEG and
text by their content type."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import text

from backend.app import all_routes
from backend.embedded import free_port
from backend.handlers.base import BaseHandler
from backend.openapi import Operation, openapi_document, path_template, route_operations
from backend.openapi import Response as Documented
from backend.schemas import CalibrationIn
from backend.services import probe, uploads
from backend.services.airflow_client import AirflowClient
from backend.tests.client import Response, multipart, put_json, request, upload
from backend.tests.conftest import ORIGIN, PASSWORD, TOKEN, sole_admin
from backend.tests.ws import connect_status
from contracts import streams
from contracts.messages import (
    CameraState,
    ProgressWriter,
    StreamProgress,
    StreamState,
    VideoStatus,
    Violation,
)
from testing.clips import declared_clip

CALIBRATION = {
    "roi_polygon": [[5, 5], [90, 5], [90, 60], [5, 60]],
    "image_points": [[10, 10], [86, 10], [86, 58], [10, 58]],
    "world_points": [[0, 0], [3.5, 0], [3.5, 20], [0, 20]],
}


ID_NAMES = {"/api/violations/": "{violation_id}", "/api/users/": "{user_id}", "/api/tokens/": "{token_id}"}
JSON = {"Content-Type": "application/json"}
EVIL = "http://evil.example"
PUBLIC = {("get", "/api/health"), ("post", "/api/auth/login"), ("post", "/api/auth/logout")}


def to_openapi_path(pattern: str) -> str:
    name = next((n for prefix, n in ID_NAMES.items() if pattern.startswith(prefix)), "{video_id}")
    return re.sub(r"\(\[\^/\]\+\)", name, pattern)


@pytest.fixture(scope="module")
def doc(backend) -> dict[str, Any]:
    r = request(backend.port, "GET", "/api/openapi.json")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    validate_openapi(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc == json.loads(json.dumps(openapi_document()))  # served = generated


def test_every_route_is_documented(doc):
    routes = {to_openapi_path(pattern) for pattern, _ in all_routes()}
    assert routes == set(doc["paths"])


def test_documented_methods_exist(doc):
    handlers = {to_openapi_path(p): h for p, h in all_routes()}
    for path, item in doc["paths"].items():
        for method in item:
            if path.startswith("/ws/"):
                continue
            handler = handlers[path]
            assert getattr(handler, method) is not getattr(handler.__mro__[-2], method, None), (path, method)


def test_operations_are_the_handlers_declarations(doc):
    """Each route's operations are its handler's ``openapi`` (one per method of its ``access``):
    the document has no route table of its own."""
    for pattern, handler in all_routes():
        item = doc["paths"][to_openapi_path(pattern)]
        assert set(item) == {m.lower() for m in handler.openapi}, pattern
        if hasattr(handler, "access"):
            assert set(handler.openapi) == set(handler.access), pattern
        for method, op in handler.openapi.items():
            assert item[method.lower()]["summary"] == op.summary
            assert {str(s) for s in op.responses} <= set(item[method.lower()]["responses"])


def test_a_handler_must_declare_each_method_it_serves():
    """The generation refuses a handler without an operation for a method it has a rule for (or
    the reverse), one without any, and an id group its ``path_params`` does not name."""

    class Undeclared(BaseHandler):
        access = {"GET": "viewer", "DELETE": "admin"}
        openapi = {"GET": Operation("One thing", {200: Documented("It")}, operation_id="getThing")}

    class Silent(BaseHandler):
        access = {"GET": "viewer"}

    class Unnamed(BaseHandler):
        access = {"GET": "viewer"}
        openapi = {"GET": Operation("One thing", {200: Documented("It")}, operation_id="getThing")}

    for handler in (Undeclared, Silent):
        with pytest.raises(ValueError, match=handler.__name__):
            route_operations([("/api/things", handler)])
    with pytest.raises(ValueError, match="path_params"):
        route_operations([("/api/things/([^/]+)", Unnamed)])
    Unnamed.path_params = ("thing_id",)
    assert path_template("/api/things/([^/]+)", Unnamed) == "/api/things/{thing_id}"
    (op,) = route_operations([("/api/things/([^/]+)", Unnamed)])
    assert (op.path, op.method, set(op.responses)) == ("/api/things/{thing_id}", "get", {200, 401})


def test_each_operation_has_its_own_id():
    """The generated client names its methods by ``operation_id``: the generation refuses an
    operation without one, or two with the same one."""

    class Anonymous(BaseHandler):
        access = {"GET": "viewer"}
        openapi = {"GET": Operation("One thing", {200: Documented("It")})}

    class Named(BaseHandler):
        access = {"GET": "viewer"}
        openapi = {"GET": Operation("One thing", {200: Documented("It")}, operation_id="getThing")}

    with pytest.raises(ValueError, match="Anonymous GET"):
        route_operations([("/api/things", Anonymous)])
    with pytest.raises(ValueError, match="Named GET"):
        route_operations([("/api/things", Named), ("/api/other", Named)])
    (op,) = route_operations([("/api/things", Named)])
    assert op.op.operation_id == "getThing"


def test_operations_are_tagged_by_their_resource(doc):
    """One tag per resource (one service of the generated client each): the first segment after
    ``/api/``, a violation's snapshot with the videos, the sockets together."""
    ops = [op for item in doc["paths"].values() for op in item.values()]
    tags = {op["operationId"]: op["tags"] for op in ops}
    assert len(tags) == len(ops)  # no two operations share an id
    assert tags["listVideos"] == tags["getViolationSnapshot"] == ["videos"]
    assert tags["createCamera"] == ["cameras"]
    assert tags["login"] == tags["me"] == ["auth"]
    assert tags["listAudit"] == ["audit"]
    assert tags["clientStream"] == tags["ingestAnalytics"] == ["websocket"]
    assert tags["health"] == tags["metrics"] == tags["websocketStatus"] == ["system"]


def test_enums_and_error_fields_are_in_the_schemas(doc):
    """``VideoOut.status`` is the ``VideoStatus`` enum (the generated TypeScript gets its union);
    an error may name the request field it refuses."""
    schemas = doc["components"]["schemas"]
    assert schemas["VideoStatus"]["enum"] == [s.value for s in VideoStatus]
    status = schemas["VideoOut"]["properties"]["status"]
    assert {"$ref": "#/components/schemas/VideoStatus"} in status["anyOf"]
    assert "field" in schemas["ApiErrorBody"]["properties"]
    assert "field" not in schemas["ApiErrorBody"]["required"]


def test_security_follows_the_access_rules(doc):
    """Public operations (no security, no 401) are exactly the public ones; every other one takes
    the session cookie or a bearer API token and documents 401; the operator and admin ones 403."""
    handlers = {to_openapi_path(p): h for p, h in all_routes()}
    schemes = doc["components"]["securitySchemes"]
    assert schemes["sessionCookie"] == {**schemes["sessionCookie"], "type": "apiKey", "in": "cookie"}
    assert schemes["sessionCookie"]["name"] == "traffic_session"
    assert schemes["bearerToken"]["scheme"] == "bearer" and "adminToken" not in schemes
    public = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path.startswith("/ws/backend/"):
                assert op["security"] == [{"internalToken": []}]
                continue
            if path == "/ws/client/stream":  # the handler checks the login before the upgrade
                assert op["security"] == [{"sessionCookie": []}, {"bearerToken": []}]
                assert {"101", "401", "403"} <= set(op["responses"])
                continue
            if "security" not in op:
                public.add((method, path))
                continue
            assert op["security"] == [{"sessionCookie": []}, {"bearerToken": []}], (method, path)
            assert "401" in op["responses"], (method, path)
            rule = getattr(handlers[path], "access", {}).get(method.upper(), "viewer")
            assert ("403" in op["responses"]) == (rule != "viewer" or method != "get"), (method, path)
            if method in ("post", "put", "delete"):
                assert "origin_refused" in op["responses"]["403"]["description"], (method, path)
    assert public == PUBLIC


def test_refs_resolve(doc):
    refs = set(re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(doc)))
    assert refs and refs <= set(doc["components"]["schemas"])


def test_every_error_is_the_error_model(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if int(status) >= 400 and "application/json" in response.get("content", {}):
                    schema = response["content"]["application/json"]["schema"]
                    if not (path == "/api/health" and status == "503"):
                        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (
                            path,
                            method,
                            status,
                        )
    error = doc["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    assert doc["components"]["schemas"]["ApiErrorBody"]["required"] == ["code", "message"]


# ---- the calibration body -------------------------------------------------------------------


def test_calibration_schema_is_what_the_handler_accepts(doc):
    """The document's CalibrationIn lists exactly the fields the handler's model accepts, the same
    required ones and limits; nothing else is allowed."""
    schema = doc["components"]["schemas"]["CalibrationIn"]
    fields = CalibrationIn.model_fields
    assert (
        set(schema["properties"])
        == set(fields)
        == {"roi_polygon", "image_points", "world_points", "speed_limit_kmh"}
    )
    assert set(schema["required"]) == {name for name, f in fields.items() if f.is_required()}
    assert schema["additionalProperties"] is False
    assert CalibrationIn.model_config["extra"] == "forbid"
    for name in ("roi_polygon", "image_points", "world_points"):
        (min_length,) = [m.min_length for m in fields[name].metadata if hasattr(m, "min_length")]
        assert schema["properties"][name]["minItems"] == min_length, name
        point = schema["properties"][name]["items"]
        assert (point["minItems"], point["maxItems"]) == (2, 2), name
    put = doc["paths"]["/api/videos/{video_id}/calibration"]["put"]
    assert put["requestBody"]["required"] is True
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CalibrationIn"
    }


CALIBRATION_BODIES = [
    CALIBRATION,
    {**CALIBRATION, "speed_limit_kmh": 50},
    {**CALIBRATION, "speed_limit_kmh": None},
    {**CALIBRATION, "speed_limit_kmh": 400},
    {**CALIBRATION, "speed_limit_kmh": 400.5},
    {**CALIBRATION, "speed_limit_kmh": 0},
    {**CALIBRATION, "speed_limit_kmh": True},
    {**CALIBRATION, "speed_limit_kmh": "50"},
    {**CALIBRATION, "roi": CALIBRATION["roi_polygon"]},
    {**CALIBRATION, "extra": 1},
    {k: v for k, v in CALIBRATION.items() if k != "world_points"},
    {**CALIBRATION, "roi_polygon": CALIBRATION["roi_polygon"][:2]},
    {**CALIBRATION, "image_points": [[10, 10, 1], [86, 10], [86, 58], [10, 58]]},
    {**CALIBRATION, "world_points": [[0, 0], [3.5, 0], [3.5, 20], ["a", 20]]},
    [CALIBRATION],
]


def test_calibration_schema_accepts_what_the_handler_accepts(api, doc, sample_video):
    """Each body: valid for the document's schema exactly when the handler does not refuse it as
    malformed (400 ``invalid_calibration`` / ``invalid_speed_limit``)."""
    validator = schema_validator(doc, {"$ref": "#/components/schemas/CalibrationIn"})
    vid = upload(api.port, {"name": "calibration"}, {"video": ("c.mp4", sample_video.read_bytes())}).json()[
        "id"
    ]
    for body in CALIBRATION_BODIES:
        r = put_json(api.port, f"/api/videos/{vid}/calibration", body)
        refused = r.status == 400 and r.error_code in ("invalid_calibration", "invalid_speed_limit")
        assert r.status in (200, 400), (body, r.body)
        assert validator.is_valid(body) is not refused, (body, r.body)


# ---- every documented response, for real ----------------------------------------------------


def schema_validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) of ``schema``, its
    ``#/components/schemas/...`` references resolved in the document."""
    return Draft202012Validator(
        {**schema, "components": doc["components"]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


class Checker:
    """Checks real responses against the document and records which documented ones were seen."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()
        self.media: set[tuple[str, str, str, str]] = set()

    def documented(self) -> set[tuple[str, str, str]]:
        return {
            (path, method, status)
            for path, item in self.doc["paths"].items()
            for method, op in item.items()
            for status in op["responses"]
        }

    def documented_media(self) -> set[tuple[str, str, str, str]]:
        return {
            (path, method, status, media)
            for path, item in self.doc["paths"].items()
            for method, op in item.items()
            for status, response in op["responses"].items()
            for media in response.get("content", {})
        }

    def __call__(self, path: str, method: str, r: Response | int) -> Response | int:
        status = str(r if isinstance(r, int) else r.status)
        op = self.doc["paths"][path][method]
        body = b"" if isinstance(r, int) else r.body
        assert status in op["responses"], (path, method, status, body[:300])
        self.seen.add((path, method, status))
        content = op["responses"][status].get("content")
        if isinstance(r, int):  # a WebSocket upgrade: no body
            assert content is None, (path, status)
            return r
        media = r.headers.get("Content-Type", "").split(";")[0].strip()
        if content is None:
            assert r.body == b"", (path, method, status, r.body[:300])
            return r
        assert media in content, (path, method, status, media, list(content))
        self.media.add((path, method, status, media))
        schema = content[media]["schema"]
        if media == "application/json":
            errors = sorted(schema_validator(self.doc, schema).iter_errors(r.json()), key=str)
            assert not errors, (path, method, status, [e.message for e in errors[:5]], r.body[:300])
        elif media == "text/csv":
            columns = re.search(r"columns: (.+)$", schema["description"]).group(1).split(", ")
            rows = list(csv.reader(io.StringIO(r.body.decode("utf-8"))))
            assert csv_header_matches(rows[0], columns), (path, rows[0], columns)
            assert all(len(row) == len(rows[0]) for row in rows[1:]), path
        elif media.startswith("image/jpeg"):
            assert r.body[:3] == b"\xff\xd8\xff" and r.body[-2:] == b"\xff\xd9", path
        else:
            assert r.body.decode("utf-8"), (path, media)
        return r


def csv_header_matches(header: list[str], columns: list[str]) -> bool:
    """The header is the documented columns, where ``prefix_<name>...`` stands for zero or more
    columns ``prefix_*`` (the report's volume per class and per direction)."""
    pattern = "".join(
        f"(?:{re.escape(c[: c.index('<')])}[^,]+,)*" if c.endswith("...") else f"{re.escape(c)},"
        for c in columns
    )
    return re.fullmatch(pattern, ",".join(header) + ",") is not None


def add_stored_results(api, engine, vid: int) -> int:
    """An analytics row, a violation with a snapshot file and a passage; returns the violation id."""
    snapshot = api.storage / "snapshots" / str(vid) / "7.jpg"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO video_analytics (video_id, total_vehicles_count, avg_dwell_time,"
                " vehicle_type_distribution, speeding_count) VALUES (:v, 1, 2.5, '{\"car\": 1}', 1)"
            ),
            {"v": vid},
        )
        violation_id = conn.execute(
            text(
                "INSERT INTO speeding_violations (video_id, track_id, vehicle_class, speed_kmh,"
                " frame_number, video_time_s, detected_at, snapshot_path)"
                " VALUES (:v, 7, 'car', 91.5, 12, 1.2, '2025-06-15 12:00:00', :p) RETURNING id"
            ),
            {"v": vid, "p": str(snapshot)},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO vehicle_passages (video_id, track_id, class_name, first_frame, last_frame,"
                " first_time_s, last_time_s, dwell_time_s, speed_kmh, max_speed_kmh, speeding,"
                " passed_at, direction)"
                " VALUES (:v, 7, 'car', 5, 30, 0.5, 3.0, 2.5, 91.5, 95.0, true,"
                " '2025-06-15 12:00:03', 'approaching')"
            ),
            {"v": vid},
        )
    return violation_id


def check_upload_limits(api, doc: dict[str, Any], check: Checker, video_bytes: bytes, tmp_path: Path) -> None:
    """The upload's refusals of issue 17: each 422 code its description names, a 300-byte name
    (400 invalid_name), a full disk (507 before the body)."""
    port, up = api.port, "/api/videos/upload"
    responses = doc["paths"][up]["post"]["responses"]
    huge = declared_clip(tmp_path / "huge.mkv", 16000, 16000)  # a header-only clip: nothing to decode
    refusals = {
        "video_too_large": upload(port, {"name": "huge"}, {"video": ("huge.mkv", huge.read_bytes())}),
        "frame_rate_too_high": upload(port, {"name": "x", "fps": "500"}, {"video": ("v.mp4", video_bytes)}),
    }
    api.configure(MAX_VIDEO_DURATION_S=60)
    try:  # 30 frames at the form's 0.1 frames/s: 300 s
        refusals["video_too_long"] = upload(
            port, {"name": "x", "fps": "0.1"}, {"video": ("v.mp4", video_bytes)}
        )
    finally:
        api.configure()
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(probe, "probe_command", lambda path, limits: hang)
        api.configure(PROBE_TIMEOUT_S=0.5)
        try:
            refusals["probe_timeout"] = upload(port, {"name": "x"}, {"video": ("v.mp4", video_bytes)})
        finally:
            api.configure()
    for code, r in refusals.items():
        check(up, "post", r)
        assert (r.status, r.error_code) == (422, code), r.body
        assert code in responses["422"]["description"], code
    long_name = upload(port, {"name": "n" * 300}, {"video": ("v.mp4", video_bytes)})
    check(up, "post", long_name)
    assert (long_name.status, long_name.error_code) == (400, "invalid_name"), long_name.body
    assert "invalid_name" in responses["400"]["description"]
    with pytest.MonkeyPatch.context() as patch:  # 1 MB free; the upload says 3 MB and sends nothing
        patch.setattr(uploads.shutil, "disk_usage", lambda path: SimpleNamespace(free=2**20))
        head = {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(3 * 2**20)}
        full = request(port, "POST", up, b"", head, timeout=10)
    check(up, "post", full)
    assert (full.status, full.error_code) == (507, "insufficient_storage"), full.body
    assert "insufficient_storage" in responses["507"]["description"]


def test_every_documented_response_is_real(
    api, doc, sample_video, db_engine, sync_redis, rtsp_camera, tmp_path
):
    check = Checker(doc)
    port = api.port

    def call(method: str, path: str, template: str, body: bytes | None = None, **kw: Any) -> Response:
        r = request(port, method.upper(), path, body, **kw)
        check(template, method, r)
        return r

    video_bytes = sample_video.read_bytes()
    up = "/api/videos/upload"

    # upload
    created = upload(port, {"name": "openapi"}, {"video": ("v.mp4", video_bytes)})
    check(up, "post", created)
    assert created.status == 201
    vid = created.json()["id"]
    check(up, "post", upload(port, {}, {"video": ("v.mp4", video_bytes)}))  # 400: no name
    check(up, "post", upload(port, {"name": "x"}, {"video": ("v.txt", video_bytes)}))  # 415
    api.configure(MAX_UPLOAD_MB=0.01)
    try:  # 413: sent chunked (no Content-Length), so the limit is hit while the body streams
        big, content_type = multipart({"name": "x"}, {"video": ("v.mp4", b"\0" * 200_000)})
        call("post", up, up, iter([big]), headers={"Content-Type": content_type})
    finally:
        api.configure()
    check_upload_limits(api, doc, check, video_bytes, tmp_path)

    # videos
    call("get", "/api/videos", "/api/videos")
    one = "/api/videos/{video_id}"
    call("get", f"/api/videos/{vid}", one)
    call("get", "/api/videos/424242", one)

    # calibration
    cal = "/api/videos/{video_id}/calibration"
    calibrated = put_json(port, f"/api/videos/{vid}/calibration", {**CALIBRATION, "speed_limit_kmh": 70})
    check(cal, "put", calibrated)
    assert calibrated.status == 200
    unknown = put_json(port, f"/api/videos/{vid}/calibration", {**CALIBRATION, "roi": []})
    assert check(cal, "put", unknown).json()["error"]["field"] == "roi"  # 400, naming the field
    check(cal, "put", put_json(port, "/api/videos/424242/calibration", CALIBRATION))  # 404
    degenerate = {**CALIBRATION, "image_points": [[0, 0], [1, 1], [2, 2], [3, 3]]}
    refused = put_json(port, f"/api/videos/{vid}/calibration", degenerate)
    assert check(cal, "put", refused).json()["error"]["field"] == "image_points"  # 422

    # thumbnail
    thumb = "/api/videos/{video_id}/thumbnail"
    call("get", f"/api/videos/{vid}/thumbnail", thumb)
    call("get", "/api/videos/424242/thumbnail", thumb)

    # results: none yet, then live, then stored
    analytics = "/api/videos/{video_id}/analytics"
    violations = "/api/videos/{video_id}/violations"
    passages = "/api/videos/{video_id}/passages"
    report = "/api/videos/{video_id}/report"
    assert call("get", f"/api/videos/{vid}/analytics", analytics).status == 404
    call("get", "/api/videos/424242/analytics", analytics)
    summary = {"total_vehicles_count": 3, "avg_dwell_time": 1.5, "vehicle_type_distribution": {"car": 3}}
    sync_redis.set(streams.analytics_key(vid), json.dumps({**summary, "speeding_count": 1}), ex=60)
    live = Violation(
        track_id=3, vehicle_class="car", speed_kmh=88.0, frame_number=9, video_time_s=0.9, detected_at=1.75e9
    )
    sync_redis.rpush(streams.violations_key(vid), live.model_dump_json())
    try:
        assert call("get", f"/api/videos/{vid}/analytics", analytics).json()["source"] == "live"
        assert call("get", f"/api/videos/{vid}/violations", violations).json()["source"] == "live"
        call("get", f"/api/videos/{vid}/violations?format=csv", violations)
    finally:
        sync_redis.delete(streams.analytics_key(vid), streams.violations_key(vid))
    violation_id = add_stored_results(api, db_engine, vid)
    assert call("get", f"/api/videos/{vid}/analytics", analytics).json()["source"] == "final"
    assert call("get", f"/api/videos/{vid}/violations", violations).json()["source"] == "stored"
    csv_rows = call("get", f"/api/videos/{vid}/violations?format=csv", violations).body.decode().splitlines()
    assert len(csv_rows) == 2
    call("get", f"/api/videos/{vid}/violations?format=xml", violations)  # 400
    call("get", "/api/videos/424242/violations", violations)
    assert len(call("get", f"/api/videos/{vid}/passages", passages).json()["passages"]) == 1
    call("get", f"/api/videos/{vid}/passages?format=csv", passages)
    call("get", f"/api/videos/{vid}/passages?format=xml", passages)  # 400
    call("get", "/api/videos/424242/passages", passages)
    assert call("get", f"/api/videos/{vid}/report", report).json()["speed"]["limit_kmh"] == 70
    call("get", "/api/videos/424242/report", report)
    window = f"/api/videos/{vid}/report?from=2025-06-15T11:00:00Z&to=2025-06-15T13:00:00Z&interval=1h"
    assert call("get", window, report).json()["total"]["volume_by_class"] == {"car": 1}
    csv_report = call("get", f"{window}&format=csv", report).body.decode().splitlines()
    assert "volume_car" in csv_report[0] and len(csv_report) == 4
    call("get", f"/api/videos/{vid}/report?interval=2h", report)  # 400
    snap = "/api/violations/{violation_id}/snapshot"
    assert call("get", f"/api/violations/{violation_id}/snapshot", snap).status == 200
    call("get", "/api/violations/424242/snapshot", snap)

    # stream start / stop, delete while streaming
    start, stop = "/api/videos/{video_id}/stream/start", "/api/videos/{video_id}/stream/stop"
    assert call("post", f"/api/videos/{vid}/stream/start", start, b"").status == 201
    assert call("post", f"/api/videos/{vid}/stream/start", start, b"").status == 409
    call("post", f"/api/videos/{vid}/stream/start", start, b'{"realtime": "no"}', headers=JSON)  # 400
    call("post", "/api/videos/424242/stream/start", start, b"")
    assert call("delete", f"/api/videos/{vid}", one).status == 409
    assert call("post", f"/api/videos/{vid}/stream/stop", stop, b"").status == 202
    api.airflow_state.finish_all()
    assert call("post", f"/api/videos/{vid}/stream/stop", stop, b"").status == 409
    call("post", "/api/videos/424242/stream/stop", stop, b"")
    original = api.app.airflow
    refused = AirflowClient(
        f"http://127.0.0.1:{api.airflow_port}", username="admin", password="wrong", retries=1, timeout_s=2
    )
    for airflow in (api.airflow_client(f"http://127.0.0.1:{free_port()}"), refused):  # 503, 502
        api.app.airflow = airflow
        try:
            call("post", f"/api/videos/{vid}/stream/start", start, b"")
            call("post", f"/api/videos/{vid}/stream/stop", stop, b"")
        finally:
            api.app.airflow = original

    # cameras (a real RTSP server on loopback; adding and changing one needs an operator)
    cams, cam_one, cam_snap = "/api/cameras", "/api/cameras/{video_id}", "/api/cameras/{video_id}/snapshot"
    admin = {"headers": JSON}
    added = call("post", cams, cams, json.dumps({"name": "cam", "url": rtsp_camera.url}).encode(), **admin)
    assert added.status == 201
    cid = added.json()["id"]
    call("post", cams, cams, b'{"name": "cam", "url": "ftp://x/y"}', **admin)  # 400
    gone = rtsp_camera.url.replace("/cam", "/gone")
    call("post", cams, cams, json.dumps({"name": "cam", "url": gone}).encode(), **admin)  # 422
    call("get", cams, cams, **admin)
    assert call("put", f"/api/cameras/{cid}", cam_one, b'{"name": "renamed"}', **admin).status == 200
    call("put", f"/api/cameras/{cid}", cam_one, b'{"name": 1}', **admin)  # 400
    call("put", "/api/cameras/424242", cam_one, b'{"name": "x"}', **admin)  # 404
    call("put", f"/api/cameras/{vid}", cam_one, b'{"name": "x"}', **admin)  # 409: a file
    call("put", f"/api/cameras/{cid}", cam_one, json.dumps({"url": gone}).encode(), **admin)  # 422
    assert call("post", f"/api/cameras/{cid}/snapshot", cam_snap, **admin).status == 200
    call("post", "/api/cameras/424242/snapshot", cam_snap, **admin)
    call("post", f"/api/cameras/{vid}/snapshot", cam_snap, **admin)  # 409
    api.app.config = api.base_config.model_copy(update={"CAMERA_TIMEOUT_S": 1.0})
    rtsp_camera.stop()  # the camera gone: the refresh cannot read it
    try:
        assert call("post", f"/api/cameras/{cid}/snapshot", cam_snap, **admin).status == 422
    finally:
        rtsp_camera.start()
        api.configure()
    # a camera streams live only; its health (here from a live producer's progress) in its answers
    assert (
        call("post", f"/api/videos/{cid}/stream/start", start, b'{"realtime": false}', headers=JSON).status
        == 400
    )
    assert call("post", f"/api/videos/{cid}/stream/start", start, b"").status == 201
    progress = StreamProgress.update(
        ProgressWriter.PRODUCER,
        state=StreamState.PRODUCING,
        camera_state=CameraState.LIVE,
        last_frame_at=time.time(),
        input_fps=25.0,
        reconnects=1,
        camera_error="reconnected after a timeout",
    )
    sync_redis.hset(streams.progress_key(cid), mapping=progress)
    try:
        assert call("get", f"/api/videos/{cid}", one).json()["health"]["state"] == "live"
        listed = call("get", "/api/videos", "/api/videos").json()["videos"]
        assert {v["id"]: v["health"] for v in listed}[cid]["reconnects"] == 1
        cameras = call("get", cams, cams, **admin).json()["videos"]
        assert {v["id"]: v["health"] for v in cameras}[cid]["input_fps"] == 25.0
        call("get", "/metrics", "/metrics")
    finally:
        sync_redis.delete(streams.progress_key(cid))
    api.airflow_state.finish_all()
    assert call("delete", f"/api/videos/{cid}", one).status == 204

    # delete
    assert call("delete", f"/api/videos/{vid}", one).status == 204
    call("delete", f"/api/videos/{vid}", one)  # 404

    # accounts: login, logout, the caller, users, tokens, the audit log
    check_accounts(api, call, sync_redis, db_engine)

    # every operation's access: 401 without credentials, 403 for a viewer below its role or a
    # foreign Origin on a write, 415 for a JSON body sent as another type
    check_access(api, doc, call, sync_redis)

    # system routes
    call("get", "/api/websocket/status", "/api/websocket/status")
    call("get", "/api/openapi.json", "/api/openapi.json")
    call("get", "/metrics", "/metrics")
    health = "/api/health"
    assert call("get", health, health).status == 200
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    healthy_redis, api.app.redis = api.app.redis, dead
    try:
        assert call("get", health, health).json()["checks"]["redis"].startswith("error")
    finally:
        api.app.redis = healthy_redis
        api.loop.call(dead.aclose)

    # WebSocket endpoints: the upgrade, and the refusals
    ws = f"ws://127.0.0.1:{port}"
    client = "/ws/client/stream"
    check(client, "get", asyncio.run(connect_status(f"{ws}{client}", origin=ORIGIN)))
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    call("get", client, client, headers={**upgrade, "Origin": EVIL})  # 403
    assert call("get", client, client, headers=upgrade, auth=False).status == 401  # not logged in
    for path in ("/ws/backend/processed", "/ws/backend/analytics"):
        check(path, "get", asyncio.run(connect_status(f"{ws}{path}", origin=None, token=TOKEN)))
        call("get", path, path, headers=upgrade)  # 401: no token

    assert check.documented() - check.seen == set()
    assert check.documented_media() - check.media == set()


LIMIT_KEY = "auth:login-failures:127.0.0.1"  # the login limiter's counter of this address


def check_accounts(api, call, sync_redis, db_engine) -> None:
    login, logout, me = "/api/auth/login", "/api/auth/logout", "/api/auth/me"
    sync_redis.delete(LIMIT_KEY)
    try:
        good = json.dumps({"username": "test-viewer", "password": PASSWORD}).encode()
        r = call("post", login, login, good, headers=JSON, auth=False)
        assert r.status == 200 and "traffic_session=" in r.headers["Set-Cookie"]
        cookie = r.headers["Set-Cookie"].split(";", 1)[0]
        assert call("get", me, me, headers={"Cookie": cookie}, auth=False).json()["username"] == "test-viewer"
        wrong = json.dumps({"username": "test-viewer", "password": "not the password"}).encode()
        assert call("post", login, login, wrong, headers=JSON, auth=False).status == 401
        assert call("post", login, login, b'{"username": 1}', headers=JSON, auth=False).status == 400
        sync_redis.set(LIMIT_KEY, 10, ex=60)
        limited = call("post", login, login, good, headers=JSON, auth=False)
        assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    finally:
        sync_redis.delete(LIMIT_KEY)
    assert call("post", logout, logout, headers={"Cookie": cookie}, auth=False).status == 204
    assert call("get", me, me, headers={"Cookie": cookie}, auth=False).status == 401
    assert call("get", me, me).json()["role"] == "admin"

    users, user = "/api/users", "/api/users/{user_id}"
    assert "test-operator" in {u["username"] for u in call("get", users, users).json()["users"]}
    name = f"openapi-{uuid.uuid4().hex[:8]}"
    new = {"username": name, "password": PASSWORD, "role": "viewer"}
    created = call("post", users, users, json.dumps(new).encode(), headers=JSON)
    assert created.status == 201
    uid = created.json()["id"]
    assert call("post", users, users, json.dumps(new).encode(), headers=JSON).status == 409
    assert (
        call("post", users, users, json.dumps({**new, "password": "short"}).encode(), headers=JSON).status
        == 400
    )
    changed = call("put", f"/api/users/{uid}", user, b'{"role": "operator", "disabled": true}', headers=JSON)
    assert changed.json()["role"] == "operator" and changed.json()["disabled"] is True
    assert call("put", f"/api/users/{uid}", user, b'{"role": "root"}', headers=JSON).status == 400
    assert call("put", "/api/users/424242", user, b'{"disabled": false}', headers=JSON).status == 404
    admin_id = next(
        u["id"] for u in call("get", users, users).json()["users"] if u["username"] == "test-admin"
    )
    with sole_admin(db_engine):
        demote = call("put", f"/api/users/{admin_id}", user, b'{"role": "operator"}', headers=JSON)
        assert demote.status == 409 and demote.error_code == "last_admin"
        assert call("delete", f"/api/users/{admin_id}", user).error_code == "last_admin"
    assert call("delete", f"/api/users/{uid}", user).status == 204
    assert call("delete", f"/api/users/{uid}", user).status == 404

    # one's own password: a user of its own (the test accounts keep theirs)
    password = "/api/auth/password"
    mine = {"username": f"openapi-pw-{uuid.uuid4().hex[:8]}", "password": PASSWORD, "role": "viewer"}
    own_id = call("post", users, users, json.dumps(mine).encode(), headers=JSON).json()["id"]
    credentials = {"username": mine["username"], "password": PASSWORD}
    session = call("post", login, login, json.dumps(credentials).encode(), headers=JSON, auth=False)
    own = {**JSON, "Cookie": session.headers["Set-Cookie"].split(";", 1)[0]}
    new_password = "a new password " + uuid.uuid4().hex[:8]
    sync_redis.delete(LIMIT_KEY)
    try:
        change = {"current_password": PASSWORD, "new_password": new_password}
        same = {"current_password": PASSWORD, "new_password": PASSWORD}
        assert (
            call("post", password, password, json.dumps(same).encode(), headers=own, auth=False).status == 400
        )
        wrong = {**change, "current_password": "not the password"}
        r = call("post", password, password, json.dumps(wrong).encode(), headers=own, auth=False)
        assert (r.status, r.error_code) == (401, "invalid_credentials")
        sync_redis.set(LIMIT_KEY, 10, ex=60)
        limited = call("post", password, password, json.dumps(change).encode(), headers=own, auth=False)
        assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
        sync_redis.delete(LIMIT_KEY)
        changed = call("post", password, password, json.dumps(change).encode(), headers=own, auth=False)
        assert changed.status == 204 and "traffic_session=" in changed.headers["Set-Cookie"]
    finally:
        sync_redis.delete(LIMIT_KEY)
    assert call("delete", f"/api/users/{own_id}", user).status == 204

    tokens, token = "/api/tokens", "/api/tokens/{token_id}"
    made = call("post", tokens, tokens, b'{"name": "openapi"}', headers=JSON)
    assert made.status == 201 and made.json()["token"].startswith("tms_")
    assert call("post", tokens, tokens, b'{"name": ""}', headers=JSON).status == 400
    assert made.json()["id"] in {t["id"] for t in call("get", tokens, tokens).json()["tokens"]}
    assert call("delete", f"/api/tokens/{made.json()['id']}", token).status == 204
    assert call("delete", f"/api/tokens/{made.json()['id']}", token).status == 404

    audit = "/api/audit"
    entries = call("get", f"{audit}?limit=5", audit).json()["entries"]
    assert 0 < len(entries) <= 5 and entries == sorted(entries, key=lambda e: -e["id"])
    assert (
        call("get", f"{audit}?before={entries[-1]['id']}&limit=1", audit).json()["entries"][0]["id"]
        < entries[-1]["id"]
    )
    assert call("get", f"{audit}?limit=0", audit).error_code == "invalid_limit"


def check_access(api, doc, call, sync_redis) -> None:
    viewer = api.accounts["viewer"].auth
    sync_redis.delete(LIMIT_KEY)
    try:
        for template, item in doc["paths"].items():
            if template.startswith("/ws/"):
                continue
            path = re.sub(r"{\w+}", "424242", template)
            for method, op in item.items():
                write = method in ("post", "put", "delete")
                body = b"{}" if method in ("post", "put") else None
                if "security" in op:  # no credentials
                    r = call(method, path, template, body, headers=JSON, auth=False)
                    assert (r.status, r.error_code) == (401, "unauthorized"), (method, path)
                if write:  # a foreign page's request, whoever's credentials it carries
                    r = call(method, path, template, body, headers={**JSON, "Origin": EVIL})
                    assert (r.status, r.error_code) == (403, "origin_refused"), (method, path)
                elif "403" in op["responses"]:  # an admin's or an operator's GET: not a viewer's
                    r = call(method, path, template, headers=viewer)
                    assert (r.status, r.error_code) == (403, "forbidden"), (method, path)
                if "application/json" in op.get("requestBody", {}).get("content", {}):
                    r = call(method, path, template, b"{}", headers={"Content-Type": "text/plain"})
                    assert (r.status, r.error_code) == (415, "unsupported_media_type"), (method, path)
    finally:
        sync_redis.delete(LIMIT_KEY)
