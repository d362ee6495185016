"""The first schema: runs, datasets, environments, lineage and events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("ended", sa.Float),
        sa.Column("parent_id", sa.String(32), sa.ForeignKey("runs.id")),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("code_commit", sa.String(64)),
        sa.Column("code_diff", sa.String(64)),
        sa.Column("code_repo", sa.Text),
        sa.Column("environment", sa.String(64)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_runs_started", "runs", ["started"])
    op.create_index("ix_runs_parent", "runs", ["parent_id"])
    op.create_table(
        "run_params",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("value_num", sa.Float),
    )
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "run_metrics",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_run_metrics_run_key_step", "run_metrics", ["run_id", "key", "step"])
    op.create_table(
        "run_latest_metrics",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Float),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_run_latest_metrics_key_value", "run_latest_metrics", ["key", "value"])
    op.create_table(
        "run_inputs",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("ref", sa.String(300), primary_key=True),
        sa.Column("name", sa.String(300)),
    )
    op.create_index("ix_run_inputs_ref", "run_inputs", ["kind", "ref"])
    op.create_table(
        "run_outputs",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("name", sa.String(500), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_run_outputs_digest", "run_outputs", ["digest"])
    op.create_table(
        "environments",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("python", sa.String(64), nullable=False),
        sa.Column("packages_digest", sa.String(64), nullable=False),
        sa.Column("package_count", sa.Integer, nullable=False),
    )
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("latest", sa.Integer, nullable=False),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(63), sa.ForeignKey("datasets.name"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("total_size", sa.BigInteger, nullable=False),
        sa.Column("sources", sa.Text, nullable=False),
        sa.Column("tables", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
        sa.UniqueConstraint("dataset", "version", name="uq_dataset_versions_dataset_version"),
    )
    op.create_table(
        "dataset_files",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("dataset_versions.id"), primary_key=True),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_dataset_files_digest", "dataset_files", ["digest"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("ref", sa.String(300), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("details", sa.Text, nullable=False),
    )
    op.create_index("ix_events_ref", "events", ["ref"])
    op.create_index("ix_events_at", "events", ["at"])


def downgrade() -> None:
    for table in (
        "events",
        "dataset_files",
        "dataset_versions",
        "datasets",
        "environments",
        "run_outputs",
        "run_inputs",
        "run_latest_metrics",
        "run_metrics",
        "run_tags",
        "run_params",
        "runs",
    ):
        op.drop_table(table)
