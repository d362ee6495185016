"""The python flavor: a `PythonModel` subclass, packaged with its code, never pickled.

Some models are more than an estimator: a rule, an ensemble, a pre-processing step around a
model file. Pickling such an object stores a reference to its class, not the class, so it
breaks when the code moves, and loading a pickle runs whatever its author chose. Instead the
bundle holds what is needed to build the object again, in plain files:

    code/<module>.py          the source file of the module that defines the class
    code/<extra>              project modules listed in the class attribute `code`
    artifacts/<name>/<file>   each file or folder listed in the attribute `artifacts`

and the metadata names the class and holds the constructor's arguments as JSON (`init_args`;
anything JSON cannot hold is refused when saving). Loading imports the packaged module from
the bundle under a unique module name (so the original file may have changed or gone, and two
models with a `helpers.py` each do not collide), calls the constructor with the stored
arguments, then `load_context` with each artifact's path inside the bundle.

Importing the packaged module runs its code, as loading a pickle would, so `load` refuses
unless the caller passes `trust=True`: the model registry records that trust as an Event, and
the CLI asks for it with `--trust`. Saving needs no trust (it packages the caller's own code),
so `requires_trust` is False and the check is made by `load` itself, before anything from the
bundle is imported. The loaded model keeps paths into the bundle folder (its artifacts, its
code), so `returns_paths` is True: the caller decides when that folder goes.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import shutil
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Self

from mloop.domain.names import check_relative_path
from mloop.errors import InvalidInput, InvalidPath, MloopError, NeedsTrust
from mloop.flavors.json_value import problem
from mloop.flavors.protocol import JSON

CODE = "code"
ARTIFACTS = "artifacts"
# Loading makes the bundle's modules importable by their own names for a moment (sys.path,
# sys.modules); one load at a time keeps two models' `helpers.py` apart.
_IMPORT_LOCK = threading.Lock()


class PythonModel:
    """Base class for a model written in Python, stored with its code instead of pickled.

    Subclass it, define `predict` (and `load_context` if the model reads files), and construct
    it with JSON-able keyword arguments: they are recorded and given to the constructor again
    when the model is loaded. Define the class at the top level of a `.py` file; modules of
    your project that file imports are listed in `code` (paths relative to its folder) and
    must be imported at the top of the module, not inside functions.

    Attributes:
        artifacts: name -> file or folder the model needs (weights, a vocabulary), copied into
            the bundle; a class attribute, or set on the instance before saving.
        code: extra project modules to package, relative to the defining module's folder,
            such as `["helpers.py", "features/"]`.

    Example:
        >>> class Threshold(PythonModel):
        ...     def __init__(self, cut: float = 0.5) -> None:
        ...         self.cut = cut
        ...     def predict(self, batch: Any) -> Any:
        ...         return [int(row[0] > self.cut) for row in batch]
        >>> Threshold(cut=0.2).predict([[0.3], [0.1]])
        [1, 0]
    """

    artifacts: Mapping[str, str | Path] = MappingProxyType({})
    code: Sequence[str] = ()
    _mloop_init: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Records the constructor's arguments so saving can store them; nothing else changes.
        obj = super().__new__(cls)
        obj._mloop_init = (args, dict(kwargs))
        return obj

    def load_context(self, artifacts: dict[str, Path]) -> None:
        """Read what the model needs from its artifacts (paths inside the loaded bundle)."""

    def predict(self, batch: Any) -> Any:
        """One prediction per row of `batch` (an array or a DataFrame)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not define predict")


