"""CSV in, as MLflow's scoring server reads it: for a `text/csv` request body and for the
.csv files `mloop models predict` scores, so both see the same rows.

MLflow's `parse_csv_input` is `pandas.read_csv` with the header row as the column names and
the signature's types as dtypes. Here only the text columns are pinned (read as text, so a
code like `007` stays `007`); numbers are left to pandas and then to the column rules
(`columns.py`), which name the column and row of a bad value instead of failing the whole
parse. Empty cells and pandas' usual markers (`NA`, `null`, ...) are missing values, as they
were when the training data was read with pandas.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from mloop.domain.model import Signature
from mloop.errors import InvalidInput

CSV_HINT = (
    "CSV starts with a header row naming the columns, as DataFrame.to_csv(index=False) writes"
)


def read_csv(source: bytes | Path, signature: Signature | None, where: str) -> Any:
    """A DataFrame from CSV bytes or a .csv file, text columns kept as text.

    Example:
        >>> read_csv(b"a,region\\n1,007\\n", signature, "the body")["region"][0]  # doctest: +SKIP
        '007'
    """
    import pandas as pd

    text = {
        c.name: object
        for c in (signature.inputs if signature is not None else ())
        if not c.numeric and not c.dtype.startswith("datetime")
    }
    try:
        return pd.read_csv(
            io.BytesIO(source) if isinstance(source, bytes) else source,
            dtype=text or None,
            encoding="utf-8",
        )
    except (ValueError, OverflowError, pd.errors.ParserError) as exc:  # UnicodeDecodeError too
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"cannot read {where} as CSV: {reason}", CSV_HINT) from None
