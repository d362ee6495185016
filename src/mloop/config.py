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

from mloop.errors import ConfigError

if TYPE_CHECKING:
    from mloop.domain.gate import Gate

PROJECT_FILE = "mloop.yaml"
STATE_DIR = ".mloop"


def _positive_int(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


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
    from mloop.errors import InvalidInput

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
    from mloop.errors import InvalidInput

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
    Setting("project", _text, None, "the project's name (default: the folder's name)"),
    Setting(
        "store_uri",
        _text,
        None,
        "metadata store: sqlite:///PATH (default .mloop/mloop.db) or postgresql+psycopg://…",
    ),
    Setting(
        "artifacts_uri",
        _text,
        None,
        "artifact store: a folder (default .mloop/objects), s3://bucket/prefix or any fsspec URL",
    ),
    Setting("remote_uri", _text, None, "remote artifact store for `mloop data push` and `pull`"),
    Setting("pool_size", _positive_int, 5, "PostgreSQL connections each process may open"),
    Setting("user", _text, None, "who events are recorded as (default: the OS user)"),
    Setting("pipelines", _pipelines, {}, "the project's pipelines: NAME: module:function"),
    Setting("models", _models, {}, "per model: promotion gates, holdout dataset and label"),
    Setting("executor", _executor, "local", "where steps run: local, process or ray"),
    Setting(
        "gates",
        _gates,
        {},
        "what a pipeline's run must reach, per pipeline: `train: [accuracy >= 0.7, rmse < 3.5]`",
    ),
    Setting("max_workers", _positive_int, None, "steps at once on the process executor"),
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
        return str(self.values["project"] or self.root.name)

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

    st = path.stat()
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


def _parse_project_file(path: Path) -> dict[str, Any]:
    from mloop.domain.bounded_yaml import load_yaml

    hint = "fix the file; see `mloop config show`"
    data = load_yaml(path.read_text(encoding="utf-8"), str(path), ConfigError, hint)
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
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {raw!r}: {exc}", setting.help) from None
