"""Gates: rules a pipeline's result must pass before anyone relies on it (CI, promotion).

A gate is written the way people say it, `accuracy >= 0.7`, `rmse < 3.5`, `accuracy >= champion
+ 0.01`, `demographic_parity(group) <= 0.1` or `data_validation`, in one format wherever it is
written: one gate or a list of them (`parse_gate_list`), under a pipeline in `gates:` (a run is
held to metric thresholds only: `run_gates`) and under a model in `models:` (its promotion).
`evaluate` checks metric gates against numbers it is given. Nothing here reads a run or a store:
the caller gathers the metrics, so the same rules serve `mloop ci` and the registry's promotion.
A metric that was never logged fails its gate, with the metrics that were logged named, since a
gate that passes because its number is missing guards nothing.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from mloop.errors import InvalidInput

# Longest operators first, so `>=` is not read as `>` followed by `=0.7`.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_GATE = re.compile(r"\s*(?P<metric>[^\s<>=!]+)\s*(?P<op>>=|<=|>|<)\s*(?P<value>\S+)\s*")
HINT = "write METRIC OP NUMBER with OP one of >=, >, <=, <: e.g. 'accuracy >= 0.7' or 'rmse < 3.5'"
MAX_NAMED = 8  # metrics named when one is missing


def number_text(value: float) -> str:
    """A number as short as it can be written without losing digits: 0.7, 3, 1e-05.

    Example:
        >>> number_text(0.7), number_text(3.0), number_text(0.8533333333333334)
        ('0.7', '3', '0.853333333333333')
    """
    return f"{value:.15g}"


@dataclass(frozen=True, slots=True)
class Gate:
    """`metric op threshold`: passes when the metric's value compares true with the threshold."""

    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {number_text(self.threshold)}"


@dataclass(frozen=True, slots=True)
class GateRecord:
    """One gate checked, for `mloop ci` and for a promotion alike (a model version keeps the
    records of its last promotion): the gate as written, whether it passed, the value it saw
    and the bound it held that value to (None when missing or when the gate has none, such
    as `data_validation`), and `reason`, why it passed or not, in numbers."""

    gate: str
    passed: bool
    observed: float | None = None
    required: float | None = None
    reason: str = ""


def parse_gate(text: str) -> Gate:
    """Read one gate expression; metric names may contain dots, dashes and slashes.

    Raises:
        InvalidInput: the text is not `METRIC OP NUMBER`, or the number is not finite.

    Example:
        >>> parse_gate("val.accuracy >= 0.7")
        Gate(metric='val.accuracy', op='>=', threshold=0.7)
    """
    if not isinstance(text, str):
        raise InvalidInput(f"a gate must be text like 'accuracy >= 0.7', not {text!r}", HINT)
    found = _GATE.fullmatch(text)
    if found is None:
        why = "use >=, >, <= or <" if re.search(r"==|!=|=>|=<", text) else "not METRIC OP NUMBER"
        raise InvalidInput(f"invalid gate {text!r}: {why}", HINT)
    raw = found["value"]
    try:
        threshold = float(raw)
    except ValueError:
        raise InvalidInput(f"invalid gate {text!r}: {raw!r} is not a number", HINT) from None
    if not math.isfinite(threshold):
        raise InvalidInput(f"invalid gate {text!r}: the threshold must be a finite number", HINT)
    return Gate(found["metric"], found["op"], threshold)


def parse_gates(texts: Iterable[str]) -> tuple[Gate, ...]:
    """Read a list of gate expressions, in order.

    Example:
        >>> [str(g) for g in parse_gates(["accuracy>=0.70", "f1 > .5"])]
        ['accuracy >= 0.7', 'f1 > 0.5']
    """
    return tuple(parse_gate(text) for text in texts)


def evaluate(gates: Iterable[Gate], metrics: Mapping[str, float]) -> tuple[GateRecord, ...]:
    """Check each gate against `metrics` (name -> value); one result per gate, in order.

    A missing metric or a NaN fails its gate; the reason names what was there instead.

    Example:
        >>> [r.passed for r in evaluate(parse_gates(["acc >= 0.7", "loss < 1"]), {"acc": 0.8})]
        [True, False]
    """
    results: list[GateRecord] = []
    for gate in gates:
        text, bound = str(gate), gate.threshold
        value = metrics.get(gate.metric)
        if value is None:
            results.append(GateRecord(text, False, None, bound, _missing(gate.metric, metrics)))
            continue
        value = float(value)
        shown = f"{gate.metric} = {value_text(value, gate.threshold)}"
        target = f"{gate.op} {number_text(gate.threshold)}"
        if math.isnan(value):
            results.append(GateRecord(text, False, value, bound, f"{shown}, not a number"))
        elif OPERATORS[gate.op](value, gate.threshold):
            results.append(GateRecord(text, True, value, bound, f"{shown} ({target})"))
        else:
            results.append(GateRecord(text, False, value, bound, f"{shown}, needs {target}"))
    return tuple(results)


def value_text(value: float, threshold: float) -> str:
    """A measured value in four significant digits, or all of them when four would make it
    look equal to the threshold it is compared with (0.69999 is not 0.7).

    Example:
        >>> value_text(0.853333, 0.99), value_text(0.69999, 0.7)
        ('0.8533', '0.69999')
    """
    short = f"{value:.4g}"
    return short if float(short) != threshold or value == threshold else number_text(value)


