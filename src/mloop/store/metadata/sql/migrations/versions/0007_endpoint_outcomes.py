"""An endpoint's reports carry outcomes and a shadow's agreement; an A/B test keeps its last look.

- `outcomes`, `outcome_sum`, `outcome_squares`: the outcomes posted for a version's answers
  (`POST /feedback`), kept as sums so the reports of every server process add up; an A/B test
  reads its rates or means from them.
- `agreed`, `dropped`: of the copies a shadow predicted (its `requests`), those whose
  prediction matched the primary's, and the copies a full queue turned away.

Old rows read as zeros.

- `endpoint_looks`: an A/B test's last look (`domain/sequential.ABDecision` as JSON) per
  deployment, which the next look carries on: the mSPRT's mixing width is fixed at the first
  look, its p-value is a running minimum and its interval a running intersection.

The downgrade drops the columns and the table.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COUNTS = ("outcomes", "agreed", "dropped")
SUMS = ("outcome_sum", "outcome_squares")


def upgrade() -> None:
    for name in COUNTS:
        column = sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        op.add_column("endpoint_stats", column)
    for name in SUMS:
        column = sa.Column(name, sa.Float, nullable=False, server_default="0")
        op.add_column("endpoint_stats", column)
    op.create_table(
        "endpoint_looks",
        sa.Column("endpoint", sa.String(63), primary_key=True),
        sa.Column("sequence", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("look", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("endpoint_looks")
    with op.batch_alter_table("endpoint_stats") as batch:
        for name in (*COUNTS, *SUMS):
            batch.drop_column(name)
