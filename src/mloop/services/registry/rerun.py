"""Re-running a recorded pipeline in a checkout of its commit, in a child `mloop` process.

The child is `mloop -C CHECKOUT reproduce --rerun-request -`: it reads a `RerunRequest` on stdin,
runs the pipeline (`Reproducer.rerun`) and prints a `RerunOutcome` as JSON on stdout, with a
line per step on stderr. A process of its own keeps the recorded code's modules apart from
anything this one imported, and it records its own code and environment as any run does. The
variables that make it use this project's stores come from the wiring layer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mloop.domain.names import DatasetRef
from mloop.domain.pipeline import PipelineGraph
from mloop.domain.records import from_plain, to_plain
from mloop.errors import MloopError
from mloop.services.registry.models import REHEARSAL_TAG


@dataclass(frozen=True, slots=True)
class RerunRequest:
    """What to run in the worktree: plain data, so it can cross into another process."""

    pipeline: str
    target: str
    params: Mapping[str, str]  # as the pipeline run recorded them (text)
    inputs: Mapping[str, DatasetRef]  # "STEP/ARG" -> the dataset version that input read
    datasets: tuple[DatasetRef, ...]  # every dataset version the pipeline run read
    ref: str = ""  # the version reproduced
    register: bool = False  # let the re-run register what it makes (else only compare)

    @property
    def tags(self) -> dict[str, str]:
        """What the re-run's pipeline run carries from its start (the registry reads them)."""
        return {"mloop.reproduces": self.ref, **({} if self.register else {REHEARSAL_TAG: "1"})}

    def to_json(self) -> str:
        return json.dumps(to_plain(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RerunRequest:
        return from_plain(cls, json.loads(text))


@dataclass(frozen=True, slots=True)
class RerunOutcome:
    run_id: str | None
    status: str  # "finished" | "failed"
    error: str | None = None
    steps: tuple[tuple[str, str], ...] = ()  # (step, state)

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    def to_json(self) -> str:
        return json.dumps(to_plain(self))

    @classmethod
    def from_json(cls, text: str) -> RerunOutcome:
        return from_plain(cls, json.loads(text))


class RecordedPipelines(Protocol):
    """What a re-run needs of the pipelines service, a sibling the registry does not import
    (the wiring layer hands it over)."""

    def recorded_graph(self, name: str, target: str, params: Mapping[str, str]) -> PipelineGraph:
        """The graph traced from a recorded target with recorded (text) params."""

    def run_graph(
        self,
        graph: PipelineGraph,
        *,
        use_cache: bool = True,
        on_event: Callable[[Any], None] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Any:
        """Run the graph; the result has `run_id`, `status`, `error` and `steps`."""


def rerun_in_checkout(
    request: RerunRequest,
    root: Path,
    environment: Mapping[str, str],
    on_output: Callable[[str], object] | None = None,
) -> RerunOutcome:
    """Run `request` in a child `mloop` process rooted at `root` (in a checkout), with
    `environment` set; `on_output` hears what the child says on stderr (a line per step as it
    ends, or an error) as it comes."""
    say = on_output or (lambda text: None)
    command = [sys.executable, "-m", "mloop", "-C", str(root), "reproduce", "--rerun-request", "-"]
    say(f"re-running pipeline {request.pipeline} in a checkout of its commit\n")
    with subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **environment},
    ) as child:
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None
        child.stdin.write(request.to_json())
        child.stdin.close()
        said = []
        for line in child.stderr:  # the JSON on stdout is small: it cannot fill its pipe first
            said.append(line)
            say(line)
        printed = child.stdout.read()
    try:
        return RerunOutcome.from_json(printed)
    except (ValueError, KeyError, TypeError):
        error = "".join(said).strip() or f"the re-run exited with code {child.returncode}"
        return RerunOutcome(None, "failed", error)


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False, timeout=300
    )


@contextmanager
def worktree(repo: Path, commit: str, keep: bool) -> Iterator[Path]:
    """A detached checkout of `commit` in a temporary folder, removed afterwards unless `keep`."""
    holder = Path(tempfile.mkdtemp(prefix="mloop-reproduce-"))
    tree = holder / "tree"
    added = git(repo, "worktree", "add", "--detach", str(tree), commit)
    if added.returncode != 0:
        shutil.rmtree(holder, ignore_errors=True)
        raise MloopError(f"git worktree add failed: {added.stderr.strip()}")
    try:
        yield tree
    finally:
        if not keep:
            git(repo, "worktree", "remove", "--force", str(tree))
            shutil.rmtree(holder, ignore_errors=True)
            git(repo, "worktree", "prune")
