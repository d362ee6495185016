"""`@mloop.step`, `@mloop.pipeline`, `mloop.dataset` and `mloop.notebook_step`: the pipeline DSL.

Calling a pipeline function runs it, in this project, on the local executor (or the one given),
and returns the result; `mloop run NAME` does the same from the shell.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.services.pipelines.dsl import PipelineFunction, dataset, step
from mloop.services.pipelines.notebook import notebook_step

if TYPE_CHECKING:
    from mloop.services.pipelines.runner import PipelineResult, StepEvent

# and `validate`, on first use
__all__ = ["RunnablePipeline", "dataset", "notebook_step", "pipeline", "step"]


class RunnablePipeline(PipelineFunction):
    """A pipeline function that runs when called: `train(depth=4)`."""

    def __call__(
        self,
        *,
        executor: str | None = None,
        use_cache: bool = True,
        project: str | Path | None = None,
        on_event: Callable[[StepEvent], None] | None = None,
        **params: Any,
    ) -> PipelineResult:
        from mloop.sdk import _open_project

        pipelines = _open_project(project).pipelines
        return pipelines.run_graph(
            self.build(params), executor=executor, use_cache=use_cache, on_event=on_event
        )


def pipeline(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    metric: str | None = None,
    maximize: bool = True,
) -> Any:
    """Mark a function whose body wires steps together; its params are the pipeline's params.

    `metric` names the metric sweeps rank trials by (`maximize=False` for a loss). Calling the
    decorated function runs the pipeline.

    Example:
        >>> @mloop.pipeline(metric="accuracy")  # doctest: +SKIP
        ... def train(depth: int = 5):
        ...     evaluate(fit(prepare(mloop.dataset("sales")), depth=depth))
        >>> train(depth=3).ok  # doctest: +SKIP
        True
    """

    def wrap(f: Callable[..., Any]) -> RunnablePipeline:
        return RunnablePipeline(f, name, metric, maximize)

    return wrap(fn) if fn is not None else wrap


def __getattr__(name: str) -> object:
    if name == "validate":  # imports pandas and pandera: loaded only when a pipeline uses it
        from mloop.services.pipelines.builtins import validate

        return validate
    raise AttributeError(name)
