"""Runs record their process and heartbeat; runs and dataset versions can be removed softly;
a step output's manifest no longer carries its value's payload size.

- `runs.pid`, `runs.host`, `runs.heartbeat`: readers tell a run whose process died (`lost`)
  from one still at work; the index on (status, host) finds this host's running runs at once.
- `runs.deleted`, `dataset_versions.removed`: when a run was deleted or a dataset version
  removed; `mloop gc` purges them after its grace period.
- `run_outputs.size` becomes nullable, and the size recorded for each step output's manifest
  (`outputs/N` of a step run) is set to NULL, "unknown". Until now the pipeline worker
  recorded the value's payload size there, while the digest names the value's small JSON
  manifest, so `mloop fsck` flagged every step output. The manifest's real size is not in the
  database (it depends on the value's metadata) and a migration cannot reach the artifact
  store, which may be remote; NULL is what the store already records where a size is not
  known (run inputs, environments, model manifests): fsck then checks that the object is
  present and, with `--full`, that its content matches its digest. The files of each value
  are recorded with their true sizes beside it (`outputs/N.files/...`) and stay checked.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STEP_MANIFEST = re.compile(r"outputs/\d+")


def upgrade() -> None:
    op.add_column("runs", sa.Column("pid", sa.Integer))
    op.add_column("runs", sa.Column("host", sa.String(255)))
    op.add_column("runs", sa.Column("heartbeat", sa.Float))
    op.add_column("runs", sa.Column("deleted", sa.Float))
    op.create_index("ix_runs_status_host", "runs", ["status", "host"])
    op.add_column("dataset_versions", sa.Column("removed", sa.Float))
    with op.batch_alter_table("run_outputs") as batch:
        batch.alter_column("size", existing_type=sa.BigInteger, nullable=True)
    _forget_manifest_sizes()


def _forget_manifest_sizes() -> None:
    """NULL the size of every step output's manifest row (`outputs/N` of a step run)."""
    conn = op.get_bind()
    found = conn.execute(
        sa.text(
            "SELECT o.run_id, o.name FROM run_outputs o JOIN run_tags t "
            "ON t.run_id = o.run_id AND t.key = 'mloop.kind' AND t.value = 'step' "
            "WHERE o.name LIKE 'outputs/%'"
        )
    ).all()
    rows = [{"r": r, "n": n} for r, n in found if STEP_MANIFEST.fullmatch(n)]
    if rows:
        conn.execute(
            sa.text("UPDATE run_outputs SET size = NULL WHERE run_id = :r AND name = :n"), rows
        )


def downgrade() -> None:
    # The forgotten sizes were wrong; 0 keeps the column's old NOT NULL without inventing one.
    op.execute("UPDATE run_outputs SET size = 0 WHERE size IS NULL")
    with op.batch_alter_table("run_outputs") as batch:
        batch.alter_column("size", existing_type=sa.BigInteger, nullable=False)
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("removed")
    op.drop_index("ix_runs_status_host", "runs")
    with op.batch_alter_table("runs") as batch:
        for column in ("deleted", "heartbeat", "host", "pid"):
            batch.drop_column(column)