def _missing(metric: str, metrics: Mapping[str, float]) -> str:
    if not metrics:
        return f"metric {metric!r} was not logged; the run logged no metrics"
    names = sorted(metrics)
    shown = ", ".join(names[:MAX_NAMED]) + (", …" if len(names) > MAX_NAMED else "")
    return f"metric {metric!r} was not logged; the run has: {shown}"


# --- promotion gates: what a model version must pass before an alias points at it ---------

_CHAMPION = re.compile(
    r"\s*(?P<metric>[^\s<>=!]+)\s*(?P<op>>=|<=|>|<)\s*champion\s*(?:(?P<sign>[+-])\s*(?P<margin>\S+))?\s*"
)
_BIAS = re.compile(
    r"\s*(?P<measure>demographic_parity|equal_opportunity)\((?P<column>[^)\s]+)\)\s*"
    r"(?P<op><=|<)\s*(?P<value>\S+)\s*"
)
PROMOTION_HINT = (
    "write 'accuracy >= 0.9', 'accuracy >= champion + 0.01', 'data_validation', "
    "'demographic_parity(COLUMN) <= 0.1' or 'equal_opportunity(COLUMN) <= 0.1'"
)


@dataclass(frozen=True, slots=True)
class ChampionGate:
    """Beat the current champion on the holdout: `metric op champion's value + margin`."""

    metric: str
    op: str
    margin: float = 0.0

    def __str__(self) -> str:
        sign = "+" if self.margin >= 0 else "-"
        margin = f" {sign} {number_text(abs(self.margin))}" if self.margin else ""
        return f"{self.metric} {self.op} champion{margin}"

    def passes(self, candidate: float, champion: float) -> bool:
        return OPERATORS[self.op](candidate, champion + self.margin)


@dataclass(frozen=True, slots=True)
class BiasGate:
    """A fairness bound across the groups of a sensitive column, measured on the holdout:
    demographic parity difference (gap in positive-prediction rates) or equal opportunity
    difference (gap in true-positive rates)."""

    measure: str
    column: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.measure}({self.column}) {self.op} {number_text(self.threshold)}"


@dataclass(frozen=True, slots=True)
class ValidationGate:
    """The data the version was trained on passed validation."""

    def __str__(self) -> str:
        return "data_validation"


PromotionGate = Gate | ChampionGate | BiasGate | ValidationGate


def parse_promotion_gate(text: str) -> PromotionGate:
    """Read one promotion gate: a metric threshold, a champion comparison, a bias bound, or
    `data_validation`.

    Example:
        >>> parse_promotion_gate("accuracy >= champion + 0.01")
        ChampionGate(metric='accuracy', op='>=', margin=0.01)
    """
    if not isinstance(text, str):
        raise InvalidInput(
            f"a gate must be text like 'accuracy >= 0.7', not {text!r}", PROMOTION_HINT
        )
    if text.strip() == "data_validation":
        return ValidationGate()
    champion = _CHAMPION.fullmatch(text)
    if champion is not None:
        margin = 0.0
        if champion["margin"] is not None:
            try:
                margin = float(champion["margin"])
            except ValueError:
                raise InvalidInput(
                    f"invalid gate {text!r}: {champion['margin']!r} is not a number",
                    PROMOTION_HINT,
                ) from None
            margin = -margin if champion["sign"] == "-" else margin
        return ChampionGate(champion["metric"], champion["op"], margin)
    bias = _BIAS.fullmatch(text)
    if bias is not None:
        try:
            bound = float(bias["value"])
        except ValueError:
            raise InvalidInput(f"invalid gate {text!r}: not a number", PROMOTION_HINT) from None
        return BiasGate(bias["measure"], bias["column"], bias["op"], bound)
    try:
        return parse_gate(text)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, PROMOTION_HINT) from None


def parse_gate_list(value: object) -> tuple[PromotionGate, ...]:
    """The one way gates are written, under a pipeline in `gates:` and under a model in
    `models:`: one gate as text or a list of them, each in `parse_promotion_gate`'s grammar;
    blank entries are skipped and nothing at all (empty, `~`, `[]`) means no gates.

    Example:
        >>> [str(g) for g in parse_gate_list(["accuracy>=0.70", "", "accuracy >= champion"])]
        ['accuracy >= 0.7', 'accuracy >= champion']
        >>> parse_gate_list("rmse < 3")
        (Gate(metric='rmse', op='<', threshold=3.0),)
    """
    if not value:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise InvalidInput(
            f"give a list of gates such as ['accuracy >= 0.7'], not {type(value).__name__}",
            PROMOTION_HINT,
        )
    return tuple(parse_promotion_gate(item) for item in items if item is not None and item != "")


def run_gates(gates: Iterable[PromotionGate]) -> tuple[Gate, ...]:
    """The gates a pipeline's run can be held to: metric thresholds. A run has no champion,
    holdout or training-data check of its own; those gates belong to a model's promotion.

    Example:
        >>> run_gates(parse_gate_list("f1 > champion"))
        Traceback (most recent call last):
        mloop.errors.InvalidInput: 'f1 > champion' is a promotion gate, not one a run can pass
    """
    found: list[Gate] = []
    for gate in gates:
        if not isinstance(gate, Gate):
            raise InvalidInput(
                f"{str(gate)!r} is a promotion gate, not one a run can pass",
                f"move it under `models: NAME: gates:`, or {HINT}",
            )
        found.append(gate)
    return tuple(found)
