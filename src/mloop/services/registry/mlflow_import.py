"""Bringing an MLflow model directory into the registry, safely by default.

An MLflow model directory holds an `MLmodel` file (YAML) naming its flavors and a model file.
mloop takes scikit-learn models: the `sklearn` flavor, or a `python_function` flavor whose loader
is `mlflow.sklearn`. The flavor's `serialization_format` decides how the file may be read:
`skops` loads only the types skops trusts plus those the user lists (`--trusted-type`);
`pickle` and `cloudpickle` run whatever code the file names, so they load only with `--trust`,
which is recorded as an Event. The model is then stored the mloop way (skops for scikit-learn),
so the registered version is safe to load from then on. MLflow's signature becomes the
version's, and what MLflow recorded about the source (run, model id, creation time, metadata)
goes into the description and the import Event; the version has no mloop run, so its lineage
says honestly that the data and code that made it are not known here.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.domain.event import Event
from mloop.domain.model import ColumnSpec, ModelVersion, Signature
from mloop.errors import InvalidInput, InvalidPath
from mloop.services.registry.files import read_model_file
from mloop.services.registry.models import Registry

MLMODEL = "MLmodel"
PICKLE_FORMATS = ("pickle", "cloudpickle")
FORMATS = ("skops", *PICKLE_FORMATS)
# MLflow's column types (mlflow.types.DataType) as mloop's signature dtypes.
DTYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "string",
    "binary": "string",
    "datetime": "datetime64[ns]",
}


@dataclass(frozen=True, slots=True)
class MlflowModel:
    """What an MLmodel file says about the model mloop will import."""

    folder: Path
    model_file: Path
    serialization_format: str
    signature: Signature | None
    source: Mapping[str, str]  # mlflow version, run id, model uuid, creation time, metadata

    @property
    def pickled(self) -> bool:
        return self.serialization_format in PICKLE_FORMATS


def _columns(text: Any) -> tuple[ColumnSpec, ...]:
    """MLflow's `signature.inputs` (a JSON string of column or tensor specs) as columns."""
    if not text:
        return ()
    specs = json.loads(text) if isinstance(text, str) else text
    columns: list[ColumnSpec] = []
    for i, spec in enumerate(specs):
        if spec.get("type") == "tensor":
            info = spec.get("tensor-spec", {})
            shape = info.get("shape", [])
            width = shape[-1] if len(shape) == 2 and isinstance(shape[-1], int) else -1
            if width < 0:
                return ()  # a tensor of unknown width: no signature rather than a wrong one
            dtype = "float64" if str(info.get("dtype", "")).startswith("float") else "int64"
            return tuple(ColumnSpec(f"f{n}", dtype) for n in range(width))
        dtype = DTYPES.get(str(spec.get("type")), "string")
        nullable = not spec.get("required", True)
        columns.append(ColumnSpec(str(spec.get("name", f"f{i}")), dtype, nullable))
    return tuple(columns)


def read_mlmodel(path: Path) -> MlflowModel:
    """Parse an MLflow model directory (or its MLmodel file) without loading the model.

    Example:
        >>> read_mlmodel(Path("mlruns/0/abc/artifacts/model")).pickled  # doctest: +SKIP
        False
    """
    import yaml

    folder = (path.parent if path.name == MLMODEL and path.is_file() else path).resolve()
    spec_file = folder / MLMODEL
    if not spec_file.is_file():
        raise InvalidPath(
            f"{path} is not an MLflow model directory: it has no {MLMODEL} file",
            "give the folder mlflow.sklearn.save_model wrote (it holds MLmodel and the model), "
            "e.g. mlruns/0/RUN_ID/artifacts/model",
        )
    try:
        spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{spec_file} is not valid YAML: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("flavors"), dict):
        raise InvalidInput(f"{spec_file} names no flavors", "is it an MLflow model's MLmodel?")
    flavors: dict[str, Any] = spec["flavors"]
    sklearn = flavors.get("sklearn")
    pyfunc = flavors.get("python_function") or {}
    if isinstance(sklearn, dict):
        file_name = sklearn.get("pickled_model")
        fmt = sklearn.get("serialization_format")
    elif pyfunc.get("loader_module") == "mlflow.sklearn":
        file_name = pyfunc.get("model_path") or pyfunc.get("data")
        fmt = None
    else:
        raise InvalidInput(
            f"{folder.name} is an MLflow {', '.join(sorted(flavors))} model; mloop imports "
            "scikit-learn models (the sklearn flavor)",
            "export the model with mlflow.sklearn.save_model, or register it with "
            "mloop.register_model from Python",
        )
    if not file_name:
        raise InvalidInput(f"{spec_file} does not say which file holds the model")
    model_file = (folder / str(file_name)).resolve()
    if not model_file.is_relative_to(folder) or not model_file.is_file():
        raise InvalidPath(f"{spec_file} names {file_name!r}, which is not a file in {folder}")
    if fmt is None:  # an older MLmodel: the suffix says it
        fmt = "skops" if model_file.suffix == ".skops" else "pickle"
    if fmt not in FORMATS:
        raise InvalidInput(
            f"{folder.name}: mloop cannot read the {fmt!r} serialization format",
            f"save the model with serialization_format one of {', '.join(FORMATS)}",
        )
    source = {
        key: str(spec[key])
        for key in ("mlflow_version", "run_id", "model_uuid", "model_id", "utc_time_created")
        if spec.get(key) not in (None, "")
    }
    for key, value in sorted((spec.get("metadata") or {}).items()):
        source[f"metadata.{key}"] = value if isinstance(value, str) else json.dumps(value)
    signature_spec = spec.get("signature") or {}
    inputs = _columns(signature_spec.get("inputs"))
    signature = Signature(inputs, _columns(signature_spec.get("outputs"))) if inputs else None
    return MlflowModel(folder, model_file, str(fmt), signature, source)


