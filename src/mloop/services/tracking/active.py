"""The active run of the current thread or asyncio task: a stack held in a ContextVar.

It lives here rather than in the SDK because step code runs in workers (other processes, Ray
tasks) that activate the step's run for `mloop.log_metric` inside the step, and workers are
services. Each thread and task has its own stack; a run started while another is active is its
child.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mloop.services.tracking.active_run import ActiveRun

# Handed to a notebook step's kernel so the SDK there attaches to the step's run (here, not in
# the notebook module, so the SDK's look for them imports nothing). Outside the MLOOP_ prefix on
# purpose: they are not settings (config.py refuses unknown MLOOP_* names) but a hand-over from
# a parent process, as `_PYTHON_*` names are for Python.
RUN_ID_ENV = "_MLOOP_RUN_ID"
ROOT_ENV = "_MLOOP_PROJECT_ROOT"

_active: ContextVar[tuple[ActiveRun, ...]] = ContextVar("mloop_active_runs", default=())


def current() -> ActiveRun | None:
    """The innermost active run, or None."""
    stack = _active.get()
    return stack[-1] if stack else None


def push(run: ActiveRun) -> None:
    _active.set((*_active.get(), run))


def remove(run: ActiveRun) -> None:
    _active.set(tuple(r for r in _active.get() if r is not run))
