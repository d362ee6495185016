"""What changed between two dataset versions: files, table schemas and notable statistics.

Pure functions over two `DatasetVersion` records loaded with their `files`; no store, no I/O,
so the CLI, the REST API and a `new_data` trigger can all ask the same question cheaply.

File changes come from the manifests (path -> digest). Table changes come from the recorded
profiles, so no data is read again: columns added or removed, dtype changes, and a short list
of statistics that moved enough to be worth a look. The thresholds are deliberately simple,
a first glance rather than a drift test (drift statistics live with monitoring):

- null share changed by more than `NULL_SHARE_POINTS` (1 percentage point);
- mean moved by more than `MEAN_SHIFT_STDS` (0.1) old standard deviations;
- new minimum below, or new maximum above, the old range;
- values that entered or left the most common (`top`) values of a categorical column.
"""

from __future__ import annotations

from dataclasses import dataclass

from mloop.domain.dataset import ColumnProfile, DatasetVersion, FileEntry, TableProfile

NULL_SHARE_POINTS = 0.01
MEAN_SHIFT_STDS = 0.1


@dataclass(frozen=True, slots=True)
class ColumnChange:
    """One notable change of one column's statistic; `note` says it in words."""

    column: str
    statistic: str  # "null_share" | "mean" | "min" | "max" | "top"
    old: float | str | None
    new: float | str | None
    note: str


