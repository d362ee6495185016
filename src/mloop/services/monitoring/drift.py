"""Drift of an endpoint's live requests from the data its model was trained on.

The reference is, by default, the table of the training dataset version that the serving model
version's lineage names (a table of it with the model's inputs as columns); `monitoring_reference`
in mloop.yaml names another dataset version instead. Its stored profile says which table and
which columns are numbers or categories, but its 20 equal-width bins are too coarse for KS and
Wasserstein (a heavy tail puts nearly every value into one bin), so the reference's summaries
(`domain.drift`: 1,000 quantile bins per number, counts per category) are computed once from
the version's data and kept in `.mloop/monitoring/`, named by the table's digest. The
predictions' reference is the model's own answers on that table, kept beside it, named by the
model's digest too: a regression's answers are spread less than its labels, so comparing with
the labels would flag drift that is not there.

A window's summaries come from the prediction log's Arrow table (`feature.NAME`, `prediction`),
without pandas; only the rows clients were answered with count (a shadow's copies repeat them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mloop.domain import drift as d
from mloop.domain.dataset import DatasetVersion, TableProfile
from mloop.domain.names import DatasetRef
from mloop.domain.prediction import FEATURE, PREDICTION, Window
from mloop.domain.records import to_plain
from mloop.errors import InvalidInput, MloopError

if TYPE_CHECKING:
    from mloop.domain.model import ModelVersion
    from mloop.services.data.versioning import DataService
    from mloop.services.predictions.reader import PredictionReader
    from mloop.services.registry.models import ModelService

CACHE_FORMAT = 2  # 2: true/false answers are categories (1 kept them as numbers 0 and 1)
SHADOW = "shadow"
PROFILE_HINT = (
    "`mloop data add NAME FILE` records a profile of each CSV or Parquet file; or name a "
    "profiled version in mloop.yaml: `monitoring_reference: NAME:VERSION`"
)


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's verdict; `score` is None when it could not be compared (`note` says why)."""

    method: str | None
    score: float | None
    threshold: float | None
    drifted: bool | None
    rows: int = 0
    note: str | None = None


@dataclass(frozen=True, slots=True)
class DriftReport:
    endpoint: str
    window: str
    requests: int
    rows: int
    model: str
    reference: str
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def drifted(self) -> list[str]:
        return [name for name, f in self.features.items() if f.drifted]

    def to_plain(self) -> dict[str, Any]:
        """What `mloop monitor status --json` prints: `features` maps each input to
        {method, score, threshold, drifted, rows, note}; `prediction` is one of those."""
        plain: dict[str, Any] = to_plain(self)
        return plain


@dataclass(frozen=True, slots=True)
class Reference:
    dataset: DatasetVersion
    table: TableProfile
    digest: str  # the table file's, naming the cached summaries

    @property
    def name(self) -> str:
        return f"{self.dataset.ref} {self.table.path}"


