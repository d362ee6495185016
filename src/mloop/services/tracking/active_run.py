"""A run in progress: its logging buffered into large transactions, and its one end.

Per-call cost is an append to a list under a lock; values reach the store when the buffer is
large, when it is a few seconds old, at `flush()`, at the end of the run and at interpreter exit.
One transaction of thousands of rows costs about what one row costs.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.domain.run import InputKind, Metric, Run, RunInput, RunOutput, RunStatus
from mloop.errors import Conflict, InvalidInput, InvalidPath

if TYPE_CHECKING:
    from mloop.services.tracking.runs import RunService

FLUSH_ROWS = 20_000
FLUSH_SECONDS = 5.0
MAX_KEY = 250


def check_key(key: object, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise InvalidInput(
            f"invalid {what} key {key!r}", f"{what} keys are non-empty text of at most {MAX_KEY}"
        )
    return key


def _as_float(key: str, value: object) -> float | None:
    from numbers import Real

    if isinstance(value, bool) or not isinstance(value, Real | float | int):
        try:
            value = float(value)  # type: ignore[arg-type]  # numpy scalars, Decimal, …
        except (TypeError, ValueError):
            raise InvalidInput(
                f"metric {key!r} must be a number, not {value!r}", "log text as a tag"
            ) from None
    number = float(value)
    return None if math.isnan(number) else number


def _failure(exc: BaseException) -> str:
    """What a failed run records as its error: the end of the traceback."""
    import traceback

    return "".join(traceback.format_exception(exc))[-4000:]


class ActiveRun:
    """A run in progress. Use it as a context manager, or call `end()`."""

    def __init__(self, runs: RunService, run: Run, owned: bool = True) -> None:
        self._runs = runs
        self._owned = owned
        # A folder for files a step returns: set by the pipeline worker, which stores the
        # step's outputs before removing it.
        self.workdir: Path | None = None
        self.id = run.id
        self.name = run.name
        self.parent_id = run.parent_id
        self.code = run.code  # what child runs inherit, without reading the run back
        self.environment = run.environment
        self.pipeline = run.pipeline  # what the runner gives the steps of a pipeline run
        self._lock = threading.Lock()
        self._params: list[tuple[str, str]] = []
        self._tags: list[tuple[str, str]] = []
        self._metrics: list[Metric] = []
        self._inputs: list[RunInput] = []
        self._outputs: list[RunOutput] = []
        self._steps: dict[str, int] = {}
        self._param_values: dict[str, str] = dict(run.params)
        self._last_flush = time.monotonic()
        self.ended = False
        if owned:
            atexit.register(self._at_exit)

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, name={self.name!r})"

    # logging ------------------------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params are fixed once logged: a different value for a logged key is a Conflict."""
        with self._lock:
            for key, value in params.items():
                text = str(value)
                old = self._param_values.get(check_key(key, "param"))
                if old is not None and old != text:
                    raise Conflict(
                        f"param {key!r} is already {old!r}; it cannot become {text!r}",
                        "params are fixed once logged; use a metric or a tag for changing values",
                    )
                if old is None:
                    self._param_values[key] = text
                    self._params.append((key, text))

    def set_tag(self, key: str, value: Any) -> None:
        with self._lock:
            self._tags.append((check_key(key, "tag"), str(value)))

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record one value; `step` defaults to one more than the key's previous step."""
        if type(key) is not str or not key or len(key) > MAX_KEY:
            check_key(key, "metric")
        number = value if type(value) is float and value == value else _as_float(key, value)
        with self._lock:
            if step is None:
                step = self._steps.get(key, -1) + 1
            self._steps[key] = step
            self._metrics.append(Metric(key, number, step, time.time()))  # type: ignore[arg-type]
            if len(self._metrics) >= FLUSH_ROWS:
                self._flush_locked()
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def log_artifact(self, path: str | Path, name: str | None = None) -> list[RunOutput]:
        """Store a file (or every file under a folder) and record it as an output of the run."""
        from mloop.domain.names import check_relative_path  # not needed to start a run

        source = Path(path)
        if not source.exists():
            raise InvalidPath(f"cannot log artifact: {source} does not exist", "check the path")
        base = check_relative_path(name if name is not None else source.name)
        if source.is_file():
            files = [(str(source), base)]
        else:  # links inside may lead within the project or the folder, nowhere else
            from mloop.store.walk import Boundary, walk_files

            top = os.path.abspath(source)
            within = Boundary.of([self._runs.root, top], what=f"the project or {source}")
            files = [(p, f"{base}/{p[len(top) + 1 :]}") for p in walk_files(top, within)]
        outputs = []
        for file, rel in sorted(files, key=lambda item: item[1]):
            digest, size, _ = self._runs.artifacts.put_path(file)
            outputs.append(RunOutput(check_relative_path(rel), digest, size))
        # Written at once, not buffered: gc removes objects nothing refers to after a grace
        # period, and a long run must not leave its early artifacts unreferenced that long.
        self._runs.artifacts.sync()
        self._runs.metadata.runs.write_data(self.id, outputs=outputs)
        return outputs

    def log_input(self, kind: InputKind | str, ref: str, name: str | None = None) -> None:
        with self._lock:
            self._inputs.append(RunInput(InputKind(kind), ref, name))

    # flushing and ending ------------------------------------------------------------------
    def _buffered(self) -> dict[str, list[Any]]:
        """Everything logged since the last write, as `write_run_data` takes it."""
        return {
            "params": self._params,
            "tags": self._tags,
            "metrics": self._metrics,
            "inputs": self._inputs,
            "outputs": self._outputs,
        }

    def _clear_locked(self) -> None:
        self._params, self._tags, self._metrics, self._inputs, self._outputs = [], [], [], [], []
        self._last_flush = time.monotonic()

    def _flush_locked(self) -> None:
        buffered = self._buffered()
        if not any(buffered.values()):
            return
        if self._outputs:
            self._runs.artifacts.sync()
        self._runs.metadata.runs.write_data(self.id, **buffered)
        self._clear_locked()

    def flush(self) -> None:
        """Write everything logged so far, in one transaction."""
        with self._lock:
            self._flush_locked()

    def end(self, status: RunStatus = RunStatus.FINISHED, error: str | None = None) -> None:
        """Write what is buffered and end the run, in one transaction (one commit to wait for).

        An attached run (created by another process) is only flushed: its creator ends it.
        """
        if self.ended:
            return
        if not self._owned:
            try:
                self.flush()
            finally:
                self.ended = True
            return
        with self._lock:
            self.ended = True
            buffered = self._buffered()
            self._clear_locked()
        atexit.unregister(self._at_exit)
        try:
            if buffered["outputs"]:
                self._runs.artifacts.sync()
            self._runs.end(self.id, status, error, **buffered)
        except BaseException:
            # What was logged last could not be written (a param stored with another value,
            # a step out of range, a store error): the run still ends, as it did when a flush
            # before the end failed, and the error is raised.
            with contextlib.suppress(Exception):
                self._runs.end(self.id, status, error)
            raise

    def _at_exit(self) -> None:
        """A run still open at interpreter exit ends with the script: failed if an uncaught
        exception is ending it (Python has just printed it and set `sys.last_value`)."""
        if self.ended:
            return
        failure = getattr(sys, "last_value", None)
        if failure is None:
            self.end(RunStatus.FINISHED)
        else:
            self.end(RunStatus.FAILED, _failure(failure))

    @property
    def run(self) -> Run:
        """The run as stored, after writing what is buffered."""
        self.flush()
        return self._runs.metadata.runs.get(self.id)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.end(RunStatus.FINISHED)
        else:
            self.end(RunStatus.FAILED, _failure(exc))
