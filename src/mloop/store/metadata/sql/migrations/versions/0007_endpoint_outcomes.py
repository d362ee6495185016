"""An endpoint's reports carry outcomes and a shadow's agreement.

- `outcomes`, `outcome_sum`, `outcome_squares`: the outcomes posted for a version's answers
  (`POST /feedback`), kept as sums so the reports of every server process add up; an A/B test
  reads its rates or means from them.
- `agreed`, `dropped`: of the copies a shadow predicted (its `requests`), those whose
  prediction matched the primary's, and the copies a full queue turned away.

Old rows read as zeros. The downgrade drops the columns.

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


def downgrade() -> None:
    with op.batch_alter_table("endpoint_stats") as batch:
        for name in (*COUNTS, *SUMS):
            batch.drop_column(name)