@dataclass(frozen=True, slots=True)
class TableDiff:
    """Differences between the profiles of one table path.

    A table in only one version has the other side's rows `None` and no column details (the
    file itself is listed in `VersionDiff.added` or `removed`).
    """

    path: str
    old_rows: int | None
    new_rows: int | None
    added_columns: tuple[str, ...] = ()
    removed_columns: tuple[str, ...] = ()
    type_changes: tuple[tuple[str, str, str], ...] = ()  # (column, old dtype, new dtype)
    changes: tuple[ColumnChange, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(
            self.old_rows != self.new_rows
            or self.added_columns
            or self.removed_columns
            or self.type_changes
            or self.changes
        )


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """Files added, removed and modified between two versions, and their tables' differences."""

    old_ref: str
    new_ref: str
    added: tuple[FileEntry, ...]
    removed: tuple[FileEntry, ...]
    modified: tuple[tuple[FileEntry, FileEntry], ...]  # (old, new), same path
    unchanged: int
    tables: tuple[TableDiff, ...]

    @property
    def changed(self) -> bool:
        return bool(
            self.added or self.removed or self.modified or any(t.changed for t in self.tables)
        )


def diff_versions(old: DatasetVersion, new: DatasetVersion) -> VersionDiff:
    """Compare two dataset versions by their manifests and recorded table profiles.

    Files are matched by path; a file is modified when its digest differs. Tables are matched
    by path too, and only tables whose profiles differ are listed.

    Args:
        old: The earlier version, loaded with its `files`.
        new: The later version, loaded with its `files`.

    Returns:
        A `VersionDiff`; `changed` is False when nothing differs.

    Raises:
        ValueError: A version has files but was loaded without its manifest (a caller bug).

    Example:
        >>> old = store.datasets.get_version("sales", 4, files=True)  # doctest: +SKIP
        >>> new = store.datasets.get_version("sales", 5, files=True)  # doctest: +SKIP
        >>> diff = diff_versions(old, new)  # doctest: +SKIP
        >>> [f.path for f in diff.added], diff.changed  # doctest: +SKIP
        (['2024-06.csv'], True)
    """
    for version in (old, new):
        if version.file_count and not version.files:
            raise ValueError(f"dataset version {version.ref} was loaded without its files")
    old_files = {f.path: f for f in old.files}
    new_files = {f.path: f for f in new.files}
    added = tuple(new_files[p] for p in sorted(new_files.keys() - old_files.keys()))
    removed = tuple(old_files[p] for p in sorted(old_files.keys() - new_files.keys()))
    both = sorted(old_files.keys() & new_files.keys())
    modified = tuple(
        (old_files[p], new_files[p]) for p in both if old_files[p].digest != new_files[p].digest
    )
    return VersionDiff(
        old_ref=old.ref,
        new_ref=new.ref,
        added=added,
        removed=removed,
        modified=modified,
        unchanged=len(both) - len(modified),
        tables=_diff_tables(old.tables, new.tables),
    )


def diff_tables(old: TableProfile | None, new: TableProfile | None) -> TableDiff:
    """Compare two profiles of one table path; either side may be missing.

    Example:
        >>> diff_tables(old_profile, new_profile).added_columns  # doctest: +SKIP
        ('discount',)
    """
    if old is None or new is None:
        present = new if old is None else old
        if present is None:
            raise ValueError("diff_tables needs at least one profile")
        return TableDiff(
            path=present.path,
            old_rows=None if old is None else old.rows,
            new_rows=None if new is None else new.rows,
        )
    old_columns = {c.name: c for c in old.columns}
    new_columns = {c.name: c for c in new.columns}
    shared = [c.name for c in new.columns if c.name in old_columns]
    type_changes = tuple(
        (name, old_columns[name].dtype, new_columns[name].dtype)
        for name in shared
        if old_columns[name].dtype != new_columns[name].dtype
    )
    changes = tuple(
        change for name in shared for change in diff_columns(old_columns[name], new_columns[name])
    )
    return TableDiff(
        path=new.path,
        old_rows=old.rows,
        new_rows=new.rows,
        added_columns=tuple(c.name for c in new.columns if c.name not in old_columns),
        removed_columns=tuple(c.name for c in old.columns if c.name not in new_columns),
        type_changes=type_changes,
        changes=changes,
    )


def diff_columns(old: ColumnProfile, new: ColumnProfile) -> tuple[ColumnChange, ...]:
    """The notable changes between two profiles of one column (thresholds in the module doc).

    Example:
        >>> [c.statistic for c in diff_columns(old_age, new_age)]  # doctest: +SKIP
        ['null_share', 'mean']
    """
    changes = list(_null_share_change(old, new))
    if old.kind == new.kind == "numeric":
        changes += _numeric_changes(old, new)
    if old.kind == new.kind == "categorical":
        changes += _top_changes(old, new)
    return tuple(changes)


def _diff_tables(
    old: tuple[TableProfile, ...], new: tuple[TableProfile, ...]
) -> tuple[TableDiff, ...]:
    old_by_path = {t.path: t for t in old}
    new_by_path = {t.path: t for t in new}
    return tuple(
        diff_tables(old_by_path.get(path), new_by_path.get(path))
        for path in sorted(old_by_path.keys() | new_by_path.keys())
        if old_by_path.get(path) != new_by_path.get(path)
    )


def _null_share(column: ColumnProfile) -> float | None:
    rows = column.count + column.nulls
    return column.nulls / rows if rows else None


def _null_share_change(old: ColumnProfile, new: ColumnProfile) -> list[ColumnChange]:
    before, after = _null_share(old), _null_share(new)
    if before is None or after is None or abs(after - before) <= NULL_SHARE_POINTS:
        return []
    note = f"null share {before:.1%} → {after:.1%}"
    return [ColumnChange(new.name, "null_share", before, after, note)]


def _numeric_changes(old: ColumnProfile, new: ColumnProfile) -> list[ColumnChange]:
    changes: list[ColumnChange] = []
    if old.mean is not None and new.mean is not None and new.mean != old.mean:
        if old.std:
            shift = (new.mean - old.mean) / old.std
            if abs(shift) > MEAN_SHIFT_STDS:
                note = f"mean moved {shift:+.2f} old standard deviations"
                changes.append(ColumnChange(new.name, "mean", old.mean, new.mean, note))
        else:  # the old column had no spread, so any move is a move out of it
            note = f"mean moved from {old.mean:g} to {new.mean:g}; the old values had no spread"
            changes.append(ColumnChange(new.name, "mean", old.mean, new.mean, note))
    if old.min is None or old.max is None:
        return changes
    old_range = f"[{old.min:g}, {old.max:g}]"
    if new.min is not None and new.min < old.min:
        note = f"minimum {new.min:g} is below the old range {old_range}"
        changes.append(ColumnChange(new.name, "min", old.min, new.min, note))
    if new.max is not None and new.max > old.max:
        note = f"maximum {new.max:g} is above the old range {old_range}"
        changes.append(ColumnChange(new.name, "max", old.max, new.max, note))
    return changes


def _top_changes(old: ColumnProfile, new: ColumnProfile) -> list[ColumnChange]:
    """Values entering or leaving the top list; when a side's list holds every distinct value,
    a value missing from it is truly absent, and the note says so."""
    old_top, new_top = dict(old.top), dict(new.top)
    old_complete = old.distinct is not None and old.distinct <= len(old.top)
    new_complete = new.distinct is not None and new.distinct <= len(new.top)
    changes: list[ColumnChange] = []
    for value, count in new.top:
        if value not in old_top:
            what = "is a new value" if old_complete else "entered the most common values"
            note = f"{value!r} {what} ({count} rows)"
            changes.append(ColumnChange(new.name, "top", None, value, note))
    for value, count in old.top:
        if value not in new_top:
            what = "no longer occurs" if new_complete else "left the most common values"
            note = f"{value!r} {what} (had {count} rows)"
            changes.append(ColumnChange(new.name, "top", value, None, note))
    return changes
