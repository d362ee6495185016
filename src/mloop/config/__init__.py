"""Settings (the wiring layer): declared once, as the fields of `Settings`; read from mloop.yaml
and MLOOP_*.

Each field carries its check, help and default in `field(metadata=...)` (`setting(...)` below)
and takes its environment variable, MLOOP_<NAME>, from its name; loading, `mloop config show`,
the "did you mean" for an unknown key and each value's source are all derived from those
fields. Precedence is default < mloop.yaml < environment. A key mloop does not know is an error
with a suggestion, never silently ignored: a typo in `store_uri` must not send metadata
somewhere unexpected.

Adding a setting is adding one field: `name: Type = setting(check, "help", default=...)`, with
`resolve` when its value depends on the project's folder; the check lives in `checks.py`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.config import checks
from mloop.config.checks import MAX_USER_LENGTH
from mloop.config.project_file import PROJECT_FILE, STATE_DIR, read_project_file
from mloop.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from mloop.domain.controller import LoopPolicy
    from mloop.domain.drift import DriftRule
    from mloop.domain.gate import Gate
    from mloop.domain.policy import ModelPolicy
    from mloop.domain.trigger import Trigger

__all__ = [
    "BY_KEY",
    "MAX_USER_LENGTH",
    "PROCESS_ENV",
    "PROJECT_FILE",
    "SETTINGS",
    "STATE_DIR",
    "Setting",
    "Settings",
    "load_settings",
    "read_project_file",
]


def _same(value: Any) -> Any:
    return value


def setting(
    check: Callable[[Any], Any],
    help: str,
    default: Any = None,
    resolve: Callable[[Path, Any], Any] | None = None,
    plain: Callable[[Any], Any] = _same,
    shown: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare one setting as a field of `Settings`.

    Args:
        check: the value as given (YAML or an environment variable's text) -> the setting's
            type; raises ValueError or InvalidInput saying what is wrong.
        help: one line for `mloop config show --json` and every error about the setting.
        default: the value when neither mloop.yaml nor the environment gives one.
        resolve: (project root, checked value or default) -> the value the project uses, for
            settings whose default or relative path depends on the project's folder.
        plain: the value as JSON (as it would be written in mloop.yaml).
        shown: what `mloop config show` prints, when it must hide something (a password).
    """
    meta = {"check": check, "help": help, "default": default, "resolve": resolve}
    return field(metadata={**meta, "plain": plain, "shown": shown or plain})


def _project(root: Path, given: str | None) -> str:
    from mloop.domain.names import suggest_name

    return given or suggest_name(root.name) or "project"


def _store(root: Path, given: str | None) -> str:
    if given is None:
        return f"sqlite:///{root / STATE_DIR / 'mloop.db'}"
    if given.startswith("sqlite:///") and not given.startswith("sqlite:////"):
        return f"sqlite:///{root / given.removeprefix('sqlite:///')}"  # relative to the project
    return given


def _artifacts(root: Path, given: str | None) -> str:
    return str(root / STATE_DIR / "objects") if given is None else _folder_or_url(root, given)


def _remote(root: Path, given: str | None) -> str | None:
    return None if given is None else _folder_or_url(root, given)


