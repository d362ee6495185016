"""Signatures the request tests share: three numbers (one nullable) and a mixed table."""

from __future__ import annotations

from mloop.domain.model import ColumnSpec, Signature

NUMBERS = Signature(
    (
        ColumnSpec("a", "float64"),
        ColumnSpec("b", "float64", nullable=True),
        ColumnSpec("n", "int64"),
    )
)
MIXED = Signature(
    (
        ColumnSpec("age", "int64"),
        ColumnSpec("income", "float64", nullable=True),
        ColumnSpec("region", "string"),
        ColumnSpec("member", "bool"),
    )
)
