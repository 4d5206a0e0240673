"""The OpenAPI document lists exactly the application's routes."""

from __future__ import annotations

import re

from backend.app import all_routes
from backend.tests.client import request


def to_openapi_path(pattern: str) -> str:
    return re.sub(r"\(\[\^/\]\+\)", "{video_id}", pattern)


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
