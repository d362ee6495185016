"""Labelled production rows as a dataset's next version: what an iteration of the controller
adds before it trains, when its pipeline's `controller.PIPELINE.feedback` says so.

The rows are the logged requests of the endpoint answered in the window (`since`) whose labels
arrived since the last such snapshot of the dataset, joined to their labels on (`request_id`,
`row`) as monitoring joins them (`monitoring.accuracy`); shadows' copies are left out, as they
are the same rows. Each becomes a row of the dataset's table (the profiled table holding the
label column): `feature.NAME` into column NAME, the label into the label column, a column the
log lacks left empty; the table's columns, in its order, so `to_pandas` concatenates it.

Exactly once: the version is written with its Event in one transaction, and the Event names
the iteration and the labels it took (received after `after`, up to `until`). A restarted
iteration finds the version it made instead of making another; the next iteration starts where
the newest such version (not removed) stopped. A label is taken once, when it arrives. A label
whose request a server has not stored in the log yet (it stores it within seconds) waits, with
every later one, for the next snapshot, rather than be passed over for good.

A label corrected after its row was taken (the common second label: the first was wrong)
corrects that row where it is, in the file that holds it, instead of adding the row again with
the other label: training data would hold both answers. Each snapshot file has a sidecar,
`NAME.requests.json` (`REQUESTS`), naming the request and row of each of its rows in order: the
provenance of every production row in the dataset, and where a correction goes. The corrected
file keeps its path in the next version (its earlier version keeps the earlier label); a file
whose rows no longer match its sidecar (edited by hand) is left as it is, and a correction of
one of its rows adds the row again, said in the Event.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mloop.domain.dataset import DatasetVersion, FileEntry, TableProfile, next_version
from mloop.domain.event import Event
from mloop.domain.prediction import FEATURE, Window, parse_age
from mloop.domain.records import from_plain, to_plain
from mloop.errors import InvalidInput, MloopError, NotFound
from mloop.services.predictions.log import FLUSH_SECONDS

if TYPE_CHECKING:
    import pyarrow as pa

    from mloop.domain.controller import FeedbackPolicy
    from mloop.domain.feedback import Label
    from mloop.services.data.versioning import DataService
    from mloop.store.metadata.protocol import MetadataStore

SETTLE = 5.0  # seconds: a label stored this recently may still be committing; the next takes it
# seconds after its label within which a request may not be in the log yet (a server stores it
# within FLUSH_SECONDS of answering, plus the time to encode and store the file)
LOGGED_WITHIN = FLUSH_SECONDS + 5.0
CREATED = "dataset.version_created"
SHADOW = "shadow"
FOLDER = "feedback"  # the snapshots' files: FOLDER beside the dataset's table
REQUESTS = ".requests.json"  # a snapshot file's sidecar: the request and row of each row
_SEARCHED = 1000  # the dataset's events read back for the last snapshot
CACHED_REQUESTS = 1_000_000  # sidecar entries a FeedbackSnapshots keeps read (~100 MB)


@dataclass(frozen=True, slots=True)
class Taken:
    """The labels a snapshot took, as its version's Event records them (`feedback`): those of
    `endpoint` received after `after` up to `until`, the rows they made, and how many name a
    request the window's log does not hold; `iteration`: the iteration it was taken for."""

    endpoint: str
    iteration: str
    after: float | None
    until: float
    labels: int = 0
    rows: int = 0
    unlogged: int = 0
    corrected: int = 0  # rows taken before whose label changed


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The version an iteration trains on (made now, made before a restart, or the latest as
    it is) and what was taken into it."""

    version: DatasetVersion
    taken: Taken
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether `version` was made for it (rows added or corrected)."""
        return bool(self.taken.rows or self.taken.corrected)

    def numbers(self) -> dict[str, Any]:
        """The iteration's record of it (`numbers.feedback`, shown by `controller status`)."""
        plain: dict[str, Any] = to_plain(self.taken)
        del plain["iteration"]
        return {"dataset": self.version.ref, **plain}

    def describe(self) -> str:
        taken = self.taken
        source = f"endpoint {taken.endpoint}"
        fixed = f"corrects the label of {_counted(taken.corrected, 'row')} taken before"
        if taken.rows:
            added = _counted(taken.rows, "labelled row")
            said = f"{self.version.ref} adds {added} from {source}"
            if taken.corrected:
                said += f" and {fixed}"
        elif taken.corrected:
            said = f"{self.version.ref} {fixed} from {source}"
        else:
            since = "yet" if taken.after is None else "new since the last snapshot"
            said = f"no labelled rows from {source} {since}"
            said += f": trains on {self.version.ref} as it is"
        if taken.unlogged == 1:
            said += " (1 label names a request not in the log's window)"
        elif taken.unlogged:
            said += f" ({taken.unlogged} labels name requests not in the log's window)"
        return "; ".join([said, *self.notes])


