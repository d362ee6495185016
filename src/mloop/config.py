"""Settings: declared once with type, default and meaning; read from mloop.yaml and MLOOP_*.

Precedence is default < mloop.yaml < environment. Every value remembers where it came from, so
`mloop config show` can say. A key mloop does not know is an error with a suggestion, never
silently ignored: a typo in `store_uri` must not send metadata somewhere unexpected.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from mloop.domain.gate import Gate

PROJECT_FILE = "mloop.yaml"
STATE_DIR = ".mloop"


def _count(high: int) -> Callable[[Any], int]:
    """A whole number from 1 to `high`: each of these is a connection or a process to open."""

    def parse(value: Any) -> int:
        number = int(value)
        if not 1 <= number <= high:
            raise ValueError(f"must be from 1 to {high}")
        return number

    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("must be text")
    return str(value)


def _pipelines(value: Any) -> dict[str, str]:
    """`{name: "module:function"}` from mloop.yaml, or `name=module:function,…` from the env."""
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("write NAME=module:function, separated by commas")
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise ValueError("must map pipeline names to module:function")
    found: dict[str, str] = {}
    for name, target in value.items():
        module, sep, function = str(target).partition(":")
        if not sep or not module or not function:
            raise ValueError(f"{name}: {target!r} is not module:function (e.g. pipeline:train)")
        found[str(name)] = str(target)
    return found


def _gates(value: Any) -> dict[str, list[str]]:
    """`{pipeline: [gate, …]}` from mloop.yaml (one gate may stand alone), or
    `NAME=GATE;GATE,…` from the environment; each gate is checked and written out plainly."""
    import re

    from mloop.domain.gate import parse_gate

    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(p) != 2 or not re.fullmatch(r"[\w.-]+", p[0].strip()) for p in pairs):
            raise ValueError("write NAME=GATE;GATE, e.g. train=accuracy >= 0.7;f1 > 0.5")
        value = {name.strip(): rules.split(";") for name, rules in pairs}
    if not isinstance(value, dict):
        raise ValueError("must map pipeline names to lists of gates")
    found: dict[str, list[str]] = {}
    for name, rules in value.items():
        items = [rules] if isinstance(rules, str) else rules
        if not isinstance(items, list):
            raise ValueError(f"{name}: give a list of gates such as ['accuracy >= 0.7']")
        try:
            found[str(name)] = [str(parse_gate(rule)) for rule in items if rule != ""]
        except InvalidInput as exc:
            raise ValueError(f"{name}: {exc.message}") from None
    return found


MODEL_KEYS = ("gates", "holdout", "label", "table")


def _models(value: Any) -> dict[str, dict[str, Any]]:
    """Per model: `gates` (promotion gates), `holdout` (a dataset, NAME or NAME:V, the gates
    that compare models or measure bias are computed on), `label` (its target column) and
    `table` (which table of it, when it has several)."""
    from mloop.domain.gate import parse_promotion_gate
    from mloop.domain.names import check_name

    if not isinstance(value, dict):
        raise ValueError("must map model names to their settings (gates, holdout, label)")
    found: dict[str, dict[str, Any]] = {}
    for name, spec in value.items():
        try:
            check_name(str(name), "model name")
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        if not isinstance(spec, dict):
            raise ValueError(f"{name}: give a mapping with gates, holdout, label")
        unknown = sorted(set(spec) - set(MODEL_KEYS))
        if unknown:
            raise ValueError(f"{name}: unknown key {unknown[0]!r} (known: {', '.join(MODEL_KEYS)})")
        rules = spec.get("gates") or []
        rules = [rules] if isinstance(rules, str) else rules
        try:
            gates = [str(parse_promotion_gate(str(rule))) for rule in rules]
        except InvalidInput as exc:
            raise ValueError(f"{name}: {exc.message}") from None
        entry: dict[str, Any] = {"gates": gates}
        for key in ("holdout", "label", "table"):
            if spec.get(key) is not None:
                entry[key] = str(spec[key])
        needs_data = [g for g in gates if "champion" in g or "(" in g]
        if needs_data and not ("holdout" in entry and "label" in entry):
            raise ValueError(f"{name}: the gate {needs_data[0]!r} needs `holdout` and `label`")
        found[str(name)] = entry
    return found


def _project_name(value: Any) -> str:
    from mloop.domain.names import check_name

    return check_name(_text(value), "project name")


# Who a run or an Event is recorded as: shown in tables and sent in HTTP headers, so one line.
MAX_USER_LENGTH = 100


def _user(value: Any) -> str:
    from mloop.domain.names import check_line

    return check_line(_text(value), "user", MAX_USER_LENGTH)


def _store_uri(value: Any) -> str:
    from mloop.store import METADATA_SCHEMES

    uri = _text(value)
    scheme = uri.partition("://")[0] if "://" in uri else ""
    if scheme not in METADATA_SCHEMES:
        raise InvalidInput(
            f"unknown scheme {scheme}:// in {uri!r}" if scheme else f"no scheme in {uri!r}",
            "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB "
            f"(schemes: {', '.join(s + '://' for s in METADATA_SCHEMES)})",
        )
    return uri


# Schemes of fsspec's table that are named often enough to skip importing it (~20 ms) to check.
_COMMON_FILE_SCHEMES = frozenset({"", "file", "s3", "s3a", "gs", "gcs", "az", "abfs", "memory"})


def _artifacts_uri(value: Any) -> str:
    """A folder, or a URL of a file system fsspec knows (a library may still be missing then:
    opening the store says which to install)."""
    uri = _text(value)
    scheme = uri.partition("://")[0] if "://" in uri else ""
    if scheme in _COMMON_FILE_SCHEMES:
        return uri
    from fsspec.registry import known_implementations, registry

    known = sorted({*known_implementations, *registry})
    if scheme not in known:
        raise InvalidInput(
            f"unknown scheme {scheme}:// in {uri!r}",
            "give a folder, or a URL such as s3://bucket/prefix, gs://bucket/prefix, "
            f"file:///path (schemes: {', '.join(known)})",
        )
    return uri


def _executor(value: Any) -> str:
    text = _text(value)
    if text not in ("local", "process", "ray"):
        raise ValueError("must be local, process or ray")
    return text


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str

    @property
    def env(self) -> str:
        return "MLOOP_" + self.key.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("project", _project_name, None, "the project's name (default: the folder's name)"),
    Setting(
        "store_uri",
        _store_uri,
        None,
        "metadata store: sqlite:///PATH (default .mloop/mloop.db) or postgresql+psycopg://…",
    ),
    Setting(
        "artifacts_uri",
        _artifacts_uri,
        None,
        "artifact store: a folder (default .mloop/objects), s3://bucket/prefix or any fsspec URL",
    ),
    Setting(
        "remote_uri", _artifacts_uri, None, "remote artifact store for `mloop data push` and `pull`"
    ),
    Setting("pool_size", _count(1000), 5, "PostgreSQL connections each process may open (1-1000)"),
    Setting(
        "user",
        _user,
        None,
        f"who runs and events are recorded as: one line of at most {MAX_USER_LENGTH} "
        "characters (default: the OS user)",
    ),
    Setting("pipelines", _pipelines, {}, "the project's pipelines: NAME: module:function"),
    Setting("models", _models, {}, "per model: promotion gates, holdout dataset and label"),
    Setting("executor", _executor, "local", "where steps run: local, process or ray"),
    Setting(
        "gates",
        _gates,
        {},
        "what a pipeline's run must reach, per pipeline: `train: [accuracy >= 0.7, rmse < 3.5]`",
    ),
    Setting("max_workers", _count(1024), None, "steps at once on the process executor (1-1024)"),
    Setting("ray_address", _text, None, "a Ray cluster to join (default: start Ray locally)"),
)
BY_KEY = {s.key: s for s in SETTINGS}
# Variables for one process, never project settings (a secret has no place in mloop.yaml):
# MLOOP_DEBUG prints tracebacks; MLOOP_SERVE_TOKEN is the bearer token `mloop serve` requires.
PROCESS_ENV = frozenset({"MLOOP_DEBUG", "MLOOP_SERVE_TOKEN"})


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one project; `sources` says where each value came from."""

    root: Path
    values: Mapping[str, Any]
    sources: Mapping[str, str]

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def project(self) -> str:
        from mloop.domain.names import suggest_name

        return str(self.values["project"] or suggest_name(self.root.name) or "project")

    @property
    def store_uri(self) -> str:
        uri = self.values["store_uri"]
        if uri is None:
            return f"sqlite:///{self.state_dir / 'mloop.db'}"
        uri = str(uri)
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            return f"sqlite:///{self.root / uri.removeprefix('sqlite:///')}"
        return uri

    @property
    def artifacts_uri(self) -> str:
        uri = self.values["artifacts_uri"]
        if uri is None:
            return str(self.state_dir / "objects")
        return _folder_or_url(self.root, str(uri))

    @property
    def remote_uri(self) -> str | None:
        uri = self.values["remote_uri"]
        return None if uri is None else _folder_or_url(self.root, str(uri))

    @property
    def pool_size(self) -> int:
        return int(self.values["pool_size"])

    @property
    def pipelines(self) -> dict[str, str]:
        return dict(self.values["pipelines"])

    @property
    def gates(self) -> dict[str, tuple[Gate, ...]]:
        """The gates of each pipeline, parsed (`mloop ci` checks them after the run)."""
        from mloop.domain.gate import parse_gates

        return {name: parse_gates(rules) for name, rules in self.values["gates"].items()}

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        return dict(self.values["models"])

    @property
    def executor(self) -> str:
        return str(self.values["executor"])

    @property
    def ray_address(self) -> str | None:
        value = self.values["ray_address"]
        return None if value is None else str(value)

    @property
    def max_workers(self) -> int | None:
        value = self.values["max_workers"]
        return None if value is None else int(value)

    @property
    def user(self) -> str | None:
        value = self.values["user"]
        return None if value is None else str(value)


