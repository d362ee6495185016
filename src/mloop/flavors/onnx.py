"""The onnx flavor: an ONNX model (`onnx.ModelProto` or `OnnxModel`), run with onnxruntime.

ONNX is a graph of standard operators and tensors, with no code of its own, so it loads safely
by default. Its one way out of the bundle is external data: a tensor may name a file
(`location`) holding its bytes, and a crafted model could name `/etc/passwd` or `../../key`.
So every tensor with external data is checked before anything else reads the model: the
location must be a plain relative path (no absolute path, `..` or backslash) that, with
symbolic links resolved, stays inside the bundle folder and is a file there. The checked files
are then read into memory and handed to onnxruntime with the model bytes, so the session never
opens a path itself (from bytes, onnxruntime refuses external data it was not given).

`save` writes `model.onnx` and, when the model has external data, those files at their
relative locations; a `ModelProto` too large for one protobuf (2 GB) is written with its
tensors in `model.onnx.data`. onnx and onnxruntime are imported only when used.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.domain.names import check_relative_path
from mloop.errors import InvalidInput, InvalidPath
from mloop.flavors.protocol import JSON, missing

if TYPE_CHECKING:
    import numpy as np

FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
_PROTOBUF_LIMIT = 2**31 - 1
_EXTERNAL = 1  # onnx.TensorProto.EXTERNAL, without importing onnx
# onnxruntime's element type names (tensor(float)) -> numpy dtype names
_ORT_DTYPES = {"float": "float32", "double": "float64", "string": "object"}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise missing("onnx", "onnx", "onnx") from exc
    return onnx


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise missing("onnx", "onnxruntime", "onnx") from exc
    return onnxruntime


def _tensors(message: Any) -> Iterator[Any]:
    """Every TensorProto anywhere in `message`: initializers, sparse tensors, attributes,
    subgraphs and functions. Walked generically, so no place a tensor can hide is missed."""
    if type(message).__name__ == "TensorProto":
        yield message  # a tensor holds no tensors; its data fields are not walked
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        for item in value if not hasattr(value, "ListFields") else (value,):
            yield from _tensors(item)


def external_locations(model: Any) -> list[str]:
    """The external-data file names the model's tensors refer to, in order of first use.

    Example:
        >>> external_locations(onnx.load("model.onnx", load_external_data=False))  # doctest: +SKIP
        ['weights.bin']
    """
    found: dict[str, None] = {}
    for tensor in _tensors(model):
        if tensor.data_location == _EXTERNAL or len(tensor.external_data):
            entries = {entry.key: entry.value for entry in tensor.external_data}
            found.setdefault(entries.get("location", ""), None)
    return list(found)


def check_location(folder: Path, location: str) -> Path:
    """The file an external-data `location` names inside `folder`, or InvalidPath.

    Refused: an absolute path, `..`, a backslash, and anything that leaves `folder` once
    symbolic links are resolved (a link planted in the folder counts as leaving it).

    Example:
        >>> check_location(Path("bundle"), "../secret")  # doctest: +SKIP
        Traceback (most recent call last):
        mloop.errors.InvalidPath: external data location '../secret' leaves its folder with '..'
    """
    relpath = check_relative_path(location, "external data location")
    if relpath == FILE:
        raise InvalidPath(f"external data location {location!r} is the model file itself")
    root = folder.resolve()
    target = (folder / relpath).resolve()
    if not target.is_relative_to(root):
        raise InvalidPath(
            f"external data location {location!r} resolves to {target}, outside the model folder",
            "keep external data files in the model's folder, as regular files",
        )
    return target


def _type_label(type_proto: Any) -> str:
    """`float32`, `int64`, `string` for tensors; `seq(map(int64,float32))` and so on."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        onnx = _onnx()
        elem = type_proto.tensor_type.elem_type
        if elem == onnx.TensorProto.STRING:
            return "string"
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem).name) if elem else "unknown"
    if kind == "sequence_type":
        return f"seq({_type_label(type_proto.sequence_type.elem_type)})"
    if kind == "map_type":
        key = _onnx().helper.tensor_dtype_to_np_dtype(type_proto.map_type.key_type).name
        return f"map({key},{_type_label(type_proto.map_type.value_type)})"
    return str(kind or "unknown")


