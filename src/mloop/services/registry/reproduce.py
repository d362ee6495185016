"""Reproducing a model version: re-run the pipeline that made it and compare what comes out.

A version records its run; a step's run hangs under its pipeline run, which records the pipeline
(`mloop.pipeline`, `mloop.target`), its params and, in its step runs, the dataset version each
step read. The code is checked out from the recorded commit into a temporary git worktree, and
the pipeline runs there against the project's own metadata and artifact stores with every step
recomputed and every dataset input pinned to the version the original run read. The new run's
metrics are compared with the version's, and the model it would register (or the step output
that became the version) with the version's digest; differences between the recorded and the
current package set are reported, since they are the usual reason two runs differ.

Reproducing is a comparison, so by default it registers nothing: the pipeline run is tagged
as a rehearsal (`REHEARSAL_TAG`), and the registry stores the model its register step makes
and names it on the step's run instead of making a version. With `register=True` the re-run
registers as the pipeline always does, and the new version's digest is compared.

Uncommitted changes were digested, not saved: a version made from a dirty tree is refused unless
the caller accepts re-running the commit alone. The pipeline runs in a child `mloop` process
rooted in the worktree (`rerun.py`), which keeps the recorded code apart from anything this one
imported; there `Reproducer.rerun` runs it through the pipelines service, which the registry,
its sibling, is handed by the wiring layer rather than importing it.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.domain.event import Event
from mloop.domain.model import ModelVersion
from mloop.domain.names import DatasetRef
from mloop.domain.pipeline import PipelineGraph
from mloop.domain.run import Run, RunKind
from mloop.errors import InvalidInput, NotFound
from mloop.services.registry.card import recorded_packages
from mloop.services.registry.models import REHEARSED, ModelService
from mloop.services.registry.rerun import (
    RecordedPipelines,
    RerunOutcome,
    RerunRequest,
    git,
    rerun_in_checkout,
    worktree,
)
from mloop.services.tracking.capture import installed_packages

SHOWN_CHANGES = 12  # package differences spelled out as warnings; all are in `packages`


def pin_datasets(graph: PipelineGraph, request: RerunRequest) -> PipelineGraph:
    """The graph with every dataset input fixed to the version the recorded run read.

    An input is pinned to what the same step's same argument read; an input asking for the
    latest that no step run recorded is pinned to the newest version of that dataset the run
    read (the latest then was at least that).

    Example:
        >>> pin_datasets(graph, request).steps[0].inputs[0][1].version  # doctest: +SKIP
        3
    """
    newest: dict[str, int] = {}
    for ref in request.datasets:
        newest[ref.name] = max(newest.get(ref.name, 0), ref.version or 0)
    steps = []
    for node in graph.steps:
        inputs = []
        for arg, source in node.inputs:
            if source.kind == "dataset":
                read = request.inputs.get(f"{node.name}/{arg}")
                if read is not None and read.name == source.value and read.version:
                    source = dataclasses.replace(source, version=read.version)
                elif source.version is None and source.value in newest:
                    source = dataclasses.replace(source, version=newest[str(source.value)])
            inputs.append((arg, source))
        steps.append(dataclasses.replace(node, inputs=tuple(inputs)))
    return dataclasses.replace(graph, steps=tuple(steps))


@dataclass(frozen=True, slots=True)
class MetricCheck:
    name: str
    recorded: float | None
    reproduced: float | None
    difference: float | None
    exact: bool
    close: bool  # within the tolerance


@dataclass(frozen=True, slots=True)
class PackageChange:
    name: str
    recorded: str | None  # None: not in the recorded environment
    current: str | None  # None: not installed now


@dataclass(frozen=True, slots=True)
class Reproduction:
    ref: str
    pipeline: str
    commit: str
    params: Mapping[str, str]
    datasets: tuple[DatasetRef, ...]
    run_id: str | None
    status: str
    error: str | None
    digest: str
    reproduced_digest: str | None
    reproduced_version: str | None  # the version the re-run registered, if it registered one
    digest_match: bool
    tolerance: float
    metrics: tuple[MetricCheck, ...]
    python: tuple[str, str]  # (recorded, current)
    packages: tuple[PackageChange, ...]
    warnings: tuple[str, ...]
    steps: tuple[tuple[str, str], ...] = ()
    worktree: str | None = None  # kept for inspection
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        metrics_ok = all(m.close for m in self.metrics)
        object.__setattr__(
            self, "ok", self.status == "finished" and self.digest_match and metrics_ok
        )


@dataclass(frozen=True, slots=True)
class Plan:
    version: ModelVersion
    pipeline_run: Run
    request: RerunRequest
    commit: str
    repo: Path  # the git repository's top folder
    relative: Path  # the project root inside it


def package_changes(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[PackageChange]:
    """Packages whose version differs, that were recorded but are gone, or that are new.

    Example:
        >>> package_changes({"numpy": "2.0"}, {"numpy": "2.1"})[0].current
        '2.1'
    """
    names = sorted(set(recorded) | set(current))
    return [
        PackageChange(n, recorded.get(n), current.get(n))
        for n in names
        if recorded.get(n) != current.get(n)
    ]


def _check(name: str, old: float | None, new: float | None, tolerance: float) -> MetricCheck:
    if old is None or new is None:
        return MetricCheck(name, old, new, None, False, False)
    if math.isnan(old) or math.isnan(new):
        same = math.isnan(old) and math.isnan(new)
        return MetricCheck(name, old, new, None, same, same)
    close = math.isclose(old, new, rel_tol=tolerance, abs_tol=tolerance)
    return MetricCheck(name, old, new, new - old, old == new, close)


class Reproducer:
    def __init__(
        self,
        models: ModelService,
        root: Path,
        environment: Mapping[str, str],
        pipelines: Callable[[], RecordedPipelines],
    ) -> None:
        """From the wiring layer: `environment`, the variables that make a child `mloop`
        process use this project's stores (whatever opening them needs), and `pipelines`, the
        pipelines service (opened only where a re-run runs)."""
        self.models = models
        self.metadata = models.metadata
        self.root = root
        self.environment = dict(environment)
        self.pipelines = pipelines

    def plan(self, ref: str, allow_dirty: bool = False, register: bool = False) -> Plan:
        """What re-running `ref` means, or a clear refusal when it cannot be done faithfully."""
        version = self.models.get(ref)
        if version.run_id is None:
            why = f"{version.ref} was registered outside any run: nothing records how it was made"
            raise InvalidInput(why, "reproduce works for versions a pipeline registered")
        run = self.metadata.runs.get(version.run_id)
        if run.kind is RunKind.STEP and run.parent_id:
            run = self.metadata.runs.get(run.parent_id)
        if run.kind is not RunKind.PIPELINE or "mloop.target" not in run.tags:
            raise InvalidInput(
                f"{version.ref} was made by run {run.id[:12]} ({run.name}), not by a pipeline: "
                "mloop can re-run pipelines only",
                "make the training a pipeline (@mloop.pipeline) and register from its step",
            )
        commit, diff = version.code.commit, version.code.diff_digest
        if commit is None:
            raise InvalidInput(
                f"{version.ref} was made from code that was not in git, so it cannot be "
                "checked out again",
                "commit the project to git and run the pipeline again: that version will be",
            )
        if diff and not allow_dirty:
            raise InvalidInput(
                f"{version.ref} was made from commit {commit[:12]} plus uncommitted changes "
                f"(digest {diff[:12]}); those changes were not saved and cannot be restored",
                "re-run the commit alone anyway (results may differ): add --allow-dirty",
            )
        top = git(self.root, "rev-parse", "--show-toplevel")
        repo = Path(top.stdout.strip()).resolve()
        if top.returncode != 0 or git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode:
            raise NotFound(
                f"commit {commit[:12]}, which made {version.ref}, is not in a git repository "
                f"holding {self.root}",
                "run this in the project's git clone; fetch the commit if it is missing",
            )
        inputs: dict[str, DatasetRef] = {}
        for each in self._tree(run):
            for used in each.inputs:
                if used.dataset is not None and "mloop.step" in each.tags and used.name:
                    inputs[f"{each.tags['mloop.step']}/{used.name}"] = used.dataset
        name, target = run.pipeline or run.name, run.tags["mloop.target"]
        request = RerunRequest(
            name, target, dict(run.params), inputs, version.datasets, version.ref, register
        )
        return Plan(version, run, request, commit, repo, self.root.resolve().relative_to(repo))

    def reproduce(
        self,
        ref: str,
        *,
        allow_dirty: bool = False,
        tolerance: float = 1e-6,
        keep_worktree: bool = False,
        register: bool = False,
        on_output: Callable[[str], object] | None = None,
    ) -> Reproduction:
        """Re-run the pipeline that made `ref` from its commit, data and params; compare.
        Nothing is registered unless `register` (module docstring). `on_output` hears the
        re-run's progress, a line at a time.

        Example:
            >>> reproducer.reproduce("churn:3").ok  # doctest: +SKIP
            True
        """
        plan = self.plan(ref, allow_dirty, register)
        with worktree(plan.repo, plan.commit, keep_worktree) as tree:
            root = tree / plan.relative
            if not (root / "mloop.yaml").is_file():
                raise InvalidInput(
                    f"at commit {plan.commit[:12]}, {plan.relative / 'mloop.yaml'} was not "
                    "committed, so the project cannot be opened there",
                    "commit mloop.yaml with the code",
                )
            env = {
                **self.environment,
                "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__: the checkout stays clean
            }
            outcome = rerun_in_checkout(plan.request, root, env, on_output)
        result = self._compare(plan, outcome, tolerance, str(tree) if keep_worktree else None)
        details = {"run": outcome.run_id, "ok": result.ok, "digest_match": result.digest_match}
        where = f"model/{result.ref}"
        event = Event(time.time(), self.models.actor, "model.reproduced", where, None, details)
        self.metadata.events.append(event)
        return result

    def rerun(
        self, request: RerunRequest, on_event: Callable[[Any], None] | None = None
    ) -> RerunOutcome:
        """The checkout's side: run the recorded pipeline from its recorded target and params,
        datasets pinned, every step recomputed; `on_event` hears each step's progress."""
        pipelines = self.pipelines()
        graph = pipelines.recorded_graph(request.pipeline, request.target, request.params)
        result = pipelines.run_graph(
            pin_datasets(graph, request), use_cache=False, on_event=on_event, tags=request.tags
        )
        steps = tuple((event.step, event.state) for event in result.steps.values())
        return RerunOutcome(result.run_id, result.status.value, result.error, steps)

    def _compare(
        self, plan: Plan, outcome: RerunOutcome, tolerance: float, kept: str | None
    ) -> Reproduction:
        version = plan.version
        warnings: list[str] = []
        if version.code.diff_digest:
            warnings.append(
                f"uncommitted changes ({version.code.diff_digest[:12]}): only the commit ran"
            )
        runs = self._tree(self.metadata.runs.get(outcome.run_id)) if outcome.run_id else []
        mine = [v for r in runs for v in self.metadata.models.versions_of_run(r.id)]
        same = [v for v in mine if v.name == version.name]
        new_version = same[-1] if same else None
        reproduced = {k: m.value for r in runs for k, m in r.metrics.items()}
        if new_version is not None:
            warnings.append(
                f"the re-run registered {new_version.ref}: the pipeline registers what it "
                "trains, as expected; its digest is compared"
            )
            reproduced = dict(new_version.metrics)
        read = sorted({str(i.dataset) for r in runs for i in r.inputs if i.dataset is not None})
        recorded = sorted(map(str, version.datasets))
        if runs and read != recorded:
            warnings.append(
                f"the re-run read {', '.join(read) or 'no dataset'}, the version "
                f"{', '.join(recorded) or 'none'} (a step reading data by itself "
                "gets the latest version)"
            )
        names = sorted(set(version.metrics) | set(reproduced))
        checks = [_check(n, version.metrics.get(n), reproduced.get(n), tolerance) for n in names]
        rehearsed = [
            o.digest for r in runs for o in r.outputs if o.name == REHEARSED + version.name
        ]
        if new_version is not None:
            digest: str | None = new_version.digest
        elif rehearsed:
            digest = rehearsed[-1]
        else:
            digest = self._step_output(plan, runs)
        python, changes = self._environment(version, warnings)
        return Reproduction(
            ref=version.ref,
            pipeline=plan.request.pipeline,
            commit=plan.commit,
            params=plan.request.params,
            datasets=plan.request.datasets,
            run_id=outcome.run_id,
            status=outcome.status,
            error=outcome.error,
            digest=version.digest,
            reproduced_digest=digest,
            reproduced_version=new_version.ref if new_version else None,
            digest_match=digest == version.digest,
            tolerance=tolerance,
            metrics=tuple(checks),
            python=python,
            packages=tuple(changes),
            warnings=tuple(warnings),
            steps=outcome.steps,
            worktree=kept,
        )

    def _tree(self, run: Run) -> list[Run]:
        """A pipeline run and its step runs, each with its inputs, outputs and metrics."""
        return [run, *(self.metadata.runs.get(c.id) for c in self.metadata.runs.children(run.id))]

    def _step_output(self, plan: Plan, runs: list[Run]) -> str | None:
        """The new run's output in the place where the original run's output was the model."""
        for run in self._tree(plan.pipeline_run):
            for out in (o for o in run.outputs if o.digest == plan.version.digest):
                for new in (
                    r for r in runs if r.tags.get("mloop.step") == run.tags.get("mloop.step")
                ):
                    return {o.name: o.digest for o in new.outputs}.get(out.name)
        return None

    def _environment(
        self, version: ModelVersion, warnings: list[str]
    ) -> tuple[tuple[str, str], list[PackageChange]]:
        python = f"{platform.python_implementation()} {platform.python_version()} ({sys.platform})"
        try:
            env = self.metadata.environments.get(version.environment or "")
        except NotFound:
            warnings.append("no environment was recorded: packages cannot be compared")
            return ("unknown", python), []
        if env.python != python:
            warnings.append(f"python differs: recorded {env.python}, now {python}")
        recorded = recorded_packages(self.models, env)
        if recorded is None:
            warnings.append("the recorded package list cannot be read")
            return (env.python, python), []
        changes = package_changes(recorded, dict(p.split("==", 1) for p in installed_packages()))
        warnings += [
            f"package {c.name}: recorded {c.recorded or 'not installed'}, "
            f"now {c.current or 'not installed'}"
            for c in changes[:SHOWN_CHANGES]
        ]
        if len(changes) > SHOWN_CHANGES:
            warnings.append(f"and {len(changes) - SHOWN_CHANGES} more package differences")
        return (env.python, python), changes
