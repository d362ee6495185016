"""A run says what made it in fields, not tags: `runs.kind` and `runs.pipeline`.

- `runs.kind` (run, pipeline, step or sweep; NOT NULL, `run` by default) takes the value of
  the system tag `mloop.kind`, and `runs.pipeline` that of `mloop.pipeline`; a step, which
  carried no `mloop.pipeline` tag, takes its parent pipeline run's. Those tag rows are deleted:
  the fields are the one place the facts live, and the filters `tags.mloop.kind` and
  `tags.mloop.pipeline` read the fields.
- The index on `runs.pipeline` finds a pipeline's earlier runs (replay) without the tag table.

The downgrade writes the tags back from the fields and drops the columns.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MOVED = (("mloop.kind", "kind"), ("mloop.pipeline", "pipeline"))


def upgrade() -> None:
    op.add_column("runs", sa.Column("kind", sa.String(16), nullable=False, server_default="run"))
    op.add_column("runs", sa.Column("pipeline", sa.String(200)))
    op.create_index("ix_runs_pipeline", "runs", ["pipeline"])
    for key, column in MOVED:
        op.execute(
            f"UPDATE runs SET {column} = (SELECT t.value FROM run_tags t "
            f"WHERE t.run_id = runs.id AND t.key = '{key}') "
            f"WHERE EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.key = '{key}')"
        )
        op.execute(f"DELETE FROM run_tags WHERE key = '{key}'")
    op.execute(
        "UPDATE runs SET pipeline = (SELECT p.pipeline FROM runs p WHERE p.id = runs.parent_id) "
        "WHERE kind = 'step' AND pipeline IS NULL"
    )


def downgrade() -> None:
    op.execute(
        "INSERT INTO run_tags (run_id, key, value) "
        "SELECT id, 'mloop.kind', kind FROM runs WHERE kind <> 'run'"
    )
    op.execute(
        "INSERT INTO run_tags (run_id, key, value) "
        "SELECT id, 'mloop.pipeline', pipeline FROM runs WHERE pipeline IS NOT NULL "
        "AND kind <> 'step'"
    )
    op.drop_index("ix_runs_pipeline", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("pipeline")
        batch.drop_column("kind")
