"""Materialising versions: write files back to the project or a folder, and the SDK's handle.

Every file is written to a temporary name, verified against its digest and renamed, so a
checkout never leaves a half-written file. Paths come from manifests that may have been written
by others (a shared metadata store), so each is checked, before anything is written, to stay
inside the target folder and out of what mloop manages: a path into `.mloop/` or `.git/` (at any
depth) or into a store location is refused, `--force` or not, since writing there could replace
an object, the database, or a git hook or config that runs code. A working file is overwritten
or removed only if its content is in the artifact store (recoverable), unless forced.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.domain.dataset import DatasetVersion, FileEntry, is_table_path
from mloop.domain.names import check_relative_path
from mloop.errors import Conflict, InvalidInput, InvalidPath
from mloop.services.data.scan import scan
from mloop.store.artifacts.cas import ArtifactStore, hash_file
from mloop.store.walk import MANAGED_NAMES, Boundary

if TYPE_CHECKING:
    import pandas

WORKERS = 4


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    version: DatasetVersion
    target: Path
    written: int
    unchanged: int
    removed: int


_TAMPERED = "the version's manifest is corrupt or was tampered with; nothing was written"


def _tampered(name: str) -> str:
    return f"{_TAMPERED} (`mloop events dataset/{name}` shows who made each version)"


def _inside(target: Path, rel: str, boundary: Boundary, hint: str = _TAMPERED) -> Path:
    clean = check_relative_path(rel, "manifest path")
    named = next((p for p in clean.split("/") if p.lower() in MANAGED_NAMES), None)
    if named is not None:
        raise InvalidPath(f"manifest path {rel!r} is inside {named}/, which mloop manages", hint)
    path = (target / clean).resolve()
    if target != path and target not in path.parents:
        raise InvalidPath(f"manifest path {rel!r} leaves {target}", "the manifest is corrupt")
    location = boundary.managing(str(path))
    if location is not None:
        raise InvalidPath(f"manifest path {rel!r} leads into {location}, which mloop manages", hint)
    return path


def check_target(target: Path, boundary: Boundary, *, by_name: bool = True) -> None:
    """Refuse a checkout folder inside what mloop manages (`--to .mloop/objects`), and with
    `by_name` inside any folder named `.mloop` or `.git` (another project's, a submodule's)."""
    where = boundary.managing(str(target))
    if where is None and by_name:
        where = next((p for p in target.parts if p.lower() in MANAGED_NAMES), None)
    if where is not None:
        raise InvalidPath(
            f"cannot check out into {target}: it is inside {where}, which mloop manages",
            "choose another folder with --to DIR",
        )


def checkout_version(
    artifacts: ArtifactStore,
    version: DatasetVersion,
    target: Path,
    *,
    boundary: Boundary,
    restore_sources: bool,
    force: bool,
    progress: Callable[[int], None],
) -> CheckoutResult:
    """Write `version` into `target`; `boundary` names what must never be written (its managed
    locations) and, with `restore_sources`, where the sources' extra files are found."""
    target = target.resolve()
    check_target(target, boundary, by_name=False)  # the SDK's cache is inside .mloop/
    wanted = {f.path: f for f in version.files}
    hint = _tampered(version.name)
    dests = {f.path: _inside(target, f.path, boundary, hint) for f in version.files}
    to_write: list[FileEntry] = []
    unsafe: list[str] = []
    unchanged = 0
    for entry in version.files:
        dest = dests[entry.path]
        if dest.is_file():
            if dest.stat().st_size == entry.size and hash_file(dest) == entry.digest:
                unchanged += 1
                continue
            if not force and not artifacts.exists(hash_file(dest)):
                unsafe.append(entry.path)
        elif dest.exists():
            unsafe.append(entry.path)
        to_write.append(entry)
    extras = []
    if restore_sources:
        for f in scan(boundary, list(version.sources)):
            if f.rel not in wanted:
                if not force and not artifacts.exists(hash_file(f.path)):
                    unsafe.append(f.rel)
                extras.append(Path(f.path))
    if unsafe:
        shown = ", ".join(unsafe[:5]) + (f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else "")
        raise Conflict(
            f"checkout would overwrite or remove work that is in no version: {shown}",
            f"save it first with `mloop data add {version.name} ...`, or pass --force",
        )

    def write(entry: FileEntry) -> None:
        artifacts.export(entry.digest, dests[entry.path])
        progress(entry.size)

    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="mloop-checkout") as pool:
        list(pool.map(write, to_write))
    for path in extras:
        path.unlink(missing_ok=True)
    return CheckoutResult(version, target, len(to_write), unchanged, len(extras))


class LocalDataset:
    """A dataset version as the SDK hands it out: its record, local files and a DataFrame.

    Example:
        >>> sales = mloop.data.get("sales", version=2)  # doctest: +SKIP
        >>> frame = sales.to_pandas()  # doctest: +SKIP
    """

    def __init__(
        self, version: DatasetVersion, artifacts: ArtifactStore, cache: Path, boundary: Boundary
    ) -> None:
        self.version = version
        self._artifacts = artifacts
        self._folder = cache / version.name / str(version.version)
        # The cache is mloop's own, inside `.mloop/`: everything else managed stays refused.
        self._boundary = boundary.without(self._folder)

    def __repr__(self) -> str:
        return f"LocalDataset({self.version.ref!r}, files={self.version.file_count})"

    @property
    def files(self) -> tuple[FileEntry, ...]:
        return self.version.files

    def path(self, rel: str | None = None) -> Path:
        """A local folder holding the version's files (or one file in it), checked out once."""
        marker = self._folder / ".mloop-complete"
        if not marker.exists():
            checkout_version(
                self._artifacts,
                self.version,
                self._folder,
                boundary=self._boundary,
                restore_sources=False,
                force=True,
                progress=lambda n: None,
            )
            marker.touch()
        if rel is None:
            return self._folder
        if rel not in {f.path for f in self.version.files}:
            raise InvalidInput(f"{self.version.ref} has no file {rel!r}", "see .files")
        return _inside(self._folder.resolve(), rel, self._boundary)

    @property
    def paths(self) -> dict[str, Path]:
        folder = self.path()
        return {f.path: folder / f.path for f in self.version.files}

    def to_pandas(self, rel: str | None = None) -> pandas.DataFrame:
        """The table (CSV or Parquet) as a DataFrame; several tables with one schema are
        concatenated; pick one with `rel` otherwise."""
        from mloop.services.data.profile import read_table

        tables = [f for f in self.version.files if is_table_path(f.path)]
        if rel is not None:
            tables = [f for f in tables if f.path == rel]
        if not tables:
            raise InvalidInput(
                f"{self.version.ref} has no CSV or Parquet file" + (f" {rel!r}" if rel else ""),
                "use .path() to read other files",
            )
        frames = []
        for entry in tables:
            local = self._artifacts.verified_local_path(entry.digest)
            frames.append(read_table(local or self.path(entry.path), entry.path))
        if len(frames) == 1:
            return frames[0]
        columns = {tuple(f.columns) for f in frames}
        if len(columns) > 1:
            names = ", ".join(t.path for t in tables)
            raise InvalidInput(
                f"{self.version.ref} has tables with different columns: {names}",
                "choose one: .to_pandas('path/in/dataset.csv')",
            )
        import pandas as pd

        return pd.concat(frames, ignore_index=True)