def init_args(model: PythonModel) -> dict[str, JSON]:
    """The arguments `model` was constructed with, by name, as JSON (or InvalidInput).

    Example:
        >>> init_args(Threshold(0.2))  # doctest: +SKIP
        {'cut': 0.2}
    """
    args, kwargs = getattr(model, "_mloop_init", ((), {}))
    named: dict[str, Any] = dict(kwargs)
    cls = type(model).__qualname__
    if args:
        # __init__'s own signature (self included), not the class's, which may show __new__'s
        bound = inspect.signature(type(model).__init__).bind(model, *args, **kwargs)
        named = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = bound.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                raise InvalidInput(
                    f"{cls} was given *{name} arguments, which cannot be stored by name",
                    "give the constructor named parameters",
                )
            named.update(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
    try:
        data: dict[str, JSON] = json.loads(json.dumps(named, allow_nan=False))
    except (TypeError, ValueError) as exc:
        reason = problem(named) or str(exc)
        raise InvalidInput(
            f"{cls} was constructed with arguments JSON cannot hold ({reason})",
            "pass numbers, strings, lists and dicts; load anything bigger in load_context "
            "from an artifact",
        ) from exc
    return data


def _resolve(module: ModuleType, qualname: str) -> Any:
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


def _copy(source: Path, target: Path, what: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        # Links stay links here; storing the bundle applies mloop's rule for them (store.walk).
        shutil.copytree(
            source, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    elif source.is_file():
        shutil.copyfile(source, target)
    else:
        raise InvalidInput(f"{what} {source} is not a file or folder", "fix the path")


def _source_file(cls: type) -> Path:
    """The `.py` file defining `cls`, which must be reachable there by its qualified name."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    hint = "define the model class at the top level of a .py file and import it from there"
    if "<locals>" in cls.__qualname__:
        raise InvalidInput(f"{where} is defined inside a function, so it cannot be imported", hint)
    module = sys.modules.get(cls.__module__)
    source = getattr(module, "__file__", None)
    if module is None or not source or not str(source).endswith(".py"):
        raise InvalidInput(f"{where} has no .py file to package (a notebook or a shell?)", hint)
    if _resolve(module, cls.__qualname__) is not cls:
        raise InvalidInput(f"{where} is not reachable by its name in its module", hint)
    return Path(source)


class PythonModelFlavor:
    """`PythonModel` subclasses, packaged with their code; see the module docstring."""

    name = "python"
    requires_trust = False  # saving is safe; `load` itself demands trust (module docstring)
    returns_paths = True

    def handles(self, obj: object) -> bool:
        return isinstance(obj, PythonModel)

    def save(self, obj: Any, folder: Path, *, trust: bool = False) -> dict[str, JSON]:
        cls = type(obj)
        source = _source_file(cls)
        arguments = init_args(obj)
        _copy(source, folder / CODE / source.name, "the module file")
        extra: list[JSON] = []
        for entry in [obj.code] if isinstance(obj.code, str | Path) else list(obj.code):
            rel = check_relative_path(str(entry), "code path")
            if rel != source.name:
                _copy(source.parent / rel, folder / CODE / rel, "the code path")
                extra.append(rel)
        artifacts: dict[str, JSON] = {}
        for name, path in dict(obj.artifacts or {}).items():
            if not isinstance(name, str) or "/" in name or check_relative_path(name) != name:
                raise InvalidPath(
                    f"artifact name {name!r} is not a plain name",
                    "name artifacts like 'weights' or 'vocab'",
                )
            source_path = Path(path)
            rel = f"{ARTIFACTS}/{name}/{source_path.resolve().name or name}"
            _copy(source_path, folder / rel, f"the artifact {name!r}")
            artifacts[name] = rel
        return {
            "class": cls.__qualname__,
            "module": cls.__module__,
            "module_file": f"{CODE}/{source.name}",
            "code": extra,
            "artifacts": artifacts,
            "init_args": arguments,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        }

    def load(
        self,
        folder: Path,
        meta: dict[str, JSON],
        *,
        trust: bool = False,
        trusted_types: Sequence[str] = (),
    ) -> Any:
        qualname = meta.get("class")
        if not trust:
            raise NeedsTrust.of(
                f"it is a python model ({qualname}): loading it imports the code packaged with "
                "it, which can do anything its author chose"
            )
        if not isinstance(qualname, str) or not all(p.isidentifier() for p in qualname.split(".")):
            raise InvalidInput(f"the bundle names the class {qualname!r}, which is not a name")
        arguments = meta.get("init_args")
        declared = meta.get("artifacts")
        if not isinstance(arguments, dict) or not isinstance(declared, dict):
            raise InvalidInput("the bundle's init_args and artifacts must be mappings")
        artifacts = {str(name): _inside(folder, rel, ARTIFACTS) for name, rel in declared.items()}
        module = _import(folder / CODE, _inside(folder, meta.get("module_file"), CODE))
        cls = _resolve(module, qualname)
        if not (isinstance(cls, type) and issubclass(cls, PythonModel)):
            raise InvalidInput(f"the packaged code has no PythonModel class {qualname!r}")
        try:
            model = cls(**arguments)
            model.load_context(artifacts)
        except MloopError:
            raise
        except Exception as exc:
            raise InvalidInput(
                f"the python model {qualname} failed to load: {type(exc).__name__}: {exc}",
                "fix its constructor or load_context and store it again",
            ) from exc
        return model


def _inside(folder: Path, rel: object, area: str) -> Path:
    """A path the bundle's metadata names: canonical, under `area/`, and inside `folder`."""
    if not isinstance(rel, str) or check_relative_path(rel, "bundle path") != rel:
        raise InvalidPath(f"the bundle names the path {rel!r}, which is not a canonical path")
    target = (folder / rel).resolve()
    if not rel.startswith(f"{area}/") or not target.is_relative_to(folder.resolve() / area):
        raise InvalidPath(f"the bundle path {rel!r} lies outside its {area}/ folder")
    if not target.exists():
        raise InvalidInput(f"the bundle has no {rel!r}", "store the model again")
    return target


def _import(code_root: Path, module_file: Path) -> ModuleType:
    """Import `module_file` under a unique name, with its sibling modules importable meanwhile.

    The names the bundle's code folder provides are hidden from `sys.modules` while the module
    runs (so `import helpers` finds the packaged `helpers.py`, not another model's) and removed
    again afterwards; the module keeps its references to them.
    """
    name = f"_mloop_python_model_{uuid.uuid4().hex}"
    local = {p.stem if p.suffix == ".py" else p.name for p in code_root.iterdir()}
    local -= {"mloop", *sys.stdlib_module_names}  # a packaged `json.py` never hides the real one
    spec = importlib.util.spec_from_file_location(name, module_file)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has one
        raise InvalidInput(f"cannot import {module_file.name} from the bundle")
    module = importlib.util.module_from_spec(spec)
    root = str(code_root.resolve())
    with _IMPORT_LOCK:
        hidden = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in local}
        sys.path.insert(0, root)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise InvalidInput(
                f"the python model's code failed to import: {type(exc).__name__}: {exc}",
                "list the project modules it imports in the class attribute `code`, "
                "e.g. code = ['helpers.py']",
            ) from exc
        finally:
            sys.path.remove(root)
            sys.path_importer_cache.pop(root, None)
            for key in [k for k in sys.modules if k.split(".")[0] in local]:
                del sys.modules[key]
            sys.modules.update(hidden)
    return module


FLAVOR = PythonModelFlavor()