def _io(values: Any) -> list[JSON]:
    out: list[JSON] = []
    for value in values:
        shape: list[JSON] = []
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            for dim in value.type.tensor_type.shape.dim:
                shape.append(dim.dim_value if dim.HasField("dim_value") else dim.dim_param or None)
        out.append({"name": value.name, "dtype": _type_label(value.type), "shape": shape})
    return out


def describe(model: Any) -> dict[str, JSON]:
    """Metadata a person (and the registry's signature) can read: inputs, outputs, opsets.

    Example:
        >>> describe(proto)["inputs"]  # doctest: +SKIP
        [{'name': 'X', 'dtype': 'float32', 'shape': [None, 4]}]
    """
    opset: dict[str, JSON] = {op.domain or "ai.onnx": op.version for op in model.opset_import}
    return {
        "inputs": _io(model.graph.input),
        "outputs": _io(model.graph.output),
        "opset": opset,
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "external_data": list(external_locations(model)),
    }


def _refuse_unloaded(proto: Any) -> None:
    """A ModelProto read with `load_external_data=False` lacks its data: refuse to store it."""
    if external_locations(proto):
        raise InvalidInput(
            "the ONNX model refers to external data that is not loaded",
            "load it with onnx.load(path), which reads the data, or use OnnxModel.from_file(path)",
        )


