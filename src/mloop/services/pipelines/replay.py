"""Re-running an unchanged pipeline without importing it.

Importing a pipeline module imports pandas, scikit-learn and the rest (seconds), just to learn
that nothing changed. So after a pipeline finishes, its run records a *plan*: the digest of
every project file its code was loaded from, the dataset versions it read, the environment and
the params given. `mloop run` first recomputes that plan from the files alone (hashing a few
small files); if it matches, every step is reused from that run, as the per-step cache would
have decided, and nothing of the user's is imported.

The plan holds what decides the steps' cache keys as far as files can tell: a module constant is
in its file's digest, so editing one (in the pipeline's module or any project module it
imports) makes the plan differ, and the traced run decides step by step. Working data is looked
at before (`working.py`): changed files become a new version, which the plan then sees. What a
file digest cannot see is a value computed at import time from outside the code (a file read or
an environment variable): the traced run's keys cover it, replay does not (`--no-cache`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import blake3

from mloop.domain.names import DatasetRef
from mloop.domain.pipeline import StepState, canonical_json
from mloop.domain.query import And, Compare, Field
from mloop.domain.run import Metric, Run, RunOutput, RunStatus
from mloop.services.pipelines.runner import PipelineResult, PipelineRunner, StepEvent

PLAN_TAG = "mloop.plan"
NOTEBOOK_TARGETS = "mloop.services.pipelines.notebook:"
PARAMS_TAG = "mloop.plan_params"


def project_files(root: Path) -> dict[str, str]:
    """Project modules loaded in this process (not the venv's), as relative path -> digest."""
    base = str(root.resolve()) + os.sep
    site = tuple(p for p in sys.path if "site-packages" in p or "dist-packages" in p)
    found: dict[str, str] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        path = os.path.abspath(path)
        if path.startswith(base) and not path.startswith(site) and "/.venv/" not in path:
            found[path[len(base) :]] = _digest(path)
    return dict(sorted(found.items()))


def _digest(path: str) -> str:
    with open(path, "rb") as fh:
        return blake3.blake3(fh.read()).hexdigest()


class Replayer:
    def __init__(self, runner: PipelineRunner, root: Path) -> None:
        self.runner = runner
        self.root = root

    def plan(
        self,
        name: str,
        target: str,
        params: Mapping[str, Any],
        files: Mapping[str, str],
        datasets: Mapping[str, int],
    ) -> str:
        return canonical_json(
            {
                "pipeline": name,
                "target": target,
                "params": dict(params),
                "files": dict(files),
                "datasets": dict(datasets),
                "environment": self.runner.runs.environment().digest,
            }
        )

    def remember(
        self, result: PipelineResult, name: str, target: str, params: Mapping[str, Any]
    ) -> None:
        """Record the plan of a finished run (called right after it, in the same process)."""
        if not result.ok:
            return
        metadata = self.runner.runs.metadata
        files = project_files(self.root)
        for child in metadata.runs.children(result.run_id):
            step = metadata.runs.get(child.id)
            notebook = step.params.get("notebook")
            if notebook and step.tags.get("mloop.target", "").startswith(NOTEBOOK_TARGETS):
                path = str(json.loads(notebook)["path"])  # code that is not a Python module
                files[path] = _digest(str(self.root / path))
        plan = self.plan(name, target, params, dict(sorted(files.items())), result.datasets)
        metadata.runs.write_data(
            result.run_id, tags=[(PLAN_TAG, plan), (PARAMS_TAG, canonical_json(dict(params)))]
        )

    def previous(self, name: str, params: Mapping[str, Any]) -> Run | None:
        """The latest finished run of pipeline `name` with these params, if it has a plan."""
        where = And(
            (
                Compare(Field("attr", "pipeline"), "=", name),
                Compare(Field("tags", PARAMS_TAG), "=", canonical_json(dict(params))),
                Compare(Field("attr", "status"), "=", "finished"),
            )
        )
        found = self.runner.runs.metadata.runs.find(where, limit=1)
        return found[0] if found and PLAN_TAG in found[0].tags else None

    @staticmethod
    def latest_reads(previous: Run) -> set[str]:
        """The datasets `previous` read at their latest version (not pinned)."""
        recorded = json.loads(previous.tags[PLAN_TAG])
        return {
            key for key in recorded.get("datasets", {}) if DatasetRef.parse(key).version is None
        }

    def replay(
        self,
        previous: Run,
        name: str,
        target: str,
        params: Mapping[str, Any],
        on_event: Callable[[StepEvent], None] | None = None,
    ) -> PipelineResult | None:
        """A new run reusing every step of `previous` if its plan still holds, else None (then
        trace and run the pipeline for real)."""
        metadata = self.runner.runs.metadata
        recorded = json.loads(previous.tags[PLAN_TAG])
        try:
            files = {rel: _digest(str(self.root / rel)) for rel in recorded["files"]}
        except OSError:
            return None  # a module moved or vanished: trace the pipeline again
        latest = {d.name: d.latest for d in metadata.datasets.all()}
        datasets: dict[str, int] = {}
        for key in recorded["datasets"]:
            read = DatasetRef.parse(key)
            now = latest.get(read.name, -1)
            # A pinned version stays what it was, as long as the dataset still reaches it.
            pinned = read.version
            datasets[key] = now if pinned is None else (pinned if now >= pinned else -1)
        if self.plan(name, target, params, files, datasets) != previous.tags[PLAN_TAG]:
            return None
        result = self._reuse(previous, on_event or (lambda event: None))
        result.datasets = datasets
        return result

    def _reuse(self, previous: Run, emit: Callable[[StepEvent], None]) -> PipelineResult:
        tracker = self.runner.runs
        metadata = tracker.metadata
        run = tracker.start(
            previous.name,
            params=dict(previous.params),
            tags={
                **{k: v for k, v in previous.tags.items() if k.startswith("mloop.")},
                "mloop.replayed_from": previous.id,
            },
            kind=previous.kind,
            pipeline=previous.pipeline,
        )
        result = PipelineResult(run.id, RunStatus.RUNNING)
        for child in metadata.runs.children(previous.id):
            step = metadata.runs.get(child.id)
            origin = step.tags.get("mloop.cached_from", step.id)
            copy = tracker.start(
                step.name,
                params=dict(step.params),
                tags={**step.tags, "mloop.cached_from": origin},
                parent=run,
                kind=step.kind,
                pipeline=step.pipeline,
            )
            metadata.runs.write_data(
                copy.id,
                inputs=step.inputs,
                outputs=[RunOutput(o.name, o.digest, o.size) for o in step.outputs],
                metrics=[
                    Metric(m.key, m.value, m.step, m.timestamp) for m in step.metrics.values()
                ],
            )
            copy.end(RunStatus.FINISHED)
            event = StepEvent(step.name, StepState.CACHED, copy.id, cached_from=origin)
            result.steps[step.name] = event
            emit(event)
        lifted = [Metric(m.key, m.value, m.step, m.timestamp) for m in previous.metrics.values()]
        if lifted:
            metadata.runs.write_data(run.id, metrics=lifted)
        run.end(RunStatus.FINISHED)
        result.status = RunStatus.FINISHED
        return result