def _folder_or_url(root: Path, uri: str) -> str:
    if "://" in uri:
        return uri
    return str((root / Path(uri).expanduser()).resolve())


def _unknown_key(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(BY_KEY), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(BY_KEY)}"
    return ConfigError(f"{where}: unknown setting {key!r}", hint)


def read_project_file(path: Path) -> dict[str, Any]:
    """The settings in mloop.yaml, from a JSON copy in .mloop/ while the file is unchanged.

    Importing a YAML parser costs more than a quick command's whole budget (~15 ms of ~100),
    so the parsed settings are kept beside the store, stamped with the file's size, mtime and
    inode; a stamp written within a second of the file's last change is not trusted.
    """
    import json
    import time

    try:
        st = path.stat()
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    cache = path.parent / STATE_DIR / "settings.json"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached["stamp"] == stamp:
            return dict(cached["values"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    data = _parse_project_file(path)
    if st.st_mtime_ns < time.time_ns() - 1_000_000_000 and cache.parent.is_dir():
        try:
            tmp = cache.with_name(f".settings.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"stamp": stamp, "values": data}), encoding="utf-8")
            os.replace(tmp, cache)
        except (OSError, TypeError, ValueError):
            pass  # values JSON cannot hold, or a read-only folder: parse again next time
    return data


def _cannot_read(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"{path} cannot be read: {exc.strerror or exc}", "check its permissions")


def _parse_project_file(path: Path) -> dict[str, Any]:
    from mloop.domain.bounded_yaml import load_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})",
            f"{PROJECT_FILE} holds YAML text such as `project: churn`; `mloop init` writes one",
        ) from None
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    hint = "fix the file; see `mloop config show`"
    data = load_yaml(text, str(path), ConfigError, hint)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must be a mapping of settings, not {type(data).__name__}",
            "write one `key: value` per line, such as `project: churn`",
        )
    return data