class OnnxModel:
    """An ONNX model in memory (its bytes and external-data files), run with onnxruntime.

    It answers like an `onnxruntime.InferenceSession` (`run`, `get_inputs`, `get_outputs`) and
    like a scikit-learn model: `predict` returns the first output, and `predict_proba` exists
    when the model has a second output (class probabilities, for converted classifiers). The
    session is created on first use, on the CPU.

    Example:
        >>> model = OnnxModel.from_file(Path("model.onnx"))  # doctest: +SKIP
        >>> model.predict(np.ones((2, 4)))  # doctest: +SKIP
        array([1, 1])
    """

    def __init__(self, data: bytes, external: Mapping[str, bytes] | None = None) -> None:
        self.data = bytes(data)
        self.external = dict(external or {})
        self._session: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # The session is rebuilt on first use; onnxruntime sessions cannot be pickled.
        return {"data": self.data, "external": self.external, "_session": None}

    @classmethod
    def from_proto(cls, model: Any) -> OnnxModel:
        """Wrap an `onnx.ModelProto` whose tensors are all in memory.

        Example:
            >>> OnnxModel.from_proto(skl2onnx.to_onnx(estimator, x[:1]))  # doctest: +SKIP
        """
        _refuse_unloaded(model)
        return cls(model.SerializeToString())

    @classmethod
    def from_file(cls, path: Path) -> OnnxModel:
        """Read an `.onnx` file and its external data, which must lie inside its folder.

        Example:
            >>> OnnxModel.from_file(Path("export/model.onnx"))  # doctest: +SKIP
        """
        onnx = _onnx()
        data = path.read_bytes()  # read once: the bytes checked are the bytes run
        try:
            proto = onnx.load_model_from_string(data)  # external data is never loaded here
        except Exception as exc:  # protobuf raises its own DecodeError, among others
            raise InvalidInput(f"{path.name} is not a valid ONNX model: {exc}") from exc
        external: dict[str, bytes] = {}
        for location in external_locations(proto):
            target = check_location(path.parent, location)
            if not target.is_file():
                raise InvalidInput(
                    f"the ONNX model refers to the external data file {location!r}, "
                    f"which is not a file beside {path.name}"
                )
            external[location] = target.read_bytes()
        return cls(data, external)

    @property
    def session(self) -> Any:
        """The onnxruntime session, created (CPU only) on first use."""
        if self._session is None:
            ort = _ort()
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: warnings are not the user's business
            if self.external:
                names = list(self.external)
                buffers = [self.external[name] for name in names]
                options.add_external_initializers_from_files_in_memory(
                    names, buffers, [len(b) for b in buffers]
                )
            try:
                self._session = ort.InferenceSession(
                    self.data, options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime's own error classes, one per status
                raise InvalidInput(
                    f"onnxruntime cannot load the ONNX model: {exc}",
                    "check it with onnx.checker.check_model, or export it with an opset "
                    f"onnxruntime {ort.__version__} supports",
                ) from exc
        return self._session

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, Any]) -> list[Any]:
        """`InferenceSession.run`: the named outputs (all when None) for the given inputs."""
        session = self.session
        try:
            return list(session.run(output_names, dict(feed)))
        except Exception as exc:  # onnxruntime's own error classes (InvalidArgument, …)
            raise InvalidInput(
                f"the ONNX model cannot run on this input: {exc}",
                "give it rows shaped and typed as its inputs say (see get_inputs())",
            ) from exc

    def get_inputs(self) -> list[Any]:
        return list(self.session.get_inputs())

    @property
    def wants_frame(self) -> bool:
        """One input per column: the server must hand `predict` a DataFrame it can split."""
        return len(self.get_inputs()) > 1

    def input_columns(self) -> list[tuple[str, str]] | None:
        """(column, dtype) pairs the inputs declare, for a signature; None when they don't.

        Either one input per column (`[N, 1]` or `[N]`, as converters make for DataFrames), or
        one `[N, K]` table with K fixed (columns `f0`..`fK-1`, as scikit-learn names them).
        """
        inputs = self.get_inputs()
        dtypes = [_ONNX_DTYPES.get(str(i.type)) for i in inputs]
        if None in dtypes:
            return None
        shapes = [list(i.shape) for i in inputs]
        if len(inputs) > 1:
            if all(len(s) == 1 or (len(s) == 2 and s[1] == 1) for s in shapes):
                return [(i.name, str(d)) for i, d in zip(inputs, dtypes, strict=True)]
            return None
        [shape] = shapes
        if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
            return [(f"f{k}", str(dtypes[0])) for k in range(shape[1])]
        return None

    def get_outputs(self) -> list[Any]:
        return list(self.session.get_outputs())

    def _feed(self, batch: Any) -> dict[str, Any]:
        import numpy as np

        inputs = self.get_inputs()
        columns = getattr(batch, "columns", None)
        if len(inputs) > 1 and columns is not None and all(i.name in columns for i in inputs):
            # a converter that made one input per column: feed each column by name
            return {i.name: _as(np.asarray(batch[i.name]).reshape(-1, 1), i) for i in inputs}
        if len(inputs) > 1:
            raise InvalidInput(
                f"the ONNX model has {len(inputs)} inputs "
                f"({', '.join(i.name for i in inputs)}); predict feeds one array",
                "pass a DataFrame with a column per input, or call run() with every input",
            )
        return {inputs[0].name: _as(np.asarray(batch), inputs[0])}

    def predict(self, batch: Any) -> np.ndarray:
        """The first output for a batch (an array or DataFrame), cast to the input's type.

        Example:
            >>> model.predict(frame)  # doctest: +SKIP
            array([0, 1, 1])
        """
        import numpy as np

        return np.asarray(self.run([self.get_outputs()[0].name], self._feed(batch))[0])

    @property
    def predict_proba(self) -> Any:
        """The second output as an array (rows x classes); only for models that have one."""
        outputs = self.get_outputs()
        if len(outputs) < 2:
            raise AttributeError("this ONNX model has one output, so no predict_proba")
        return lambda batch: _rows(self.run([outputs[1].name], self._feed(batch))[0])

    @property
    def classes_(self) -> Any:
        """The class of each `predict_proba` column, as a converted classifier's ONNX-ML node
        lists them (`classlabels_strings` or `classlabels_int64s`, on ZipMap or the classifier
        itself); AttributeError when no node does, as scikit-learn's regressors have none."""
        found = self.__dict__.get("_classes")
        if found is None:
            found = self._classes = _class_labels(_onnx().load_model_from_string(self.data))
        if not len(found):
            raise AttributeError("this ONNX model names no classes")
        return found