class DriftMonitor:
    """Per-feature and prediction drift of an endpoint's window of requests."""

    def __init__(
        self,
        models: ModelService,
        data: DataService,
        predictions: PredictionReader,
        cache: Path,
        reference: str | Mapping[str, str] | None = None,
        thresholds: Mapping[str, d.DriftRule] | None = None,
    ) -> None:
        self.models = models
        self.data = data
        self.predictions = predictions
        self.cache = cache
        self.reference = reference
        self.thresholds = dict(thresholds or {})

    def status(self, endpoint: str, window: Window) -> DriftReport:
        """Drift of `endpoint`'s requests in `window` from its reference.

        Raises:
            NotFound: no such endpoint, or no request logged in the window.
            InvalidInput: no reference with a profile can be found.
        """
        return self.compare(endpoint, window, self.predictions.read(endpoint, window).table)

    def compare(self, endpoint: str, window: Window, table: Any) -> DriftReport:
        """Drift of the logged rows `table` (the window's, as `PredictionReader.read` gave
        them) from the endpoint's reference; `monitor status` reads the window once for all."""
        import pyarrow.compute as pc

        table, served, version = self._answered(table)
        reference = self._reference(endpoint, version)
        notes: list[str] = []
        summaries = self._feature_summaries(reference, notes)
        served_rows = table.filter(pc.equal(table.column("model"), served))
        features = self._features(version, reference, summaries, table)
        prediction = self._prediction(version, reference, served_rows, notes)
        requests = len(pc.unique(table.column("request_id")))
        return DriftReport(
            endpoint,
            window.describe(),
            requests,
            table.num_rows,
            served,
            reference.name,
            features,
            prediction,
            tuple(notes),
        )

    def summaries(
        self, endpoint: str, table: Any
    ) -> dict[str, tuple[d.FeatureSummary, d.FeatureSummary]]:
        """Each input's (and, as `prediction`, the answers') reference and window summaries:
        the counts `compare` judges the same rows by, which `monitor report` draws. Those it
        cannot compare are left out (`compare` says why)."""
        import pyarrow.compute as pc

        table, served, version = self._answered(table)
        reference = self._reference(endpoint, version)
        found = self._feature_summaries(reference, [])
        pairs = {}
        for name, summary in found.items():
            if FEATURE + name in table.column_names:
                current = _window_summary(summary, table.column(FEATURE + name))
                if current is not None and current.rows:
                    pairs[name] = (summary, current)
        rows = table.filter(pc.equal(table.column("model"), served))
        answers = self._prediction_reference(version, reference, [])
        if answers is not None and PREDICTION in rows.column_names:
            current = _window_summary(answers, rows.column(PREDICTION))
            if current is not None and current.rows:
                pairs[PREDICTION] = (answers, current)
        return pairs

    def _answered(self, table: Any) -> tuple[Any, str, ModelVersion]:
        """The rows clients were answered with (a shadow's copies repeat them), the version
        that answered most of them, and its record."""
        import pyarrow.compute as pc

        answered = table.filter(pc.not_equal(table.column("role"), SHADOW))
        if answered.num_rows:
            table = answered
        served = _most_rows(table.column("model"))
        return table, served, self.models.get(served)

    # --- the reference -----------------------------------------------------------------------

    def _reference(self, endpoint: str, version: ModelVersion) -> Reference:
        configured = self.reference
        if isinstance(configured, Mapping):
            configured = configured.get(endpoint)
        if configured is not None:
            refs: tuple[DatasetRef, ...] = (DatasetRef.parse(configured),)
            where = f"monitoring_reference {configured}"
        elif version.datasets:
            refs = version.datasets
            where = f"{version.ref}'s training data ({', '.join(map(str, refs))})"
        else:
            raise InvalidInput(
                f"{version.ref} names no training dataset version to compare its traffic with",
                "register it from a run that read a dataset (mloop.data.get), or set "
                "`monitoring_reference: NAME:VERSION` in mloop.yaml",
            )
        inputs = set(version.signature.names) if version.signature else set()
        best: Reference | None = None
        held = -1
        for ref in refs:  # the table holding most of the model's inputs; the first on a tie
            dataset = self.data.get(str(ref), files=True)
            for table in dataset.tables:
                matched = len(inputs & {c.name for c in table.columns})
                if matched > held:
                    digest = next(f.digest for f in dataset.files if f.path == table.path)
                    best, held = Reference(dataset, table, digest), matched
        if best is None:
            raise InvalidInput(f"{where} has no profiled table to compare with", PROFILE_HINT)
        return best

    def _feature_summaries(self, ref: Reference, notes: list[str]) -> dict[str, d.FeatureSummary]:
        path = self.cache / f"reference-{ref.digest[:40]}-{d.BINS}-{CACHE_FORMAT}.json"

        def build() -> dict[str, d.FeatureSummary]:
            notes.append(
                f"{ref.name}: its profile's 20 bins are too coarse for KS and Wasserstein, so "
                f"its values were summarised once ({d.BINS} quantile bins), kept in {path}"
            )
            frame = self._frame(ref)
            out: dict[str, d.FeatureSummary] = {}
            for column in ref.table.columns:
                if column.kind == "numeric" and column.count:
                    values = frame[column.name].to_numpy(dtype=np.float64, na_value=np.nan)
                    out[column.name] = d.reference_summary(values)
                elif column.kind == "categorical" and column.count:
                    present = frame[column.name].dropna()
                    text = present.astype(str)
                    if present.dtype == bool:  # as Arrow writes the logged ones: true, false
                        text = text.str.lower()
                    counted = text.value_counts(sort=False)
                    out[column.name] = d.count_categories(
                        counted.index.tolist(),
                        counted.tolist(),
                        int(frame[column.name].isna().sum()),
                    )
            return out

        return _cached(path, build)

    def _frame(self, ref: Reference) -> Any:
        return self.data.open(ref.dataset.name, ref.dataset.version).to_pandas(ref.table.path)

    # --- the window --------------------------------------------------------------------------

    def _features(
        self,
        version: ModelVersion,
        ref: Reference,
        summaries: dict[str, d.FeatureSummary],
        table: Any,
    ) -> dict[str, FeatureDrift]:
        logged = {c.removeprefix(FEATURE) for c in table.column_names if c.startswith(FEATURE)}
        names = (
            list(version.signature.names) if version.signature else sorted(logged & set(summaries))
        )
        out: dict[str, FeatureDrift] = {}
        for name in names:
            if name not in summaries:
                out[name] = _unknown(f"not a profiled column of {ref.name}")
            elif name not in logged:
                out[name] = _unknown(f"missing from the logged requests of {version.ref}")
            else:
                out[name] = self._compare(name, summaries[name], table.column(FEATURE + name))
        return out

    def _prediction(
        self, version: ModelVersion, ref: Reference, rows: Any, notes: list[str]
    ) -> FeatureDrift | None:
        if PREDICTION not in rows.column_names:
            notes.append(f"{version.ref} answers several values per row: no prediction drift")
            return None
        reference = self._prediction_reference(version, ref, notes)
        if reference is None:
            return None
        return self._compare(PREDICTION, reference, rows.column(PREDICTION))

    def _prediction_reference(
        self, version: ModelVersion, ref: Reference, notes: list[str]
    ) -> d.FeatureSummary | None:
        """The model's own answers on its reference, summarised once (None, and a note, when
        the model cannot be run on it)."""
        path = self.cache / (
            f"predictions-{version.digest[:24]}-{ref.digest[:24]}-{d.BINS}-{CACHE_FORMAT}.json"
        )

        def build() -> dict[str, d.FeatureSummary]:
            loaded = self.models.load_predictor(version.ref)
            frame = self._frame(ref)
            names = list(version.signature.names) if version.signature else None
            inputs = frame[names] if names else frame
            answers = loaded.predict(inputs if loaded.wants_frame else inputs.to_numpy())
            return {PREDICTION: _summary_of(np.asarray(answers).reshape(len(frame), -1)[:, 0])}

        try:
            return _cached(path, build)[PREDICTION]
        except MloopError as exc:  # a model that needs trust to load
            notes.append(f"no prediction drift: {version.ref} on {ref.name}: {exc.message}")
        except (ValueError, TypeError, KeyError) as exc:  # the model refused its own data
            notes.append(f"no prediction drift: {version.ref} failed on {ref.name}: {exc}")
        return None

    def _compare(self, name: str, reference: d.FeatureSummary, column: Any) -> FeatureDrift:
        current = _window_summary(reference, column)
        if current is None:
            return _unknown("logged as text, while the reference holds numbers")
        if current.rows == 0:
            return _unknown("every logged value is missing", current.missing)
        rule = self.thresholds.get(name)
        method = rule.method if rule is not None else None
        threshold = rule.threshold if rule is not None else None
        if rule is not None and method is None and d.default_method(reference, current.rows).tests:
            threshold = None  # a size-of-shift threshold does not apply to a small window's test
        try:
            result = d.drift(reference, current, method, threshold)
        except ValueError as exc:
            return _unknown(str(exc), current.rows)
        return FeatureDrift(
            str(result.method), result.score, result.threshold, result.drifted, current.rows
        )