def _unpickle(path: Path) -> Any:
    """The object in a pickle or cloudpickle file (cloudpickle writes standard pickles); the
    caller has been given trust. Unpickled here, so the version can be stored with skops."""
    import pickle

    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)  # noqa: S301 - the user passed --trust
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(
            f"{path.name} needs code that is not importable here: {exc}",
            "install the packages the model was trained with (see requirements.txt beside it)",
        ) from None


def _default_name(folder: Path) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", folder.name.lower()).strip("-")[:63]
    return cleaned.strip("-") or "model"


def import_mlflow_model(
    registry: Registry,
    path: Path,
    *,
    name: str | None = None,
    trusted_types: Sequence[str] = (),
    trust: bool = False,
    description: str = "",
) -> ModelVersion:
    """Register the scikit-learn model of an MLflow model directory as the next version.

    Pickled models (`pickle`, `cloudpickle`) are refused unless `trust` is given: nothing is
    read or registered. With `trust`, loading them is recorded as an Event.

    Example:
        >>> import_mlflow_model(project.registry, Path("model"), name="churn").ref  # doctest: +SKIP
        'churn:4'
    """
    found = read_mlmodel(path)
    model_name = name or _default_name(found.folder)
    if found.pickled and not trust:
        raise InvalidInput(
            f"{found.folder.name} is a {found.serialization_format} model: loading it runs any "
            "code the file names",
            "import it only if you trust where it came from: add --trust",
        )
    what = found.model_file.name
    if found.pickled:
        registry.metadata.append_event(
            Event(
                time.time(),
                registry.actor,
                "model.loaded_with_trust",
                f"file/{found.model_file}",
                "mloop models import-mlflow --trust",
                {"format": found.serialization_format, "model": model_name},
            )
        )
        model = _unpickle(found.model_file)
    elif found.model_file.suffix != ".skops":
        raise InvalidInput(f"{what}: MLmodel says skops, but the file does not end in .skops")
    else:
        model = read_model_file(found.model_file, trusted_types=trusted_types, trust=trust)
    base = sys.modules.get("sklearn.base")
    if base is None or not isinstance(model, base.BaseEstimator):
        raise InvalidInput(
            f"{what} holds a {type(model).__module__}.{type(model).__qualname__}, "
            "not a scikit-learn estimator"
        )
    if trust:  # the user vouched for every type in the file: the version may load them too
        import skops.io

        needed = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        trusted_types = [*trusted_types, *(t for t in needed if t not in trusted_types)]
    told = "; ".join(f"{k}={v}" for k, v in found.source.items())
    text = description or f"Imported from the MLflow model {found.folder}"
    text += f" ({found.serialization_format}{'; ' + told if told else ''})"
    version = registry.register(
        model,
        model_name,
        signature=found.signature,
        trusted_types=trusted_types,
        description=text,
    )
    registry.metadata.append_event(
        Event(
            time.time(),
            registry.actor,
            "model.imported",
            f"model/{version.ref}",
            None,
            {
                "source": str(found.folder),
                "format": found.serialization_format,
                "trusted": trust,
                **found.source,
            },
        )
    )
    return version
