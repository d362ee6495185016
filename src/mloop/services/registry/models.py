"""Registering, finding, loading and aliasing model versions.

A version records what made it: the run (given, or the active one), the dataset versions that
run and its pipeline read, the code and environment the run captured, the metrics and params
logged, the flavor, and an input signature (given, inferred from an input example, or from the
training frame). Models are stored as content-addressed bundles; loading verifies every file
before a flavor parses it.

Trust belongs to whoever loads. A format that can run code (pickle, Python models) and a skops
file with types off mloop's audited list (`flavors/safe_types.py`) load only when the loader
passes `trust=True` (`--trust`), which is recorded as an Event. Registration never loads the
model, so it does not refuse one that will need trust: it records the types the model needs in
`trusted_types` and says so (`trust_reason`), so the registrant hears it then, not the server
later. What the registrant records never widens what a loader loads without its own trust: in
a shared store the registrant would otherwise decide for every loader, the server included.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mloop.domain.dataset import FileEntry, TableProfile
from mloop.domain.event import Event
from mloop.domain.lineage import CodeVersion
from mloop.domain.model import Model, ModelStatus, ModelVersion, Signature
from mloop.domain.names import DatasetRef, ModelRef, check_name
from mloop.domain.run import Run, RunOutput
from mloop.errors import InvalidInput, InvalidPath, NeedsTrust, NotFound
from mloop.services.registry.loaded import LoadedModel, training_categories
from mloop.services.registry.signature import infer_signature, signature_from_model
from mloop.services.tracking import active
from mloop.services.tracking.active_run import ActiveRun
from mloop.services.tracking.runs import RunService
from mloop.services.tracking.values import describe_value, load_value, store_value
from mloop.store.artifacts.cas import ArtifactStore
from mloop.store.metadata.protocol import MetadataStore

MODEL_FLAVORS = ("sklearn", "onnx", "python", "pickle")
# On a run (or its pipeline run) that re-runs code to compare, not to register (reproduce.py):
# `register` stores the model and names it as the run's output REHEARSED + NAME instead.
REHEARSAL_TAG = "mloop.rehearsal"
REHEARSED = "model/"
TRUSTED_FLAVORS = ("python", "pickle")  # loading these runs code from the file
# The models `load_predictor` loaded in this process and something still serves, by (bundle
# digest, trust): two versions of one artifact (an A/A test, a retrain that changed nothing)
# are one model in memory, and one model to the server, which then batches their requests
# together (`server/slots.py`). Weak: a model nothing serves any more is freed as before.
_LIVE: weakref.WeakValueDictionary[tuple[str, bool], Any] = weakref.WeakValueDictionary()


def parse_model_ref(text: str) -> tuple[str, int | None, str | None]:
    """`churn`, `churn:3`, `churn@champion` or `model/churn:3` -> (name, version, alias): the
    parts of `ModelRef.parse`, for callers that take them apart."""
    ref = ModelRef.parse(text)
    return ref.name, ref.version, ref.alias


class ModelService:
    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        runs: RunService,
        actor: str,
    ) -> None:
        self.metadata = metadata
        self.artifacts = artifacts
        self.runs = runs
        self.actor = actor

    def _event(self, action: str, ref: str, reason: str | None = None, **details: Any) -> Event:
        return Event(time.time(), self.actor, action, ref, reason, details)

    # registering ---------------------------------------------------------------------------
    def register(
        self,
        model: Any,
        name: str,
        *,
        run: ActiveRun | str | None = None,
        signature: Signature | None = None,
        input_example: Any = None,
        description: str = "",
        trust: bool = False,
    ) -> ModelVersion:
        """Store `model` as the next version of `name`, with its lineage.

        The version records the types off mloop's safe list its file holds (`trusted_types`);
        `trust_reason` then says why loading it will need trust.

        Example:
            >>> registry.register(fitted, "churn", input_example=train.head())  # doctest: +SKIP
            ModelVersion(name='churn', version=1, ...)
        """
        check_name(name, "model name")
        source = self._run_of(run)
        stored = store_value(self.artifacts, model, trust=trust, what=f"model {name!r}")
        if stored.flavor not in MODEL_FLAVORS:
            raise InvalidInput(
                f"a {stored.type_name} is not a model mloop can serve",
                "register a scikit-learn estimator, an ONNX model or a mloop.PythonModel",
            )
        manifest = describe_value(self.artifacts, stored.digest)
        files = [
            FileEntry(rel, str(digest), self.artifacts.size(str(digest)) or 0)
            for rel, digest in sorted(manifest["files"].items())
        ]
        lineage = self._lineage(source) if source is not None else {}
        if signature is None and input_example is not None:  # a few rows: see signature.py
            signature = infer_signature(input_example, lineage.get("tables", []))
        if signature is None:
            signature = signature_from_model(
                model, lineage.get("frames", []), lineage.get("tables", [])
            )
        self.artifacts.sync()
        draft = ModelVersion(
            name=name,
            version=0,
            created=time.time(),
            user=self.actor,
            flavor=stored.flavor,
            digest=stored.digest,
            size=stored.size,
            run_id=source.id if source else None,
            signature=signature,
            metrics=lineage.get("metrics", {}),
            params=lineage.get("params", {}),
            datasets=tuple(lineage.get("datasets", ())),
            # the model_versions table keeps the commit and diff, not the repository
            code=CodeVersion(source.code.commit, source.code.diff_digest)
            if source and source.code
            else CodeVersion(None),
            environment=source.environment if source else None,
            description=description,
            trusted_types=tuple(_needs(manifest)),
        )
        if source is not None and self._rehearsal(source):
            # A reproduction re-runs code that registers: the bytes are kept and named on the
            # run, to be compared with the version reproduced; no version is made (number 0).
            named = f"{REHEARSED}{name}"
            outputs = [RunOutput(named, stored.digest, self.artifacts.size(stored.digest) or 0)]
            outputs += [RunOutput(f"{named}.files/{f.path}", f.digest, f.size) for f in files]
            self.metadata.runs.write_data(source.id, outputs=outputs)
            return draft
        details = {"flavor": stored.flavor, "run": draft.run_id, "trusted": trust}
        event = self._event("model.version_registered", f"model/{name}", None, **details)
        return self.metadata.models.create_version(draft, files, event)

    def register_path(
        self,
        path: Path,
        name: str,
        *,
        run: str | None = None,
        trust: bool = False,
        description: str = "",
    ) -> ModelVersion:
        """Register a saved model file: `.skops`, `.onnx`, or (with trust) `.pkl`/`.joblib`;
        a `.skops` file with types off mloop's safe list is read only with trust too."""
        from mloop.services.registry.files import read_model_file

        if not path.is_file():
            raise InvalidPath(f"{path} is not a file", "give the path of a saved model file")
        model = read_model_file(path, trust=trust)
        if trust and path.suffix in (".pkl", ".pickle", ".joblib"):
            self.metadata.events.append(
                self._event("model.loaded_with_trust", f"file/{path.name}", None, path=str(path))
            )
        return self.register(
            model,
            name,
            run=run,
            description=description,
            trust=trust,
        )

    def _rehearsal(self, run: Run) -> bool:
        """Whether `run`, or the pipeline run it is a step of, only rehearses registering."""
        if run.tags.get(REHEARSAL_TAG):
            return True
        parent = self.metadata.runs.get(run.parent_id) if run.parent_id else None
        return parent is not None and bool(parent.tags.get(REHEARSAL_TAG))

    def _run_of(self, run: ActiveRun | str | None) -> Run | None:
        if isinstance(run, str):
            return self.runs.get(run)
        current = run if isinstance(run, ActiveRun) else active.current()
        if current is None:
            return None
        current.flush()  # what the run logged so far is its lineage: write it first
        return self.runs.get(current.id)

    def _lineage(self, run: Run) -> dict[str, Any]:
        """Datasets, metrics, params and training frames from the run and, when it is a step,
        from its pipeline run and the steps before it."""
        runs = [run]
        metadata = self.metadata
        if run.parent_id:
            parent = metadata.runs.get(run.parent_id)
            runs = [parent, *(metadata.runs.get(c.id) for c in metadata.runs.children(parent.id))]
        datasets: set[DatasetRef] = set()
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        frames: list[Any] = []
        for each in runs:
            datasets.update(i.dataset for i in each.inputs if i.dataset is not None)
            params.update(each.params)
            for key, metric in each.metrics.items():
                if metric.value is not None:
                    metrics[key] = metric.value
        for used in run.inputs:
            if used.kind == "artifact":
                try:
                    if describe_value(self.artifacts, used.ref)["flavor"] == "pandas":
                        frames.append(load_value(self.artifacts, used.ref))
                except InvalidInput:
                    continue
        return {
            "tables": self._tables(sorted(datasets, key=str)),
            "datasets": sorted(datasets, key=str),
            "metrics": metrics,
            "params": params,
            "frames": frames,
        }

    # reading -------------------------------------------------------------------------------
    def get(self, ref: str) -> ModelVersion:
        name, version, alias = parse_model_ref(ref)
        return self.metadata.models.get_version(name, version, alias)

    def find(self) -> list[Model]:
        return self.metadata.models.all()

    def versions(self, name: str, sort: str | None = None) -> list[ModelVersion]:
        """Every version of `name`, by number, or by `sort` (`-metrics.accuracy`: best first).

        Example:
            >>> registry.versions("churn", sort="-metrics.accuracy")[0].ref  # doctest: +SKIP
            'churn:3'
        """
        found = self.metadata.models.list_versions(check_name(name, "model name"))
        if sort:
            from mloop.services.registry.ranking import sort_versions

            return sort_versions(found, sort)
        return found

    def training_tables(self, version: ModelVersion) -> list[TableProfile]:
        """The profiles of the dataset versions the version was trained on (its lineage)."""
        return self._tables(version.datasets)

    def _tables(self, refs: Sequence[DatasetRef]) -> list[TableProfile]:
        """The table profiles of dataset versions in a model's lineage (none for one since
        removed)."""
        tables: list[TableProfile] = []
        for ref in refs:
            try:
                tables.extend(self.metadata.datasets.get_version(ref.name, ref.version).tables)
            except NotFound:
                continue
        return tables

    def trust_reason(self, version: ModelVersion) -> str | None:
        """Why loading `version` needs the loader's trust, or None: it runs code (pickle,
        Python models), or its skops file holds types off mloop's safe list. Read from the
        bundle's manifest, so versions registered before mloop recorded it are covered too;
        the loader still asks the file itself.

        Example:
            >>> registry.trust_reason(registry.get("churn:3"))  # doctest: +SKIP
            "it holds types off mloop's safe list: posix.system"
        """
        return trust_reason_of(version, lambda: describe_value(self.artifacts, version.digest))

    def load(self, ref: str, trust: bool = False) -> Any:
        """The model object, verified and loaded by its flavor; `trust` for a model whose
        `trust_reason` is not None (refused before a byte of the model is read).

        Example:
            >>> registry.load("churn@champion").predict(rows)  # doctest: +SKIP
        """
        return self._load(self.get(ref), trust)

    def _load(self, version: ModelVersion, trust: bool, shared: bool = False) -> Any:
        """`load` of `version`; `shared`: the model another version of the same bundle
        loaded in this process, if one still serves (each version's trust is still checked
        and recorded: the same bytes, asked for under another name)."""
        reason = self.trust_reason(version)
        if reason is not None and not trust:
            raise NeedsTrust.of(reason, version.ref)
        model = _LIVE.get((version.digest, trust)) if shared else None
        if model is None:
            try:
                model = load_value(self.artifacts, version.digest, trust=trust)
            except NeedsTrust as exc:  # the file needs more than its manifest said
                raise exc.needing(subject=version.ref) from None
            if shared:
                with contextlib.suppress(TypeError):  # an object without weak references
                    _LIVE[(version.digest, trust)] = model
        if trust and reason is not None:
            self.metadata.events.append(
                self._event("model.loaded_with_trust", f"model/{version.ref}", None, why=reason)
            )
        return model

    def load_predictor(self, ref: str, trust: bool = False) -> LoadedModel:
        """A Predictor for the model server: the model plus its signature."""
        version = self.get(ref)
        model = self._load(version, trust, shared=True)
        categories = training_categories(version.signature, self._tables(version.datasets))
        return LoadedModel.of(version, model, categories)

    # aliases and status --------------------------------------------------------------------
    def set_alias(self, name: str, version: int, alias: str, reason: str | None = None) -> None:
        check_name(alias, "alias")
        event = self._event(
            "model.alias_set", f"model/{name}:{version}", reason, alias=alias, version=version
        )
        self.metadata.models.set_alias(check_name(name, "model name"), alias, version, event)

    def remove_alias(self, name: str, alias: str) -> None:
        event = self._event("model.alias_removed", f"model/{name}@{alias}", alias=alias)
        self.metadata.models.delete_alias(name, alias, event)

    def archive(self, name: str, version: int, undo: bool = False) -> None:
        status = ModelStatus.READY if undo else ModelStatus.ARCHIVED
        event = self._event(
            f"model.{'unarchived' if undo else 'archived'}", f"model/{name}:{version}"
        )
        self.metadata.models.set_status(name, version, status, event)


def trust_reason_of(version: ModelVersion, manifest: Callable[[], dict[str, Any]]) -> str | None:
    """Why loading `version` needs the loader's trust (see `ModelService.trust_reason`), wherever
    its manifest is kept: `manifest` reads it, only when the flavor alone does not say."""
    if version.flavor in TRUSTED_FLAVORS:
        return f"it is a {version.flavor} model: loading it runs code from the file"
    needs = _needs(manifest())
    if needs:
        return f"it holds types off mloop's safe list: {', '.join(needs)}"
    return None


def _needs(manifest: dict[str, Any]) -> list[str]:
    """The types a stored sklearn model needs beyond skops' and mloop's lists."""
    if manifest.get("flavor") != "sklearn":
        return []
    from mloop.flavors.sklearn import recorded_needs

    return recorded_needs(manifest.get("meta") or {})
