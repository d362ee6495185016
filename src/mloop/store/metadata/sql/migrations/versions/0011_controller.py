"""The controller's progress: its loop's iterations, what it last saw of each trigger, and
leases (one controller acts per store).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "controller_iterations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("pipeline", sa.String(63), nullable=False),
        sa.Column("trigger", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("numbers", sa.Text, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.Column("dataset", sa.String(255)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("model", sa.String(255)),
        sa.Column("endpoint", sa.String(63)),
        sa.Column("deployment", sa.Integer),
        sa.Column("outcome", sa.String(32)),
        sa.Column("error", sa.Text),
        # An iteration in progress per pipeline at most: `open_pipeline` is the pipeline's
        # name while the iteration is open, NULL once done (NULLs never collide).
        sa.Column("open_pipeline", sa.String(63), unique=True),
    )
    op.create_index(
        "ix_controller_iterations_trigger", "controller_iterations", ["trigger", "created"]
    )
    op.create_index("ix_controller_iterations_created", "controller_iterations", ["created"])
    op.create_table(
        "trigger_states",
        sa.Column("trigger", sa.String(255), primary_key=True),
        sa.Column("checked", sa.Float),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("fired", sa.Float),
        sa.Column("mark", sa.Float),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("holder", sa.String(300), nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("trigger_states")
    op.drop_index("ix_controller_iterations_created", "controller_iterations")
    op.drop_index("ix_controller_iterations_trigger", "controller_iterations")
    op.drop_table("controller_iterations")
