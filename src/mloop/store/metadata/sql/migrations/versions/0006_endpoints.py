"""Endpoints: their deployments, the per-process traffic reports the analysis adds up, and the
lease that lets exactly one process decide each analysis step.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("current", sa.Integer, nullable=False),
    )
    op.create_table(
        "deployments",
        sa.Column("endpoint", sa.String(63), sa.ForeignKey("endpoints.name"), primary_key=True),
        sa.Column("sequence", sa.Integer, primary_key=True),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("versions", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.Column("policy", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("started", sa.Float),
    )
    op.create_table(
        "endpoint_stats",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(63), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("reporter", sa.String(300), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency", sa.Text, nullable=False),
        sa.Column("labelled", sa.BigInteger, nullable=False),
        sa.Column("correct", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_endpoint_stats_endpoint_sequence_at", "endpoint_stats", ["endpoint", "sequence", "at"]
    )
    op.create_table(
        "endpoint_leases",
        sa.Column("endpoint", sa.String(63), primary_key=True),
        sa.Column("holder", sa.String(300), nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("endpoint_leases")
    op.drop_index("ix_endpoint_stats_endpoint_sequence_at", "endpoint_stats")
    op.drop_table("endpoint_stats")
    op.drop_table("deployments")
    op.drop_table("endpoints")
