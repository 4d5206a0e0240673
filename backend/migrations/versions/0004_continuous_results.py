"""Continuous results: passages and violations carry their stream run (``run_id``: a camera's
track ids start again with each run) and a passage its wall-clock time and direction of travel
(the time-window report).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("vehicle_passages", "speeding_violations"):
        op.add_column(
            table, sa.Column("run_id", sa.String(250), nullable=False, server_default=sa.text("''"))
        )
    op.add_column("vehicle_passages", sa.Column("passed_at", sa.DateTime(), nullable=True))
    op.add_column("vehicle_passages", sa.Column("direction", sa.String(20), nullable=True))
    op.drop_constraint("vehicle_passages_video_id_track_id_key", "vehicle_passages", type_="unique")
    op.create_unique_constraint(
        "vehicle_passages_video_id_run_id_track_id_key",
        "vehicle_passages",
        ["video_id", "run_id", "track_id"],
    )
    op.create_index("ix_vehicle_passages_video_id_passed_at", "vehicle_passages", ["video_id", "passed_at"])
    op.create_unique_constraint(
        "speeding_violations_video_id_run_id_track_id_key",
        "speeding_violations",
        ["video_id", "run_id", "track_id"],
    )


def downgrade() -> None:
    op.drop_constraint(
        "speeding_violations_video_id_run_id_track_id_key", "speeding_violations", type_="unique"
    )
    op.drop_index("ix_vehicle_passages_video_id_passed_at", table_name="vehicle_passages")
    op.drop_constraint("vehicle_passages_video_id_run_id_track_id_key", "vehicle_passages", type_="unique")
    op.create_unique_constraint(
        "vehicle_passages_video_id_track_id_key", "vehicle_passages", ["video_id", "track_id"]
    )
    op.drop_column("vehicle_passages", "direction")
    op.drop_column("vehicle_passages", "passed_at")
    for table in ("vehicle_passages", "speeding_violations"):
        op.drop_column(table, "run_id")
