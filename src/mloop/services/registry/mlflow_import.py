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

An MLmodel is a file from elsewhere, so nothing it says is taken on faith: the file is read only
up to `MAX_MLMODEL_BYTES`, its YAML through `load_yaml` (aliases bounded, the same guard as
mloop.yaml), every part checked for the shape MLflow writes (a clear error naming the part
otherwise), a signature of at most `MAX_COLUMNS` inputs (a tensor's declared width is checked
before any column is made, then against the model's `n_features_in_`), and every recorded text
cut to `MAX_TEXT` characters (at most `MAX_METADATA` metadata keys) before it reaches the
description or an Event.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.domain.bounded_yaml import load_yaml
from mloop.domain.event import Event
from mloop.domain.model import ColumnSpec, ModelVersion, Signature
from mloop.errors import InvalidInput, InvalidPath, NeedsTrust
from mloop.services.registry.files import read_model_file
from mloop.services.registry.models import ModelService

MLMODEL = "MLmodel"
MAX_MLMODEL_BYTES = 1024 * 1024
MAX_COLUMNS = 10_000
MAX_TEXT = 500  # characters of one recorded text (a metadata value, a column name)
MAX_METADATA = 32
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


def _clip(value: Any) -> str:
    """Text from the file, at most MAX_TEXT characters (marked where it was cut)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}… ({len(text):,} characters)"


def _columns(text: Any, where: str) -> tuple[ColumnSpec, ...]:
    """MLflow's `signature.inputs` (a JSON string of column or tensor specs) as columns."""
    if text is None or text == "":
        return ()
    bad = InvalidInput(
        f"{where} is not a list of MLflow column or tensor specs",
        'MLflow writes e.g. \'[{"type": "double", "name": "x"}]\'; save the model with '
        "mlflow.sklearn.save_model again",
    )
    try:
        specs = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        raise bad from None
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise bad
    if len(specs) > MAX_COLUMNS:
        raise InvalidInput(
            f"{where} lists {len(specs):,} inputs; mloop takes at most {MAX_COLUMNS:,}"
        )
    columns: list[ColumnSpec] = []
    for i, spec in enumerate(specs):
        if spec.get("type") == "tensor":
            info = spec.get("tensor-spec")
            shape = info.get("shape") if isinstance(info, dict) else None
            if not isinstance(shape, list):
                raise bad
            width = shape[-1] if len(shape) == 2 and type(shape[-1]) is int else -1
            if width < 0:
                return ()  # a tensor of unknown width: no signature rather than a wrong one
            if width > MAX_COLUMNS:
                raise InvalidInput(
                    f"{where} declares a tensor {width:,} values wide; mloop takes at most "
                    f"{MAX_COLUMNS:,} inputs"
                )
            dtype = "float64" if str(info.get("dtype", "")).startswith("float") else "int64"
            return tuple(ColumnSpec(f"f{n}", dtype) for n in range(width))
        dtype = DTYPES.get(str(spec.get("type")), "string")
        nullable = not spec.get("required", True)
        columns.append(ColumnSpec(_clip(spec.get("name", f"f{i}")), dtype, nullable))
    return tuple(columns)


def _signature(spec: dict[str, Any], where: str) -> Signature | None:
    signature = spec.get("signature")
    if signature is None:
        return None
    if not isinstance(signature, dict):
        raise InvalidInput(
            f"{where}: `signature` must be a mapping with `inputs` and `outputs`, not "
            f"{type(signature).__name__}"
        )
    inputs = _columns(signature.get("inputs"), f"{where}: signature.inputs")
    outputs = _columns(signature.get("outputs"), f"{where}: signature.outputs")
    return Signature(inputs, outputs) if inputs else None


def _source(spec: dict[str, Any], where: str) -> dict[str, str]:
    """What MLflow recorded about the model, each text bounded (module docstring)."""
    source = {
        key: _clip(spec[key])
        for key in ("mlflow_version", "run_id", "model_uuid", "model_id", "utc_time_created")
        if spec.get(key) not in (None, "")
    }
    metadata = spec.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{where}: `metadata` must be a mapping, not {type(metadata).__name__}")
    keys = sorted(metadata, key=str)
    for key in keys[:MAX_METADATA]:
        source[f"metadata.{_clip(str(key))}"] = _clip(metadata[key])
    if len(keys) > MAX_METADATA:
        source["metadata"] = f"{len(keys) - MAX_METADATA} more keys not recorded"
    return source


def read_mlmodel(path: Path) -> MlflowModel:
    """Parse an MLflow model directory (or its MLmodel file) without loading the model.

    Example:
        >>> read_mlmodel(Path("mlruns/0/abc/artifacts/model")).pickled  # doctest: +SKIP
        False
    """
    folder = (path.parent if path.name == MLMODEL and path.is_file() else path).resolve()
    spec_file = folder / MLMODEL
    if not spec_file.is_file():
        raise InvalidPath(
            f"{path} is not an MLflow model directory: it has no {MLMODEL} file",
            "give the folder mlflow.sklearn.save_model wrote (it holds MLmodel and the model), "
            "e.g. mlruns/0/RUN_ID/artifacts/model",
        )
    with open(spec_file, "rb") as fh:
        data = fh.read(MAX_MLMODEL_BYTES + 1)
    if len(data) > MAX_MLMODEL_BYTES:
        raise InvalidInput(
            f"{spec_file} is over {MAX_MLMODEL_BYTES // 1024} KiB; an MLmodel is a few lines",
            "is it an MLflow model's MLmodel?",
        )
    try:
        spec = load_yaml(data.decode("utf-8"), str(spec_file))
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{spec_file} is not text (UTF-8)", "is it an MLflow model's MLmodel?"
        ) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("flavors"), dict):
        raise InvalidInput(f"{spec_file} names no flavors", "is it an MLflow model's MLmodel?")
    flavors: dict[str, Any] = spec["flavors"]
    sklearn = flavors.get("sklearn")
    pyfunc = flavors.get("python_function")
    pyfunc = pyfunc if isinstance(pyfunc, dict) else {}
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
    source = _source(spec, str(spec_file))
    signature = _signature(spec, str(spec_file))
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
    models: ModelService,
    path: Path,
    *,
    name: str | None = None,
    trust: bool = False,
    description: str = "",
) -> ModelVersion:
    """Register the scikit-learn model of an MLflow model directory as the next version.

    Pickled models (`pickle`, `cloudpickle`), and skops files with types off mloop's safe list,
    are refused unless `trust` is given: nothing is read or registered. With `trust`, loading a
    pickle is recorded as an Event.

    Example:
        >>> import_mlflow_model(project.models, Path("model"), name="churn").ref  # doctest: +SKIP
        'churn:4'
    """
    found = read_mlmodel(path)
    model_name = name or _default_name(found.folder)
    if found.pickled and not trust:
        raise NeedsTrust.of(
            f"it is a {found.serialization_format} model: loading it runs any code the file names",
            found.folder.name,
        )
    what = found.model_file.name
    if found.pickled:
        models.metadata.events.append(
            Event(
                time.time(),
                models.actor,
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
        model = read_model_file(found.model_file, trust=trust)
    base = sys.modules.get("sklearn.base")
    if base is None or not isinstance(model, base.BaseEstimator):
        raise InvalidInput(
            f"{what} holds a {type(model).__module__}.{type(model).__qualname__}, "
            "not a scikit-learn estimator"
        )
    width = getattr(model, "n_features_in_", None)
    if found.signature is not None and isinstance(width, int):
        declared = len(found.signature.inputs)
        if declared != width:
            raise InvalidInput(
                f"{found.folder.name}: the MLmodel's signature has {declared:,} inputs, but the "
                f"model takes {width:,}",
                "save the model with its real signature (mlflow.models.infer_signature)",
            )
    told = "; ".join(f"{k}={v}" for k, v in found.source.items())
    text = description or f"Imported from the MLflow model {found.folder}"
    text += f" ({found.serialization_format}{'; ' + told if told else ''})"
    version = models.register(
        model,
        model_name,
        signature=found.signature,
        description=text,
    )
    models.metadata.events.append(
        Event(
            time.time(),
            models.actor,
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
