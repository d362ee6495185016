"""The flavor table, in the order flavors are tried, and the choice of a flavor for a value.

The table names modules rather than importing them, in the style of `mloop.store`'s scheme
tables; each flavor module is small and imports its heavy library only when used. Order matters
little: the safe flavors accept disjoint types, except that a `PythonModel` which is also a
scikit-learn estimator goes to the python flavor, which its author chose by subclassing; and
pickle, which accepts anything, comes last and only for a caller who passed `trust=True`.
"""

from __future__ import annotations

import importlib
import types
import typing
from typing import Any, cast

from mloop.errors import InvalidInput
from mloop.flavors.protocol import Flavor

FLAVORS: dict[str, str] = {
    "json": "mloop.flavors.json_value",
    "pandas": "mloop.flavors.pandas_frame",
    "numpy": "mloop.flavors.numpy_array",
    "python": "mloop.flavors.python_model",
    "sklearn": "mloop.flavors.sklearn",
    "onnx": "mloop.flavors.onnx",
    "files": "mloop.flavors.files",
    "pickle": "mloop.flavors.pickle",
}


def get_flavor(name: str) -> Flavor:
    """The flavor called `name`, as written in a manifest.

    Example:
        >>> get_flavor("json").name
        'json'
    """
    if name not in FLAVORS:
        raise InvalidInput(
            f"unknown flavor {name!r}; this mloop knows {', '.join(FLAVORS)}",
            "the value was stored by a newer mloop: upgrade with `pip install -U mloop`",
        )
    return cast(Flavor, importlib.import_module(FLAVORS[name]).FLAVOR)


def _label(declared: Any) -> str:
    return declared.__name__ if isinstance(declared, type) else str(declared).replace("typing.", "")


def matches(obj: object, declared: Any) -> bool:
    """Whether `obj` fits the annotation `declared`, as far as an isinstance check can tell.

    Classes, `X | None`, `Optional`, `Annotated`, `Literal` and generic aliases (by their origin:
    `list[int]` checks `list`) are checked; what cannot be checked at run time (a TypeVar, a
    string annotation, a non-runtime Protocol) is accepted. An int fits `float`, as in typing.

    Example:
        >>> matches(3, float | None), matches("3", int)
        (True, False)
    """
    if declared is None or declared is Any or declared is object:
        return True
    origin = typing.get_origin(declared)
    args = typing.get_args(declared)
    if origin is typing.Annotated:
        return matches(obj, args[0])
    if origin is typing.Union or origin is types.UnionType:
        return any(matches(obj, arg) for arg in args)
    if origin is typing.Literal:
        return obj in args
    if origin is not None:
        declared = origin
    if declared is type(None):
        return obj is None
    if not isinstance(declared, type):
        return True
    if declared is float and type(obj) is int:
        return True
    try:
        return isinstance(obj, declared)
    except TypeError:  # a Protocol without @runtime_checkable
        return True


def flavor_for(
    obj: object, declared: Any = None, trust: bool = False, *, what: str = "the step"
) -> Flavor:
    """The flavor that stores `obj`, after checking it against its declared annotation.

    Args:
        obj: the value to store.
        declared: the annotation it was declared with (`pd.DataFrame`, `Path`, `dict`, …);
            a value that does not fit is refused, naming both types.
        trust: allow pickle for values no safe flavor can store.
        what: who produced the value, for the error message (`"step 'train'"`).

    Example:
        >>> flavor_for({"rows": 3}, declared=dict).name
        'json'
    """
    if not matches(obj, declared):
        raise InvalidInput(
            f"{what} returned a {type(obj).__name__}, but its annotation says {_label(declared)}",
            "return what the annotation says, or change the annotation",
        )
    for name in FLAVORS:
        flavor = get_flavor(name)
        if flavor.requires_trust and not trust:
            continue
        if flavor.handles(obj):
            return flavor
    raise _refusal(obj)


def _refusal(obj: object) -> InvalidInput:
    from mloop.flavors.json_value import problem
    from mloop.flavors.numpy_array import object_dtype
    from mloop.flavors.pickle import refuse_untrusted

    reason = None
    if type(obj) in (list, tuple, dict):
        reason = problem(obj)
    elif object_dtype(obj):
        reason = "its dtype is object, which numpy stores only by pickling"
    return refuse_untrusted(obj, reason)
