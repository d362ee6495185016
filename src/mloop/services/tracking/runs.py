"""Starting runs (capturing their code and environment), reading them back, and marking them
failed, deleted or restored. A run in progress is an `ActiveRun` (active_run.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.domain.event import Event
from mloop.domain.lineage import CodeVersion, Environment
from mloop.domain.run import Liveness, Metric, Run, RunKind, RunStatus
from mloop.errors import Conflict, NotFound
from mloop.services.tracking.active_run import ActiveRun, check_key
from mloop.services.tracking.heartbeat import HEARTBEATS, HOST, LOST_AFTER, Heartbeats, liveness

if TYPE_CHECKING:
    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.metadata.protocol import MetadataStore


def new_run_id() -> str:
    """128 random bits as 32 hex digits, laid out as uuid4 (as every run id so far)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


class RunService:
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
            self.metadata.environments.get(env.digest)
        except NotFound:
            self.artifacts.put_bytes(self._listing)
            self.artifacts.sync()
            return env
        self._stored_environments.add(env.digest)
        return None

    def start(
        self,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent: ActiveRun | None = None,
        *,
        kind: RunKind = RunKind.RUN,
        pipeline: str | None = None,
    ) -> ActiveRun:
        """Create a run, capturing code and environment (a nested run shares its parent's);
        `kind` and `pipeline` are set by the pipeline runner and sweeps.

        The run, its first params and tags, its start event and (the first time) its
        environment are written in one transaction.

        Example:
            >>> with tracker.start("baseline", params={"lr": 0.1}) as run:  # doctest: +SKIP
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
            params={check_key(k, "param"): str(v) for k, v in (params or {}).items()},
            tags={check_key(k, "tag"): str(v) for k, v in (tags or {}).items()},
            pid=os.getpid(),
            host=HOST,
            heartbeat=started,
            kind=kind,
            pipeline=pipeline,
        )
        details = {"name": run.name, "parent": run.parent_id}
        event = self._event("run.started", run_id, details)
        self.metadata.runs.create(run, event, environment=new_environment)
        if new_environment is not None:
            self._stored_environments.add(new_environment.digest)
        self.heartbeats.add(self.metadata, run_id)
        return ActiveRun(self, run)

    def attach(self, run_id: str) -> ActiveRun:
        """An ActiveRun for a run created elsewhere (a step run a pipeline runner made), so
        code running inside it can log; the creator ends it."""
        return ActiveRun(self, self.metadata.runs.get(run_id), owned=False)

    def end(self, run_id: str, status: RunStatus, error: str | None = None, **logged: Any) -> None:
        """End a run. `logged` (what it logged last: params=…, tags=…, metrics=…, inputs=…,
        outputs=…, as `write_run_data` takes them) is written in the same transaction."""
        action = "run.finished" if status is RunStatus.FINISHED else f"run.{status.value}"
        event = self._event(action, run_id, {"status": status.value})
        try:
            self.metadata.runs.end(run_id, status, time.time(), error, event, **logged)
        finally:
            self.heartbeats.discard(self.metadata, run_id)

    def _event(
        self, action: str, run_id: str, details: Mapping[str, Any], reason: str | None = None
    ) -> Event:
        return Event(time.time(), self.actor, action, f"run/{run_id}", reason, details)

    def liveness(self) -> Liveness:
        return liveness(self.metadata, self.lost_after)

    def get(self, ref: str) -> Run:
        """The run, `lost` if it is stored as running but its process is gone."""
        return self.metadata.runs.get(ref.removeprefix("run/"), self.liveness())

    def find(
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
        return self.metadata.runs.find(
            where, order, limit, liveness=self.liveness(), deleted=deleted
        )

    def count(self, filter: str | None = None, *, deleted: bool = False) -> int:
        from mloop.domain.query import parse_filter

        where = parse_filter(filter) if filter else None
        return self.metadata.runs.count(where, liveness=self.liveness(), deleted=deleted)

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
        run = self.metadata.runs.get(ref.removeprefix("run/"), rule)
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

        lost = self.metadata.runs.find(
            parse_filter("status = lost"), liveness=self.liveness(), limit=None
        )
        return [r for r in lost if self._fail_one(r, reason)]

    def _lost_below(self, run_id: str, rule: Liveness) -> list[Run]:
        from mloop.domain.query import parse_filter

        lost = self.metadata.runs.find(parse_filter("status = lost"), liveness=rule)
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
            self.metadata.runs.end(
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
        run = self.get(ref)
        if run.status is RunStatus.LOST:
            raise Conflict(
                f"run {run.id[:12]} is lost (its process is gone) and has not ended",
                f"mark it failed first: mloop runs fail {run.id[:12]}",
            )
        event = self._event("run.deleted", run.id, {"root": run.id}, reason)
        return self.metadata.runs.delete(run.id, time.time(), event)

    def restore(self, ref: str, reason: str | None = None) -> list[str]:
        """Undo `delete` for a run and the runs deleted with it; returns their ids."""
        run = self.metadata.runs.get(ref.removeprefix("run/"))
        event = self._event("run.restored", run.id, {"root": run.id}, reason)
        return self.metadata.runs.restore(run.id, event)

    def metric_history(self, ref: str, key: str) -> list[Metric]:
        run = self.get(ref)
        if key not in run.metrics:
            raise NotFound(f"run {run.id[:12]} has no metric {key!r}", "see `mloop runs show`")
        return self.metadata.runs.metric_history(run.id, key)
