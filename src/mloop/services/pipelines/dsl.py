"""The pipeline DSL: `@step`, `@pipeline`, `dataset()`, and tracing a pipeline into a graph.

Tracing calls the pipeline function once with its params: while it runs, calling a step does
not execute it but records a StepNode and returns placeholders for its outputs, so the data flow
written in plain Python becomes the DAG. Outside a pipeline a step is an ordinary function, which
keeps steps testable and usable from a notebook. The graph being built is found through a
ContextVar, for the same reason the active run is: step objects are module-level and shared.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from mloop.domain.pipeline import ArgumentKind, Input, PipelineGraph, StepNode, StepOptions, order
from mloop.errors import PipelineError

_STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")


class StepOutput:
    """Stands for a step's output while the pipeline is traced; real only when it runs."""

    __slots__ = ("index", "step")

    def __init__(self, step: str, index: int) -> None:
        self.step = step
        self.index = index

    def __repr__(self) -> str:
        return f"<output {self.index} of step {self.step!r}>"

    def _misuse(self, *args: Any, **kwargs: Any) -> Any:
        raise PipelineError(
            f"the output of step {self.step!r} is not known until the pipeline runs",
            "pass it to another step, and compute with it inside that step",
        )

    __bool__ = __iter__ = __len__ = __getitem__ = __getattr__ = _misuse
    __add__ = __sub__ = __mul__ = __truediv__ = __lt__ = __gt__ = __le__ = __ge__ = _misuse


class DatasetInput:
    """A dataset version as a step input; the latest version is fixed when the run starts."""

    __slots__ = ("name", "version")

    def __init__(self, name: str, version: int | None = None) -> None:
        from mloop.domain.names import check_name

        self.name = check_name(name, "dataset name")
        self.version = version


def dataset(name: str, version: int | None = None) -> DatasetInput:
    """Use a dataset version as a step's input (`None`: the latest when the run starts).

    A step receiving it gets a LocalDataset (`.to_pandas()`, `.path()`); the version's content
    digest is part of the step's cache key, so new data means the step runs again.

    Example:
        >>> raw = ingest(mloop.dataset("sales"))  # doctest: +SKIP
    """
    return DatasetInput(name, version)


def _output_types(fn: Callable[..., Any]) -> tuple[Any, ...]:
    """Declared output types from the return annotation: `tuple[A, B]` is two outputs,
    `None` none, anything else (or nothing) one."""
    try:
        hint = typing.get_type_hints(fn).get("return", inspect.Signature.empty)
    except Exception:  # annotations that do not evaluate: fall back to one untyped output
        return (None,)
    if hint is None or hint is type(None):
        return ()
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if args and args[-1] is not Ellipsis:
            return tuple(args)
    if hint is inspect.Signature.empty:
        return (None,)
    return (hint,)


