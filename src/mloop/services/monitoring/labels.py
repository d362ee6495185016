"""Labels from a file (`mloop feedback ENDPOINT FILE`), and which labelled requests the
prediction log holds.

A file's labels are checked whole before any is stored (one bad row refuses the file, naming
the row), then stored in one call, as a `POST /feedback` batch is. Which ids the log does not
hold is found by reading only the `request_id` and `row` columns of the log's files, newest
first, stopping once every id is found: labels for recent requests cost a few files; an id
never logged costs one pass over the retained log.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.domain.feedback import Label, Stored, check_label, check_request_id, check_row
from mloop.errors import CorruptArtifact, InvalidInput, NotFound
from mloop.services.predictions.reader import FORMATS  # the log's export formats, read back

if TYPE_CHECKING:
    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.metadata.protocol import MetadataStore

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Imported:
    """What `mloop feedback` did: labels `stored` and `replaced`, and `unknown`, how many of
    them name a request (and row) the prediction log does not hold."""

    endpoint: str
    file: str
    stored: int
    replaced: int
    unknown: int


def read_labels(
    path: Path,
    id_column: str,
    label_column: str,
    row_column: str | None = None,
    at: float | None = None,
) -> list[Label]:
    """The labels of a CSV or Parquet file, every row checked; the file's name is their source.

    Raises:
        InvalidInput: an unknown format, a missing column, or a row without an id or a label.
    """
    table = _read_table(path)
    wanted = [id_column, label_column] + ([row_column] if row_column else [])
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        shown = ", ".join(table.column_names[:20])
        raise InvalidInput(
            f"{path.name} has no column {missing[0]!r} (it has: {shown})",
            "name its columns with --id-column, --label-column (and --row-column)",
        )
    ids = table.column(id_column).to_pylist()
    values = table.column(label_column).to_pylist()
    rows = table.column(row_column).to_pylist() if row_column else [None] * len(ids)
    received = time.time() if at is None else at
    labels = []
    for n, (rid, value, row) in enumerate(zip(ids, values, rows, strict=True)):
        where = f"{path.name} row {n + 1}"
        if value is None:
            raise InvalidInput(
                f"{where} has no label in column {label_column!r}",
                "leave out the rows not labelled yet, and send them once they are",
            )
        labels.append(
            Label(
                check_request_id(rid, where),
                check_label(value, where),
                received,
                path.name,
                check_row(row, where),
            )
        )
    return labels


def _read_table(path: Path) -> Any:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(
            f"cannot tell the format of {str(path)!r} from its suffix",
            "name the file .csv, .parquet or .pq",
        )
    if not path.is_file():
        raise NotFound(f"no file {str(path)!r}", "give the path of a CSV or Parquet file")
    import pyarrow as pa
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path) if kind == "parquet" else csv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(
            f"cannot read {path.name} as {kind.upper()}: {str(exc).splitlines()[0]}",
            f"check it is a {kind.upper()} file with a header row",
        ) from None


def check_endpoint(metadata: MetadataStore, endpoint: str) -> None:
    """Labels are kept for an endpoint that exists or whose name the log holds (`mloop serve
    MODEL` logs under the model's name, with no endpoint record)."""
    if metadata.predictions.find(endpoint, limit=1):
        return
    metadata.endpoints.get(endpoint)  # NotFound, with its hint, for a wrong name


def store_file(
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    endpoint: str,
    path: Path,
    id_column: str,
    label_column: str,
    row_column: str | None = None,
) -> Imported:
    """Store the labels of the file at `path` for `endpoint`, and count those the log lacks."""
    check_endpoint(metadata, endpoint)
    labels = read_labels(path, id_column, label_column, row_column)
    stored: Stored = metadata.feedback.add(endpoint, labels)
    keys = {(label.request_id, label.row) for label in labels}
    unknown = len(unlogged(metadata, artifacts, endpoint, keys))
    return Imported(endpoint, str(path), stored.stored, stored.replaced, unknown)


def unlogged(
    metadata: MetadataStore,
    artifacts: ArtifactStore,
    endpoint: str,
    keys: Collection[Key],
    skip: Collection[str] = (),
) -> set[Key]:
    """Of `keys` (request id, row), those no logged request of `endpoint` holds; `skip` names
    batches already searched. A file missing from the artifact store hides its ids: they
    count as unknown (`mloop fsck` names the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    left = set(keys)
    for batch in metadata.predictions.find(endpoint):
        if not left:
            break
        if batch.id in skip:
            continue
        try:
            data = artifacts.read_bytes(batch.digest)
        except (NotFound, FileNotFoundError, CorruptArtifact):
            continue
        table = pq.read_table(pa.BufferReader(data), columns=["request_id", "row"])
        rids = table.column("request_id").to_pylist()
        rows = table.column("row").to_pylist()
        left -= set(zip(rids, rows, strict=True))
    return left
