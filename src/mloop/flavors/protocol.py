"""What a flavor is: a named way to save one kind of value into a folder and load it back.

A flavor writes plain files and returns JSON metadata; it knows nothing of digests or stores, so
the same flavor serves pipeline step outputs and registered models, on any artifact backend.
Loading is where untrusted bytes meet code, so `load` takes the caller's explicit `trust` and
`trusted_types` and a flavor refuses anything those do not allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from mloop.errors import MissingDependency

JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"


class Flavor(Protocol):
    """One way to turn a kind of value into files in a folder, and back.

    Attributes:
        name: the stable name written into every manifest ("pandas", "sklearn", …).
        requires_trust: loading runs code chosen by whoever wrote the files (pickle), so the
            caller must pass `trust=True`; checked before any byte is fetched.
        returns_paths: `load` returns paths inside the folder (the files flavor), so the
            folder must outlive the call; other flavors read everything into memory.
    """

    name: str
    requires_trust: bool
    returns_paths: bool

    def handles(self, obj: object) -> bool:
        """Whether this flavor can store `obj` and give back an equal value of the same type."""
        ...

    def save(self, obj: Any, folder: Path, *, trust: bool = False) -> dict[str, JSON]:
        """Write `obj` as files into the empty `folder`; return metadata (dtype, shape, …)."""
        ...

    def load(
        self,
        folder: Path,
        meta: dict[str, JSON],
        *,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
    ) -> Any:
        """Read the value back from the files `save` wrote (fetched and verified by the caller)."""
        ...


def missing(flavor: str, package: str, extra: str | None) -> MissingDependency:
    """The error for a flavor whose library is not installed, with the pip command as hint.

    Example:
        >>> missing("sklearn", "skops", "sklearn").hint
        "pip install 'mloop[sklearn]'"
    """
    command = f"pip install 'mloop[{extra}]'" if extra else "pip install --force-reinstall mloop"
    return MissingDependency(
        f"the {flavor} flavor needs {package}, which is not installed", command
    )


def type_name(obj: object) -> str:
    """`module.Qualname` of the value's type, as written into manifests and error messages.

    Example:
        >>> type_name(1.5)
        'builtins.float'
    """
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
