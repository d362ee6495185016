"""Reading model files users hand to `mloop models register --path`, safely by default."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mloop.errors import InvalidInput

PICKLED = (".pkl", ".pickle", ".joblib")


def read_model_file(path: Path, *, trusted_types: Sequence[str] = (), trust: bool = False) -> Any:
    """The model in `path`, by its suffix: skops (only trusted types), ONNX, or pickle/joblib
    (only with `trust`: unpickling runs whatever code the file names)."""
    suffix = path.suffix.lower()
    if suffix == ".skops":
        import skops.io

        untrusted = [t for t in skops.io.get_untrusted_types(file=path) if t not in trusted_types]
        if untrusted and not trust:
            raise InvalidInput(
                f"{path.name} holds types skops does not trust: {', '.join(untrusted)}",
                "if you trust them, list them: --trusted-type "
                + " --trusted-type ".join(untrusted),
            )
        return skops.io.load(path, trusted=[*trusted_types, *untrusted])
    if suffix == ".onnx":
        from mloop.flavors.onnx import OnnxModel

        return OnnxModel.from_file(path)  # external data is checked to stay beside the file
    if suffix in PICKLED:
        if not trust:
            raise InvalidInput(
                f"{path.name} is a pickle: loading it can run any code it names",
                "load it only if you trust where it came from: pass --trust",
            )
        from mloop.flavors.pickle import PickleFile

        return PickleFile(path)  # stored as it is; unpickled only when loaded with trust
    raise InvalidInput(
        f"{path.name}: mloop does not know the {suffix or 'extensionless'} model format",
        "save the model with skops (.skops) or as ONNX (.onnx); pickles need --trust",
    )
