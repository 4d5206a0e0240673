"""The migrated schema matches the seed's DDL and the SQLAlchemy models (no pending autogenerate)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from backend.db.models import Base

SEED_COLUMNS = {
    "videos": {
        "id": ("INTEGER", False),
        "name": ("VARCHAR(255)", False),
        "file_path": ("VARCHAR(500)", False),
        "status": ("VARCHAR(50)", True),
        "fps": ("DOUBLE PRECISION", True),
        "frame_count": ("INTEGER", True),
        "width": ("INTEGER", True),
        "height": ("INTEGER", True),
        "duration": ("DOUBLE PRECISION", True),
        "roi": ("JSONB", True),
        "calibrate_coordinates": ("JSONB", True),
        "homography_matrix": ("JSONB", True),
        "created_at": ("TIMESTAMP", True),
        "updated_at": ("TIMESTAMP", True),
    },
    "video_analytics": {
        "id": ("INTEGER", False),
        "video_id": ("INTEGER", True),
        "total_vehicles_count": ("INTEGER", True),
        "avg_dwell_time": ("DOUBLE PRECISION", True),
        "vehicle_type_distribution": ("JSONB", True),
        "speeding_count": ("INTEGER", True),
        "created_at": ("TIMESTAMP", True),
    },
    "speeding_violations": {
        "id": ("INTEGER", False),
        "video_id": ("INTEGER", False),
        "track_id": ("INTEGER", False),
        "vehicle_class": ("VARCHAR(50)", True),
        "speed_kmh": ("DOUBLE PRECISION", False),
        "frame_number": ("INTEGER", False),
        "video_time_s": ("DOUBLE PRECISION", True),
        "detected_at": ("TIMESTAMP", True),
        "snapshot_path": ("VARCHAR(500)", True),
    },
}


# What migrations added to the seed's tables (0003: a source is a file or a camera)
# (0004: a violation belongs to a stream run)
ADDED_COLUMNS = {
    "videos": {"source_kind": ("VARCHAR(16)", False), "source_url": ("TEXT", True)},
    "speeding_violations": {"run_id": ("VARCHAR(250)", False)},
}


def test_columns_match_seed(db_engine):
    inspector = inspect(db_engine)
    assert {"videos", "video_analytics", "speeding_violations", "alembic_version"} <= set(
        inspector.get_table_names()
    )
    for table, expected in SEED_COLUMNS.items():
        columns = {c["name"]: (str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)}
        assert columns == {**expected, **ADDED_COLUMNS.get(table, {})}, table
        assert inspector.get_pk_constraint(table)["constrained_columns"] == ["id"]


def test_serial_keys_and_defaults(db_engine):
    inspector = inspect(db_engine)
    videos = {c["name"]: c for c in inspector.get_columns("videos")}
    assert "nextval" in videos["id"]["default"]
    assert "uploaded" in videos["status"]["default"]
    assert "CURRENT_TIMESTAMP" in videos["created_at"]["default"].upper()
    analytics = {c["name"]: c for c in inspector.get_columns("video_analytics")}
    assert analytics["total_vehicles_count"]["default"] == "0"
    assert analytics["speeding_count"]["default"] == "0"


def test_constraints_match_seed(db_engine):
    inspector = inspect(db_engine)
    uniques = inspector.get_unique_constraints("video_analytics")
    assert [u["column_names"] for u in uniques] == [["video_id"]]
    for table in ("video_analytics", "speeding_violations"):
        (fk,) = inspector.get_foreign_keys(table)
        assert fk["referred_table"] == "videos"
        assert fk["constrained_columns"] == ["video_id"]
        assert fk["options"].get("ondelete") == "CASCADE"
        indexed = [i["column_names"] for i in inspector.get_indexes(table)]
        assert ["video_id"] in indexed


def test_models_match_migrations(db_engine):
    with db_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_vehicle_passages_table(db_engine):
    inspector = inspect(db_engine)
    columns = {c["name"]: (str(c["type"]), c["nullable"]) for c in inspector.get_columns("vehicle_passages")}
    assert columns == {
        "id": ("INTEGER", False),
        "video_id": ("INTEGER", False),
        "track_id": ("INTEGER", False),
        "class_name": ("VARCHAR(50)", False),
        "first_frame": ("INTEGER", False),
        "last_frame": ("INTEGER", False),
        "first_time_s": ("DOUBLE PRECISION", False),
        "last_time_s": ("DOUBLE PRECISION", False),
        "dwell_time_s": ("DOUBLE PRECISION", False),
        "speed_kmh": ("DOUBLE PRECISION", True),
        "max_speed_kmh": ("DOUBLE PRECISION", True),
        "speeding": ("BOOLEAN", False),
        "run_id": ("VARCHAR(250)", False),
        "passed_at": ("TIMESTAMP", True),
        "direction": ("VARCHAR(20)", True),
    }
    # a vehicle is (video, run, track): a camera's track ids start again with each run
    assert [u["column_names"] for u in inspector.get_unique_constraints("vehicle_passages")] == [
        ["video_id", "run_id", "track_id"]
    ]
    assert [u["column_names"] for u in inspector.get_unique_constraints("speeding_violations")] == [
        ["video_id", "run_id", "track_id"]
    ]
    indexes = [i["column_names"] for i in inspector.get_indexes("vehicle_passages")]
    assert ["video_id", "passed_at"] in indexes  # the time-window report
    (fk,) = inspector.get_foreign_keys("vehicle_passages")
    assert fk["referred_table"] == "videos" and fk["options"].get("ondelete") == "CASCADE"
    assert ["video_id"] in [i["column_names"] for i in inspector.get_indexes("vehicle_passages")]
