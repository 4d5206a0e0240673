"""videos.source_kind and videos.source_url: a source is an uploaded file or a camera (its URL).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "videos", sa.Column("source_kind", sa.String(16), nullable=False, server_default=sa.text("'file'"))
    )
    op.add_column("videos", sa.Column("source_url", sa.Text(), nullable=True))
    op.create_check_constraint("videos_source_kind_check", "videos", "source_kind IN ('file', 'camera')")


def downgrade() -> None:
    op.drop_constraint("videos_source_kind_check", "videos", type_="check")
    op.drop_column("videos", "source_url")
    op.drop_column("videos", "source_kind")
