"""Input signatures: inferred from an example or the training frame, never guessed silently.

Whether a column may be missing is a fact about the data a model was trained on, not about a
few rows: an input example gives names and types, and a column's nullability comes from the
profile of the training dataset when the version has one (nullable if the training data had a
missing value there, or the example has); without one, every column of an example is nullable,
since five rows without a missing value do not show that none will ever come (the trap MLflow
warns about). The training frame itself, when a step read it, is all the data and is used as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mloop.domain.dataset import ColumnProfile, TableProfile
from mloop.domain.model import NUMERIC_DTYPES, ColumnSpec, Signature
from mloop.errors import InvalidInput


def _dtype(series: Any) -> str:
    import pandas as pd

    kind = series.dtype
    if pd.api.types.is_bool_dtype(kind):
        return "bool"
    if pd.api.types.is_integer_dtype(kind):
        return "int64"
    if pd.api.types.is_float_dtype(kind):
        return "float64"
    if pd.api.types.is_datetime64_any_dtype(kind):
        return "datetime64[ns]"
    return "string"


def _profile_dtype(dtype: str) -> str:
    """A profile's dtype name (Arrow's, made numpy-like) as a signature dtype."""
    if dtype.startswith(("int", "uint")):
        return "int64"
    if dtype.startswith(("float", "double", "decimal")):
        return "float64"
    if dtype == "bool":
        return "bool"
    if dtype.startswith("timestamp"):
        return "datetime64[ns]"
    return "string"


def infer_signature(example: Any, tables: Sequence[TableProfile] | None = None) -> Signature:
    """The signature of a DataFrame (column names, dtypes, nullability) or a 2-D array.

    With `tables` (None: `example` is the whole training frame), `example` is a few rows: a
    column is nullable if it has a missing value in `example` or in the profiled training data,
    and, when no table profiles it, always (see the module docstring).

    Example:
        >>> infer_signature(frame[["price", "region"]]).names  # doctest: +SKIP
        ('price', 'region')
    """
    import numpy as np
    import pandas as pd

    def nullable(name: str, seen_missing: bool) -> bool:
        if tables is None or seen_missing:
            return seen_missing
        profiled = [c for table in tables for c in table.columns if c.name == name]
        return any(c.nulls > 0 for c in profiled) if profiled else True

    if isinstance(example, pd.DataFrame):
        return Signature(
            tuple(
                ColumnSpec(
                    str(c), _dtype(example[c]), nullable(str(c), bool(example[c].isna().any()))
                )
                for c in example.columns
            )
        )
    array = np.asarray(example)
    if array.ndim != 2:
        raise InvalidInput(
            f"an input example must be 2-D (rows x columns), not {array.ndim}-D",
            "pass a DataFrame or a 2-D array with a few training rows",
        )
    dtype = "float64" if array.dtype.kind in "fiu" else "string"
    return Signature(
        tuple(ColumnSpec(f"f{i}", dtype, tables is not None) for i in range(array.shape[1]))
    )


def signature_from_model(
    model: Any, frames: list[Any], tables: Sequence[TableProfile] = ()
) -> Signature | None:
    """The signature from the model's own record of its inputs (`feature_names_in_`), typed by
    a training frame that has those columns, or by the recorded profile of a dataset table the
    run read; else `n_features_in_` unnamed float columns."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        wanted = [str(n) for n in names]
        for frame in frames:
            if set(wanted) <= {str(c) for c in frame.columns}:
                return infer_signature(frame[wanted])
        for table in tables:
            columns = {c.name: c for c in table.columns}
            if set(wanted) <= set(columns):
                return Signature(
                    tuple(
                        ColumnSpec(n, _profile_dtype(columns[n].dtype), columns[n].nulls > 0)
                        for n in wanted
                    )
                )
        return None  # names without types: better no signature than a wrong one
    count = getattr(model, "n_features_in_", None)
    if isinstance(count, int):
        return Signature(tuple(ColumnSpec(f"f{i}", "float64") for i in range(count)))
    declared = getattr(model, "input_columns", None)  # an ONNX model's declared inputs
    if callable(declared):
        columns = declared()
        if columns:
            return Signature(tuple(ColumnSpec(n, d) for n, d in columns))
    return None


def _typical(column: ColumnProfile | None, dtype: str) -> Any:
    """One value a column really holds, from its training profile, else a neutral one."""
    if column is not None and column.top and dtype in ("string", "object"):
        return column.top[0][0]  # the most common category, which the model has seen
    if dtype.startswith("datetime"):
        return "2024-01-01T00:00:00"
    if dtype == "bool":
        return False
    middle = dict(column.quantiles).get(0.5) if column is not None else None
    middle = column.mean if middle is None and column is not None else middle
    if dtype in NUMERIC_DTYPES:
        if dtype.startswith(("int", "uint")):
            return round(middle) if middle is not None else 0
        return float(f"{middle:.4g}") if middle is not None else 0.0
    return "text"


def example_row(signature: Signature, tables: Sequence[TableProfile] = ()) -> dict[str, Any]:
    """A row the server accepts: for each input, a value of its type, and where the training
    data was profiled, a value it really held (its median, its most common category).

    Example:
        >>> example_row(Signature((ColumnSpec("plan", "string"),)))
        {'plan': 'text'}
    """
    found = {c.name: c for table in reversed(tables) for c in table.columns}
    return {spec.name: _typical(found.get(spec.name), spec.dtype) for spec in signature.inputs}