class FeedbackSnapshots:
    """Takes labelled production rows into a dataset, one version per iteration at most."""

    def __init__(
        self,
        metadata: MetadataStore,
        data: DataService,
        *,
        actor: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.data = data
        self.actor = actor
        self.clock = clock
        # Sidecars read, by digest (their content never changes): a controller reads each
        # once in its life, not once per iteration; at most CACHED_REQUESTS requests held.
        self._sidecars: OrderedDict[str, _Sidecar] = OrderedDict()
        self._cached = 0

    def take(self, policy: FeedbackPolicy, iteration: str, where: str) -> Snapshot:
        """Add the rows of labels new since the dataset's last snapshot (see the module);
        `where` names the setting in errors (`controller.train.feedback`).

        Raises:
            InvalidInput: the dataset has no table with the label column, or the rows do not
                fit its columns' types.
            NotFound: the dataset has no version yet.
        """
        previous = self._latest(policy, where)
        made, after = self._earlier(policy, iteration)
        if made is not None:
            return made
        until = self.clock() - SETTLE
        nothing = Snapshot(previous, Taken(policy.endpoint, iteration, after, until))
        if after is not None and until <= after:
            return nothing
        # The window's requests (answered since `start`, up to now: a logged answer is final,
        # and a label taken may be for one answered a moment ago) and the labels that arrived
        # for them since the last snapshot; a label is never older than its request.
        start = until - parse_age(policy.since, f"{where}.since")
        lowest = start if after is None else max(after, start)
        labels = [
            x
            for x in self.metadata.feedback.received(policy.endpoint, lowest, until)
            if after is None or x.at > after
        ]
        if not labels:
            return nothing
        reference = _reference(previous, policy, where)
        placed, notes = self._taken_before(previous, policy.endpoint)
        fresh = [x for x in labels if (x.request_id, x.row) not in placed]
        logged = self._logged(policy.endpoint, Window(start))
        kept, until = _settled(logged, fresh, until)
        waits = _waiting(len(fresh) - len(kept))
        fresh = kept
        fixes = [x for x in labels if (x.request_id, x.row) in placed and x.at <= until]
        if not fresh and not fixes:
            return replace(nothing, notes=(*notes, *waits))
        joined = _join(logged, fresh)
        rows = 0 if joined is None else joined.num_rows
        with tempfile.TemporaryDirectory(prefix="mloop-feedback-") as scratch:
            corrected, changed = self._correct(
                previous, reference, placed, fixes, policy.label, Path(scratch), where
            )
            taken = replace(
                nothing.taken,
                until=until,
                labels=len(fresh) + len(fixes),
                rows=rows,
                unlogged=len(fresh) - rows,
                corrected=changed,
            )
            if not rows and not corrected:
                return replace(nothing, taken=taken, notes=(*notes, *waits))
            files = list(corrected)
            if joined is not None and rows:
                table, empty = _rows(joined, reference, policy, where)
                notes = [*notes, *empty]
                files += self._new_rows(
                    table, joined, reference, previous, taken, Path(scratch), where
                )
            version = self._commit(files, previous, taken)
        return Snapshot(version, taken, (*notes, *waits))

    # reading ---------------------------------------------------------------------------------
    def _latest(self, policy: FeedbackPolicy, where: str) -> DatasetVersion:
        try:
            return self.metadata.datasets.get_version(policy.dataset, files=True)
        except NotFound:
            raise NotFound(
                f"{where}: dataset {policy.dataset!r} has no version to add labelled rows to",
                f"add its first version (`mloop data add {policy.dataset} PATH`): its table's "
                "columns decide the rows' shape",
            ) from None

    def _earlier(
        self, policy: FeedbackPolicy, iteration: str
    ) -> tuple[Snapshot | None, float | None]:
        """The snapshot this iteration made before a crash, if any; else where the newest
        snapshot of the endpoint's labels into the dataset (not removed since) stopped."""
        for event in self.metadata.events.find(f"dataset/{policy.dataset}", _SEARCHED):
            found = event.details.get("feedback") if event.action == CREATED else None
            if not isinstance(found, Mapping) or found.get("endpoint") != policy.endpoint:
                continue
            try:
                version = self.metadata.datasets.get_version(
                    policy.dataset, int(event.ref.rsplit(":", 1)[1]), files=True
                )
            except NotFound:
                continue  # removed: its rows are not the dataset's any more
            taken = from_plain(Taken, found)
            if taken.iteration == iteration:
                return Snapshot(version, taken, ("made before the controller restarted",)), None
            return None, taken.until
        return None, None

    def _taken_before(
        self, version: DatasetVersion, endpoint: str
    ) -> tuple[dict[tuple[str, int], tuple[str, int]], list[str]]:
        """Where each row earlier snapshots of `endpoint` took sits in `version`: (request id,
        row) -> (file, position), read from the files' sidecars (`REQUESTS`); and what could
        not be read. A file whose row count is not its sidecar's was changed by hand: left out,
        so a correction of one of its rows adds the row instead of changing the wrong one."""
        placed: dict[tuple[str, int], tuple[str, int]] = {}
        skipped: list[str] = []
        rows = {t.path: t.rows for t in version.tables}
        for entry in version.files:
            name = PurePosixPath(entry.path).name
            if not (name.startswith(f"{endpoint}-") and name.endswith(REQUESTS)):
                continue
            if not _snapshotted(entry.path):
                continue
            try:
                said = self._sidecar(entry.digest)
            except (MloopError, ValueError, TypeError, KeyError):
                skipped.append(entry.path)
                continue
            if said.endpoint != endpoint:
                continue
            if rows.get(said.file) != len(said.requests):
                skipped.append(entry.path)
                continue
            for position, key in enumerate(said.requests):
                placed[key] = (said.file, position)
        notes = []
        if skipped:
            notes.append(
                f"not read (its file changed, or it is not a sidecar mloop wrote): "
                f"{', '.join(skipped[:5])}; corrections of those rows add them again"
            )
        return placed, notes

    def _sidecar(self, digest: str) -> _Sidecar:
        found = self._sidecars.get(digest)
        if found is not None:
            self._sidecars.move_to_end(digest)
            return found
        said = json.loads(self.data.artifacts.read_bytes(digest))
        requests = tuple((str(r), int(n)) for r, n in said["requests"])
        found = _Sidecar(str(said["file"]), str(said["endpoint"]), requests)
        self._sidecars[digest] = found
        self._cached += len(requests)
        while self._cached > CACHED_REQUESTS and len(self._sidecars) > 1:
            _, dropped = self._sidecars.popitem(last=False)
            self._cached -= len(dropped.requests)
        return found

    def _logged(self, endpoint: str, window: Window) -> pa.Table | None:
        from mloop.services.predictions.reader import PredictionReader

        try:
            return PredictionReader(self.metadata, self.data.artifacts).read(endpoint, window).table
        except NotFound:
            return None  # nothing logged in the window: every label is unlogged

    # writing ---------------------------------------------------------------------------------
    def _correct(
        self,
        previous: DatasetVersion,
        reference: TableProfile,
        placed: Mapping[tuple[str, int], tuple[str, int]],
        fixes: Sequence[Label],
        label: str,
        scratch: Path,
        where: str,
    ) -> tuple[list[_Stored], int]:
        """The files holding rows whose label `fixes` correct, rewritten with the new labels at
        the same places (same paths), and how many rows changed; a label that says what the row
        already holds changes nothing."""
        by_file: dict[str, list[tuple[int, Any]]] = {}
        for fix in fixes:
            held, position = placed[(fix.request_id, fix.row)]
            by_file.setdefault(held, []).append((position, fix.value))
        entries = {f.path: f for f in previous.files}
        rewritten: list[_Stored] = []
        changed = 0
        for held, places in sorted(by_file.items()):
            table = _read(self.data.artifacts.read_bytes(entries[held].digest), held)
            values = table.column(label).to_pylist()
            now = [(position, value) for position, value in places if values[position] != value]
            if not now:
                continue
            for position, value in now:
                values[position] = value
            column = table.column_names.index(label)
            table = table.set_column(column, label, _array(values))
            rewritten.append(self._store(table, held, reference, previous, scratch, where))
            changed += len(now)
        return rewritten, changed

    def _new_rows(
        self,
        table: pa.Table,
        joined: pa.Table,
        reference: TableProfile,
        previous: DatasetVersion,
        taken: Taken,
        scratch: Path,
        where: str,
    ) -> list[_Stored]:
        """The new rows' file beside the reference table, and its sidecar."""
        name = _entry_path(
            reference.path, taken.endpoint, taken.until, {f.path for f in previous.files}
        )
        keys = zip(
            joined.column("request_id").cast("string").to_pylist(),
            joined.column("row").to_pylist(),
            strict=True,
        )
        said = {"file": name, "endpoint": taken.endpoint, "requests": [[r, n] for r, n in keys]}
        sidecar = str(PurePosixPath(name).with_suffix(REQUESTS))
        local = scratch / PurePosixPath(sidecar).name
        local.write_text(json.dumps(said, separators=(",", ":")) + "\n")
        digest, size, stored = self.data.artifacts.put_path(local)
        return [
            self._store(table, name, reference, previous, scratch, where),
            _Stored(FileEntry(sidecar, digest, size), None, stored),
        ]

    def _store(
        self,
        table: pa.Table,
        name: str,
        reference: TableProfile,
        previous: DatasetVersion,
        scratch: Path,
        where: str,
    ) -> _Stored:
        """`table` written as the dataset's file `name` (in its format), profiled, its types
        checked against the reference table's, and put in the artifact store."""
        from mloop.services.data.profile import profile_table

        local = scratch / PurePosixPath(name).name
        _write(table, local)
        profile = profile_table(local, name)
        _check_types(profile, reference, previous.ref, where)
        digest, size, stored = self.data.artifacts.put_path(local)
        return _Stored(FileEntry(name, digest, size), profile, stored)

    def _commit(
        self, files: Sequence[_Stored], previous: DatasetVersion, taken: Taken
    ) -> DatasetVersion:
        self.data.artifacts.sync()
        source = f"from endpoint {taken.endpoint}"
        parts = [f"{_counted(taken.rows, 'labelled row')} {source}"] if taken.rows else []
        if taken.corrected:
            relabelled = f"{_counted(taken.corrected, 'row')} taken before relabelled"
            parts.append(relabelled if taken.rows else f"{relabelled} {source}")
        message = ", ".join(parts)
        draft = next_version(
            previous.name, previous, [f.entry for f in files],
            [f.profile for f in files if f.profile is not None],
            created=self.clock(), user=self.actor, message=message, sources=previous.sources,
        )  # fmt: skip
        event = Event(
            draft.created, self.actor, CREATED, f"dataset/{previous.name}", message,
            {"files": draft.file_count, "bytes": draft.total_size,
             "new_objects": sum(f.stored for f in files), "rows": taken.rows,
             "feedback": to_plain(taken)},
        )  # fmt: skip
        return self.metadata.datasets.create_version(draft, event)


@dataclass(frozen=True, slots=True)
class _Sidecar:
    """What a snapshot file's sidecar says: the file, the endpoint, and the request and row of
    each of the file's rows, in order."""

    file: str
    endpoint: str
    requests: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class _Stored:
    """A file a snapshot put in the artifact store: its entry, its profile (None: not a
    table), whether its object is new."""

    entry: FileEntry
    profile: TableProfile | None
    stored: bool


def _counted(count: int, noun: str) -> str:
    return f"1 {noun}" if count == 1 else f"{count} {noun}s"


def _reference(version: DatasetVersion, policy: FeedbackPolicy, where: str) -> TableProfile:
    """The dataset's table the rows join: the first (by path) with the label column, earlier
    snapshots' tables last."""
    holding = [t for t in version.tables if t.column(policy.label) is not None]
    if holding:
        return min(holding, key=lambda t: (_snapshotted(t.path), t.path))
    columns = sorted({c.name for t in version.tables for c in t.columns})
    shown = ", ".join(columns[:20]) or "no profiled table"
    raise InvalidInput(
        f"{where}.label: dataset {version.ref} has no column {policy.label!r} (it has: {shown})",
        "name the column the label goes in, as the dataset's table names it",
    )


def _settled(
    logged: pa.Table | None, labels: list[Label], until: float
) -> tuple[list[Label], float]:
    """The labels to take now, and up to when. A label whose request the log does not hold
    yet, received within `LOGGED_WITHIN` of `until`, may be for an answer a server still
    buffers (it stores its log every `FLUSH_SECONDS`): taking the snapshot past it would skip
    that row for good. So it and every later label wait for the next snapshot; an older one
    names a request that was never logged (sampled out, or no such request)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    recent = [x for x in labels if x.at > until - LOGGED_WITHIN]
    if not recent:
        return labels, until
    ids = pa.array([x.request_id for x in recent], pa.string())
    if logged is None:
        present = [False] * len(recent)
    else:
        known = logged.column("request_id").cast(pa.string()).combine_chunks()
        present = pc.is_in(ids, value_set=known).to_pylist()
    waiting = [x.at for x, found in zip(recent, present, strict=True) if not found]
    if not waiting:
        return labels, until
    cut = min(waiting)
    return [x for x in labels if x.at < cut], math.nextafter(cut, -math.inf)


def _waiting(count: int) -> tuple[str, ...]:
    if not count:
        return ()
    if count == 1:
        return ("1 newer label waits for its request to reach the log: the next snapshot takes it",)
    return (f"{count} newer labels wait for their requests to reach the log: the next snapshot "
            "takes them",)  # fmt: skip


def _join(logged: pa.Table | None, labels: Sequence[Label]) -> pa.Table | None:
    """The logged rows (not shadows' copies) that have a label, one per request and row (a
    request id answered twice: its latest answer), oldest first, with `label`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if logged is None:
        return None
    served = logged.filter(pc.not_equal(logged.column("role"), SHADOW))
    ids = pa.array(sorted({x.request_id for x in labels}), pa.string())
    served = served.filter(pc.is_in(served.column("request_id").cast(pa.string()), ids))
    value = {(x.request_id, x.row): x.value for x in labels}
    rids, rows = served.column("request_id").to_pylist(), served.column("row").to_pylist()
    latest: dict[tuple[str, int], int] = {}  # rows are in time order: the last answer wins
    for n, key in enumerate(zip(rids, rows, strict=True)):
        if key in value:
            latest[key] = n
    order = sorted(latest.items(), key=lambda item: item[1])
    chosen = served.take(pa.array([n for _, n in order], pa.int64()))
    found = [value[key] for key, _ in order]
    return chosen.append_column("label", _array(found))


def _array(values: list[Any]) -> pa.Array:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # numbers and text mixed: kept as text
        return pa.array([str(v) for v in values], pa.string())


def _rows(
    joined: pa.Table, reference: TableProfile, policy: FeedbackPolicy, where: str
) -> tuple[pa.Table, list[str]]:
    """The joined rows in the reference table's columns and order; a column the log lacks is
    left empty and named, but with none at all the endpoint is not this dataset's."""
    import pyarrow as pa

    columns: dict[str, Any] = {}
    empty: list[str] = []
    for column in reference.columns:
        if column.name == policy.label:
            columns[column.name] = joined.column("label")
        elif FEATURE + column.name in joined.column_names:
            columns[column.name] = joined.column(FEATURE + column.name)
        else:
            columns[column.name] = pa.nulls(joined.num_rows)
            empty.append(column.name)
    if len(empty) == len(reference.columns) - 1:  # not one input of the model is a column
        logged = [c.removeprefix(FEATURE) for c in joined.column_names if c.startswith(FEATURE)]
        raise InvalidInput(
            f"{where}: endpoint {policy.endpoint} logs none of the columns of {reference.path} "
            f"({', '.join(empty[:10])}); it logs {', '.join(logged[:10]) or 'no inputs'}",
            "take rows from the endpoint serving models of this dataset, or another dataset",
        )
    notes = [f"not logged, left empty: {', '.join(empty)}"] if empty else []
    return pa.table(columns), notes


def _check_types(profile: TableProfile, reference: TableProfile, ref: str, where: str) -> None:
    """Refuse rows whose column types the dataset's cannot take (text labels for a numeric
    column): the schema check `mloop data validate` makes first. Ranges and distributions are
    not checked: production data that drifted is what the iteration retrains on."""
    from mloop.services.data.checks import ACCEPTS, reference_family

    for column in profile.columns:
        before = reference.column(column.name)
        if before is None or column.count == 0:  # left empty: any type takes it
            continue
        family, now = reference_family(before.dtype), reference_family(column.dtype)
        if now not in ACCEPTS.get(family, {now}):
            raise InvalidInput(
                f"{where}: labelled rows do not fit {ref}: column {column.name!r} holds "
                f"{now} values where the dataset holds {family}",
                "send labels (and features) of the types the dataset's table holds, or name "
                "another label column",
            )


def _read(data: bytes, name: str) -> pa.Table:
    """A snapshot file as `_write` wrote it (its format by its suffix)."""
    import pyarrow as pa
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    if name.lower().endswith(".csv"):
        return csv.read_csv(pa.BufferReader(data))
    return pq.read_table(pa.BufferReader(data))


def _write(table: pa.Table, path: Path) -> None:
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    if path.suffix.lower() == ".csv":
        csv.write_csv(table, path)
    else:
        pq.write_table(table, path, compression="zstd")


def _snapshotted(path: str) -> bool:
    return PurePosixPath(path).parent.name == FOLDER


def _entry_path(reference: str, endpoint: str, until: float, taken: set[str]) -> str:
    """`FOLDER/feedback/ENDPOINT-STAMP.SUFFIX` beside the reference table, in its format."""
    path = PurePosixPath(reference)
    folder = path.parent.parent if _snapshotted(reference) else path.parent
    stamp = datetime.fromtimestamp(until, UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = str(folder / FOLDER / f"{endpoint}-{stamp}{path.suffix}")
    n = 1
    while name in taken:
        n += 1
        name = str(folder / FOLDER / f"{endpoint}-{stamp}-{n}{path.suffix}")
    return name.removeprefix("./")
