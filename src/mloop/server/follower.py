"""Following a deployment: each worker serves what its endpoint's deployment says, as it changes.

Every `poll` seconds the worker asks `source()` for the current `ServingPlan` (in a thread: a
store read blocks). When it changed, the versions not loaded yet are loaded and warmed in a
thread while the old table keeps serving; warming is the readiness check (one predict on an
example row made from the signature). Only when every new version is ready is the table
swapped, by one assignment. Slots the new table dropped drain: they finish what they have in
flight (bounded by the request time-out), then their batchers close and their counters are
handed back. A version that fails its readiness check never gets a request: the table stays
as it was, and the reason is kept in `failed_versions` (and in /readyz) for the rollout to fail
with, until a later plan no longer names that version.

When `source()` raises (the store is gone), the worker keeps serving the last table it had,
logs once per outage, and /readyz stays 200 (the server does serve) with
`"deployment": "stale since <UTC time>"`, so an operator sees which servers lag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mloop.errors import MloopError, ModelFailed
from mloop.server.inference import InferenceApp, endpoint_app
from mloop.server.slots import (
    SHADOW,
    Loaded,
    ServingPlan,
    Slot,
    loaded_versions,
    make_table,
    retire,
)
from mloop.services.serving.batcher import cancel
from mloop.services.serving.metrics import ServingMetrics
from mloop.services.serving.predictor import Predictor
from mloop.services.serving.requests import RequestReader
from mloop.services.serving.settings import ServeSettings

logger = logging.getLogger("mloop.server")

PlanSource = Callable[[], ServingPlan]
Loader = Callable[[str], Predictor]


@dataclass(frozen=True, slots=True)
class Follow:
    """How a worker serves an endpoint: `source()` returns the current plan (or raises when
    it cannot tell), `load(ref)` loads the predictor of a version `NAME:V`; `poll` seconds
    between looks."""

    source: PlanSource
    load: Loader
    poll: float = 1.0
    # Called (in a thread) every `report_every` seconds with the worker's per-version interval
    # counts (`InferenceApp.take_interval`, plus `"shadow"`: its summary or None): where the
    # store writer hands them to the store for the rollout analysis.
    report: Callable[[dict[str, Any]], None] | None = None
    report_every: float = 5.0
    # Called (in a thread) after each plan was tried: with {} when it serves now, else with
    # the versions that failed their readiness check (NAME:V -> why); where a rollout learns
    # that its new version is ready here, or that it never will be.
    applied: Callable[[ServingPlan, dict[str, str]], None] | None = None


def warm(predictor: Predictor) -> None:
    """The readiness check: one predict on an example row of the signature, which must give
    one prediction. A text input takes a category the training data held, so a model that
    refuses categories it never saw (an encoder with handle_unknown="error") is judged on a
    row it can answer. A version without a signature is ready once loaded (nothing to build a
    row from)."""
    from mloop.services.registry.signature import example_row

    signature = predictor.signature
    if signature is None:
        return
    reader = RequestReader(signature, predictor.wants_frame, predictor.categories)
    row = example_row(signature)
    for name, known in predictor.categories.items():
        if name in row and known:
            row[name] = min(known)
    batch = reader.records([row], "the readiness check")
    count = len(predictor.predict(batch.data))
    if count != 1:
        raise ModelFailed(
            f"{predictor.name}:{predictor.version} gave {count} predictions for one row",
            "the model's predict must return one prediction per row",
        )


def load_ready(load: Loader, ref: str) -> Predictor:
    """Load version `ref` and pass its readiness check (blocking: run it in a thread)."""
    predictor = load(ref)
    warm(predictor)
    return predictor


def reason(ref: str, exc: BaseException) -> str:
    said = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    return f"{ref} failed its readiness check: {said}"


class DeploymentFollower:
    """Keeps `app` serving what `follow.source()` says; started and stopped by the app.

    Example:
        >>> follower = DeploymentFollower(app, Follow(source, load, poll=1.0))  # doctest: +SKIP
        >>> app.follower = follower  # the app starts it at startup  # doctest: +SKIP
    """

    def __init__(self, app: InferenceApp, follow: Follow) -> None:
        self.app = app
        self.follow = follow
        self.loaded: dict[str, Loaded] = {loaded.model: loaded for loaded in app.table.loaded()}
        self.failed: dict[str, str] = {}
        self.stale_since: float | None = None
        self.swaps = 0
        self._refused: ServingPlan | None = None  # a plan whose versions failed: not retried
        self._draining: list[Slot] = []
        self._drains: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._reporting: asyncio.Task[None] | None = None
        app.follower = self

    @property
    def failed_versions(self) -> dict[str, str]:
        """Versions whose readiness check failed (NAME:V -> why); they get no traffic."""
        return dict(self.failed)

    def detail(self) -> dict[str, Any]:
        """What /readyz adds: whether the deployment is current, and versions that failed."""
        since = self.stale_since
        shown = "current"
        if since is not None:
            shown = (
                f"stale since {datetime.fromtimestamp(since, UTC).isoformat(timespec='seconds')}"
            )
        return {"deployment": shown, "failed_versions": self.failed_versions}

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        if self.follow.report is not None:
            self._reporting = loop.create_task(self._report(self.follow.report))

    async def stop(self) -> None:
        for task in (self._task, self._reporting, *self._drains):
            await cancel(task)
        serving = {loaded.batcher for loaded in self.app.table.loaded()}
        for batcher in {slot.loaded.batcher for slot in self._draining} - serving:
            await batcher.aclose()
        if self.follow.report is not None:  # the last interval too: every answer is out
            await self._report_once(self.follow.report)

    async def _report_once(self, report: Callable[[dict[str, Any]], None]) -> None:
        record = {**self.app.take_interval(), "shadow": self.app.shadow_summary()}
        try:
            await asyncio.to_thread(report, record)
        except Exception as exc:  # the numbers of one interval are lost, never the serving
            logger.warning("could not report the interval of %s: %s", self.app.name, exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.follow.poll)
            try:
                await self.poll()
            except Exception:  # a bug here must not stop the following for good
                logger.exception("following the deployment of %s failed", self.app.name)

    async def _report(self, report: Callable[[dict[str, Any]], None]) -> None:
        while True:
            await asyncio.sleep(self.follow.report_every)
            await self._report_once(report)

    async def poll(self) -> None:
        """Look at the deployment once, and serve it if it changed."""
        try:
            plan = await asyncio.to_thread(self.follow.source)
        except Exception as exc:
            if self.stale_since is None:
                self.stale_since = time.time()
                logger.warning(
                    "cannot read the deployment of %s (%s); serving the last one known",
                    self.app.name,
                    exc,
                )
            return
        if self.stale_since is not None:
            logger.warning("the deployment of %s can be read again", self.app.name)
            self.stale_since = None
        if plan == self.app.table.plan or plan == self._refused:
            return
        await self.apply(plan)

    async def apply(self, plan: ServingPlan) -> bool:
        """Load and warm what `plan` adds, then swap the table; False (and nothing swapped)
        when a version failed its readiness check."""
        app = self.app
        alone = {v.model for v in plan.versions if v.role == SHADOW}
        # a version loaded before that becomes a shadow gets a batcher of its own back
        regroup = {ref for ref in alone if ref in self.loaded and self._shares(ref)}
        predictors = {ref: self.loaded[ref].predictor for ref in regroup}
        failed: dict[str, str] = {}
        for ref in dict.fromkeys(v.model for v in plan.versions):
            if ref in self.loaded:
                continue
            try:
                predictors[ref] = await asyncio.to_thread(load_ready, self.follow.load, ref)
            except Exception as exc:
                failed[ref] = reason(ref, exc)
                logger.error("%s: it gets no traffic", failed[ref])
        if failed:
            self.failed = failed
            self._refused = plan
            await self._applied(plan, failed)
            return False
        known = [loaded for ref, loaded in self.loaded.items() if ref not in regroup]
        self.loaded.update(
            loaded_versions(
                predictors, app.settings, app.metrics.batch, known, alone, app.batch_log
            )
        )
        table = make_table(plan, self.loaded, app.metrics.versions, app.intervals, app.table)
        retired = app.swap(table)
        self.failed, self._refused = {}, None
        self.swaps += 1
        if retired:
            self._draining.extend(retired)
            task = asyncio.get_running_loop().create_task(self._drain(retired))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        await self._applied(plan, {})
        return True

    async def _applied(self, plan: ServingPlan, failed: dict[str, str]) -> None:
        hook = self.follow.applied
        if hook is None:
            return
        try:
            await asyncio.to_thread(hook, plan, failed)
        except Exception as exc:  # the rollout hears of it at the next change; serving goes on
            logger.warning("could not record how %s's new plan went: %s", self.app.name, exc)

    async def _drain(self, slots: list[Slot]) -> None:
        """Wait for the retired slots' requests (and shadow copies) to finish, bounded by the
        request time-out, then close what no table and no other draining slot uses."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.app.settings.timeout + 1.0
        while any(slot.in_flight for slot in slots) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        serving = {slot.key for slot in self.app.table.by_index}
        for slot in slots:
            self._draining.remove(slot)
            retire(slot, self.app.metrics.versions, self.app.intervals, slot.key in serving)
        used = self.app.table.loaded() | {slot.loaded for slot in self._draining}
        batching = {loaded.batcher for loaded in used}
        for loaded in {slot.loaded for slot in slots} - used:
            if self.loaded.get(loaded.model) is loaded:  # not the same version loaded anew
                del self.loaded[loaded.model]
            if loaded.batcher not in batching:  # another version of the same model uses it
                await loaded.batcher.aclose()

    def _shares(self, ref: str) -> bool:
        """Whether version `ref`'s batcher serves another loaded version too."""
        mine = self.loaded[ref]
        return any(o.batcher is mine.batcher for o in self.loaded.values() if o is not mine)


def follow_app(follow: Follow, settings: ServeSettings, metrics: ServingMetrics) -> InferenceApp:
    """The app serving the deployment `follow.source()` says now, every version loaded and
    ready, with the follower that keeps it current (a version failing its readiness check
    at start stops the worker with the reason: there is no last good table to serve yet)."""
    plan = follow.source()
    predictors = {}
    for ref in dict.fromkeys(v.model for v in plan.versions):
        try:
            predictors[ref] = load_ready(follow.load, ref)
        except MloopError:
            raise
        except Exception as exc:
            raise ModelFailed(reason(ref, exc), "fix or replace that version") from exc
    app = endpoint_app(plan, predictors, settings, metrics)
    DeploymentFollower(app, follow)
    return app
