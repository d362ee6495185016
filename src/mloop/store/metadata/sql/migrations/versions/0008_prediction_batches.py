"""The prediction log's index: one row per Parquet file of logged requests.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("endpoint", sa.String(63), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("first_at", sa.Float, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_prediction_batches_endpoint_last_at", "prediction_batches", ["endpoint", "last_at"]
    )
    op.create_index("ix_prediction_batches_last_at", "prediction_batches", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_prediction_batches_last_at", "prediction_batches")
    op.drop_index("ix_prediction_batches_endpoint_last_at", "prediction_batches")
    op.drop_table("prediction_batches")
