"""Running a pipeline: schedule steps as their inputs become ready, reuse what is cached.

A pipeline run is a Run; each step gets a child Run. Before a step runs, its cache key is
computed from its code, its inputs' digests and the environment; a finished step run with the
same key (or, with `resume`, the resumed run's step) lends its outputs instead of running. A
failed step fails the run; steps that need it are skipped, others already running finish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.domain.pipeline import (
    PipelineGraph,
    StepNode,
    StepState,
    cache_key,
    canonical_json,
    order,
    value_digest,
)
from mloop.domain.query import parse_filter
from mloop.domain.run import Metric, Run, RunKind, RunOutput, RunStatus
from mloop.errors import PipelineError
from mloop.executors.protocol import StepExecutor
from mloop.services.pipelines.fingerprint import source_digest
from mloop.services.pipelines.worker import (
    OpenServices,
    Services,
    StepOutcome,
    StepTask,
    resolve,
    run_step,
    run_task,
)
from mloop.services.pipelines.working import DataChange
from mloop.services.tracking.active_run import ActiveRun

CACHE_TAG = "mloop.cache_key"


@dataclass(frozen=True, slots=True)
class StepEvent:
    """What happened to a step: running, cached, finished, failed or skipped."""

    step: str
    state: StepState
    run_id: str | None = None
    cached_from: str | None = None
    seconds: float | None = None
    error: str | None = None
    attempts: int = 1


@dataclass
class PipelineResult:
    """What a pipeline run did. `datasets` maps each dataset it read to the version it read,
    keyed `NAME` when it asked for the latest and `NAME:V` when pinned; `data` lists datasets
    whose working files differed from their latest version when it started."""

    run_id: str
    status: RunStatus
    steps: dict[str, StepEvent] = field(default_factory=dict)
    error: str | None = None
    datasets: dict[str, int] = field(default_factory=dict)
    data: list[DataChange] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.FINISHED


@dataclass
class _Progress:
    """One pipeline run in progress: what starting and settling each of its steps reads (fixed
    when the run starts) and fills in (the steps' outputs, the steps that failed)."""

    pipeline_run: ActiveRun
    executor: StepExecutor
    sources: Mapping[str, str]  # step -> its code's digest
    environment: str
    datasets: Mapping[tuple[str, int | None], tuple[int, str]]  # see _resolve_datasets
    use_cache: bool
    resumed: Run | None
    record: Callable[[StepEvent], None]
    outputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def _manifest_digest(files: Any) -> str:
    return value_digest(sorted([f.path, f.digest] for f in files))


class PipelineRunner:
    """Runs steps with this process's `services` when the executor runs them here, and sends
    `open_services` (picklable, from the wiring layer) with each step run elsewhere, for the
    worker to build its own: the runner is handed how to open the stores, as Kedro's runner
    is handed its catalog, and never opens them itself."""

    def __init__(self, services: Services, root: Path, open_services: OpenServices) -> None:
        self.services = services
        self.runs = services.runs
        self.data = services.data
        self.root = root
        self.open_services = open_services
        # Steps being computed right now, by cache key: when pipeline runs share a runner (the
        # trials of a sweep), a step they have in common runs once and the others reuse it.
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Event] = {}

    def _claim(self, key: str) -> bool:
        """Claim the right to compute `key`; if another run holds it, wait until it is done
        and return False (the caller then looks in the cache again)."""
        with self._lock:
            busy = self._inflight.get(key)
            if busy is None:
                self._inflight[key] = threading.Event()
                return True
        busy.wait()
        return False

    def _release(self, key: str) -> None:
        with self._lock:
            done = self._inflight.pop(key, None)
        if done is not None:
            done.set()

    # cache ---------------------------------------------------------------------------------
    def _cached(self, key: str, resume: Run | None, anywhere: bool) -> Run | None:
        """The run whose outputs a step with this key can reuse: the resumed run's step first,
        then (when caching is on) the latest finished step run anywhere with the same key."""
        metadata = self.runs.metadata
        if resume is not None:
            for child in metadata.runs.children(resume.id):
                if child.tags.get(CACHE_TAG) == key and child.status is RunStatus.FINISHED:
                    return metadata.runs.get(child.id)
        if not anywhere:
            return None
        found = metadata.runs.find(
            parse_filter(f"tags.`{CACHE_TAG}` = '{key}' and status = finished"), limit=1
        )
        return metadata.runs.get(found[0].id) if found else None

    @staticmethod
    def _outputs_of(run: Run, count: int) -> tuple[str, ...] | None:
        by_name = {o.name: o.digest for o in run.outputs}
        digests = tuple(by_name.get(f"outputs/{i}") for i in range(count))
        return None if any(d is None for d in digests) else tuple(str(d) for d in digests)

    # running -------------------------------------------------------------------------------
    def run(
        self,
        graph: PipelineGraph,
        executor: StepExecutor,
        *,
        use_cache: bool = True,
        resume: str | None = None,
        on_event: Callable[[StepEvent], None] | None = None,
        parent: ActiveRun | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> PipelineResult:
        """Run `graph` on `executor`; `on_event` hears about every step as it changes state.

        `parent` makes the pipeline run a child (a sweep's trials hang under the sweep); `tags`
        go on the pipeline run before any step starts (a reproduction says what it re-runs).

        Example:
            >>> graph = train.build({"depth": 4})  # doctest: +SKIP
            >>> runner.run(graph, open_executor("local")).ok  # doctest: +SKIP
            True
        """
        emit = on_event or (lambda event: None)
        steps = order(graph.steps)
        functions = {s.name: resolve(s.target, str(self.root)) for s in steps}
        sources = {name: source_digest(fn, self.root) for name, fn in functions.items()}
        resumed = self.runs.get(resume) if resume else None
        if resumed is not None and resumed.pipeline != graph.name:
            raise PipelineError(
                f"run {resumed.id[:12]} is not a run of pipeline {graph.name!r}",
                "pass --resume with the id of an earlier run of the same pipeline",
            )
        datasets = self._resolve_datasets(steps)
        environment = self.runs.environment().digest
        pipeline_run = self.runs.start(
            graph.name,
            params={
                k: canonical_json(v) if not isinstance(v, str) else v
                for k, v in graph.params.items()
            },
            tags={
                "mloop.target": graph.target,
                "mloop.executor": executor.name,
                **({"mloop.resumed_from": resumed.id} if resumed else {}),
                **(tags or {}),
            },
            parent=parent,
            kind=RunKind.PIPELINE,
            pipeline=graph.name,
        )
        result = PipelineResult(pipeline_run.id, RunStatus.RUNNING)
        result.datasets = {
            name if asked is None else f"{name}:{asked}": version
            for (name, asked), (version, _) in sorted(datasets.items(), key=str)
        }
        pending = list(steps)
        running: dict[Future[StepOutcome], tuple[StepNode, ActiveRun, str]] = {}

        def record(event: StepEvent) -> None:
            result.steps[event.step] = event
            emit(event)

        progress = _Progress(
            pipeline_run, executor, sources, environment, datasets, use_cache, resumed, record
        )
        try:
            while pending or running:
                progressed = False
                for node in list(pending):
                    if progress.failed or not node.upstream <= progress.outputs.keys():
                        continue
                    pending.remove(node)
                    progressed = True
                    future_run = self._start(node, progress)
                    if future_run is None:
                        continue
                    future, step_run, key = future_run
                    if future.done():  # the local executor ran it already: settle it now
                        self._settle(node, step_run, key, future, progress)
                    else:
                        running[future] = (node, step_run, key)
                if running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        node, step_run, key = running.pop(future)
                        self._settle(node, step_run, key, future, progress)
                elif pending and not progressed:  # blocked behind a failed step
                    for node in pending:
                        record(StepEvent(node.name, StepState.SKIPPED))
                    pending.clear()
        except BaseException as exc:
            for _, step_run, key in running.values():
                step_run.end(RunStatus.FAILED, "the pipeline run was interrupted")
                self._release(key)
            pipeline_run.end(RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        self._lift_metrics(pipeline_run, result)
        if progress.failed:
            first = result.steps[progress.failed[0]]
            last_line = (first.error or "").strip().splitlines()[-1:] or ["unknown error"]
            result.error = f"step {progress.failed[0]!r} failed: {last_line[0]}"
            result.status = RunStatus.FAILED
            pipeline_run.end(RunStatus.FAILED, result.error)
        else:
            result.status = RunStatus.FINISHED
            pipeline_run.end(RunStatus.FINISHED)
        return result

    def _start(
        self, node: StepNode, progress: _Progress
    ) -> tuple[Future[StepOutcome], ActiveRun, str] | None:
        """Reuse the step's outputs if its key was seen, else submit it; None when reused."""
        inputs = self._input_digests(node, progress.outputs, progress.datasets)
        key = cache_key(progress.sources[node.name], inputs, progress.environment, node.options)
        reusable = (progress.use_cache or progress.resumed is not None) and node.options.cache
        while True:
            if reusable:
                hit = self._cached(key, progress.resumed, anywhere=progress.use_cache)
                reused = self._outputs_of(hit, node.outputs) if hit else None
                if hit is not None and reused is not None:
                    run_id = self._record_cached(progress.pipeline_run, node, key, hit)
                    progress.outputs[node.name] = reused
                    origin = hit.tags.get("mloop.cached_from", hit.id)  # who computed it
                    progress.record(
                        StepEvent(node.name, StepState.CACHED, run_id, cached_from=origin)
                    )
                    return None
            if not progress.use_cache or self._claim(key):
                break
        step_run = self.runs.start(
            node.name,
            params=self._params_of(node),
            tags={"mloop.step": node.name, "mloop.target": node.target, CACHE_TAG: key},
            parent=progress.pipeline_run,
            kind=RunKind.STEP,
            pipeline=progress.pipeline_run.pipeline,
        )
        progress.record(StepEvent(node.name, StepState.RUNNING, step_run.id))
        task = self._task(node, step_run.id, progress)
        if progress.executor.in_process:
            return progress.executor.submit(run_step, task, self.services), step_run, key
        future = progress.executor.submit_step(
            run_task,
            task,
            self.open_services,
            cpus=node.options.cpus,
            gpus=node.options.gpus,
            memory=node.options.memory,
        )
        return future, step_run, key

    def _settle(
        self,
        node: StepNode,
        step_run: ActiveRun,
        key: str,
        future: Future[StepOutcome],
        progress: _Progress,
    ) -> None:
        try:
            self._finish_step(node, step_run, future.result(), progress)
        finally:
            self._release(key)

    @staticmethod
    def _finish_step(
        node: StepNode, step_run: ActiveRun, outcome: StepOutcome, progress: _Progress
    ) -> None:
        if outcome.ok:
            progress.outputs[node.name] = outcome.outputs
            step_run.end(RunStatus.FINISHED)
            progress.record(
                StepEvent(
                    node.name,
                    StepState.FINISHED,
                    step_run.id,
                    seconds=outcome.seconds,
                    attempts=outcome.attempts,
                )
            )
        else:
            progress.failed.append(node.name)
            step_run.end(RunStatus.FAILED, outcome.error)
            progress.record(
                StepEvent(
                    node.name,
                    StepState.FAILED,
                    step_run.id,
                    seconds=outcome.seconds,
                    error=outcome.error,
                    attempts=outcome.attempts,
                )
            )

    # helpers -------------------------------------------------------------------------------
    def _resolve_datasets(
        self, steps: list[StepNode]
    ) -> dict[tuple[str, int | None], tuple[int, str]]:
        """Fix each dataset input to a version now: (name, asked) -> (version, manifest digest)."""
        found: dict[tuple[str, int | None], tuple[int, str]] = {}
        for node in steps:
            for _, source in node.inputs:
                if source.kind == "dataset":
                    key = (str(source.value), source.version)
                    if key not in found:
                        version = self.data.metadata.datasets.get_version(
                            key[0], key[1], files=True
                        )
                        found[key] = (version.version, _manifest_digest(version.files))
        return found

    @staticmethod
    def _input_digests(
        node: StepNode,
        outputs: Mapping[str, tuple[str, ...]],
        datasets: Mapping[tuple[str, int | None], tuple[int, str]],
    ) -> dict[str, str]:
        digests: dict[str, str] = {}
        for arg, source in node.inputs:
            if source.kind == "output":
                digests[arg] = outputs[str(source.step)][source.output]
            elif source.kind == "dataset":
                digests[arg] = datasets[(str(source.value), source.version)][1]
            else:
                digests[arg] = value_digest(source.value)
        return digests

    def _task(self, node: StepNode, run_id: str, progress: _Progress) -> StepTask:
        inputs: list[tuple[str, str, Any]] = []
        for arg, source in node.inputs:
            if source.kind == "output":
                inputs.append((arg, "output", progress.outputs[str(source.step)][source.output]))
            elif source.kind == "dataset":
                version = progress.datasets[(str(source.value), source.version)][0]
                inputs.append((arg, "dataset", [source.value, version]))
            else:
                inputs.append((arg, "value", source.value))
        return StepTask(str(self.root), run_id, node.name, node.target, tuple(inputs), node.options)

    @staticmethod
    def _params_of(node: StepNode) -> dict[str, str]:
        return {
            arg: source.value if isinstance(source.value, str) else canonical_json(source.value)
            for arg, source in node.inputs
            if source.kind == "value"
        }

    def _record_cached(self, pipeline_run: ActiveRun, node: StepNode, key: str, hit: Run) -> str:
        """A finished child run that says where its outputs came from (lineage stays whole)."""
        step_run = self.runs.start(
            node.name,
            params=self._params_of(node),
            tags={
                "mloop.step": node.name,
                "mloop.target": node.target,
                CACHE_TAG: key,
                "mloop.cached_from": hit.tags.get("mloop.cached_from", hit.id),
            },
            parent=pipeline_run,
            kind=RunKind.STEP,
            pipeline=pipeline_run.pipeline,
        )
        self.runs.metadata.runs.write_data(
            step_run.id,
            inputs=hit.inputs,
            outputs=[RunOutput(o.name, o.digest, o.size) for o in hit.outputs],
            metrics=[Metric(m.key, m.value, m.step, m.timestamp) for m in hit.metrics.values()],
        )
        step_run.end(RunStatus.FINISHED)
        return step_run.id

    def _lift_metrics(self, pipeline_run: ActiveRun, result: PipelineResult) -> None:
        """Copy each step's latest metrics onto the pipeline run, so runs compare and sweeps
        rank on one record."""
        metrics: list[Metric] = []
        for event in result.steps.values():
            if event.run_id and event.state in (StepState.FINISHED, StepState.CACHED):
                metrics.extend(self.runs.metadata.runs.get(event.run_id).metrics.values())
        if metrics:
            self.runs.metadata.runs.write_data(pipeline_run.id, metrics=metrics)
