"""Events: the append-only audit record of every change (who, what, when, why)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """`action` is `noun.verb` (`run.started`, `dataset.version_created`); `ref` the address."""

    at: float
    actor: str
    action: str
    ref: str
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None
