"""vehicle_passages: one row per counted vehicle of a stream (the traffic report's source).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vehicle_passages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("video_id", sa.Integer(), sa.ForeignKey("videos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(50), nullable=False),
        sa.Column("first_frame", sa.Integer(), nullable=False),
        sa.Column("last_frame", sa.Integer(), nullable=False),
        sa.Column("first_time_s", sa.Float(), nullable=False),
        sa.Column("last_time_s", sa.Float(), nullable=False),
        sa.Column("dwell_time_s", sa.Float(), nullable=False),
        sa.Column("speed_kmh", sa.Float()),
        sa.Column("max_speed_kmh", sa.Float()),
        sa.Column("speeding", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.UniqueConstraint("video_id", "track_id", name="vehicle_passages_video_id_track_id_key"),
    )
    op.create_index("ix_vehicle_passages_video_id", "vehicle_passages", ["video_id"])


def downgrade() -> None:
    op.drop_index("ix_vehicle_passages_video_id", table_name="vehicle_passages")
    op.drop_table("vehicle_passages")
