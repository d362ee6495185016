"""Reading model files users hand to `mloop models register --path`, safely by default.

The suffix says which reader may open a file, and the first bytes must agree with it before
that reader sees them: a pickle renamed `.skops` or `.onnx` is named for what it is, not fed to
a zip or protobuf parser that fails with its own words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop.errors import InvalidInput, NeedsTrust

PICKLED = (".pkl", ".pickle", ".joblib")
_SAVE_HINT = (
    "save the model with skops.io.dump(model, 'model.skops') or as ONNX; a pickle you trust "
    "can be registered as .pkl with --trust"
)


def looks_like(head: bytes) -> str:
    """What the first bytes of a file look like, in words, for an error message.

    Example:
        >>> looks_like(b"\\x80\\x04\\x95")
        'a pickle'
    """
    if not head:
        return "an empty file"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if head[:1] == b"\x78" and head[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
        return "zlib-compressed data (a compressed joblib file?)"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return "text"
    return "binary data of a kind mloop does not know"  # an ONNX protobuf, for one


def read_model_file(path: Path, *, trust: bool = False) -> Any:
    """The model in `path`, by its suffix: skops (safe types only, unless `trust`), ONNX, or
    pickle/joblib (only with `trust`: unpickling runs whatever code the file names)."""
    suffix = path.suffix.lower()
    if suffix == ".skops":
        from mloop.flavors.sklearn import is_skops, load_skops

        data = path.read_bytes()
        if not is_skops(data):
            raise InvalidInput(
                f"{path.name} is not a skops file: it looks like {looks_like(data[:16])}",
                _SAVE_HINT,
            )
        return load_skops(data, trust=trust, what=path.name)
    if suffix == ".onnx":
        from mloop.flavors.onnx import OnnxModel

        with open(path, "rb") as fh:
            kind = looks_like(fh.read(16))
        if kind in ("a pickle", "a zip archive", "an empty file", "text") or "compressed" in kind:
            raise InvalidInput(
                f"{path.name} is not an ONNX model: it looks like {kind}", _SAVE_HINT
            )
        return OnnxModel.from_file(path)  # external data is checked to stay beside the file
    if suffix in PICKLED:
        if not trust:
            raise NeedsTrust.of("it is a pickle: loading it can run any code it names", path.name)
        from mloop.flavors.pickle import PickleFile

        return PickleFile(path)  # stored as it is; unpickled only when loaded with trust
    raise InvalidInput(
        f"{path.name}: mloop does not know the {suffix or 'extensionless'} model format",
        "save the model with skops (.skops) or as ONNX (.onnx); pickles need --trust",
    )
