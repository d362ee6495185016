"""Starting, logging to and ending runs, with writes buffered into large transactions.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.domain.event import Event
from mloop.domain.lineage import CodeVersion, Environment
from mloop.domain.run import Liveness, Metric, Run, RunInput, RunOutput, RunStatus
from mloop.errors import Conflict, InvalidInput, InvalidPath, NotFound
from mloop.services.tracking.heartbeat import HEARTBEATS, HOST, LOST_AFTER, Heartbeats, liveness

if TYPE_CHECKING:
    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.metadata.protocol import MetadataStore

FLUSH_ROWS = 20_000
FLUSH_SECONDS = 5.0
MAX_KEY = 250


def _check_key(key: object, what: str) -> str:
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


def new_run_id() -> str:
    """128 random bits as 32 hex digits, laid out as uuid4 (as every run id so far)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


class ActiveRun:
    """A run in progress. Use it as a context manager, or call `end()`."""

    def __init__(self, tracker: Tracker, run: Run, owned: bool = True) -> None:
        self._tracker = tracker
        self._owned = owned
        # A folder for files a step returns: set by the pipeline worker, which stores the
        # step's outputs before removing it.
        self.workdir: Path | None = None
        self.id = run.id
        self.name = run.name
        self.parent_id = run.parent_id
        self.code = run.code  # what child runs inherit, without reading the run back
        self.environment = run.environment
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
                old = self._param_values.get(_check_key(key, "param"))
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
            self._tags.append((_check_key(key, "tag"), str(value)))

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record one value; `step` defaults to one more than the key's previous step."""
        if type(key) is not str or not key or len(key) > MAX_KEY:
            _check_key(key, "metric")
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
            within = Boundary.of([self._tracker.root, top], what=f"the project or {source}")
            files = [(p, f"{base}/{p[len(top) + 1 :]}") for p in walk_files(top, within)]
        outputs = []
        for file, rel in sorted(files, key=lambda item: item[1]):
            digest, size, _ = self._tracker.artifacts.put_path(file)
            outputs.append(RunOutput(check_relative_path(rel), digest, size))
        # Written at once, not buffered: gc removes objects nothing refers to after a grace
        # period, and a long run must not leave its early artifacts unreferenced that long.
        self._tracker.artifacts.sync()
        self._tracker.metadata.write_run_data(self.id, outputs=outputs)
        return outputs

    def log_input(self, kind: str, ref: str, name: str | None = None) -> None:
        with self._lock:
            self._inputs.append(RunInput(kind, ref, name))

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
            self._tracker.artifacts.sync()
        self._tracker.metadata.write_run_data(self.id, **buffered)
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
                self._tracker.artifacts.sync()
            self._tracker.end_run(self.id, status, error, **buffered)
        except BaseException:
            # What was logged last could not be written (a param stored with another value,
            # a step out of range, a store error): the run still ends, as it did when a flush
            # before the end failed, and the error is raised.
            with contextlib.suppress(Exception):
                self._tracker.end_run(self.id, status, error)
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
        return self._tracker.metadata.get_run(self.id)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.end(RunStatus.FINISHED)
        else:
            self.end(RunStatus.FAILED, _failure(exc))


