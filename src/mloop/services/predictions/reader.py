"""Read the prediction log back: a window of one endpoint's requests, as one Arrow table.

The index (`MetadataStore.predictions`) says which Parquet files overlap the window, so a query
opens those and no others; each is read whole from the artifact store, verified against its
digest as every read there is, then filtered to the window by pyarrow (a file holds a few
seconds of one server's traffic: megabytes at most). Nothing goes through pandas, and the cost
grows with the window, not with the history. `--last N` reads the newest files first and stops
once N requests are in hand.

pyarrow.dataset over the store's own paths would skip the digest check and needs a path per
backend; DuckDB would add a dependency for what pyarrow's filters and group-by already do here.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.domain.prediction import PredictionBatch, Window
from mloop.errors import CorruptArtifact, InvalidInput, NotFound

if TYPE_CHECKING:
    import pyarrow as pa

    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.metadata.protocol import MetadataStore

ORDER = [
    ("at", "ascending"),
    ("request_id", "ascending"),
    ("role", "ascending"),
    ("row", "ascending"),
]
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
FIRST_PAGE = 32


@dataclass(frozen=True, slots=True)
class MissingBatch:
    """A file the index names that the artifact store does not have (or has damaged)."""

    batch: PredictionBatch
    reason: str


@dataclass(frozen=True, slots=True)
class Export:
    """What `export` wrote: rows and requests, the file, and the files it had to leave out."""

    endpoint: str
    file: str
    format: str
    rows: int
    requests: int
    batches: int
    missing: tuple[MissingBatch, ...] = ()


@dataclass(frozen=True, slots=True)
class Found:
    table: pa.Table
    batches: int
    missing: tuple[MissingBatch, ...]


class PredictionReader:
    """Window queries over the prediction log of a project's endpoints."""

    def __init__(self, metadata: MetadataStore, artifacts: ArtifactStore) -> None:
        self.metadata = metadata
        self.artifacts = artifacts

    def read(self, endpoint: str, window: Window) -> Found:
        """The rows of `endpoint`'s requests in `window`, sorted by time.

        Raises:
            NotFound: no such endpoint, or no request logged in the window (an empty answer
                would read as "no traffic" when it may be a wrong window or endpoint).
        """
        if window.since is not None and window.until is not None and window.since > window.until:
            raise InvalidInput(
                f"the window starts after it ends ({window.describe()})",
                "give --since a time before --until",
            )
        if window.last is not None:
            tables, read, missing = self._newest(endpoint, window)
        else:
            batches = self.metadata.predictions.find(
                endpoint, window.since, window.until, window.model
            )
            tables, missing = self._load(batches, window)
            read = len(batches)
        table = _concat(tables)
        if table is not None and window.last is not None:
            table = _last_requests(table, window.last)
        if table is None or table.num_rows == 0:
            raise self._nothing(endpoint, window, missing)
        return Found(table.sort_by(ORDER), read, tuple(missing))

    def _newest(self, endpoint: str, window: Window) -> tuple[list[Any], int, list[MissingBatch]]:
        """Files newest first, a growing page at a time, until `window.last` requests are in."""
        assert window.last is not None
        import pyarrow.compute as pc

        tables: list[Any] = []
        missing: list[MissingBatch] = []
        seen: set[str] = set()
        requests: set[str] = set()
        page = FIRST_PAGE
        while True:
            batches = self.metadata.predictions.find(
                endpoint, window.since, window.until, window.model, limit=page
            )
            fresh = [b for b in batches if b.id not in seen]
            seen.update(b.id for b in fresh)
            found, lost = self._load(fresh, window)
            tables += found
            missing += lost
            for table in found:
                requests.update(pc.unique(table.column("request_id")).to_pylist())
            if len(requests) >= window.last or len(batches) < page:
                return tables, len(seen), missing
            page *= 4

    def _load(
        self, batches: list[PredictionBatch], window: Window
    ) -> tuple[list[Any], list[MissingBatch]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        filters: list[tuple[str, str, float]] = []
        if window.since is not None:
            filters.append(("at", ">=", window.since))
        if window.until is not None:
            filters.append(("at", "<=", window.until))
        tables = []
        missing = []
        for batch in batches:
            try:
                data = self.artifacts.read_bytes(batch.digest)
            except (NotFound, FileNotFoundError):
                missing.append(MissingBatch(batch, "missing"))
                continue
            except CorruptArtifact:
                missing.append(MissingBatch(batch, "corrupt"))
                continue
            table = pq.read_table(pa.BufferReader(data), filters=filters or None)
            tables.append(table.replace_schema_metadata(None))
        return tables, missing

    def _nothing(self, endpoint: str, window: Window, missing: list[MissingBatch]) -> NotFound:
        if missing:
            return NotFound(
                f"every file of the prediction log of endpoint {endpoint!r} in "
                f"{window.describe()} is missing from {self.artifacts.uri} ({len(missing)} files)",
                "`mloop fsck` lists what is missing; restore the artifact store from a backup",
            )
        if not self.metadata.predictions.find(endpoint, limit=1):
            self.metadata.endpoints.get(endpoint)  # NotFound, with its hint, for a wrong name
        return NotFound(
            f"no request to endpoint {endpoint!r} was logged in {window.describe()}",
            "widen the window (--since 7d, --last 1000) or check the model with "
            f"`mloop endpoints status {endpoint}`",
        )

    def export(self, endpoint: str, window: Window, path: Path) -> Export:
        """Write the window's rows to `path`: Parquet, or CSV, by its suffix. The file appears
        whole or not at all (written beside it, then renamed)."""
        kind = FORMATS.get(path.suffix.lower())
        if kind is None:
            raise InvalidInput(
                f"cannot tell the format of {str(path)!r} from its suffix",
                "name the file .parquet (or .pq) or .csv",
            )
        found = self.read(endpoint, window)
        _write(found.table, path, kind)
        import pyarrow.compute as pc

        requests = len(pc.unique(found.table.column("request_id")))
        return Export(
            endpoint,
            str(path),
            kind,
            found.table.num_rows,
            requests,
            found.batches,
            found.missing,
        )


def _concat(tables: list[Any]) -> Any:
    from mloop.services.predictions.encode import concat

    return concat(tables) if tables else None


def _last_requests(table: Any, last: int) -> Any:
    """The rows of the `last` requests answered latest (a request's time is its latest row's)."""
    import pyarrow.compute as pc

    latest = table.group_by("request_id").aggregate([("at", "max")])
    latest = latest.sort_by([("at_max", "descending"), ("request_id", "descending")])
    keep = latest.column("request_id").slice(0, last)
    return table.filter(pc.is_in(table.column("request_id"), value_set=keep))


def _write(table: Any, path: Path, kind: str) -> None:
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as out:  # an OSError here names the path the user gave
            if kind == "parquet":
                pq.write_table(table, out, compression="zstd")
            else:
                csv.write_csv(table, out)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
