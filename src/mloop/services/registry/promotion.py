"""Promotion: evaluate a version's gates, store the results, and move the alias if they pass.

Metric gates read the version's recorded metrics. Champion and bias gates are measured, not
read: both models predict on the same holdout dataset (from mloop.yaml), so "beats the champion"
compares like with like. `data_validation` re-checks the version's training data against the
version before it (a file that joined its tables, as landed rows do, against the largest of them:
the model read them as one table). A forced promotion needs a reason and records the failed gates
with it.

A model that cannot be loaded without trust (`ModelService.trust_reason`) fails no gate: nothing was
measured, so the promotion stops with `NeedsTrust` naming which model (the candidate or the
champion) and is not recorded; the caller's `trust` lets both load.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mloop.domain.gate import (
    BiasGate,
    ChampionGate,
    Gate,
    GateRecord,
    PromotionGate,
    ValidationGate,
    evaluate,
    number_text,
)
from mloop.domain.model import ModelVersion
from mloop.domain.policy import ModelPolicy
from mloop.errors import GateFailed, InvalidInput, MloopError, NeedsTrust
from mloop.services.data.versioning import DataService, parse_version_ref
from mloop.services.registry.fairness import difference, group_rates, positive_class
from mloop.services.registry.models import ModelService


@dataclass(frozen=True, slots=True)
class PromotionResult:
    version: ModelVersion
    alias: str
    gates: tuple[GateRecord, ...]
    forced: bool


def _metric(name: str) -> Callable[[Any, Any], float] | None:
    from sklearn import metrics

    table: dict[str, Callable[[Any, Any], float]] = {
        "accuracy": metrics.accuracy_score,
        "f1": lambda y, p: metrics.f1_score(
            y, p, average="binary" if len(set(y)) <= 2 else "macro"
        ),
        "precision": lambda y, p: metrics.precision_score(y, p, zero_division=0),
        "recall": lambda y, p: metrics.recall_score(y, p, zero_division=0),
        "rmse": lambda y, p: math.sqrt(metrics.mean_squared_error(y, p)),
        "mae": metrics.mean_absolute_error,
        "r2": metrics.r2_score,
    }
    return table.get(name)


class Promoter:
    """Promotes model versions through the gates of each model's `ModelPolicy` (parsed from
    mloop.yaml when the project opened); a model with no policy has no gates."""

    def __init__(
        self, models: ModelService, data: DataService, policies: Mapping[str, ModelPolicy]
    ) -> None:
        self.models = models
        self.data = data
        self.policies = policies

    def policy(self, name: str) -> ModelPolicy:
        return self.policies.get(name) or ModelPolicy()

    def gates_of(self, name: str) -> tuple[PromotionGate, ...]:
        return self.policy(name).gates

    def evaluate(
        self, name: str, version: int, alias: str = "champion", trust: bool = False
    ) -> tuple[GateRecord, ...]:
        """Every gate of the model, measured for `version` against the current `alias` holder;
        raises `NeedsTrust` when a model the gates must run cannot load without `trust`."""
        candidate = self.models.get(f"{name}:{version}")
        holdout = _Holdout(self, name, trust)
        records: list[GateRecord] = []
        for gate in self.gates_of(name):
            try:
                records.append(self._check(gate, candidate, alias, holdout))
            except NeedsTrust:
                raise
            except MloopError as exc:
                records.append(GateRecord(str(gate), False, reason=exc.message))
            except Exception as exc:  # a model that cannot predict on the holdout fails
                problem = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
                records.append(GateRecord(str(gate), False, reason=problem))
        return tuple(records)

    def _check(
        self, gate: PromotionGate, candidate: ModelVersion, alias: str, holdout: _Holdout
    ) -> GateRecord:
        if isinstance(gate, Gate):
            result = evaluate([gate], candidate.metrics)[0]
            return result
        if isinstance(gate, ChampionGate):
            try:
                champion = self.models.get(f"{candidate.name}@{alias}")
            except MloopError:
                return GateRecord(str(gate), True, reason=f"no {alias} yet: nothing to beat")
            if champion.version == candidate.version:
                return GateRecord(str(gate), True, reason=f"{candidate.ref} is the {alias}")
            ours = holdout.score(candidate, gate.metric)
            theirs = holdout.score(champion, gate.metric, f"the {alias} {champion.ref}")
            passed = gate.passes(ours, theirs)
            needed = theirs + gate.margin
            reason = (
                f"{gate.metric} on {holdout.ref}: {number_text(round(ours, 6))} vs {alias} "
                f"{champion.ref} {number_text(round(theirs, 6))}"
                + ("" if passed else f", needs {gate.op} {number_text(round(needed, 6))}")
            )
            return GateRecord(str(gate), passed, ours, needed, reason)
        if isinstance(gate, BiasGate):
            value = holdout.bias(candidate, gate)
            passed = value <= gate.threshold if gate.op == "<=" else value < gate.threshold
            reason = (
                f"{gate.measure} difference across {gate.column} on {holdout.ref}: "
                f"{number_text(round(value, 6))}"
                + ("" if passed else f", needs {gate.op} {number_text(gate.threshold)}")
            )
            return GateRecord(str(gate), passed, value, gate.threshold, reason)
        assert isinstance(gate, ValidationGate)
        return self._validated(candidate)

    def _validated(self, candidate: ModelVersion) -> GateRecord:
        from mloop.services.data.validation import DataValidator

        if not candidate.datasets:
            return GateRecord("data_validation", False, reason="no dataset version in lineage")
        problems: list[str] = []
        for ref in candidate.datasets:
            if ref.version is None or ref.version <= 1:
                continue  # a first version has nothing to be checked against
            for path, report in DataValidator(self.data).validate(str(ref), joined=True):
                if not report.ok:
                    problems.append(f"{ref} {path}: {_checks(len(report.failures))} failed")
        if problems:
            return GateRecord("data_validation", False, reason="; ".join(problems))
        return GateRecord(
            "data_validation", True, reason=f"{', '.join(map(str, candidate.datasets))} passed"
        )

    def promote(
        self,
        name: str,
        version: int,
        alias: str = "champion",
        force: bool = False,
        reason: str | None = None,
        trust: bool = False,
    ) -> PromotionResult:
        """Point `alias` at `version` if every gate passes (or `force`, with a reason);
        `trust` lets the gates load models that need it (see the module docstring).

        Example:
            >>> promoter.promote("churn", 3, "champion").gates[0].passed  # doctest: +SKIP
            True
        """
        if force and not (reason and reason.strip()):
            raise InvalidInput("--force needs a reason", 'add --reason "why this is safe"')
        candidate = self.models.get(f"{name}:{version}")
        records = self.evaluate(name, candidate.version, alias, trust)
        self.models.metadata.models.set_gates(name, candidate.version, records)
        failed = [r for r in records if not r.passed]
        if failed and not force:
            detail = "; ".join(f"{r.gate}: {r.reason}" for r in failed)
            raise GateFailed(
                f"{candidate.ref} did not pass {len(failed)} of {len(records)} gates: {detail}",
                'improve the model, or if it must ship anyway: --force --reason "..."',
            )
        note = reason if force else None
        self.models.set_alias(name, candidate.version, alias, reason=note)
        return PromotionResult(candidate, alias, records, bool(failed) and force)


class _Holdout:
    """The holdout frame of a model, loaded once per promotion, and predictions on it."""

    def __init__(self, promoter: Promoter, name: str, trust: bool = False) -> None:
        self.promoter = promoter
        self.trust = trust
        self.policy = promoter.policy(name)
        self.ref = self.policy.holdout or "-"
        self._frame: Any = None

    def frame(self) -> Any:
        if self._frame is None:
            if self.policy.holdout is None or self.policy.label is None:
                raise InvalidInput("this gate needs `holdout` and `label` set for the model")
            name, version = parse_version_ref(self.policy.holdout)
            local = self.promoter.data.open(name, version)
            self._frame = local.to_pandas(self.policy.table)
            self.ref = local.version.ref
        return self._frame

    def predictions(self, version: ModelVersion, role: str | None = None) -> tuple[Any, Any, Any]:
        """The holdout, its labels and `version`'s predictions; `role` names the model in a
        refusal to load it ("the champion churn:2"; default: the candidate)."""
        frame = self.frame()
        label = self.policy.label
        if label not in frame.columns:
            raise InvalidInput(f"the holdout {self.ref} has no column {label!r}")
        try:
            model = self.promoter.models.load(version.ref, trust=self.trust)
        except NeedsTrust as exc:
            raise exc.needing(subject=role or f"the candidate {version.ref}") from None
        features = frame.drop(columns=[label])
        names = getattr(model, "feature_names_in_", None)
        wanted = version.signature.names if version.signature is not None else names
        if wanted is not None:
            missing = [str(c) for c in wanted if c not in features.columns]
            if missing:
                raise InvalidInput(f"the holdout {self.ref} lacks {', '.join(missing)}")
            features = features[[str(c) for c in wanted]]
        return frame, frame[label].to_numpy(), model.predict(features)

    def score(self, version: ModelVersion, metric: str, role: str | None = None) -> float:
        scorer = _metric(metric)
        if scorer is None:
            raise InvalidInput(f"mloop cannot measure {metric!r} on a holdout")
        _, truth, predicted = self.predictions(version, role)
        return float(scorer(truth, predicted))

    def bias(self, version: ModelVersion, gate: BiasGate) -> float:
        frame, truth, predicted = self.predictions(version)
        if gate.column not in frame.columns:
            raise InvalidInput(f"the holdout {self.ref} has no column {gate.column!r}")
        groups = frame[gate.column].to_numpy()
        positive = positive_class(truth.tolist())
        return difference(group_rates(gate.measure, predicted, groups, positive, truth))


def _checks(n: int) -> str:
    return f"{n} check" if n == 1 else f"{n} checks"
