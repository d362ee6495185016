"""Slots: the state of each served model version, and the routing table that holds them.

A `Slot` is one version in one role: its predictor, request reader and micro-batcher (shared by
every slot of that version, in `Loaded`), the headers naming it (made once), its in-flight
count and its counters. A `Table` is what the server serves right now: the slots, the one that
answers metadata, the shadow if any, and how a request picks its slot. Tables never change;
the server swaps the whole table by one assignment, so a request sees either the old one or the
new one, never a mix.

`mloop serve REF` is a table of one slot: role `stable`, and `mloop-endpoint` is the model's
name (a model served on its own is its own endpoint; its routes carry that name too). With one
slot nothing is chosen per request: the hot path costs what it did before slots.

`ServingPlan` is what the server needs of a deployment: the versions (`NAME:V`, role, weight),
the sticky key, the shadow fraction, and `choose(key) -> index into versions`. The deployment
records (`domain/endpoint.py`) and the traffic `Router` (`domain/traffic.py`) become a plan in
the source function the follower polls; `weighted` adapts the Router to a plan's versions.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from mloop.errors import InvalidInput, ModelNotFound
from mloop.server import oip
from mloop.server.openapi import openapi_document
from mloop.services.predictions.log import PredictionLog, Source
from mloop.services.serving.batcher import MicroBatcher, Observer
from mloop.services.serving.intervals import IntervalCounts, Intervals
from mloop.services.serving.predictor import Predictor
from mloop.services.serving.requests import RequestReader
from mloop.services.serving.settings import ServeSettings
from mloop.services.serving.versions import Labels, VersionBlocks, VersionMetrics

logger = logging.getLogger("mloop.server")
Headers = list[tuple[bytes, bytes]]
Chooser = Callable[[bytes | None], int]
STABLE = "stable"
SHADOW = "shadow"
JSON = (b"content-type", b"application/json")
BINARY = (b"content-type", b"application/octet-stream")


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """One version of a deployment as the server needs it (a `DeployedVersion` fits)."""

    model: str  # NAME:V
    role: str = STABLE
    weight: float = 100.0


@dataclass(frozen=True, slots=True)
class ServingPlan:
    """What an endpoint serves: its versions, how a request picks one, what a shadow gets.

    `sticky` is `header:NAME` or `field:NAME` (or None: no key); `fraction` is the share of
    requests copied to a shadow; `choose` maps a request's key (None when it has none) to an
    index into `versions`, never a shadow's (default: `weighted` over the weights). Two plans
    are the same deployment when everything but `choose` is equal.
    """

    endpoint: str
    versions: tuple[ServedVersion, ...]
    sticky: str | None = None
    fraction: float = 1.0
    choose: Chooser | None = field(default=None, compare=False)
    outcome: str = "mean"  # what `POST /feedback` takes: "rate" (0 or 1) or "mean" (numbers)

    def __post_init__(self) -> None:
        if not any(v.role != SHADOW for v in self.versions):
            raise InvalidInput(
                f"endpoint {self.endpoint!r} has no version to answer requests",
                "deploy a version with a role other than shadow",
            )
        if self.sticky is not None and self.sticky.partition(":")[0] not in ("header", "field"):
            raise InvalidInput(
                f"sticky key {self.sticky!r} is neither header:NAME nor field:NAME",
                "use --sticky header:NAME or --sticky field:NAME",
            )


def weighted(versions: tuple[ServedVersion, ...], salt: str = "") -> Chooser:
    """Pick a version by weight with the one split rule, `domain/traffic.Router` (keyed by
    `salt`: an endpoint's `NAME/SEQUENCE`): the same key, the same version; at random without
    one. Shadows never answer; with every weight 0 the answering versions share evenly.

    Example:
        >>> choose = weighted((ServedVersion("a:1", weight=50), ServedVersion("a:2", weight=50)))
        >>> choose(b"user-7") == choose(b"user-7")
        True
    """
    from mloop.domain.endpoint import DeployedVersion, Role
    from mloop.domain.names import ModelRef
    from mloop.domain.traffic import Router

    answering = [i for i, v in enumerate(versions) if v.role != SHADOW]
    weights = {i: round(versions[i].weight) for i in answering}
    if not any(weights.values()):  # every weight 0: share evenly rather than answer nobody
        weights = dict.fromkeys(answering, 1)
    serving = [i for i in answering if weights[i] > 0]
    if len(serving) == 1:
        only = serving[0]
        return lambda key: only
    router = Router(
        [
            DeployedVersion(ModelRef.parse(versions[i].model), Role(versions[i].role), weights[i])
            for i in serving
        ],
        salt=salt,
    )
    index = {id(v): i for v, i in zip(router.versions, serving, strict=True)}
    rng = random.Random()  # noqa: S311 - a traffic split, not a secret

    def choose(key: bytes | None) -> int:
        return index[id(router.choose(key, rng))]

    return choose


class FailureLog:
    """A model's failures in the server's log: the first with its traceback, then one line
    per `every` seconds counting the rest, so a version failing on every request (a canary
    being rolled back) does not bury the log in identical tracebacks."""

    def __init__(self, label: str, every: float = 10.0) -> None:
        self.label = label
        self.every = every
        self.quiet_until = 0.0
        self.unlogged = 0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now < self.quiet_until:
            self.unlogged += 1
            return
        if self.quiet_until == 0.0:
            logger.error("%s failed to predict", self.label, exc_info=exc)
        else:
            more = f" (and {self.unlogged} more times in {self.every:g} s)" if self.unlogged else ""
            logger.error(
                "%s failed to predict%s: %s: %s", self.label, more, type(exc).__name__, exc
            )
        self.quiet_until, self.unlogged = now + self.every, 0


class BatchLog:
    """Where a server's batchers hand their logged predict calls: the prediction log, once
    the worker has made it (`InferenceApp.log_to`); until then, and without one, nowhere (no
    request is tagged for the log then either)."""

    def __init__(self) -> None:
        self.recorder: PredictionLog | None = None

    def __call__(
        self, tags: list[Any], firsts: list[int], rows: list[int], data: Any, result: Any
    ) -> None:
        recorder = self.recorder
        if recorder is not None:
            recorder.record_tagged(tags, firsts, rows, data, result)


class Loaded:
    """One loaded version: its predictor, reader and batcher, shared by its slots. `batcher`:
    the one of another version that is the same model (`loaded_versions`)."""

    def __init__(
        self,
        predictor: Predictor,
        settings: ServeSettings,
        observe: Observer,
        batcher: MicroBatcher | None = None,
        log: BatchLog | None = None,
    ) -> None:
        self.predictor = predictor
        self.model = f"{predictor.name}:{predictor.version}"
        self.reader = RequestReader(
            predictor.signature, predictor.wants_frame, predictor.categories
        )
        self.batcher = batcher or MicroBatcher(
            predictor.predict,
            max_batch_size=settings.max_batch_size,
            max_wait=settings.max_wait,
            batching=settings.batching,
            mode=settings.predict_mode,
            observe=observe,
            log=log,
        )
        self.output = oip.output_name(predictor.signature)
        self.failures = FailureLog(self.model)
        # what the prediction log scores this version's rows with when it flushes (None: the
        # model has no class scores, or is no `LoadedModel`)
        self.scores: Any = getattr(predictor, "scores", None)


def same_model(a: Predictor, b: Predictor) -> bool:
    """Whether two versions are one model object (the registry loads a bundle once per
    process, `ModelService.load_predictor`) that reads its input the same way."""
    model = getattr(a, "model", None)
    return (
        model is not None
        and model is getattr(b, "model", None)
        and a.signature == b.signature
        and a.wants_frame == b.wants_frame
    )


def loaded_versions(
    predictors: dict[str, Predictor],
    settings: ServeSettings,
    observe: Observer,
    known: Iterable[Loaded] = (),
    alone: Collection[str] = (),
    log: BatchLog | None = None,
) -> dict[str, Loaded]:
    """The new versions `predictors` (by NAME:V) made ready to serve. Versions that are one
    model (an A/A test; a retrain whose bundle came out byte for byte the same) share one
    batcher, among themselves and with the `known` ones: their requests are predicted in one
    batch, so a split between them costs the routing alone, not twice the model's fixed
    cost per call at half the batch. Each keeps its own slot, headers, counters and log
    rows. The versions in `alone` (shadows) never share: a shadow's copies must never join
    a batch a client waits for. `log`: where their batchers hand the calls they log.

    Example:
        >>> both = loaded_versions({"a:1": one, "a:2": two}, settings, observe)  # doctest: +SKIP
    """
    made = [k for k in known if k.model not in alone]
    found: dict[str, Loaded] = {}
    for ref, predictor in predictors.items():
        twin = None
        if ref not in alone:
            twin = next((k for k in made if same_model(k.predictor, predictor)), None)
        loaded = Loaded(predictor, settings, observe, twin.batcher if twin else None, log)
        found[ref] = loaded
        if ref not in alone:
            made.append(loaded)
    return found


class Slot:
    """One version in one role on one endpoint: what a request needs once it is routed here."""

    def __init__(
        self,
        loaded: Loaded,
        endpoint: str,
        role: str,
        metrics: VersionMetrics,
        counts: IntervalCounts,
    ) -> None:
        self.loaded = loaded
        self.predictor = loaded.predictor
        self.reader = loaded.reader
        self.batcher = loaded.batcher
        self.output = loaded.output
        self.label = loaded.model
        self.endpoint = endpoint
        self.role = role
        self.metrics = metrics
        self.counts = counts
        self.in_flight = 0
        names = [
            (b"mloop-model", self.label.encode()),
            (b"mloop-endpoint", endpoint.encode()),
            (b"mloop-variant", role.encode()),
        ]
        self.names = names
        # what this slot's logged requests are tagged with (one object: a flush groups by it)
        self.source = Source(endpoint, self.label, role, loaded.reader.names, loaded.scores)
        self.json: Headers = [JSON, *names]
        self.binary: Headers = [BINARY, *names]

    @property
    def key(self) -> tuple[str, str]:
        return self.label, self.role

    def record(self, status: int, seconds: float) -> None:
        """Count one answer of this slot's (after it was sent)."""
        self.metrics.request(status, seconds)
        self.counts.add(status, seconds)

    async def predict_rows(self, data: Any, rows: int) -> Any:
        """A prediction outside a client's request: a shadow's copy."""
        return await self.batcher.predict(data, rows)


class Table:
    """What the server serves right now; never changed, only replaced as a whole.

    `fixed` says the table serves one version named by its ref (`mloop serve REF`): its routes
    include `/v2/models/NAME/versions/V/...` and it never changes.
    """

    def __init__(self, plan: ServingPlan, slots: list[Slot], fixed: bool = False) -> None:
        self.plan = plan
        self.name = plan.endpoint
        self.fixed = fixed
        self.by_index = slots  # one per plan version, same order
        serving = [s for s in slots if s.role != SHADOW]
        self.serving = serving
        shadows = [s for s in slots if s.role == SHADOW]
        self.shadow: Slot | None = shadows[0] if shadows and plan.fraction > 0 else None
        self.fraction = plan.fraction
        self.only: Slot | None = serving[0] if len(serving) == 1 else None
        weights = {id(s): v.weight for s, v in zip(slots, plan.versions, strict=True)}
        stable = [s for s in serving if s.role == STABLE]
        self.primary = stable[0] if stable else max(serving, key=lambda s: weights[id(s)])
        self.choose = plan.choose or weighted(plan.versions)
        kind, _, name = (plan.sticky or "").partition(":")
        self.sticky_header = name.lower().encode() if kind == "header" else None
        self.sticky_field = name if kind == "field" else None
        # What answers not made by a slot carry (health, metrics, refusals before routing).
        self.json: Headers = (
            self.only.json if fixed and self.only is not None else [JSON, *self.ident()]
        )
        self.bodies = self._static()
        self._mirror_credit = 0.0

    def ident(self) -> Headers:
        return [(b"mloop-endpoint", self.name.encode())]

    def loaded(self) -> set[Loaded]:
        return {slot.loaded for slot in self.by_index}

    def header_key(self, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        wanted = self.sticky_header
        for name, value in headers:
            if name == wanted:
                return value
        return None

    def pick(self, key: bytes | None) -> Slot:
        slot = self.by_index[self.choose(key)]
        return slot if slot.role != SHADOW else self.primary

    def version(self, version: str) -> Slot:
        """The answering slot of model version `version` (its number, or NAME:V), for a
        request that names it (`/v2/models/ENDPOINT/versions/V/infer`): past the split."""
        found = [s for s in self.serving if version in (s.label, str(s.predictor.version))]
        if len(found) != 1:
            serving = ", ".join(s.label for s in self.serving)
            raise ModelNotFound(
                f"endpoint {self.name!r} serves no single version {version!r} (it serves "
                f"{serving})",
                f"use /v2/models/{self.name}/versions/V/infer with V one of its versions' "
                f"numbers, or /v2/models/{self.name}/infer to let the endpoint choose",
            )
        return found[0]

    def mirror_this(self) -> bool:
        """Whether this request is copied to the shadow: `fraction` of them, evenly spread."""
        self._mirror_credit += self.fraction
        if self._mirror_credit >= 1.0:
            self._mirror_credit -= 1.0
            return True
        return False

    def _static(self) -> dict[str, bytes]:
        """The bodies of this table's metadata routes, made once per table."""
        slot = self.primary
        predictor = slot.predictor
        name, version, signature = self.name, predictor.version, predictor.signature
        found = {
            f"/v2/models/{name}": oip.metadata(name, version, signature),
            "/openapi.json": openapi_document(name, version, signature),
        }
        if self.fixed:
            found[f"/v2/models/{name}/versions/{version}"] = found[f"/v2/models/{name}"]
        return {path: orjson.dumps(value) for path, value in found.items()}


def make_table(
    plan: ServingPlan,
    loaded: dict[str, Loaded],
    blocks: VersionBlocks,
    intervals: Intervals,
    old: Table | None = None,
    fixed: bool = False,
) -> Table:
    """The table serving `plan` from the `loaded` versions (by NAME:V); a version serving in
    the same role in `old` keeps its slot (its in-flight count and counters go on)."""
    kept = {slot.key: slot for slot in old.by_index} if old is not None else {}
    slots = []
    for version in plan.versions:
        slot = kept.get((version.model, version.role))
        if slot is None:
            labels = Labels(plan.endpoint, version.model, version.role)
            slot = Slot(
                loaded[version.model],
                plan.endpoint,
                version.role,
                blocks.take(labels),
                intervals.counts(version.model, version.role),
            )
        slots.append(slot)
    return Table(plan, slots, fixed)


def retire(slot: Slot, blocks: VersionBlocks, intervals: Intervals, back: bool = False) -> None:
    """A drained slot's counters: kept for the next scrape and interval, then given back
    (its interval counts stay live when the version came `back` in the same role since)."""
    blocks.release(Labels(slot.endpoint, slot.label, slot.role))
    if not back:
        intervals.retire(slot.label, slot.role)
