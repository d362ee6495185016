"""Pipelines as data: steps, the inputs that wire them, and the pure rules on the graph.

A PipelineGraph is what tracing a `@mloop.pipeline` function produces: each step call becomes a
StepNode whose inputs are another step's output, a dataset version, or a plain value. Ordering,
downstream sets and cache keys are computed here without running or importing anything.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mloop.domain.digests import digest_bytes
from mloop.errors import PipelineError

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def parse_target(target: str) -> tuple[str, str]:
    """`module:qualname` -> (module, qualname), both dotted Python names.

    A target is imported, so anything else (a path such as `../x`, a file name, an empty
    part) is refused here with the fix, before the import machinery sees it.

    Example:
        >>> parse_target("pipeline:training")
        ('pipeline', 'training')
    """
    module, sep, qualname = target.partition(":")
    if not (sep and _DOTTED.fullmatch(module) and _DOTTED.fullmatch(qualname)):
        raise PipelineError(
            f"{target!r} is not module:function",
            "name a Python module and a function in it, e.g. pipeline:train "
            "(a module path uses dots, not slashes)",
        )
    return module, qualname


@dataclass(frozen=True, slots=True)
class StepOptions:
    """How a step runs: retries with a delay, a timeout, resources, caching, trust."""

    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    memory: int | None = None  # bytes
    cache: bool = True
    trust: bool = False  # allow pickling outputs no safe flavor can store


class StepState(enum.StrEnum):
    """Where a step of a pipeline run stands; `cached` reused an earlier run's outputs and
    `skipped` never ran, as a step it needs failed."""

    RUNNING = "running"
    CACHED = "cached"
    FINISHED = "finished"
    FAILED = "failed"
    SKIPPED = "skipped"


class ArgumentKind(enum.StrEnum):
    OUTPUT = "output"
    DATASET = "dataset"
    VALUE = "value"


@dataclass(frozen=True, slots=True)
class Input:
    """One argument of a step: `kind` is "output" (of `step`, index `output`), "dataset"
    (`value` is the dataset name, `version` None for the latest), or "value" (JSON-able)."""

    kind: ArgumentKind
    step: str | None = None
    output: int = 0
    value: Any = None
    version: int | None = None

    def describe(self) -> str:
        if self.kind == ArgumentKind.OUTPUT:
            return f"{self.step}" + (f"[{self.output}]" if self.output else "")
        if self.kind == ArgumentKind.DATASET:
            return f"dataset/{self.value}" + (f":{self.version}" if self.version else "")
        return json.dumps(self.value)


@dataclass(frozen=True, slots=True)
class StepNode:
    name: str
    target: str  # "module:qualname" of the step function
    inputs: tuple[tuple[str, Input], ...]
    outputs: int = 1
    options: StepOptions = field(default_factory=StepOptions)

    @property
    def upstream(self) -> frozenset[str]:
        return frozenset(i.step for _, i in self.inputs if i.kind == ArgumentKind.OUTPUT and i.step)


@dataclass(frozen=True, slots=True)
class PipelineGraph:
    name: str
    target: str  # "module:qualname" of the pipeline function
    params: Mapping[str, Any]
    steps: tuple[StepNode, ...]
    metric: str | None = None  # what sweeps rank by, e.g. "accuracy"
    maximize: bool = True

    def step(self, name: str) -> StepNode:
        for node in self.steps:
            if node.name == name:
                return node
        raise PipelineError(f"pipeline {self.name!r} has no step {name!r}")


def order(steps: Sequence[StepNode]) -> list[StepNode]:
    """Steps in an order where each comes after everything it reads (Kahn's algorithm).

    Example:
        >>> [s.name for s in order(graph.steps)]  # doctest: +SKIP
        ['ingest', 'prepare', 'train', 'evaluate']
    """
    by_name = {s.name: s for s in steps}
    for node in steps:
        for name, source in node.inputs:
            if source.kind == ArgumentKind.OUTPUT and source.step not in by_name:
                raise PipelineError(
                    f"step {node.name!r} reads {name!r} from {source.step!r}, "
                    "which is not a step of this pipeline",
                    "pass the output of a step called in the same pipeline function",
                )
            if (
                source.kind == ArgumentKind.OUTPUT
                and source.output >= by_name[str(source.step)].outputs
            ):
                raise PipelineError(
                    f"step {node.name!r} reads output {source.output} of {source.step!r}, "
                    f"which has {by_name[str(source.step)].outputs}"
                )
    remaining = {s.name: set(s.upstream) for s in steps}
    done: list[StepNode] = []
    while remaining:
        ready = sorted(n for n, up in remaining.items() if not up)
        if not ready:
            cycle = " -> ".join(sorted(remaining))
            raise PipelineError(
                f"the steps {cycle} depend on each other in a cycle",
                "a step can only read outputs of steps that run before it",
            )
        for name in ready:
            done.append(by_name[name])
            del remaining[name]
        for up in remaining.values():
            up.difference_update(ready)
    return done


def downstream(steps: Sequence[StepNode], names: Iterable[str]) -> set[str]:
    """`names` and every step that reads from them, directly or not."""
    found = set(names)
    changed = True
    while changed:
        changed = False
        for node in steps:
            if node.name not in found and node.upstream & found:
                found.add(node.name)
                changed = True
    return found


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values, equal text, equal digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(
    source: str, inputs: Mapping[str, str], environment: str, options: StepOptions
) -> str:
    """What decides whether a step's earlier outputs can be reused.

    `source` digests the step's code (and the project code it calls); `inputs` maps each
    argument to a digest (an upstream output's digest, a dataset version's manifest digest, or
    the digest of a plain value); `environment` digests the installed packages. Retries and
    timeouts do not change what a step computes, so they are not part of the key.

    Example:
        >>> cache_key("ab" * 32, {"x": "cd" * 32}, "ef" * 32, StepOptions())[:8]  # doctest: +SKIP
        '5e1c0a7b'
    """
    body = canonical_json(
        {
            "source": source,
            "inputs": dict(inputs),
            "environment": environment,
            "trust": options.trust,
        }
    )
    return digest_bytes(body.encode())


def value_digest(value: Any) -> str:
    return digest_bytes(canonical_json(value).encode())