def _folder_or_url(root: Path, uri: str) -> str:
    return uri if "://" in uri else str((root / Path(uri).expanduser()).resolve())


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one project; `sources` says where each value came from.

    Built by `load_settings`; plain data, so it pickles to a worker process as it is.
    """

    root: Path
    project: str = setting(
        checks.project_name,
        "the project's name (default: the folder's name)",
        resolve=_project,
    )
    store_uri: str = setting(
        checks.store_uri,
        "metadata store: sqlite:///PATH (default .mloop/mloop.db) or postgresql+psycopg://…",
        resolve=_store,
        shown=checks.redacted,
    )
    artifacts_uri: str = setting(
        checks.artifacts_uri,
        "artifact store: a folder (default .mloop/objects), s3://bucket/prefix or any fsspec URL",
        resolve=_artifacts,
        shown=checks.redacted,
    )
    remote_uri: str | None = setting(
        checks.artifacts_uri,
        "remote artifact store for `mloop data push` and `pull`",
        resolve=_remote,
        shown=checks.redacted,
    )
    pool_size: int = setting(
        checks.count(1000), "PostgreSQL connections each process may open (1-1000)", 5
    )
    user: str | None = setting(
        checks.user,
        f"who runs and events are recorded as: one line of at most {MAX_USER_LENGTH} "
        "characters (default: the OS user)",
    )
    pipelines: Mapping[str, str] = setting(
        checks.pipelines, "the project's pipelines: NAME: module:function", {}
    )
    models: Mapping[str, ModelPolicy] = setting(
        checks.models,
        "per model: promotion gates (one gate or a list, as under `gates:`), holdout and label",
        {},
        plain=checks.plain_models,
    )
    triggers: Mapping[str, tuple[Trigger, ...]] = setting(
        checks.triggers,
        "what runs a pipeline by itself, per pipeline: schedule (cron), new_data (rows landed "
        "in a folder), drift, accuracy, alertmanager; each with cooldown and max_per_day",
        {},
        plain=checks.plain_triggers,
    )
    controller: Mapping[str, LoopPolicy] = setting(
        checks.controller,
        "where the controller sends each pipeline's challengers: endpoint, strategy (canary, "
        "blue_green, direct), options (as `mloop deploy` takes them), alias (champion)",
        {},
        plain=checks.plain_controller,
    )
    executor: str = setting(checks.executor, "where steps run: local, process or ray", "local")
    gates: Mapping[str, tuple[Gate, ...]] = setting(
        checks.gates,
        "what a pipeline's run must reach, per pipeline: `train: [accuracy >= 0.7, rmse < 3.5]`",
        {},
        plain=checks.plain_gates,
    )
    max_workers: int | None = setting(
        checks.count(1024), "steps at once on the process executor (1-1024)"
    )
    ray_address: str | None = setting(
        checks.text, "a Ray cluster to join (default: start Ray locally)"
    )
    monitoring_reference: str | Mapping[str, str] | None = setting(
        checks.monitoring_reference,
        "the dataset version live traffic is compared with for drift: NAME:VERSION, or "
        "{endpoint: NAME:VERSION} (default: the serving model's training data)",
    )
    drift_thresholds: Mapping[str, DriftRule] = setting(
        checks.drift_thresholds,
        "drift thresholds per feature (`prediction` for the predictions): {age: 0.2} or "
        "{age: {method: psi, threshold: 0.25}}",
        {},
        plain=checks.plain_drift_thresholds,
    )
    predictions_sample_rate: float = setting(
        checks.fraction,
        "the share of requests a model server logs, from 0 to 1 (requests kept by their id)",
        1.0,
    )
    predictions_scores: bool = setting(
        checks.switch,
        "whether a model server logs each prediction's class scores (predict_proba), computed "
        "when the log is written, off the request path: true or false",
        True,
    )
    predictions_retention: float = setting(
        checks.age,
        "how long logged predictions are kept: `mloop gc` removes older ones (e.g. 30d, 12h)",
        30 * 86_400.0,
        plain=checks.plain_age,
    )
    bias_columns: tuple[str, ...] = setting(
        checks.columns,
        "sensitive input columns whose groups monitoring compares on live traffic with "
        "feedback (selection rate, accuracy; bounds from the models' bias gates): [gender]",
        (),
        plain=list,
    )
    monitoring_interval: float = setting(
        checks.interval,
        "how often a model server recomputes its monitoring gauges on /metrics (drift, accuracy, "
        "bias): 60s, 5m",
        60.0,
        plain=checks.plain_interval,
    )
    monitoring_window: float = setting(
        checks.window,
        "how far back those gauges look: the requests of the last 1h, 30m, 1d",
        3600.0,
        plain=checks.plain_age,
    )
    monitoring_max_requests: int = setting(
        checks.count(10_000_000),
        "at most this many of the window's latest requests are measured for those gauges: a "
        "busy endpoint's hour is millions, and 100,000 rows tell drift as surely",
        100_000,
    )
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def values(self) -> dict[str, Any]:
        """Each setting as plain data (gates spelled out), as mloop.yaml would write it."""
        return {s.key: s.plain(getattr(self, s.key)) for s in SETTINGS}

    def shown(self, key: str) -> Any:
        """A setting as `mloop config show` prints it: plain, with passwords hidden."""
        return BY_KEY[key].shown(getattr(self, key))


@dataclass(frozen=True)
class Setting:
    """One setting as its field of `Settings` declares it."""

    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    resolve: Callable[[Path, Any], Any] | None
    plain: Callable[[Any], Any]
    shown: Callable[[Any], Any]

    @property
    def env(self) -> str:
        return "MLOOP_" + self.key.upper()


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(
        f.name,
        f.metadata["check"],
        f.metadata["default"],
        f.metadata["help"],
        f.metadata["resolve"],
        f.metadata["plain"],
        f.metadata["shown"],
    )
    for f in fields(Settings)
    if "check" in f.metadata
)
BY_KEY = {s.key: s for s in SETTINGS}
# Variables for one process, never project settings (a secret has no place in mloop.yaml):
# MLOOP_DEBUG prints tracebacks; MLOOP_SERVE_TOKEN is the bearer token `mloop serve` requires;
# MLOOP_ALERTMANAGER_TOKEN the one an alertmanager trigger's receiver requires by default.
PROCESS_ENV = frozenset({"MLOOP_DEBUG", "MLOOP_SERVE_TOKEN", "MLOOP_ALERTMANAGER_TOKEN"})


def _unknown_key(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(BY_KEY), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(BY_KEY)}"
    return ConfigError(f"{where}: unknown setting {key!r}", hint)


def load_settings(root: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting for the project at `root`.

    Example:
        >>> load_settings(Path("/tmp/demo")).store_uri  # doctest: +SKIP
        'sqlite:////tmp/demo/.mloop/mloop.db'
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {s.key: _default(s) for s in SETTINGS}
    sources: dict[str, str] = {s.key: "default" for s in SETTINGS}
    path = root / PROJECT_FILE
    file_values = read_project_file(path) if path.exists() else {}
    for key, raw in file_values.items():
        found = BY_KEY.get(str(key))
        if found is None:
            raise _unknown_key(str(key), str(path))
        values[found.key] = _parse(found, raw, f"{path}: {key}")
        sources[found.key] = PROJECT_FILE
    for s in SETTINGS:
        if s.env in env and env[s.env] != "":
            values[s.key] = _parse(s, env[s.env], s.env)
            sources[s.key] = f"environment ({s.env})"
    known_env = {s.env for s in SETTINGS} | PROCESS_ENV
    for name in env:
        if name.startswith("MLOOP_") and name not in known_env:
            raise _unknown_key(name.removeprefix("MLOOP_").lower(), f"environment variable {name}")
    for s in SETTINGS:
        if s.resolve is not None:
            values[s.key] = s.resolve(root, values[s.key])
    return Settings(root=root, sources=sources, **values)


def _default(s: Setting) -> Any:
    return dict(s.default) if isinstance(s.default, dict) else s.default  # never shared


def _parse(s: Setting, raw: Any, where: str) -> Any:
    if raw is None:
        return _default(s)
    try:
        return s.parse(raw)
    except InvalidInput as exc:  # a rule with its own message and hint (a name, a scheme)
        if exc.message.startswith((f"{s.key}.", f"{s.key}[")):  # it names the key path itself
            where = where.rpartition(": ")[0] or where
        raise ConfigError(f"{where}: {exc.message}", exc.hint or s.help) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid value {_show(raw)}: {exc}", s.help) from None


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:60] + "…"