def _unknown(note: str, rows: int = 0) -> FeatureDrift:
    return FeatureDrift(None, None, None, None, rows, note)


def _most_rows(column: Any) -> str:
    import pyarrow.compute as pc

    counted = pc.value_counts(column)
    counts = counted.field("counts").to_numpy()
    return str(counted.field("values")[int(np.argmax(counts))].as_py())


def _window_summary(reference: d.FeatureSummary, column: Any) -> d.FeatureSummary | None:
    """The window's values in the reference's bins, or None when their kinds differ."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if reference.kind == d.NUMERIC:
        kind = column.type
        numbers = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        if not (numbers or pa.types.is_boolean(kind) or pa.types.is_null(kind)):
            return None  # true/false against 0/1 numbers: compared as 0 and 1
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        return d.summarise(values, reference.edges)
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    text = pc.cast(column, pa.string())
    counted = pc.value_counts(text.drop_null())
    return d.count_categories(
        [str(v) for v in counted.field("values").to_pylist()],
        counted.field("counts").to_pylist(),
        text.null_count,
    )


def _summary_of(values: Any) -> d.FeatureSummary:
    """The reference summary of a model's answers: numbers, or labels as categories. True and
    false are classes, spelt as Arrow writes the logged ones (true, false), as a true/false
    input is: the log holds them as booleans, which `_window_summary` counts as text."""
    if np.issubdtype(values.dtype, np.number):
        return d.reference_summary(values.astype(np.float64))
    text = values.astype(str)
    if values.dtype == bool:
        text = np.char.lower(text)
    found, counts = np.unique(text, return_counts=True)
    return d.count_categories(found.tolist(), counts.tolist())


def _cached(
    path: Path, build: Callable[[], dict[str, d.FeatureSummary]]
) -> dict[str, d.FeatureSummary]:
    """Summaries from `path` (JSON, never pickle), built and written there the first time."""
    try:
        plain = json.loads(path.read_text(encoding="utf-8"))
        return {name: d.FeatureSummary.from_plain(s) for name, s in plain.items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not built yet, or damaged: build again
    built = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({n: s.to_plain() for n, s in built.items()}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only project: compute again next time
    return built
