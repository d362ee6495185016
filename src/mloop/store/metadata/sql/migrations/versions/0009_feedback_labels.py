"""Labels for answered requests, joined to the prediction log on (request_id, row).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_labels",
        sa.Column("endpoint", sa.String(63), primary_key=True),
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("row", sa.Integer, primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
    )
    op.create_index("ix_feedback_labels_endpoint_at", "feedback_labels", ["endpoint", "at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_labels_endpoint_at", "feedback_labels")
    op.drop_table("feedback_labels")
