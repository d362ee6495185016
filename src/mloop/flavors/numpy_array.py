"""The numpy flavor: an ndarray (or a numpy scalar) as one `.npy` file, never pickled.

`.npy` keeps dtype, shape and byte order exactly, and its header has nothing that varies
between saves, so equal arrays get equal digests. Arrays of Python objects are refused both
ways: numpy can only store them by pickling, and `np.load(allow_pickle=False)` is what keeps a
crafted file from running code. Only exact `ndarray`s are handled: a subclass (a masked array,
a matrix) would come back as a plain array, losing its mask or type, so it goes to pickle.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mloop.errors import InvalidInput
from mloop.flavors.protocol import JSON, missing

FILE = "array.npy"


def object_dtype(obj: object) -> bool:
    """Whether `obj` is an ndarray or numpy scalar numpy could only store by pickling."""
    np = sys.modules.get("numpy")
    if np is None or not isinstance(obj, np.ndarray | np.generic):
        return False
    return bool(obj.dtype.hasobject)


class NumpyFlavor:
    """ndarrays and numpy scalars as `.npy`; see the module docstring."""

    name = "numpy"
    requires_trust = False
    returns_paths = False

    def handles(self, obj: object) -> bool:
        # An object that is an ndarray means numpy is already imported; checking sys.modules
        # keeps `handles` from importing numpy for every other value.
        np = sys.modules.get("numpy")
        if np is None:
            return False
        if type(obj) is not np.ndarray and not isinstance(obj, np.generic):
            return False
        return not obj.dtype.hasobject  # type: ignore[attr-defined]

    def save(self, obj: Any, folder: Path, *, trust: bool = False) -> dict[str, JSON]:
        try:
            import numpy as np
        except ImportError as exc:  # pragma: no cover - numpy is a core dependency
            raise missing(self.name, "numpy", None) from exc
        array = np.asarray(obj)
        if array.dtype.hasobject:
            raise InvalidInput(
                f"cannot store an array of dtype {array.dtype} without pickling it",
                "convert it to a numeric or string dtype, or mark the step trust=True to pickle it",
            )
        with open(folder / FILE, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        return {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "scalar": not isinstance(obj, np.ndarray),
        }

    def load(
        self,
        folder: Path,
        meta: dict[str, JSON],
        *,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
    ) -> Any:
        try:
            import numpy as np
        except ImportError as exc:  # pragma: no cover - numpy is a core dependency
            raise missing(self.name, "numpy", None) from exc
        try:
            array = np.load(folder / FILE, allow_pickle=False)
        except ValueError as exc:
            if "pickle" not in str(exc):
                raise InvalidInput(f"{FILE} is not a valid .npy file: {exc}") from exc
            raise InvalidInput(
                f"refused to load {FILE}: {exc}; numpy would have to unpickle it, and loading a "
                "pickle can run any code its author chose",
                "store arrays with a numeric or string dtype",
            ) from exc
        return array[()] if meta.get("scalar") is True else array


FLAVOR = NumpyFlavor()
