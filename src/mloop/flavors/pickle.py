"""The pickle flavor: any picklable value, and only for a caller who says `trust=True`.

Unpickling runs whatever code the file's author chose, so a pickle from a shared store is as
dangerous as a script from a stranger. Both directions need `trust=True`: saving, so nobody
produces pickles by accident that others must then trust; loading, because that is where the
code runs. Pickles are written with protocol 5 whatever the Python version's default, so an
unchanged value usually gives unchanged bytes; pickle does not promise it (sets of strings,
for one, iterate in an order that changes between processes), so a pickled step output may
miss the pipeline cache, never hit it wrongly.

A model file someone already wrote with pickle or joblib (`model.pkl`, `model.joblib`) is
stored as it is by wrapping it in `PickleFile`, under the same rule: `trust=True` to store it
and to load it. A `.joblib` file is loaded with `joblib.load` (joblib stores arrays its own
way), any other with `pickle`; the manifest's `format` picks which of two fixed file names is
read, never a name of its own.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.errors import InvalidInput, NeedsTrust
from mloop.flavors.protocol import JSON, missing

FILE = "value.pkl"
JOBLIB_FILE = "model.joblib"
PROTOCOL = 5


@dataclass(frozen=True)
class PickleFile:
    """A pickle or joblib file to store as it is; loading it gives the object it holds.

    Example:
        >>> store_value(artifacts, PickleFile(Path("model.joblib")), trust=True)  # doctest: +SKIP
    """

    path: Path

    @property
    def format(self) -> str:
        return "joblib" if self.path.suffix.lower() == ".joblib" else "pickle"


def refuse_untrusted(obj: object, reason: str | None = None) -> InvalidInput:
    """The error for a value no safe flavor can store, naming what would work instead.

    Example:
        >>> str(refuse_untrusted({1, 2}))
        'no flavor can store a set; return a DataFrame, ndarray, model, Path or JSON value, or mark the step trust=True to pickle it'
    """  # noqa: E501
    what = f"no flavor can store a {type(obj).__name__}"
    if reason:
        what += f" ({reason})"
    return InvalidInput(
        f"{what}; return a DataFrame, ndarray, model, Path or JSON value, "
        "or mark the step trust=True to pickle it",
        "trust=True only for values whose pickles you would run as code",
    )


class PickleFlavor:
    """Anything picklable, under `trust=True` only; see the module docstring."""

    name = "pickle"
    requires_trust = True
    returns_paths = False

    def handles(self, obj: object) -> bool:
        return True  # the last resort: the registry offers it only to a trusting caller

    def save(self, obj: Any, folder: Path, *, trust: bool = False) -> dict[str, JSON]:
        if not trust:
            raise refuse_untrusted(obj)
        if isinstance(obj, PickleFile):
            if not obj.path.is_file():
                raise InvalidInput(f"{obj.path} is not a file", "pass the model file's path")
            shutil.copyfile(obj.path, folder / (JOBLIB_FILE if obj.format == "joblib" else FILE))
            return {"format": obj.format}
        try:
            data = pickle.dumps(obj, protocol=PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidInput(
                f"cannot pickle the {type(obj).__name__}: {exc}",
                "return a value that can be pickled (no open files, locks or lambdas)",
            ) from exc
        (folder / FILE).write_bytes(data)
        return {"protocol": PROTOCOL}

    def load(
        self,
        folder: Path,
        meta: dict[str, JSON],
        *,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
    ) -> Any:
        if not trust:
            raise NeedsTrust.of("it is a pickle: loading it runs any code its author chose")
        if meta.get("format") == "joblib":
            try:
                import joblib
            except ImportError as exc:
                raise missing("pickle", "joblib", "sklearn") from exc
            return joblib.load(folder / JOBLIB_FILE)  # the caller trusts it
        return pickle.loads((folder / FILE).read_bytes())  # noqa: S301 - the caller trusts it


FLAVOR = PickleFlavor()
