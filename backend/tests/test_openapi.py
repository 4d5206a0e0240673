"""The OpenAPI document lists exactly the application's routes."""

from __future__ import annotations

import re

from backend.app import all_routes
from backend.schemas import CalibrationIn
from backend.tests.client import request


def to_openapi_path(pattern: str) -> str:
    name = "{violation_id}" if pattern.startswith("/api/violations/") else "{video_id}"
    return re.sub(r"\(\[\^/\]\+\)", name, pattern)


def test_every_route_is_documented(api):
    r = request(api.port, "GET", "/api/openapi.json")
    assert r.status == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    documented = set(doc["paths"])
    routes = {to_openapi_path(pattern) for pattern, _ in all_routes()}
    assert routes == documented


def test_documented_methods_exist(api):
    doc = request(api.port, "GET", "/api/openapi.json").json()
    handlers = {to_openapi_path(p): h for p, h in all_routes()}
    for path, item in doc["paths"].items():
        for method in item:
            if path.startswith("/ws/"):
                continue
            handler = handlers[path]
            assert getattr(handler, method) is not getattr(handler.__mro__[-2], method, None), (path, method)


def test_refs_resolve(api):
    doc = request(api.port, "GET", "/api/openapi.json").json()
    refs = set(re.findall(r'"\$ref": "#/components/schemas/(\w+)"', r_text(doc)))
    assert refs <= set(doc["components"]["schemas"])


def r_text(doc) -> str:
    import json

    return json.dumps(doc)


def test_calibration_schema_is_what_the_handler_accepts(api):
    """The document's Calibration lists exactly the fields ``CalibrationIn`` (the handler's
    model) accepts, the same required ones and limits; nothing else is allowed."""
    doc = request(api.port, "GET", "/api/openapi.json").json()
    schema = doc["components"]["schemas"]["Calibration"]
    fields = CalibrationIn.model_fields
    assert (
        set(schema["properties"])
        == set(fields)
        == {
            "roi_polygon",
            "image_points",
            "world_points",
            "speed_limit_kmh",
        }
    )
    assert set(schema["required"]) == {name for name, f in fields.items() if f.is_required()}
    assert schema["additionalProperties"] is False
    assert CalibrationIn.model_config["extra"] == "forbid"
    for name in ("roi_polygon", "image_points", "world_points"):
        (min_length,) = [m.min_length for m in fields[name].metadata if hasattr(m, "min_length")]
        assert schema["properties"][name]["minItems"] == min_length, name
    put = doc["paths"]["/api/videos/{video_id}/calibration"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Calibration"
    }