def load_settings(root: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting for the project at `root`.

    Example:
        >>> load_settings(Path("/tmp/demo")).store_uri  # doctest: +SKIP
        'sqlite:////tmp/demo/.mloop/mloop.db'
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources: dict[str, str] = {s.key: "default" for s in SETTINGS}
    path = root / PROJECT_FILE
    file_values = read_project_file(path) if path.exists() else {}
    for key, raw in file_values.items():
        setting = BY_KEY.get(str(key))
        if setting is None:
            raise _unknown_key(str(key), str(path))
        values[setting.key] = _parse(setting, raw, f"{path}: {key}")
        sources[setting.key] = PROJECT_FILE
    for setting in SETTINGS:
        if setting.env in env and env[setting.env] != "":
            values[setting.key] = _parse(setting, env[setting.env], setting.env)
            sources[setting.key] = f"environment ({setting.env})"
    known_env = {s.env for s in SETTINGS} | PROCESS_ENV
    for name in env:
        if name.startswith("MLOOP_") and name not in known_env:
            raise _unknown_key(name.removeprefix("MLOOP_").lower(), f"environment variable {name}")
    return Settings(root, values, sources)


def _parse(setting: Setting, raw: Any, where: str) -> Any:
    if raw is None:
        return setting.default
    try:
        return setting.parse(raw)
    except InvalidInput as exc:  # a rule with its own message and hint (a name, a scheme)
        raise ConfigError(f"{where}: {exc.message}", exc.hint or setting.help) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {_show(raw)}: {exc}", setting.help) from None


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:60] + "…"
