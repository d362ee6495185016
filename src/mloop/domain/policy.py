"""ModelPolicy: what one model's promotion asks, from `models:` in mloop.yaml, parsed once.

The settings read it when the project opens; the registry's Promoter takes the typed value and
never sees the text again, so a gate is checked where it is written, not at promotion time.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from mloop.domain.gate import BiasGate, ChampionGate, PromotionGate, parse_gate_list
from mloop.errors import InvalidInput

POLICY_KEYS = ("gates", "holdout", "label", "table")


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """Per model: its promotion `gates`; `holdout`, the dataset (NAME or NAME:V) champion and
    bias gates are measured on; `label`, its target column; `table`, which of its tables."""

    gates: tuple[PromotionGate, ...] = ()
    holdout: str | None = None
    label: str | None = None
    table: str | None = None

    def to_plain(self) -> dict[str, object]:
        """As written in mloop.yaml (gates spelled out plainly), for `mloop config show`."""
        found: dict[str, object] = {"gates": [str(g) for g in self.gates]}
        for key in ("holdout", "label", "table"):
            value = getattr(self, key)
            if value is not None:
                found[key] = value
        return found


def parse_model_policy(spec: object) -> ModelPolicy:
    """Read one model's entry under `models:`; gates that measure on the holdout need it.

    Example:
        >>> parse_model_policy({"gates": ["accuracy >= 0.8", "data_validation"]}).gates[1]
        ValidationGate()
    """
    if not isinstance(spec, Mapping):
        raise InvalidInput("give a mapping with gates, holdout, label")
    unknown = sorted(str(key) for key in set(spec) - set(POLICY_KEYS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], POLICY_KEYS, n=1)
        known = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(POLICY_KEYS)}"
        raise InvalidInput(f"unknown key {unknown[0]!r} ({known})")
    text = {k: None if spec.get(k) is None else str(spec[k]) for k in ("holdout", "label", "table")}
    policy = ModelPolicy(parse_gate_list(spec.get("gates")), **text)
    measured = [g for g in policy.gates if isinstance(g, ChampionGate | BiasGate)]
    if measured and (policy.holdout is None or policy.label is None):
        raise InvalidInput(f"the gate {str(measured[0])!r} needs `holdout` and `label`")
    return policy
