"""The pandas flavor: a DataFrame or Series as one Parquet file, written by pyarrow.

Parquet keeps the index (named, multi-level or a RangeIndex), categoricals, nullable integers
and booleans, strings, time zones and `attrs`, through the pandas metadata pyarrow embeds. It has
no write timestamps: the file's only version-dependent parts are the `created_by` line and
`pandas_version`, so two saves of an equal frame with the same libraries give the same bytes
(a tested property the pipeline cache relies on). A Series is stored as a one-column frame.
Only exact DataFrame and Series are handled: a subclass (a GeoDataFrame) would come back as the
base class, so it goes to pickle. A column pyarrow cannot type (mixed ints and strings) is
refused with the column's name.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mloop.errors import InvalidInput
from mloop.flavors.protocol import JSON, missing

FILE = "frame.parquet"


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a core dependency
        raise missing("pandas", "pyarrow", None) from exc
    return pa, pq


class PandasFlavor:
    """DataFrames and Series as Parquet; see the module docstring."""

    name = "pandas"
    requires_trust = False
    returns_paths = False

    def handles(self, obj: object) -> bool:
        pd = sys.modules.get("pandas")  # a DataFrame exists only if pandas is imported
        return pd is not None and type(obj) in (pd.DataFrame, pd.Series)

    def save(self, obj: Any, folder: Path, *, trust: bool = False) -> dict[str, JSON]:
        import pandas as pd

        pa, pq = _pyarrow()
        series = isinstance(obj, pd.Series)
        frame = obj.to_frame() if series else obj
        try:
            table = pa.Table.from_pandas(frame, preserve_index=None)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise InvalidInput(
                f"cannot store this {type(obj).__name__} as Parquet: {exc}",
                "give each column one type (and columns unique names), "
                "or mark the step trust=True to pickle it",
            ) from exc
        pq.write_table(table, folder / FILE)
        meta: dict[str, JSON] = {
            "kind": "series" if series else "frame",
            "shape": list(obj.shape),
            "columns": [str(c) for c in frame.columns],
            "dtypes": [str(t) for t in frame.dtypes],
        }
        if series:
            meta["unnamed"] = obj.name is None
        return meta

    def load(
        self,
        folder: Path,
        meta: dict[str, JSON],
        *,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
    ) -> Any:
        _, pq = _pyarrow()
        frame = pq.read_table(folder / FILE).to_pandas()
        if meta.get("kind") != "series":
            return frame
        if frame.shape[1] != 1:
            raise InvalidInput(f"{FILE} should hold one column for a Series, not {frame.shape[1]}")
        series = frame.iloc[:, 0]
        return series.rename(None) if meta.get("unnamed") is True else series


FLAVOR = PandasFlavor()
