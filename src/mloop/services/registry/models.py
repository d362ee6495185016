"""Registering, finding, loading and aliasing model versions.

A version records what made it: the run (given, or the active one), the dataset versions that
run and its pipeline read, the code and environment the run captured, the metrics and params
logged, the flavor, and an input signature (given, inferred from an input example, or from the
training frame). Models are stored as content-addressed bundles; loading verifies every file
before a flavor parses it, and a format that can run code (pickle, Python models) loads only
with `trust=True`, which is recorded as an Event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mloop.domain.dataset import FileEntry, TableProfile
from mloop.domain.event import Event
from mloop.domain.model import Model, ModelVersion, Signature
from mloop.domain.names import check_name, parse_address
from mloop.domain.run import Run
from mloop.errors import InvalidAddress, InvalidInput, InvalidPath, NotFound
from mloop.services.registry.loaded import LoadedModel, training_categories
from mloop.services.registry.signature import infer_signature, signature_from_model
from mloop.services.tracking import active
from mloop.services.tracking.runs import ActiveRun, Tracker
from mloop.services.tracking.values import describe_value, load_value, store_value
from mloop.store.artifacts.cas import ArtifactStore
from mloop.store.metadata.protocol import MetadataStore

MODEL_FLAVORS = ("sklearn", "onnx", "python", "pickle")
TRUSTED_FLAVORS = ("python", "pickle")  # loading these runs code from the file


def parse_model_ref(text: str) -> tuple[str, int | None, str | None]:
    """`churn`, `churn:3`, `churn@champion` or `model/churn:3` -> (name, version, alias)."""
    address = parse_address(text, kind="model")
    if address.kind != "model":
        raise InvalidAddress(f"{text!r} is not a model", "use NAME, NAME:V or NAME@ALIAS")
    return address.name, address.version, address.alias


class Registry:
    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        tracker: Tracker,
        actor: str,
    ) -> None:
        self.metadata = metadata
        self.artifacts = artifacts
        self.tracker = tracker
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
        trusted_types: Sequence[str] = (),
        description: str = "",
        trust: bool = False,
    ) -> ModelVersion:
        """Store `model` as the next version of `name`, with its lineage.

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
        if signature is None and input_example is not None:
            signature = infer_signature(input_example)
        lineage = self._lineage(source) if source is not None else {}
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
            code_commit=source.code.commit if source and source.code else None,
            code_diff=source.code.diff_digest if source and source.code else None,
            environment=source.environment if source else None,
            description=description,
            trusted_types=tuple(trusted_types),
        )
        details = {"flavor": stored.flavor, "run": draft.run_id, "trusted": trust}
        event = self._event("model.version_registered", f"model/{name}", None, **details)
        return self.metadata.create_model_version(draft, files, event)

    def register_path(
        self,
        path: Path,
        name: str,
        *,
        run: str | None = None,
        trusted_types: Sequence[str] = (),
        trust: bool = False,
        description: str = "",
    ) -> ModelVersion:
        """Register a saved model file: `.skops`, `.onnx`, or (with trust) `.pkl`/`.joblib`."""
        from mloop.services.registry.files import read_model_file

        if not path.is_file():
            raise InvalidPath(f"{path} is not a file", "give the path of a saved model file")
        model = read_model_file(path, trusted_types=trusted_types, trust=trust)
        if trust and path.suffix in (".pkl", ".pickle", ".joblib"):
            self.metadata.append_event(
                self._event("model.loaded_with_trust", f"file/{path.name}", None, path=str(path))
            )
        return self.register(
            model,
            name,
            run=run,
            trusted_types=trusted_types,
            description=description,
            trust=trust,
        )

    def _run_of(self, run: ActiveRun | str | None) -> Run | None:
        if isinstance(run, str):
            return self.tracker.get_run(run)
        current = run if isinstance(run, ActiveRun) else active.current()
        if current is None:
            return None
        current.flush()  # what the run logged so far is its lineage: write it first
        return self.tracker.get_run(current.id)

    def _lineage(self, run: Run) -> dict[str, Any]:
        """Datasets, metrics, params and training frames from the run and, when it is a step,
        from its pipeline run and the steps before it."""
        runs = [run]
        metadata = self.metadata
        if run.parent_id:
            parent = metadata.get_run(run.parent_id)
            runs = [parent, *(metadata.get_run(c.id) for c in metadata.child_runs(parent.id))]
        datasets: list[str] = []
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        frames: list[Any] = []
        for each in runs:
            datasets.extend(i.ref for i in each.inputs if i.kind == "dataset")
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
        tables: list[TableProfile] = []
        for ref in sorted(set(datasets)):
            name, _, number = ref.partition(":")
            tables.extend(metadata.get_dataset_version(name, int(number)).tables)
        return {
            "tables": tables,
            "datasets": sorted(set(datasets)),
            "metrics": metrics,
            "params": params,
            "frames": frames,
        }

    # reading -------------------------------------------------------------------------------
    def get(self, ref: str) -> ModelVersion:
        name, version, alias = parse_model_ref(ref)
        return self.metadata.get_model_version(name, version, alias)

    def models(self) -> list[Model]:
        return self.metadata.list_models()

    def versions(self, name: str) -> list[ModelVersion]:
        return self.metadata.list_model_versions(check_name(name, "model name"))

    def load(self, ref: str, trust: bool = False) -> Any:
        """The model object, verified and loaded by its flavor (`trust` for code formats).

        Example:
            >>> registry.load("churn@champion").predict(rows)  # doctest: +SKIP
        """
        version = self.get(ref)
        if version.flavor in TRUSTED_FLAVORS and not trust:
            raise InvalidInput(
                f"{version.ref} is a {version.flavor} model: loading it runs code from the file",
                "load it only if you trust where it came from: pass trust=True (or --trust)",
            )
        model = load_value(
            self.artifacts, version.digest, trust=trust, trusted_types=version.trusted_types
        )
        if trust and version.flavor in TRUSTED_FLAVORS:
            self.metadata.append_event(
                self._event("model.loaded_with_trust", f"model/{version.ref}", None)
            )
        return model

    def load_predictor(self, ref: str, trust: bool = False) -> LoadedModel:
        """A Predictor for the model server: the model plus its signature."""
        version = self.get(ref)
        model = self.load(ref, trust=trust)
        signature = version.signature
        wants_frame = (
            getattr(model, "feature_names_in_", None) is not None
            or bool(getattr(model, "wants_frame", False))  # e.g. ONNX with an input per column
            or (signature is not None and not signature.all_numeric)
        )
        tables = [t for ref in version.datasets for t in self._tables(ref)]
        categories = training_categories(signature, tables)
        return LoadedModel(version.name, version.version, model, signature, wants_frame, categories)

    def _tables(self, ref: str) -> tuple[TableProfile, ...]:
        """The table profiles of a dataset version in a model's lineage (none if since removed)."""
        name, _, number = ref.partition(":")
        try:
            return self.metadata.get_dataset_version(name, int(number)).tables
        except (NotFound, ValueError):
            return ()

    # aliases and status --------------------------------------------------------------------
    def set_alias(self, name: str, version: int, alias: str, reason: str | None = None) -> None:
        check_name(alias, "alias")
        event = self._event(
            "model.alias_set", f"model/{name}:{version}", reason, alias=alias, version=version
        )
        self.metadata.set_model_alias(check_name(name, "model name"), alias, version, event)

    def remove_alias(self, name: str, alias: str) -> None:
        event = self._event("model.alias_removed", f"model/{name}@{alias}", alias=alias)
        self.metadata.delete_model_alias(name, alias, event)

    def archive(self, name: str, version: int, undo: bool = False) -> None:
        status = "ready" if undo else "archived"
        event = self._event(
            f"model.{'unarchived' if undo else 'archived'}", f"model/{name}:{version}"
        )
        self.metadata.set_model_version_status(name, version, status, event)
