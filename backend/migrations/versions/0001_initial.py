"""Initial schema: videos and video_analytics as in the seed, plus speeding_violations.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("file_path", sa.String(500), nullable=False),
        sa.Column("status", sa.String(50), server_default=sa.text("'uploaded'")),
        sa.Column("fps", sa.Float()),
        sa.Column("frame_count", sa.Integer()),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("duration", sa.Float()),
        sa.Column("roi", postgresql.JSONB()),
        sa.Column("calibrate_coordinates", postgresql.JSONB()),
        sa.Column("homography_matrix", postgresql.JSONB()),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.current_timestamp()),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.current_timestamp()),
    )
    op.create_table(
        "video_analytics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("video_id", sa.Integer(), sa.ForeignKey("videos.id", ondelete="CASCADE")),
        sa.Column("total_vehicles_count", sa.Integer(), server_default=sa.text("0")),
        sa.Column("avg_dwell_time", sa.Float(), server_default=sa.text("0")),
        sa.Column("vehicle_type_distribution", postgresql.JSONB()),
        sa.Column("speeding_count", sa.Integer(), server_default=sa.text("0")),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.current_timestamp()),
        sa.UniqueConstraint("video_id", name="video_analytics_video_id_key"),
    )
    op.create_index("ix_video_analytics_video_id", "video_analytics", ["video_id"])
    op.create_table(
        "speeding_violations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("video_id", sa.Integer(), sa.ForeignKey("videos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("vehicle_class", sa.String(50)),
        sa.Column("speed_kmh", sa.Float(), nullable=False),
        sa.Column("frame_number", sa.Integer(), nullable=False),
        sa.Column("video_time_s", sa.Float()),
        sa.Column("detected_at", sa.DateTime(), server_default=sa.func.current_timestamp()),
        sa.Column("snapshot_path", sa.String(500)),
    )
    op.create_index("ix_speeding_violations_video_id", "speeding_violations", ["video_id"])


def downgrade() -> None:
    op.drop_index("ix_speeding_violations_video_id", table_name="speeding_violations")
    op.drop_table("speeding_violations")
    op.drop_index("ix_video_analytics_video_id", table_name="video_analytics")
    op.drop_table("video_analytics")
    op.drop_table("videos")