def target_of(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


class StepFunction:
    """A function marked `@step`; call it inside a `@pipeline` to add it to the graph."""

    def __init__(self, fn: Callable[..., Any], name: str | None, options: StepOptions) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name or fn.__name__
        if not _STEP_NAME.fullmatch(self.name):
            raise PipelineError(f"invalid step name {self.name!r}", "use letters, digits, - and _")
        self.options = options
        self.signature = inspect.signature(fn)
        self.output_types = _output_types(fn)

    @property
    def target(self) -> str:
        return target_of(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _building.get()
        if builder is None:
            return self.fn(*args, **kwargs)
        return builder.add(self, args, kwargs)


def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    timeout: float | None = None,
    cpus: float = 1.0,
    gpus: float = 0.0,
    memory: int | None = None,
    cache: bool = True,
    trust: bool = False,
) -> Any:
    """Mark a function as a pipeline step: `@mloop.step` or `@mloop.step(retries=2, timeout=60)`.

    Inputs and outputs are typed by the annotations: DataFrames travel as Parquet, arrays as
    .npy, models through their flavor, paths as files, plain values as JSON. `trust=True` lets
    the step load inputs that need trust (pickles, Python models, skops types off mloop's
    audited list) and pickle outputs no safe flavor can store: only for values you would run
    as code.

    Example:
        >>> @mloop.step(retries=2)  # doctest: +SKIP
        ... def prepare(raw: LocalDataset) -> pd.DataFrame:
        ...     return raw.to_pandas().dropna()
    """
    if retries < 0 or retry_delay < 0 or (timeout is not None and timeout <= 0):
        raise PipelineError("retries and retry_delay must be >= 0 and timeout > 0")
    options = StepOptions(retries, retry_delay, timeout, cpus, gpus, memory, cache, trust)

    def wrap(f: Callable[..., Any]) -> StepFunction:
        return StepFunction(f, name, options)

    return wrap(fn) if fn is not None else wrap


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[StepNode] = []
        self.names: set[str] = set()

    def _unique(self, name: str) -> str:
        if name not in self.names:
            return name
        n = 2
        while f"{name}-{n}" in self.names:
            n += 1
        return f"{name}-{n}"

    def add(self, fn: StepFunction, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            bound = fn.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineError(
                f"step {fn.name!r} cannot be called like this: {exc}",
                f"its signature is {fn.name}{fn.signature}",
            ) from None
        inputs = tuple((arg, _input(fn.name, arg, value)) for arg, value in bound.arguments.items())
        name = self._unique(fn.name)
        self.names.add(name)
        self.nodes.append(StepNode(name, fn.target, inputs, len(fn.output_types), fn.options))
        if len(fn.output_types) == 1:
            return StepOutput(name, 0)
        if not fn.output_types:
            return None
        return tuple(StepOutput(name, i) for i in range(len(fn.output_types)))


def _input(step_name: str, arg: str, value: Any) -> Input:
    if isinstance(value, StepOutput):
        return Input(ArgumentKind.OUTPUT, step=value.step, output=value.index)
    if isinstance(value, DatasetInput):
        return Input(ArgumentKind.DATASET, value=value.name, version=value.version)
    if isinstance(value, tuple | list) and any(isinstance(v, StepOutput) for v in value):
        raise PipelineError(
            f"step {step_name!r} got step outputs inside a {type(value).__name__} for {arg!r}",
            "pass each step output as its own argument",
        )
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise PipelineError(
            f"step {step_name!r} got a {type(value).__name__} for {arg!r}, which is neither a "
            "step output, a dataset nor a JSON value",
            "build such values inside a step and pass that step's output",
        ) from None
    return Input(ArgumentKind.VALUE, value=value)


_building: ContextVar[_Builder | None] = ContextVar("mloop_pipeline_builder", default=None)


class PipelineFunction:
    """A function marked `@pipeline`: its body wires steps; `build` traces it into a graph."""

    def __init__(
        self, fn: Callable[..., Any], name: str | None, metric: str | None, maximize: bool
    ) -> None:
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.fn = fn
        self.name = name or fn.__name__
        self.metric = metric
        self.maximize = maximize
        self.signature = inspect.signature(fn)

    @property
    def target(self) -> str:
        return target_of(self.fn)

    @property
    def defaults(self) -> dict[str, Any]:
        return {
            k: p.default
            for k, p in self.signature.parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    def build(self, params: Mapping[str, Any] | None = None) -> PipelineGraph:
        """Trace the pipeline with `params` (defaults for the rest) into a validated graph."""
        given = dict(params or {})
        unknown = sorted(set(given) - set(self.signature.parameters))
        if unknown:
            takes = ", ".join(self.signature.parameters) or "no params"
            raise PipelineError(
                f"pipeline {self.name!r} has no param {unknown[0]!r}", f"it takes: {takes}"
            )
        try:
            bound = self.signature.bind(**given)
        except TypeError as exc:
            raise PipelineError(
                f"pipeline {self.name!r}: {exc}", "pass it with -p NAME=VALUE"
            ) from None
        bound.apply_defaults()
        builder = _Builder()
        token = _building.set(builder)
        try:
            self.fn(**bound.arguments)
        finally:
            _building.reset(token)
        if not builder.nodes:
            raise PipelineError(
                f"pipeline {self.name!r} calls no steps", "call @mloop.step functions in it"
            )
        graph = PipelineGraph(
            self.name,
            self.target,
            dict(bound.arguments),
            tuple(builder.nodes),
            self.metric,
            self.maximize,
        )
        order(graph.steps)
        return graph


def pipeline(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    metric: str | None = None,
    maximize: bool = True,
) -> Any:
    """Mark a function whose body wires steps together; its params are the pipeline's params.

    `metric` names the metric sweeps rank trials by (`maximize=False` for a loss).

    Example:
        >>> @mloop.pipeline(metric="accuracy")  # doctest: +SKIP
        ... def train(depth: int = 5):
        ...     model = fit(prepare(mloop.dataset("sales")), depth=depth)
        ...     evaluate(model)
    """

    def wrap(f: Callable[..., Any]) -> PipelineFunction:
        return PipelineFunction(f, name, metric, maximize)

    return wrap(fn) if fn is not None else wrap
