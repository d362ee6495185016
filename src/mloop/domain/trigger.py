"""Triggers: what starts a pipeline by itself, as declared under `triggers:` in mloop.yaml.

```yaml
triggers:
  train:                                   # the pipeline to run
    - new_data: {path: landing/, rows: 1000, dataset: churn}
    - schedule: "0 3 * * *"                # or {cron: "0 3 * * *", timezone: Europe/Paris}
    - drift: {endpoint: churn, window: 1h}  # features: [tenure, prediction], min_requests: 500
    - accuracy: {endpoint: churn, metric: accuracy, below: 0.8, min_labels: 200}
    - alertmanager: {token_env: MLOOP_ALERTMANAGER_TOKEN, alertname: MloopFeatureDrift}
```

Each item names one kind and its options; `cooldown` and `max_per_day` sit beside the kind's own
options (`{new_data: {...}, cooldown: 2h, max_per_day: 3}`), so that one cause retrains once and
a flapping cause cannot retrain all day. Everything here is pure: parsing, the schedule's
decision (`schedule_due`) and which watched files a `new_data` check must read (`plan_reads`);
listing and reading files is `services.automation.triggers`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mloop.domain.durations import format_duration, parse_duration
from mloop.domain.landing import NewDataCheck
from mloop.domain.signal import SignalCheck
from mloop.errors import InvalidInput

HOUR = 3600.0
_SECOND = timedelta(seconds=1)
DEFAULT_SETTLE = 5.0  # seconds a landed file must be left alone before it counts
# Under this many requests a window's drift scores swing with chance more than with the data.
DEFAULT_MIN_REQUESTS = 500
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,99}")
_NEW_DATA = "{new_data: {path: landing/, rows: 1000, dataset: churn}}"
_EXAMPLE = f'triggers: {{train: [{_NEW_DATA}, {{schedule: "0 3 * * *"}}]}}'


class TriggerKind(enum.StrEnum):
    SCHEDULE = "schedule"
    NEW_DATA = "new_data"
    DRIFT = "drift"
    ACCURACY = "accuracy"
    ALERTMANAGER = "alertmanager"  # a POST from Prometheus's Alertmanager


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron expression (minute hour day month weekday), read in `timezone`."""

    cron: str
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class NewData:
    """At least `rows` rows in files under `path` (a folder or any fsspec URL) that no version
    of `dataset` holds; a file changed within `settle` seconds is still being written."""

    path: str
    rows: int
    dataset: str
    settle: float = DEFAULT_SETTLE


@dataclass(frozen=True, slots=True)
class Drift:
    """Drift of `endpoint`'s champion over the last `window` seconds: of the inputs named in
    `features` (and `prediction` when named), or of every input and the prediction (empty);
    a window of fewer than `min_requests` requests is not judged."""

    endpoint: str
    window: float = HOUR
    features: tuple[str, ...] = ()
    min_requests: int = DEFAULT_MIN_REQUESTS


@dataclass(frozen=True, slots=True)
class Accuracy:
    """Fires when the champion's `metric` from feedback is under `below` (a score: accuracy,
    f1...) or over `above` (an error: mae, rmse); exactly one bound is set."""

    endpoint: str
    below: float | None
    metric: str = "accuracy"
    min_labels: int = 100
    window: float = 24 * HOUR
    above: float | None = None

    @property
    def bound(self) -> tuple[str, float]:
        """("below", 0.8) or ("above", 3.5): the side that fires, and the number."""
        if self.above is not None:
            return "above", self.above
        assert self.below is not None  # parsing sets exactly one
        return "below", self.below

    def crossed(self, value: float) -> bool:
        side, bound = self.bound
        return value > bound if side == "above" else value < bound


# The metrics feedback measures where lower is better (`regression_metrics`): their trigger
# bound is `above`, and `below` would retrain while the model is good.
ERROR_METRICS = frozenset({"mae", "rmse"})


@dataclass(frozen=True, slots=True)
class Alertmanager:
    """Alertmanager's webhook; its bearer token is read from the environment variable
    `token_env` (a secret has no place in mloop.yaml); `alertname`, when given, is the only
    alert that starts the pipeline."""

    token_env: str = "MLOOP_ALERTMANAGER_TOKEN"  # noqa: S105 - a variable's name, not a secret
    alertname: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # each must be the alert's label, exactly


Spec = Schedule | NewData | Drift | Accuracy | Alertmanager
_TOKEN_ENV = "MLOOP_ALERTMANAGER_TOKEN"  # noqa: S105 - a variable's name, not a secret
# A schedule retrains on its own cadence; a data-driven cause waits an hour before it may
# retrain again, and at most four times a day, unless the trigger says otherwise.
DEFAULT_COOLDOWN = {kind: (0.0 if kind is TriggerKind.SCHEDULE else HOUR) for kind in TriggerKind}
DEFAULT_MAX_PER_DAY: dict[TriggerKind, int | None] = {
    kind: (None if kind is TriggerKind.SCHEDULE else 4) for kind in TriggerKind
}


