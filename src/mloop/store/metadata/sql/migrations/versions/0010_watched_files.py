"""Files a `new_data` trigger watches, as last seen: a check re-reads only what changed.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watched_files",
        sa.Column("trigger_key", sa.String(255), primary_key=True),
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("stamp", sa.Text, nullable=False),
        sa.Column("modified", sa.Float, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("watched_files")
