"""Index run tags by key and value: pipelines find cached step runs by their cache-key tag.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_run_tags_key_value", "run_tags", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_run_tags_key_value", "run_tags")