@dataclass(frozen=True, slots=True)
class Trigger:
    """One item of `triggers.PIPELINE`; `index` is its place in that list."""

    pipeline: str
    index: int
    kind: TriggerKind
    spec: Spec
    cooldown: float
    max_per_day: int | None = None

    @property
    def key(self) -> str:
        """`triggers.train[1].schedule`: how messages name it and what its state is kept under."""
        return f"triggers.{self.pipeline}[{self.index}].{self.kind}"


# parsing -----------------------------------------------------------------------------------
def parse_triggers(value: Any) -> dict[str, tuple[Trigger, ...]]:
    """`{pipeline: [trigger, ...]}` from mloop.yaml, checked; errors name the key path.

    Example:
        >>> parse_triggers({"train": [{"schedule": "0 3 * * *"}]})["train"][0].key
        'triggers.train[0].schedule'
    """
    from mloop.domain.names import check_name

    if not isinstance(value, Mapping):
        raise InvalidInput("triggers must map pipeline names to lists of triggers", _EXAMPLE)
    found: dict[str, tuple[Trigger, ...]] = {}
    for pipeline, items in value.items():
        name = str(pipeline)
        try:
            check_name(name, "pipeline name")
        except InvalidInput as exc:
            raise InvalidInput(f"triggers.{name}: {exc.message}", exc.hint) from None
        if isinstance(items, Mapping):
            items = [items]
        if not isinstance(items, list) or not items:
            raise InvalidInput(f"triggers.{name} must be a list of triggers", _EXAMPLE)
        found[name] = tuple(_trigger(name, i, item) for i, item in enumerate(items))
    return found


def check_pipelines(triggers: Mapping[str, Sequence[Trigger]], pipelines: Sequence[str]) -> None:
    """Refuse triggers of a pipeline the project does not declare (under `pipelines:`)."""
    import difflib

    for name in triggers:
        if name not in pipelines:
            close = difflib.get_close_matches(name, list(pipelines), n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"pipelines: {', '.join(pipelines)}"
                if pipelines
                else "declare it under `pipelines:` (NAME: module:function)"
            )
            raise InvalidInput(f"triggers.{name}: no pipeline {name!r} in mloop.yaml", hint)


def plain_trigger(trigger: Trigger) -> dict[str, Any]:
    """The trigger as mloop.yaml would write it (what `mloop config show` prints)."""
    from mloop.domain.records import to_plain

    spec = to_plain(trigger.spec)
    for key in ("settle", "window"):
        if key in spec:
            spec[key] = "0" if spec[key] == 0 else format_duration(spec[key])
    if "labels" in spec:
        spec["labels"] = dict(spec["labels"])
    cooldown = "0" if trigger.cooldown == 0 else format_duration(trigger.cooldown)
    return {str(trigger.kind): spec, "cooldown": cooldown, "max_per_day": trigger.max_per_day}


def _trigger(pipeline: str, index: int, item: Any) -> Trigger:
    where = f"triggers.{pipeline}[{index}]"
    if not isinstance(item, Mapping):
        raise InvalidInput(f"{where} must be a mapping such as {{schedule: '0 3 * * *'}}", _kinds())
    options = dict(item)
    cooldown_raw = options.pop("cooldown", None)
    has_max = "max_per_day" in options
    max_raw = options.pop("max_per_day", None)
    if len(options) != 1:
        named = ", ".join(map(str, options)) or "none"
        raise InvalidInput(f"{where} must name one kind of trigger (found: {named})", _kinds())
    ((raw_kind, raw_spec),) = options.items()
    try:
        kind = TriggerKind(str(raw_kind))
    except ValueError:
        raise InvalidInput(f"{where}: unknown trigger {raw_kind!r}", _kinds()) from None
    where = f"{where}.{kind}"
    spec = _SPEC_PARSERS[kind](where, raw_spec)
    cooldown = DEFAULT_COOLDOWN[kind] if cooldown_raw is None else _cooldown(where, cooldown_raw)
    # `max_per_day: null` written out means no limit; left out, the kind's default.
    max_per_day = _max(where, max_raw) if max_raw is not None else None
    if not has_max:
        max_per_day = DEFAULT_MAX_PER_DAY[kind]
    return Trigger(pipeline, index, kind, spec, cooldown, max_per_day)


def _kinds() -> str:
    return f"kinds: {', '.join(TriggerKind)}; e.g. {_NEW_DATA}"


