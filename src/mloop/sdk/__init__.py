"""The Python SDK (layer 4): fluent functions over the project found from the current folder.

The active run lives in a ContextVar (`services/tracking/active.py`), so each thread and each
asyncio task sees its own; a run started while another is active becomes its child.

    import mloop

    with mloop.start_run("baseline", params={"lr": 0.1}):
        mloop.log_metric("loss", 0.25)
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.errors import InvalidInput
from mloop.services.tracking import active

if TYPE_CHECKING:
    from mloop.domain.run import Run, RunOutput
    from mloop.project import Project
    from mloop.services.tracking.active_run import ActiveRun

# The project last opened in this thread or task, reused while its settings are unchanged, so
# a notebook starting hundreds of runs opens the stores (and digests the environment) once.
_project: ContextVar[Project | None] = ContextVar("mloop_project", default=None)


def _open_project(project: str | Path | None = None) -> Project:
    from mloop.config import load_settings
    from mloop.project import Project, find_root

    settings = load_settings(find_root(Path(project) if project is not None else None))
    cached = _project.get()
    if cached is not None and cached.settings == settings:
        return cached
    opened = Project(settings)
    _project.set(opened)
    return opened


class RunHandle:
    """What `start_run` returns: the active run, ended (and deactivated) by `with` or `end()`."""

    def __init__(self, run: ActiveRun) -> None:
        self._active = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._active, name)

    @property
    def id(self) -> str:
        return self._active.id

    def end(self, status: str = "finished", error: str | None = None) -> None:
        from mloop.domain.run import RunStatus

        try:
            self._active.end(RunStatus(status), error)
        finally:
            active.remove(self._active)

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self._active.__exit__(exc_type, exc, tb)
        finally:
            active.remove(self._active)


def start_run(
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    project: str | Path | None = None,
) -> RunHandle:
    """Start a run (a child of the active run, if there is one) and make it active.

    Example:
        >>> with mloop.start_run("baseline", params={"lr": 0.1}) as run:  # doctest: +SKIP
        ...     mloop.log_metric("loss", 0.25)
    """
    parent = active_run()
    if parent is not None and project is None:
        tracker = parent._runs
    else:
        tracker = _open_project(project).runs
    run = tracker.start(name, params=params, tags=tags, parent=parent)
    active.push(run)
    return RunHandle(run)


def active_run() -> ActiveRun | None:
    """The run logging calls go to in this thread or task, or None.

    With no run active, a run handed down by the parent process is attached and made active:
    a notebook step's kernel finds its step run's id in its environment, so `mloop.log_metric`
    in a cell lands on the step's run.
    """
    run = active.current()
    return run if run is not None else _handed_down()


def _handed_down() -> ActiveRun | None:
    import os

    run_id = os.environ.get(active.RUN_ID_ENV)
    if not run_id:
        return None
    import atexit

    run = _open_project(os.environ.get(active.ROOT_ENV)).runs.attach(run_id)
    atexit.register(run.flush)  # an attached run is not ended here, so nothing else flushes it
    active.push(run)
    return run


def _require() -> ActiveRun:
    run = active_run()
    if run is None:
        raise InvalidInput("no active run to log to", "wrap the code in `with mloop.start_run():`")
    return run


def end_run(status: str = "finished") -> None:
    """End the active run (for code that does not use `with`)."""
    RunHandle(_require()).end(status)


def log_param(key: str, value: Any) -> None:
    _require().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _require().log_params(params)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Log one metric value; `step` defaults to the key's previous step plus one."""
    (active.current() or _require()).log_metric(key, value, step)  # the hot path: one lookup


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    _require().log_metrics(metrics, step)


def set_tag(key: str, value: Any) -> None:
    _require().set_tag(key, value)


def log_artifact(path: str | Path, name: str | None = None) -> list[RunOutput]:
    """Store a file or folder as an output of the active run, under `name` (default: its name)."""
    return _require().log_artifact(path, name)


def get_run(ref: str, project: str | Path | None = None) -> Run:
    """A stored run by id (or unique id prefix)."""
    return _open_project(project).runs.get(ref)
