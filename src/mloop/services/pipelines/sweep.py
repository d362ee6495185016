"""Sweeps: run a pipeline for many params at once and rank the trials by its metric.

Trials run side by side (one thread each, their steps on the shared executor), and a step they
have in common — data preparation that does not depend on the swept params — runs once: the
runner lets one trial compute it while the others wait for the cache.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mloop.domain.run import RunKind, RunStatus
from mloop.errors import InvalidInput
from mloop.executors import open_executor
from mloop.services.pipelines.catalog import PipelineService
from mloop.services.pipelines.runner import PipelineResult, StepEvent
from mloop.services.pipelines.working import DataChange, WorkingData, latest_reads

# A grid beyond this is a typo or a job for --random: each trial is a pipeline run.
MAX_TRIALS = 10_000


@dataclass(frozen=True, slots=True)
class Axis:
    """One swept param: explicit `values`, or an inclusive range `low..high` (by `step`)."""

    name: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    integer: bool = False

    def size(self) -> int:
        """How many values `grid` would make, counted without making them."""
        if self.values:
            return len(self.values)
        assert self.low is not None and self.high is not None
        step = self.step if self.step is not None else 1
        return int((self.high - self.low + 1e-12) // step) + 1

    def grid(self) -> list[Any]:
        if self.values:
            return list(self.values)
        assert self.low is not None and self.high is not None
        step = self.step if self.step is not None else 1
        found: list[Any] = []
        value = self.low
        while value <= self.high + 1e-12:
            found.append(int(value) if self.integer else round(value, 12))
            value += step
        return found

    def sample(self, rng: random.Random) -> Any:
        if self.values:
            return rng.choice(self.values)
        assert self.low is not None and self.high is not None
        if self.integer:
            return rng.randint(int(self.low), int(self.high))
        return rng.uniform(self.low, self.high)


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidInput(
            f"invalid sweep range {spec!r}: {text!r} is not a finite number",
            "write LOW:HIGH or LOW:HIGH:STEP, e.g. depth=3:8",
        )
    return value


def parse_axis(spec: str) -> Axis:
    """`lr=0.01,0.1` (values), `depth=3:8` (3 to 8), `lr=0.1:0.5:0.1` (with a step).

    Example:
        >>> parse_axis("depth=3:5").grid()
        [3, 4, 5]
    """
    name, sep, raw = spec.partition("=")
    if not sep or not name or not raw:
        raise InvalidInput(f"invalid sweep param {spec!r}", "write -p NAME=A,B,C or -p NAME=LO:HI")
    if ":" in raw and "," not in raw:
        parts = raw.split(":")
        if len(parts) not in (2, 3):
            raise InvalidInput(f"invalid sweep range {spec!r}", "write LOW:HIGH or LOW:HIGH:STEP")
        low, high = _number(parts[0], spec), _number(parts[1], spec)
        step = _number(parts[2], spec) if len(parts) == 3 else None
        if high < low or (step is not None and step <= 0):
            raise InvalidInput(f"invalid sweep range {spec!r}", "LOW <= HIGH and STEP > 0")
        integer = all(p.strip().lstrip("-").isdigit() for p in parts)
        return Axis(name, low=low, high=high, step=step, integer=integer)
    values = []
    for item in raw.split(","):
        try:
            values.append(json.loads(item))
        except ValueError:
            values.append(item)
    return Axis(name, values=tuple(values))


def combinations(
    axes: list[Axis], fixed: Mapping[str, Any], samples: int | None, seed: int | None
) -> list[dict[str, Any]]:
    """Every combination of the axes (grid), or `samples` random ones."""
    if samples is not None:
        if samples < 1:
            raise InvalidInput("--random must be at least 1")
        rng = random.Random(seed)  # noqa: S311 - sampling params, not secrets
        return [{**fixed, **{a.name: a.sample(rng) for a in axes}} for _ in range(samples)]
    count = math.prod(a.size() for a in axes)
    if count > MAX_TRIALS:
        sizes = " x ".join(f"{a.name} {a.size():,}" for a in axes)
        raise InvalidInput(
            f"the sweep's grid has {count:,} combinations ({sizes}); at most {MAX_TRIALS:,}",
            "use fewer values or a larger step, or sample the grid: --random N",
        )
    grids = [a.grid() for a in axes]
    return [
        {**fixed, **dict(zip([a.name for a in axes], combo, strict=True))}
        for combo in itertools.product(*grids)
    ]


@dataclass(frozen=True, slots=True)
class Trial:
    params: dict[str, Any]
    result: PipelineResult
    score: float | None


@dataclass(frozen=True, slots=True)
class SweepResult:
    run_id: str
    metric: str | None
    maximize: bool
    trials: tuple[Trial, ...]  # best first; failed trials and trials without the metric last
    data: tuple[DataChange, ...] = ()  # working data found changed before the trials ran


class Sweeper:
    def __init__(self, pipelines: PipelineService) -> None:
        self.pipelines = pipelines

    def run(
        self,
        name: str | None,
        trials: list[dict[str, Any]],
        *,
        executor: str | None = None,
        use_cache: bool = True,
        parallel: int | None = None,
        on_event: Callable[[dict[str, Any], StepEvent], None] | None = None,
        on_trial: Callable[[int, Trial], None] | None = None,
        working_data: WorkingData = WorkingData.VERSION,
        on_data: Callable[[DataChange], None] | None = None,
    ) -> SweepResult:
        """Run one trial per params dict at once; rank them by the pipeline's metric.

        `on_trial` hears about each trial as it ends (with its index in `trials`), from the
        trial's thread. Working data is looked at once, before any trial, as `run` does.

        Example:
            >>> trials = [{"depth": 3}, {"depth": 5}]  # doctest: +SKIP
            >>> best = sweeper.run("train", trials).trials[0]  # doctest: +SKIP
            >>> best.params  # doctest: +SKIP
            {'depth': 5}
        """
        key = self.pipelines.resolve_name(name)
        chosen = executor or self.pipelines.default_executor
        runner = self.pipelines.runner
        # The executor first: its worker processes warm up while the trials are traced.
        with open_executor(
            chosen,
            max_workers=self.pipelines.max_workers,
            ray_address=self.pipelines.ray_address,
            preload=self.pipelines.preload(key),
            paths=(str(self.pipelines.root),),
        ) as pool:
            graphs = [self.pipelines.graph(key, params) for params in trials]  # all checked
            metric, maximize = graphs[0].metric, graphs[0].maximize
            check = self.pipelines.working_data(working_data, f"`mloop sweep {key}`", on_data)
            check.sync(latest_reads(graphs))
            sweep = runner.runs.start(
                f"{key}-sweep",
                tags={"mloop.trials": str(len(trials))},
                kind=RunKind.SWEEP,
                pipeline=key,
            )
            workers: int = getattr(pool, "max_workers", None) or 2
            width = parallel or (1 if chosen == "local" else workers)

            def one(index: int) -> Trial:
                params = trials[index]
                hear = (lambda e: on_event(params, e)) if on_event else None
                result = runner.run(
                    graphs[index], pool, use_cache=use_cache, on_event=hear, parent=sweep
                )
                trial = Trial(params, result, self._score(result, metric))
                if on_trial is not None:
                    on_trial(index, trial)
                return trial

            try:
                with ThreadPoolExecutor(max_workers=max(1, width)) as threads:
                    done = list(threads.map(one, range(len(trials))))
            except BaseException as exc:
                sweep.end(RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
                raise
        ranked = sorted(done, key=lambda t: _rank(t, maximize))
        best = ranked[0]
        if best.score is not None and metric:
            sweep.log_metric(metric, best.score)
            sweep.set_tag("mloop.best_run", best.result.run_id)
        failures = sum(not t.result.ok for t in done)
        sweep.end(RunStatus.FAILED if failures == len(done) else RunStatus.FINISHED)
        return SweepResult(sweep.id, metric, maximize, tuple(ranked), tuple(check.changes))

    def _score(self, result: PipelineResult, metric: str | None) -> float | None:
        if metric is None or not result.ok:
            return None
        found = self.pipelines.runner.runs.get(result.run_id).metrics.get(metric)
        return None if found is None else found.value


def _rank(trial: Trial, maximize: bool) -> tuple[int, float]:
    if trial.score is None:
        return (1, 0.0)
    return (0, -trial.score if maximize else trial.score)