_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}


def _as(array: Any, node: Any) -> Any:
    """The array cast to what the input declares (`tensor(float)` -> float32)."""
    kind = str(node.type)
    if kind.startswith("tensor(") and kind.endswith(")"):
        name = kind[len("tensor(") : -1]
        return array.astype(_ORT_DTYPES.get(name, name), copy=False)
    return array


def _class_labels(model: Any) -> Any:
    """The first `classlabels_*` list of the graph's ONNX-ML nodes (empty: none)."""
    import numpy as np

    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "classlabels_strings" and attribute.strings:
                return np.array([value.decode() for value in attribute.strings], dtype=object)
            if attribute.name in ("classlabels_int64s", "classlabels_ints") and attribute.ints:
                return np.array(list(attribute.ints), dtype=np.int64)
    return np.array([])


def _rows(output: Any) -> np.ndarray:
    """An output as a 2-D array; a list of {label: probability} maps (ZipMap) becomes rows."""
    import numpy as np

    if isinstance(output, list) and output and isinstance(output[0], dict):
        return np.array([list(row.values()) for row in output])
    return np.asarray(output)


class OnnxFlavor:
    """ONNX models through onnxruntime; see the module docstring."""

    name = "onnx"
    requires_trust = False
    returns_paths = False

    def handles(self, obj: object) -> bool:
        onnx = sys.modules.get("onnx")  # a ModelProto exists only if onnx is imported
        return isinstance(obj, OnnxModel) or (onnx is not None and isinstance(obj, onnx.ModelProto))

    def save(self, obj: Any, folder: Path, *, trust: bool = False) -> dict[str, JSON]:
        if isinstance(obj, OnnxModel):
            return self._save_model(obj, folder)
        if obj.ByteSize() <= _PROTOBUF_LIMIT:
            return self._save_model(OnnxModel.from_proto(obj), folder)
        return self._save_large(obj, folder)  # pragma: no cover - needs a 2 GB model

    def _save_large(self, proto: Any, folder: Path) -> dict[str, JSON]:  # pragma: no cover
        """A model over protobuf's 2 GB limit: its tensors go to `model.onnx.data`."""
        onnx = _onnx()
        _refuse_unloaded(proto)
        copy = onnx.ModelProto()
        copy.CopyFrom(proto)  # save_model moves tensors out of the proto it is given
        onnx.save_model(copy, str(folder / FILE), save_as_external_data=True, location=DATA_FILE)
        return describe(copy)

    def _save_model(self, model: OnnxModel, folder: Path) -> dict[str, JSON]:
        onnx = _onnx()
        try:
            proto = onnx.load_model_from_string(model.data)
        except Exception as exc:  # protobuf raises its own DecodeError, among others
            raise InvalidInput(f"the bytes are not a valid ONNX model: {exc}") from exc
        locations = external_locations(proto)
        missing_files = [loc for loc in locations if loc not in model.external]
        if missing_files:
            raise InvalidInput(
                f"the ONNX model refers to external data it does not hold: {missing_files}",
                "build it with OnnxModel.from_file(path) so its data files are read too",
            )
        (folder / FILE).write_bytes(model.data)
        for location in locations:
            if check_relative_path(location, "external data location") != location:
                raise InvalidPath(
                    f"external data location {location!r} is not in canonical form",
                    "name external data files with plain relative paths, such as 'weights.bin'",
                )
            target = check_location(folder, location)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(model.external[location])
        return describe(proto)

    def load(
        self,
        folder: Path,
        meta: dict[str, JSON],
        *,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
    ) -> Any:
        # from_file checks every external location before reading a byte of data, and the
        # session is built from bytes, so onnxruntime itself opens no file.
        return OnnxModel.from_file(folder / FILE)


FLAVOR = OnnxFlavor()