def _cooldown(where: str, raw: Any) -> float:
    if raw == 0 or raw == "0":
        return 0.0
    if isinstance(raw, bool) or not isinstance(raw, str):
        raise InvalidInput(f"{where}: cooldown {raw!r} needs a unit", "e.g. cooldown: 2h or 30m")
    return parse_duration(raw, f"{where}: cooldown")


def _max(where: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise InvalidInput(
            f"{where}: max_per_day must be a whole number of at least 1, not {raw!r}",
            "e.g. max_per_day: 4",
        )
    return raw


def _options(
    where: str, raw: Any, allowed: Sequence[str], required: Sequence[str]
) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where} takes options {{{', '.join(allowed)}}}", _kinds())
    given = {str(k): v for k, v in raw.items()}
    for key in given:
        if key not in allowed:
            raise InvalidInput(
                f"{where}: unknown option {key!r}",
                f"{where.rsplit('.', 1)[1]} takes {', '.join(allowed)} (and cooldown, max_per_day "
                "beside the kind)",
            )
    for key in required:
        if given.get(key) in (None, ""):
            raise InvalidInput(
                f"{where}: {key} is missing",
                f"{where.rsplit('.', 1)[1]} needs {', '.join(required)}",
            )
    return given


def _schedule(where: str, raw: Any) -> Schedule:
    if isinstance(raw, str):
        raw = {"cron": raw}
    given = _options(where, raw, ("cron", "timezone"), ("cron",))
    spec = Schedule(str(given["cron"]).strip(), str(given.get("timezone") or "UTC"))
    _cron(spec, where)  # refuse a bad expression or zone now, not at 3 a.m.
    return spec


def _new_data(where: str, raw: Any) -> NewData:
    given = _options(where, raw, ("path", "rows", "dataset", "settle"), ("path", "rows", "dataset"))
    from mloop.domain.names import check_name

    rows = given["rows"]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
        raise InvalidInput(
            f"{where}: rows must be a whole number above 0, not {rows!r}", "e.g. rows: 1000"
        )
    try:
        dataset = check_name(str(given["dataset"]), "dataset name")
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}", exc.hint) from None
    settle = DEFAULT_SETTLE
    if given.get("settle") is not None:
        settle = (
            0.0
            if given["settle"] in (0, "0")
            else parse_duration(str(given["settle"]), f"{where}: settle")
        )
    return NewData(str(given["path"]), rows, dataset, settle)


def _endpoint(where: str, given: Mapping[str, Any]) -> str:
    from mloop.domain.names import check_name

    try:
        return check_name(str(given["endpoint"]), "endpoint name")
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}", exc.hint) from None


def _drift(where: str, raw: Any) -> Drift:
    allowed = ("endpoint", "window", "features", "min_requests")
    given = _options(where, raw, allowed, ("endpoint",))
    window = given.get("window")
    features = given.get("features") or []
    if isinstance(features, str):
        features = [features]
    if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
        raise InvalidInput(
            f"{where}: features must be a list of input names, not {features!r}",
            "e.g. features: [tenure, spend, prediction] (prediction: the model's answers)",
        )
    return Drift(
        _endpoint(where, given),
        HOUR if window is None else parse_duration(str(window), f"{where}: window"),
        tuple(dict.fromkeys(features)),
        _count(where, "min_requests", given.get("min_requests", DEFAULT_MIN_REQUESTS)),
    )


