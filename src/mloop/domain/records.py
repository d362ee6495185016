"""Turning records into plain JSON-ready data and sizes into words: what every interface shares."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any


def to_plain(value: Any) -> Any:
    """A JSON-ready copy of a record, tuple, mapping or enum, recursively.

    Example:
        >>> from mloop.domain.run import Metric
        >>> to_plain(Metric("loss", 0.5, 1, 0.0))
        {'key': 'loss', 'value': 0.5, 'step': 1, 'timestamp': 0.0}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def human_size(n: int) -> str:
    """Bytes as people read them (binary units), for labels and listings alike.

    Example:
        >>> human_size(3_565_158)
        '3.4 MiB'
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
