"""The checks the settings declare: each turns a value from mloop.yaml or an `MLOOP_*` variable
into the setting's type, or raises ValueError (or InvalidInput, with its own hint) saying why.

`load_settings` adds where the value came from and the setting's help to the message, so a check
only says what is wrong with the value itself. Imports that cost start-up time happen inside the
check that needs them, and only when that setting is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mloop.errors import InvalidInput

if TYPE_CHECKING:
    from mloop.domain.controller import LoopPolicy
    from mloop.domain.drift import DriftRule
    from mloop.domain.gate import Gate
    from mloop.domain.policy import ModelPolicy
    from mloop.domain.trigger import Trigger

# Who a run or an Event is recorded as: shown in tables and sent in HTTP headers, so one line.
MAX_USER_LENGTH = 100
# Schemes of fsspec's table that are named often enough to skip importing it (~20 ms) to check.
_COMMON_FILE_SCHEMES = frozenset({"", "file", "s3", "s3a", "gs", "gcs", "az", "abfs", "memory"})


def count(high: int) -> Callable[[Any], int]:
    """A whole number from 1 to `high`: each of these is a connection or a process to open,
    or a bound on work."""

    def parse(value: Any) -> int:
        number = int(value)
        if not 1 <= number <= high:
            raise ValueError(f"must be from 1 to {high}")
        return number

    return parse


def text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("must be text")
    return str(value)


def project_name(value: Any) -> str:
    from mloop.domain.names import check_name

    return check_name(text(value), "project name")


def user(value: Any) -> str:
    from mloop.domain.names import check_line

    return check_line(text(value), "user", MAX_USER_LENGTH)


def executor(value: Any) -> str:
    found = text(value)
    if found not in ("local", "process", "ray"):
        raise ValueError("must be local, process or ray")
    return found


def store_uri(value: Any) -> str:
    from mloop.store import METADATA_SCHEMES

    uri = text(value)
    scheme = uri.partition("://")[0] if "://" in uri else ""
    if scheme not in METADATA_SCHEMES:
        raise InvalidInput(
            f"unknown scheme {scheme}:// in {uri!r}" if scheme else f"no scheme in {uri!r}",
            "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB "
            f"(schemes: {', '.join(s + '://' for s in METADATA_SCHEMES)})",
        )
    return uri


def artifacts_uri(value: Any) -> str:
    """A folder, or a URL of a file system fsspec knows (a library may still be missing then:
    opening the store says which to install)."""
    uri = text(value)
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


def _named(value: Any, what: str, example: str, words: bool = False) -> dict[str, Any]:
    """`{name: x}` from mloop.yaml, or `name=x,…` from the environment; with `words`, a name
    there is letters, digits, `_`, `.` and `-`."""
    import re

    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        words_only = (not words or re.fullmatch(r"[\w.-]+", p[0].strip()) for p in pairs)
        if any(len(p) != 2 for p in pairs) or not all(words_only):
            raise ValueError(f"write NAME={what}, separated by commas, e.g. {example}")
        return {name.strip(): given.strip() for name, given in pairs}
    if not isinstance(value, dict):
        raise ValueError(f"must map pipeline names to {what}")
    return value


def pipelines(value: Any) -> dict[str, str]:
    """`{name: "module:function"}` from mloop.yaml, or `name=module:function,…` from the env."""
    found: dict[str, str] = {}
    for name, target in _named(value, "module:function", "train=pipeline:train").items():
        module, sep, function = str(target).partition(":")
        if not sep or not module or not function:
            raise ValueError(f"{name}: {target!r} is not module:function (e.g. pipeline:train)")
        found[str(name)] = str(target)
    return found


def gates(value: Any) -> dict[str, tuple[Gate, ...]]:
    """`{pipeline: gates}` from mloop.yaml, gates written as under `models:` (one gate or a list;
    `domain.gate.parse_gate_list`), or `NAME=GATE;GATE,…` from the environment. A run is held to
    metric thresholds only (`run_gates`)."""
    from mloop.domain.gate import parse_gate_list, run_gates

    if isinstance(value, str):
        value = {
            k: v.split(";") for k, v in _named(value, "GATE;GATE", _GATES_EXAMPLE, True).items()
        }
    elif not isinstance(value, dict):
        raise ValueError("must map pipeline names to lists of gates")
    found: dict[str, tuple[Gate, ...]] = {}
    for name, rules in value.items():
        try:
            found[str(name)] = run_gates(parse_gate_list(rules))
        except InvalidInput as exc:
            raise ValueError(f"{name}: {exc.message}") from None
    return found


_GATES_EXAMPLE = "train=accuracy >= 0.7;f1 > 0.5"


def models(value: Any) -> dict[str, ModelPolicy]:
    """Per model, its `ModelPolicy`: promotion gates, the holdout dataset and label they are
    measured on, and which table of it."""
    from mloop.domain.names import check_name
    from mloop.domain.policy import parse_model_policy

    if not isinstance(value, dict):
        raise ValueError("must map model names to their settings (gates, holdout, label)")
    found: dict[str, ModelPolicy] = {}
    for name, spec in value.items():
        try:
            check_name(str(name), "model name")
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        try:
            found[str(name)] = parse_model_policy(spec)
        except InvalidInput as exc:
            raise ValueError(f"{name}: {exc.message}") from None
    return found


def plain_gates(value: dict[str, tuple[Gate, ...]]) -> dict[str, list[str]]:
    return {name: [str(g) for g in rules] for name, rules in value.items()}


def plain_models(value: dict[str, ModelPolicy]) -> dict[str, dict[str, object]]:
    return {name: policy.to_plain() for name, policy in value.items()}


def monitoring_reference(value: Any) -> str | dict[str, str]:
    """`NAME:VERSION` for every endpoint, or `{endpoint: NAME:VERSION}` (env: `web=train:3,…`)."""
    from mloop.domain.names import DatasetRef

    def one(given: Any) -> str:
        ref = DatasetRef.parse(text(given))
        if ref.version is None:
            raise ValueError(f"{given!r}: name the version, e.g. {ref.name}:1")
        return str(ref)

    if isinstance(value, str) and "=" not in value:
        return one(value)
    found = _named(value, "NAME:VERSION", "web=train:3", words=True)
    return {str(endpoint): one(ref) for endpoint, ref in found.items()}


def drift_thresholds(value: Any) -> dict[str, DriftRule]:
    """`{feature: 0.2}` or `{feature: {method: psi, threshold: 0.25}}`; `prediction` for the
    predictions (env: `age=0.2,income=0.3`)."""
    from mloop.domain.drift import DriftRule

    found = _named(value, "THRESHOLD", "age=0.2,prediction=0.15", words=True)
    rules = {}
    for name, rule in found.items():
        try:
            rules[str(name)] = DriftRule.parse(rule)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return rules


def plain_drift_thresholds(rules: dict[str, DriftRule]) -> dict[str, Any]:
    return {
        name: rule.threshold
        if rule.method is None
        else {"method": str(rule.method), "threshold": rule.threshold}
        for name, rule in rules.items()
    }


def triggers(value: Any) -> dict[str, tuple[Trigger, ...]]:
    """`{pipeline: [trigger, ...]}` (`domain.trigger.parse_triggers`); from the environment,
    the same as JSON text. Errors name the key path (`triggers.train[1].schedule`)."""
    from mloop.domain.trigger import parse_triggers

    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("write triggers in mloop.yaml, or as JSON text") from None
    return parse_triggers(value)


def plain_triggers(value: dict[str, tuple[Trigger, ...]]) -> dict[str, list[dict[str, Any]]]:
    from mloop.domain.trigger import plain_trigger

    return {name: [plain_trigger(t) for t in items] for name, items in value.items()}


def controller(value: Any) -> dict[str, LoopPolicy]:
    """`{pipeline: LoopPolicy}` (`domain.controller.parse_loop_policies`); from the environment,
    the same as JSON text."""
    from mloop.domain.controller import parse_loop_policies

    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("write controller in mloop.yaml, or as JSON text") from None
    return parse_loop_policies(value)


def plain_controller(value: dict[str, LoopPolicy]) -> dict[str, Any]:
    from mloop.domain.controller import plain_loop_policies

    return plain_loop_policies(value)


def fraction(value: Any) -> float:
    """A share from 0 to 1 (`0.1` keeps one request in ten)."""
    if isinstance(value, bool):
        raise ValueError("must be a number from 0 to 1")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("must be a number from 0 to 1")
    return number


SWITCH = {"true": True, "yes": True, "on": True, "1": True}
SWITCH |= {"false": False, "no": False, "off": False, "0": False}


def switch(value: Any) -> bool:
    """On or off: YAML's true/false, or as an environment variable spells it (true, 1, yes,
    on; false, 0, no, off)."""
    if isinstance(value, bool):
        return value
    found = SWITCH.get(str(value).strip().lower()) if isinstance(value, str | int) else None
    if found is None:
        raise ValueError("must be true or false")
    return found


def age(value: Any) -> float:
    """An age as people write it (`30d`, `12h`, `2w`), in seconds."""
    from mloop.domain.prediction import parse_age

    return parse_age(text(value), "retention")


def window(value: Any) -> float:
    """How far back a window reaches (`1h`, `30m`, `1d`), in seconds."""
    from mloop.domain.prediction import parse_age

    return parse_age(text(value), "window")


def interval(value: Any) -> float:
    """How often something repeats (`60s`, `5m`), in seconds: a unit is required, and at
    least a second (the monitor that repeats shares the machine's cores with the server)."""
    from mloop.domain.durations import parse_duration

    seconds = parse_duration(text(value), "interval")
    if seconds < 1.0:
        raise ValueError("must be at least 1s")
    return seconds


def plain_interval(seconds: float) -> str:
    from mloop.domain.durations import format_duration

    return format_duration(seconds)


def plain_age(seconds: float) -> str:
    from mloop.domain.prediction import format_age

    return format_age(seconds)


def columns(value: Any) -> tuple[str, ...]:
    """Column names: a YAML list, or one text with commas (`gender,region`, as an environment
    variable gives them); each named once."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a list of column names, e.g. [gender, region]")
    found: list[str] = []
    for item in items:
        name = text(item).strip()
        if not name:
            raise ValueError("a column name is empty")
        if name not in found:
            found.append(name)
    return tuple(found)


def redacted(uri: str | None) -> str | None:
    from mloop.domain.uris import redact

    return None if uri is None else redact(uri)