class Tracker:
    """Start runs and read them back."""

    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: ArtifactStore | Callable[[], ArtifactStore],
        actor: str,
        root: Path,
        *,
        heartbeats: Heartbeats = HEARTBEATS,
        lost_after: float = LOST_AFTER,
    ) -> None:
        self.metadata = metadata
        self._artifacts = artifacts
        self.actor = actor
        self.root = root
        self.heartbeats = heartbeats
        self.lost_after = lost_after
        self._environment: Environment | None = None
        self._listing = b""
        self._stored_environments: set[str] = set()

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store, opened on first use: a run that stores no file never opens it."""
        if callable(self._artifacts):
            self._artifacts = self._artifacts()
        return self._artifacts

    def environment(self) -> Environment:
        """This process's environment, captured once per tracker (and listed once per change
        of the environment on this machine: see `capture_environment`)."""
        if self._environment is None:
            from mloop.services.tracking.capture import capture_environment, default_cache_dir

            self._environment, self._listing = capture_environment(default_cache_dir())
        return self._environment

    def _environment_to_store(self) -> Environment | None:
        """The environment when the store lacks it, else None.

        The store has it after the first run in it from this environment; until then, its
        package listing is stored and made durable here, and its row is written with the run
        that refers to it, in one transaction.
        """
        env = self.environment()
        if env.digest in self._stored_environments:
            return None
        try:
            self.metadata.get_environment(env.digest)
        except NotFound:
            self.artifacts.put_bytes(self._listing)
            self.artifacts.sync()
            return env
        self._stored_environments.add(env.digest)
        return None

    def start_run(
        self,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent: ActiveRun | None = None,
    ) -> ActiveRun:
        """Create a run, capturing code and environment (a nested run shares its parent's).

        The run, its first params and tags, its start event and (the first time) its
        environment are written in one transaction.

        Example:
            >>> with tracker.start_run("baseline", params={"lr": 0.1}) as run:  # doctest: +SKIP
            ...     run.log_metric("loss", 0.3)
        """
        run_id = new_run_id()
        code: CodeVersion | None
        new_environment: Environment | None = None
        if parent is not None:
            code, env_digest = parent.code, parent.environment
        else:
            from mloop.services.tracking.capture import capture_code

            code = capture_code(self.root)
            new_environment = self._environment_to_store()
            env_digest = self.environment().digest
        started = time.time()
        run = Run(
            id=run_id,
            name=name or f"run-{run_id[:8]}",
            status=RunStatus.RUNNING,
            started=started,
            parent_id=parent.id if parent else None,
            user=self.actor,
            code=code,
            environment=env_digest,
            params={_check_key(k, "param"): str(v) for k, v in (params or {}).items()},
            tags={_check_key(k, "tag"): str(v) for k, v in (tags or {}).items()},
            pid=os.getpid(),
            host=HOST,
            heartbeat=started,
        )
        details = {"name": run.name, "parent": run.parent_id}
        event = self._event("run.started", run_id, details)
        self.metadata.create_run(run, event, environment=new_environment)
        if new_environment is not None:
            self._stored_environments.add(new_environment.digest)
        self.heartbeats.add(self.metadata, run_id)
        return ActiveRun(self, run)

    def attach(self, run_id: str) -> ActiveRun:
        """An ActiveRun for a run created elsewhere (a step run a pipeline runner made), so
        code running inside it can log; the creator ends it."""
        return ActiveRun(self, self.metadata.get_run(run_id), owned=False)

    def end_run(
        self, run_id: str, status: RunStatus, error: str | None = None, **logged: Any
    ) -> None:
        """End a run. `logged` (what it logged last: params=…, tags=…, metrics=…, inputs=…,
        outputs=…, as `write_run_data` takes them) is written in the same transaction."""
        action = "run.finished" if status is RunStatus.FINISHED else f"run.{status.value}"
        event = self._event(action, run_id, {"status": status.value})
        try:
            self.metadata.end_run(run_id, status, time.time(), error, event, **logged)
        finally:
            self.heartbeats.discard(self.metadata, run_id)

    def _event(
        self, action: str, run_id: str, details: Mapping[str, Any], reason: str | None = None
    ) -> Event:
        return Event(time.time(), self.actor, action, f"run/{run_id}", reason, details)

    def liveness(self) -> Liveness:
        return liveness(self.metadata, self.lost_after)

    def get_run(self, ref: str) -> Run:
        """The run, `lost` if it is stored as running but its process is gone."""
        return self.metadata.get_run(ref.removeprefix("run/"), self.liveness())

    def find_runs(
        self,
        filter: str | None = None,
        sort: str | None = None,
        limit: int | None = None,
        *,
        deleted: bool = False,
    ) -> list[Run]:
        """Runs matching a filter expression, sorted, at most `limit` of them; deleted runs
        (only) with `deleted`."""
        from mloop.domain.query import parse_filter, parse_sort

        where = parse_filter(filter) if filter else None
        order = parse_sort(sort) if sort else ()
        return self.metadata.find_runs(
            where, order, limit, liveness=self.liveness(), deleted=deleted
        )

    def count_runs(self, filter: str | None = None, *, deleted: bool = False) -> int:
        from mloop.domain.query import parse_filter

        where = parse_filter(filter) if filter else None
        return self.metadata.count_runs(where, liveness=self.liveness(), deleted=deleted)

    # marking runs failed, deleting and restoring them ------------------------------------
    def fail(self, ref: str, reason: str | None = None, *, force: bool = False) -> list[Run]:
        """Mark a lost run failed, with the lost runs below it (a killed pipeline's steps).

        A run whose process still beats is refused unless `force`: failing it does not stop
        the process, which may still end it as finished.

        Example:
            >>> [r.id[:8] for r in tracker.fail("3f2a", reason="OOM-killed")]  # doctest: +SKIP
            ['3f2a9c1e', '77b0d2aa']
        """
        rule = self.liveness()
        run = self.metadata.get_run(ref.removeprefix("run/"), rule)
        if run.status is RunStatus.RUNNING and not force:
            raise Conflict(
                f"run {run.id[:12]} is still running: process {run.pid} on {run.host} sent a "
                f"heartbeat {time.time() - run.last_seen:.0f} s ago",
                f"stop that process, or mark the run failed anyway: mloop runs fail {run.id[:12]} "
                "--force",
            )
        if run.status not in (RunStatus.RUNNING, RunStatus.LOST):
            raise Conflict(f"run {run.id[:12]} has ended already ({run.status.value})")
        below = self._lost_below(run.id, rule)
        return [r for r in (run, *below) if self._fail_one(r, reason)]

    def fail_lost(self, reason: str | None = None) -> list[Run]:
        """Mark every lost run failed; returns them (a run that ended meanwhile is left)."""
        from mloop.domain.query import parse_filter

        lost = self.metadata.find_runs(
            parse_filter("status = lost"), liveness=self.liveness(), limit=None
        )
        return [r for r in lost if self._fail_one(r, reason)]

    def _lost_below(self, run_id: str, rule: Liveness) -> list[Run]:
        from mloop.domain.query import parse_filter

        lost = self.metadata.find_runs(parse_filter("status = lost"), liveness=rule)
        below: list[Run] = []
        parents = {run_id}
        while True:
            found = [r for r in lost if r.parent_id in parents and r.id not in parents]
            if not found:
                return below
            below.extend(found)
            parents.update(r.id for r in found)

    def _fail_one(self, run: Run, reason: str | None) -> bool:
        lost = run.status is RunStatus.LOST
        # A lost run ended when it was last seen alive; one failed by force, now.
        ended = run.last_seen if lost else time.time()
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.last_seen))
        why = reason or (
            f"its process (pid {run.pid} on {run.host}) stopped; last heartbeat {seen}"
            if lost
            else "marked failed while its process was still running"
        )
        details = {"status": "failed", "was": run.status.value, "pid": run.pid, "host": run.host}
        event = self._event("run.failed", run.id, details, reason)
        try:
            self.metadata.end_run(
                run.id,
                RunStatus.FAILED,
                ended,
                f"marked failed by {self.actor}: {why}",
                event,
                only_running=True,
            )
        except Conflict:  # it ended meanwhile, on its own
            return False
        return True

    def delete(self, ref: str, reason: str | None = None) -> list[str]:
        """Delete a run and the runs below it (softly: `restore` brings them back until
        `mloop gc` purges them after its grace period). Returns their ids.

        Example:
            >>> tracker.delete("3f2a", reason="smoke test")  # doctest: +SKIP
            ['3f2a9c1e…', '77b0d2aa…']
        """
        run = self.get_run(ref)
        if run.status is RunStatus.LOST:
            raise Conflict(
                f"run {run.id[:12]} is lost (its process is gone) and has not ended",
                f"mark it failed first: mloop runs fail {run.id[:12]}",
            )
        event = self._event("run.deleted", run.id, {"root": run.id}, reason)
        return self.metadata.delete_run(run.id, time.time(), event)

    def restore(self, ref: str, reason: str | None = None) -> list[str]:
        """Undo `delete` for a run and the runs deleted with it; returns their ids."""
        run = self.metadata.get_run(ref.removeprefix("run/"))
        event = self._event("run.restored", run.id, {"root": run.id}, reason)
        return self.metadata.restore_run(run.id, event)

    def metric_history(self, ref: str, key: str) -> list[Metric]:
        run = self.get_run(ref)
        if key not in run.metrics:
            raise NotFound(f"run {run.id[:12]} has no metric {key!r}", "see `mloop runs show`")
        return self.metadata.metric_history(run.id, key)