def _count(where: str, key: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise InvalidInput(
            f"{where}: {key} must be a whole number of at least 1, not {raw!r}",
            f"e.g. {key}: 200",
        )
    return raw


def _accuracy(where: str, raw: Any) -> Accuracy:
    allowed = ("endpoint", "metric", "below", "above", "min_labels", "window")
    given = _options(where, raw, allowed, ("endpoint",))
    metric = str(given.get("metric") or "accuracy")
    error = metric in ERROR_METRICS
    bounds = [k for k in ("below", "above") if given.get(k) is not None]
    if len(bounds) != 1:
        said = "both below and above" if bounds else "no bound"
        example = "above: 3.5 (an error metric fires over it)" if error else "below: 0.8"
        raise InvalidInput(
            f"{where}: {said}; give exactly one", f"e.g. metric: {metric}, {example}"
        )
    side = bounds[0]
    number = given[side]
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise InvalidInput(f"{where}: {side} must be a number, not {number!r}", f"e.g. {side}: 0.8")
    if error != (side == "above"):
        # Backwards, the trigger would retrain while the model is good, every cool-down.
        kind = "an error (lower is better)" if error else "a score (higher is better)"
        other = "above" if side == "below" else "below"
        raise InvalidInput(
            f"{where}: {metric} is {kind}, so {side}: {number:g} would fire while it is good",
            f"write {other}: N, the {'worst error' if error else 'lowest score'} to accept",
        )
    min_labels = _count(where, "min_labels", given.get("min_labels", 100))
    window = given.get("window")
    return Accuracy(
        _endpoint(where, given),
        float(number) if side == "below" else None,
        metric,
        min_labels,
        24 * HOUR if window is None else parse_duration(str(window), f"{where}: window"),
        float(number) if side == "above" else None,
    )


def _alertmanager(where: str, raw: Any) -> Alertmanager:
    allowed = ("token_env", "alertname", "labels")
    given = _options(where, {} if raw is None else raw, allowed, ())
    token_env = str(given.get("token_env") or _TOKEN_ENV)
    if not _ENV_NAME.fullmatch(token_env):
        raise InvalidInput(
            f"{where}: token_env {token_env!r} is not an environment variable's name",
            "e.g. token_env: MLOOP_ALERTMANAGER_TOKEN (the token itself never goes in mloop.yaml)",
        )
    alertname = given.get("alertname")
    labels = given.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in labels.values()
    ):
        raise InvalidInput(
            f"{where}: labels must map label names to values, not {labels!r}",
            "e.g. labels: {endpoint: churn} (the alert must carry each, exactly)",
        )
    pairs = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
    return Alertmanager(token_env, None if alertname is None else str(alertname), pairs)


_SPEC_PARSERS: dict[TriggerKind, Callable[[str, Any], Spec]] = {
    TriggerKind.SCHEDULE: _schedule,
    TriggerKind.NEW_DATA: _new_data,
    TriggerKind.DRIFT: _drift,
    TriggerKind.ACCURACY: _accuracy,
    TriggerKind.ALERTMANAGER: _alertmanager,
}


# schedule ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScheduleCheck:
    """`due`: a fire time passed since the last fire (`fire_at`, the latest such time, is what
    the caller records as fired); `next_fire`: the first fire time after `now`. UTC."""

    due: bool
    next_fire: datetime | None
    fire_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TriggerCheck:
    """One trigger's state as `mloop triggers check` shows it: a schedule's next time, a
    new_data check's count, a drift, accuracy or alertmanager check's verdict (`signal`);
    `note` says why there is none of them."""

    trigger: Trigger
    schedule: ScheduleCheck | None = None
    new_data: NewDataCheck | None = None
    note: str | None = None
    signal: SignalCheck | None = None


def _cron(spec: Schedule, where: str) -> Any:
    """The zone and a check that the expression parses, with cronsim's message in ours."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from cronsim import CronSim, CronSimError

    try:
        zone = ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"{where}: unknown time zone {spec.timezone!r}",
            "give an IANA zone name such as UTC or Europe/Paris",
        ) from None
    try:
        CronSim(spec.cron, datetime(2000, 1, 1, tzinfo=zone))
    except CronSimError as exc:
        raise InvalidInput(
            f"{where}: {spec.cron!r} is not a cron expression ({exc})",
            "five fields: minute hour day month weekday, e.g. '0 3 * * *' (03:00 every day)",
        ) from None
    return zone


def schedule_due(spec: Schedule, last_fired: datetime | None, now: datetime) -> ScheduleCheck:
    """Whether the schedule is due at `now`, given when it last fired (None: never, and then
    it waits for its first fire time instead of firing the moment the controller starts).
    Fire times missed while nothing checked collapse into one. Daylight saving time follows
    Debian's cron, as cronsim does: a time skipped by the spring change fires right after it,
    a time repeated in autumn fires once.

    Example:
        >>> at = datetime(2026, 1, 2, 3, 30, tzinfo=UTC)
        >>> schedule_due(Schedule("0 3 * * *"), datetime(2026, 1, 1, 3, tzinfo=UTC), at).due
        True
    """
    from cronsim import CronSim

    zone = _cron(spec, f"schedule {spec.cron!r}")
    local_now = _aware(now).astimezone(zone)
    next_fire = _first(CronSim(spec.cron, local_now))
    if last_fired is None:
        return ScheduleCheck(False, next_fire)
    # cronsim's reverse iteration starts at the given second; +1 s makes `now` itself count.
    latest = _first(CronSim(spec.cron, local_now.replace(microsecond=0) + _SECOND, reverse=True))
    if latest is None or latest <= _aware(last_fired):
        return ScheduleCheck(False, next_fire)
    return ScheduleCheck(True, next_fire, latest)


def _first(it: Any) -> datetime | None:
    try:
        return _aware(next(it)).astimezone(UTC)
    except StopIteration:  # no match within cronsim's 50 years (`0 0 30 2 *`)
        return None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
