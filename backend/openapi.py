"""Hand-written OpenAPI 3 document of the REST API (``GET /api/openapi.json``).

Kept next to the route lists; ``backend/tests/test_openapi.py`` checks that every route of the
application appears here and nothing else does.
"""

from __future__ import annotations

from typing import Any


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, ref: str | None = None, schema: dict | None = None) -> dict[str, Any]:
    body = schema or {"$ref": f"#/components/schemas/{ref}"}
    return {"description": description, "content": {"application/json": {"schema": body}}}


VIDEO_ID = {"name": "video_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
NOT_FOUND = _error("Unknown video id")
AIRFLOW_DOWN = _error("Airflow unreachable; nothing was changed")

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Point": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
    "Video": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "file_path": {"type": "string"},
            "status": {"type": "string"},
            "fps": {"type": "number"},
            "frame_count": {"type": "integer"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "duration": {"type": "number"},
            "roi": {"type": "array", "items": {"$ref": "#/components/schemas/Point"}, "nullable": True},
            "calibrate_coordinates": {"type": "object", "nullable": True},
            "homography_matrix": {"type": "array", "items": {"type": "array"}, "nullable": True},
            "speed_limit_kmh": {
                "type": "number",
                "description": "The video's limit (set with the calibration), else SPEED_LIMIT_KMH",
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "Calibration": {
        "type": "object",
        "description": "Exactly these fields (others, e.g. the former 'roi', are refused with 400). "
        "ROI and image points lie inside the video's frame: 0 <= x <= width, 0 <= y <= height.",
        "required": ["roi_polygon", "image_points", "world_points"],
        "additionalProperties": False,
        "properties": {
            "roi_polygon": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Point"},
                "minItems": 3,
                "description": "ROI polygon, [x, y] pixels",
            },
            "image_points": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Point"},
                "minItems": 4,
                "description": "[x, y] pixels, paired with world_points",
            },
            "world_points": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Point"},
                "minItems": 4,
                "description": "[x, y] metres on the road plane",
            },
            "speed_limit_kmh": {
                "type": "number",
                "exclusiveMinimum": True,
                "minimum": 0,
                "maximum": 400,
                "nullable": True,
                "description": "The video's speed limit; omitted or null: SPEED_LIMIT_KMH (60)",
            },
        },
    },
    "StreamStart": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "realtime": {
                "type": "boolean",
                "default": True,
                "description": "true: paced at the video's fps, frames may be skipped to stay live; "
                "false: as fast as possible, every frame processed",
            }
        },
    },
    "Analytics": {
        "type": "object",
        "properties": {
            "source": {"type": "string", "enum": ["final", "live"]},
            "video_id": {"type": "integer"},
            "total_vehicles_count": {"type": "integer"},
            "avg_dwell_time": {"type": "number"},
            "vehicle_type_distribution": {"type": "object", "additionalProperties": {"type": "integer"}},
            "speeding_count": {"type": "integer"},
        },
    },
    "Violation": {
        "type": "object",
        "description": "A speeding_violations row; while a stream runs and none is stored, an entry "
        "of the live list (no id or snapshot yet)",
        "properties": {
            "id": {"type": "integer", "nullable": True},
            "video_id": {"type": "integer"},
            "track_id": {"type": "integer"},
            "vehicle_class": {"type": "string"},
            "speed_kmh": {"type": "number"},
            "frame_number": {"type": "integer"},
            "video_time_s": {"type": "number"},
            "detected_at": {
                "type": "string",
                "format": "date-time",
                "nullable": True,
                "description": "Wall clock (UTC) when the processor flagged the vehicle",
            },
            "snapshot_path": {"type": "string", "nullable": True, "description": "server-side file"},
            "snapshot_url": {
                "type": "string",
                "nullable": True,
                "description": "/api/violations/{id}/snapshot when a snapshot is stored, else null",
            },
        },
    },
    "Passage": {
        "type": "object",
        "description": "One counted vehicle of the last stream (vehicle_passages)",
        "properties": {
            "track_id": {"type": "integer"},
            "class_name": {"type": "string"},
            "first_frame": {"type": "integer"},
            "last_frame": {"type": "integer"},
            "first_time_s": {"type": "number", "description": "video time"},
            "last_time_s": {"type": "number"},
            "dwell_time_s": {"type": "number"},
            "speed_kmh": {"type": "number", "nullable": True, "description": "median of its estimates"},
            "max_speed_kmh": {"type": "number", "nullable": True},
            "speeding": {"type": "boolean"},
        },
    },
    "Report": {
        "type": "object",
        "description": "Traffic report computed from the passages (empty/zero when there are none)",
        "properties": {
            "video_id": {"type": "integer"},
            "total_vehicles": {"type": "integer"},
            "speeding_count": {"type": "integer"},
            "avg_dwell_time_s": {"type": "number"},
            "class_mix": {"type": "object", "additionalProperties": {"type": "integer"}},
            "speed": {
                "type": "object",
                "properties": {
                    "limit_kmh": {"type": "number"},
                    "mean_kmh": {"type": "number", "nullable": True},
                    "p85_kmh": {"type": "number", "nullable": True},
                    "measured_vehicles": {"type": "integer"},
                    "histogram": {
                        "type": "object",
                        "properties": {
                            "bin_width_kmh": {"type": "number"},
                            "bins": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "from_kmh": {"type": "number"},
                                        "to_kmh": {"type": "number"},
                                        "count": {"type": "integer"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
            "volume_per_minute": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "minute": {"type": "integer"},
                        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                },
            },
        },
    },
}

FORMAT = {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}}

PATHS: dict[str, Any] = {
    "/api/videos/upload": {
        "post": {
            "summary": "Upload a video (streamed to disk, probed with OpenCV)",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["video", "name"],
                            "properties": {
                                "video": {"type": "string", "format": "binary"},
                                "name": {"type": "string"},
                                "roi": {"type": "string", "description": "JSON list of [x, y] pixels"},
                                "fps": {"type": "number"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json("Stored", "Video"),
                "400": _error("Missing field, bad name, empty, unreadable or truncated video, bad ROI"),
                "413": _error("Over MAX_UPLOAD_MB"),
                "415": _error("Not a video extension / not multipart"),
            },
        }
    },
    "/api/videos": {
        "get": {
            "summary": "List videos",
            "responses": {
                "200": _json(
                    "Videos",
                    schema={
                        "type": "object",
                        "properties": {
                            "videos": {"type": "array", "items": {"$ref": "#/components/schemas/Video"}}
                        },
                    },
                )
            },
        }
    },
    "/api/videos/{video_id}": {
        "get": {
            "summary": "One video",
            "parameters": [VIDEO_ID],
            "responses": {"200": _json("The video", "Video"), "404": NOT_FOUND},
        },
        "delete": {
            "summary": "Delete the video, its file and its results (analytics, violations, passages)",
            "parameters": [VIDEO_ID],
            "responses": {
                "204": {"description": "Deleted"},
                "404": NOT_FOUND,
                "409": _error("The video is being streamed (stop it first)"),
            },
        },
    },
    "/api/videos/{video_id}/calibration": {
        "put": {
            "summary": "Store ROI and fit the image -> road homography",
            "parameters": [VIDEO_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Calibration"}}},
            },
            "responses": {
                "200": _json(
                    "Calibrated",
                    schema={
                        "type": "object",
                        "properties": {
                            "video": {"$ref": "#/components/schemas/Video"},
                            "reprojection_error_m": {"type": "number"},
                        },
                    },
                ),
                "400": _error(
                    "Malformed JSON, unknown field, ROI, points, a point outside the frame, or speed "
                    "limit (code invalid_speed_limit)"
                ),
                "404": NOT_FOUND,
                "422": _error("Degenerate points (collinear, duplicates)"),
            },
        }
    },
    "/api/videos/{video_id}/thumbnail": {
        "get": {
            "summary": "First frame as JPEG",
            "parameters": [VIDEO_ID],
            "responses": {
                "200": {
                    "description": "JPEG",
                    "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                },
                "404": NOT_FOUND,
            },
        }
    },
    "/api/videos/{video_id}/stream/start": {
        "post": {
            "summary": "Trigger DAG video_streaming_pipeline with conf {video_id, realtime}",
            "description": "Clears the video's stop flag, progress, violations list and live "
            "analytics in Redis, then triggers the DAG. The body is optional (empty: realtime true).",
            "parameters": [VIDEO_ID],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StreamStart"}}},
            },
            "responses": {
                "201": _json("The DAG run", schema={"type": "object"}),
                "400": _error("Malformed JSON or body"),
                "404": NOT_FOUND,
                "409": _error("Already streaming"),
                "503": AIRFLOW_DOWN,
            },
        }
    },
    "/api/videos/{video_id}/stream/stop": {
        "post": {
            "summary": "Ask the running pipeline to stop",
            "parameters": [VIDEO_ID],
            "responses": {
                "202": _json("Stopping", schema={"type": "object"}),
                "404": NOT_FOUND,
                "409": _error("Not streaming"),
                "503": AIRFLOW_DOWN,
            },
        }
    },
    "/api/videos/{video_id}/analytics": {
        "get": {
            "summary": "Final analytics (video_analytics) or the live snapshot",
            "parameters": [VIDEO_ID],
            "responses": {
                "200": _json("Analytics", "Analytics"),
                "404": _error("Unknown video or no analytics yet"),
            },
        }
    },
    "/api/videos/{video_id}/violations": {
        "get": {
            "summary": "Speeding violations (JSON or CSV)",
            "parameters": [VIDEO_ID, FORMAT],
            "responses": {
                "200": {
                    "description": "Violations",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "video_id": {"type": "integer"},
                                    "source": {
                                        "type": "string",
                                        "enum": ["stored", "live"],
                                        "description": "stored rows, or the running stream's live list",
                                    },
                                    "violations": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Violation"},
                                    },
                                },
                            }
                        },
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "400": _error("Unknown format"),
                "404": NOT_FOUND,
            },
        }
    },
    "/api/videos/{video_id}/passages": {
        "get": {
            "summary": "Every counted vehicle of the last stream, by first frame (JSON or CSV)",
            "parameters": [VIDEO_ID, FORMAT],
            "responses": {
                "200": {
                    "description": "Passages",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "video_id": {"type": "integer"},
                                    "passages": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Passage"},
                                    },
                                },
                            }
                        },
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "400": _error("Unknown format"),
                "404": NOT_FOUND,
            },
        }
    },
    "/api/videos/{video_id}/report": {
        "get": {
            "summary": "Traffic report: totals, class mix, speed histogram, mean and 85th percentile, "
            "volume per minute by class",
            "parameters": [VIDEO_ID],
            "responses": {"200": _json("Report", "Report"), "404": NOT_FOUND},
        }
    },
    "/api/violations/{violation_id}/snapshot": {
        "get": {
            "summary": "JPEG crop of the flagged vehicle",
            "parameters": [
                {
                    "name": "violation_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
            "responses": {
                "200": {
                    "description": "JPEG",
                    "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                },
                "404": _error("Unknown violation (violation_not_found) or no snapshot (snapshot_not_found)"),
            },
        }
    },
    "/api/websocket/status": {
        "get": {
            "summary": "WebSocket connections and channel subscriber counts; dropped_frames and "
            "repeats_dropped are totals since start, the same numbers as /metrics' "
            "backend_ws_frames_dropped_total and backend_ingest_repeats_total",
            "responses": {"200": _json("Status", schema={"type": "object"})},
        }
    },
    "/api/health": {
        "get": {
            "summary": "Database and Redis reachability",
            "responses": {
                "200": _json("Healthy", schema={"type": "object"}),
                "503": _json("Degraded", schema={"type": "object"}),
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": _json("OpenAPI 3", schema={"type": "object"})},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Text exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/ws/client/stream": {
        "get": {
            "summary": "WebSocket: subscribe to processed_frame_{id} / analytics_metrics_{id}",
            "responses": {
                "101": {"description": "Switching protocols"},
                "403": {"description": "Origin refused"},
            },
        }
    },
    "/ws/backend/processed": {
        "get": {
            "summary": "WebSocket ingest of processed frames (internal token)",
            "security": [{"internalToken": []}],
            "responses": {"101": {"description": "Switching protocols"}, "401": _error("No or wrong token")},
        }
    },
    "/ws/backend/analytics": {
        "get": {
            "summary": "WebSocket ingest of analytics updates (internal token)",
            "security": [{"internalToken": []}],
            "responses": {"101": {"description": "Switching protocols"}, "401": _error("No or wrong token")},
        }
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "Traffic monitoring backend", "version": "0.1.0"},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"internalToken": {"type": "http", "scheme": "bearer"}},
        },
    }
