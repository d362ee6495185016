"""The project's pipelines by name (from mloop.yaml), and running them on an executor."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mloop.domain.pipeline import PipelineGraph, parse_target
from mloop.errors import NotFound, PipelineError
from mloop.executors import open_executor
from mloop.services.pipelines.dsl import PipelineFunction
from mloop.services.pipelines.runner import PipelineResult, PipelineRunner, StepEvent
from mloop.services.pipelines.worker import resolve
from mloop.services.pipelines.working import (
    DataChange,
    WorkingData,
    WorkingDataCheck,
    latest_reads,
)

WORKER_MODULES = ("mloop.services.pipelines.worker",)


class PipelineService:
    def __init__(
        self,
        runner: PipelineRunner,
        targets: Mapping[str, str],
        root: Path,
        *,
        default_executor: str = "local",
        max_workers: int | None = None,
        ray_address: str | None = None,
    ) -> None:
        self.runner = runner
        self.targets = dict(targets)
        self.root = root
        self.default_executor = default_executor
        self.max_workers = max_workers
        self.ray_address = ray_address

    def preload(self, graph: PipelineGraph | str) -> tuple[str, ...]:
        """Modules worker processes import before their first step: mloop's worker and the
        pipeline's own modules (with pandas, scikit-learn…), once in the fork server rather
        than once per worker. Given a pipeline's name, its module from mloop.yaml."""
        if isinstance(graph, str):
            modules = {self.targets[self.resolve_name(graph)].partition(":")[0]}
        else:
            modules = {s.target.partition(":")[0] for s in graph.steps}
        modules.discard("__main__")
        return (*WORKER_MODULES, *sorted(modules))

    def find(self) -> list[str]:
        return sorted(self.targets)

    def resolve_name(self, name: str | None) -> str:
        if name is not None:
            if name not in self.targets:
                known = ", ".join(self.find()) or "none yet"
                raise NotFound(
                    f"no pipeline {name!r} in mloop.yaml (known: {known})",
                    "add it under `pipelines:` as NAME: module:function",
                )
            return name
        if len(self.targets) == 1:
            return next(iter(self.targets))
        if not self.targets:
            raise NotFound(
                "this project names no pipelines",
                "add to mloop.yaml:  pipelines: {train: pipeline:train}",
            )
        raise PipelineError(
            f"which pipeline? this project has {', '.join(self.find())}", "give its name"
        )

    def load(self, name: str | None) -> PipelineFunction:
        """Import the pipeline function a name points at."""
        key = self.resolve_name(name)
        return self._function(key, self.targets[key], "in mloop.yaml")

    def _function(self, name: str, target: str, where: str) -> PipelineFunction:
        try:
            parse_target(target)
        except PipelineError as exc:
            raise PipelineError(f"pipeline {name!r} {where}: {exc.message}", exc.hint) from None
        found = resolve(target, str(self.root))
        if not isinstance(found, PipelineFunction):
            raise PipelineError(
                f"{target} is not a pipeline", "decorate the function with @mloop.pipeline"
            )
        return found

    def graph(self, name: str | None, params: Mapping[str, Any] | None = None) -> PipelineGraph:
        """The traced graph, named as mloop.yaml names the pipeline."""
        return dataclasses.replace(self.load(name).build(params), name=self.resolve_name(name))

    def recorded_graph(self, name: str, target: str, params: Mapping[str, str]) -> PipelineGraph:
        """The graph a recorded run of pipeline `name` ran: traced from the `target` it
        recorded (not the one mloop.yaml names today) with the params it recorded (text)."""
        function = self._function(name, target, "as recorded")
        graph = function.build(decode_params(params, function.defaults))
        return dataclasses.replace(graph, name=name)

    def working_data(
        self,
        mode: WorkingData,
        by: str,
        on_change: Callable[[DataChange], None] | None = None,
    ) -> WorkingDataCheck:
        """A look at the working data of the datasets a run reads (see `working.py`)."""
        return WorkingDataCheck(self.runner.data, mode, by, on_change)

    def run(
        self,
        name: str | None,
        params: Mapping[str, Any] | None = None,
        *,
        executor: str | None = None,
        use_cache: bool = True,
        resume: str | None = None,
        on_event: Callable[[StepEvent], None] | None = None,
        working_data: WorkingData = WorkingData.VERSION,
        on_data: Callable[[DataChange], None] | None = None,
    ) -> PipelineResult:
        """Build and run a pipeline by name; an unchanged one is reused without importing it.

        Changed working files of the datasets it reads are versioned first (or, with
        `working_data=WorkingData.LATEST`, only reported); `on_data` hears about each.

        Example:
            >>> project.pipelines.run("train", {"depth": 4}).ok  # doctest: +SKIP
            True
        """
        from mloop.services.pipelines.replay import Replayer

        key = self.resolve_name(name)
        given = dict(params or {})
        check = self.working_data(working_data, f"`mloop run {key}`", on_data)
        replayer = Replayer(self.runner, self.root)
        previous = replayer.previous(key, given) if use_cache and resume is None else None
        if previous is not None:
            known = {d.name for d in self.runner.data.find()}
            check.sync(replayer.latest_reads(previous) & known)
            reused = replayer.replay(previous, key, self.targets[key], given, on_event)
            if reused is not None:
                reused.data = list(check.changes)
                return reused
        result = self._run(
            self.graph(key, given),
            executor=executor,
            use_cache=use_cache,
            resume=resume,
            on_event=on_event,
            check=check,
        )
        replayer.remember(result, key, self.targets[key], given)
        return result

    def run_graph(
        self,
        graph: PipelineGraph,
        *,
        executor: str | None = None,
        use_cache: bool = True,
        resume: str | None = None,
        on_event: Callable[[StepEvent], None] | None = None,
        working_data: WorkingData = WorkingData.VERSION,
        on_data: Callable[[DataChange], None] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> PipelineResult:
        """Run an already traced graph on the named executor (default: the project's); `tags`
        go on the pipeline run."""
        check = self.working_data(working_data, f"a run of pipeline {graph.name}", on_data)
        return self._run(
            graph,
            executor=executor,
            use_cache=use_cache,
            resume=resume,
            on_event=on_event,
            check=check,
            tags=tags,
        )

    def _run(
        self,
        graph: PipelineGraph,
        *,
        executor: str | None,
        use_cache: bool,
        resume: str | None,
        on_event: Callable[[StepEvent], None] | None,
        check: WorkingDataCheck,
        tags: Mapping[str, str] | None = None,
    ) -> PipelineResult:
        check.sync(latest_reads([graph]))
        with open_executor(
            executor or self.default_executor,
            max_workers=self.max_workers,
            ray_address=self.ray_address,
            preload=self.preload(graph),
            paths=(str(self.root),),
        ) as pool:
            result = self.runner.run(
                graph, pool, use_cache=use_cache, resume=resume, on_event=on_event, tags=tags
            )
        result.data = list(check.changes)
        return result


def decode_params(recorded: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded params back as values, read as `-p` reads them (JSON where it parses, else
    text), except that a param whose default is text stays text.

    Example:
        >>> decode_params({"C": "0.5", "tag": "1"}, {"tag": "a"})
        {'C': 0.5, 'tag': '1'}
    """
    params: dict[str, Any] = {}
    for key, text in recorded.items():
        try:
            params[key] = text if isinstance(defaults.get(key), str) else json.loads(text)
        except ValueError:
            params[key] = text
    return params
