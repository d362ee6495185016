"""PredictionLog: what a model server calls for every predict call; Parquet and an index row, later.

A server's batcher hands over each predict call whose requests are logged (`record_tagged`):
the call's inputs and answers, stacked already, and each request's id and rows. That runs on
the server's event loop just before the answers go out, so it only appends a tuple to a
bounded deque: no conversion, no I/O, no lock, and one entry per call, not per request (under
load a call holds tens of requests, which the writer would otherwise stack again). `record`
takes one request the same way (a test, a tool). A background thread wakes every
`flush_seconds`, or when `flush_requests` wait, converts what it took into one Parquet file
per (endpoint, model version, role) (`encode.py`), stores it in the artifact store and adds
its `PredictionBatch` to the metadata store. The log holds what the model predicted: a client
that went away while its call ran is logged too, a request whose predict call failed is not.

What it never does is fail or slow a request:
- a full buffer (`max_requests` waiting) turns the entry away and counts it in `dropped`;
- a failed upload keeps the encoded file and tries again at the next flush; while the stores
  stay away, files wait up to `max_requests` requests' worth, then the oldest are given up
  (counted in `dropped`, one warning per outage in the server's log);
- `close()` (the server calls it on SIGTERM after its last answer) flushes everything; what
  cannot be uploaded then is written to the spool folder (the project's `.mloop/predictions/`)
  and uploaded by the next `PredictionLog` that starts there, so a graceful restart loses
  nothing it answered, even with the store down.

A crash (SIGKILL, OOM) loses what was buffered since the last flush, at most `flush_seconds` of
requests: spooling every request to disk as it is answered would cost a write per request on
the loop, which is what the buffer is there to avoid.

Class scores are computed when the writer flushes, not while a client waits, within a budget
per flush (`scoring.py`): a model's failure to score costs its rows their scores, never the rows.

Sampling keeps `sample_rate` of the requests, chosen by a hash of the request id rather than a
counter: a shadow's copy carries its primary's id, so both are kept or neither (a counter would
keep one without the other), and every server process of an endpoint keeps the same requests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.domain.names import ModelRef
from mloop.domain.prediction import PredictionBatch
from mloop.errors import MissingDependency
from mloop.services.predictions.scoring import Scoring

if TYPE_CHECKING:
    from mloop.services.predictions.encode import Encoded
    from mloop.store.artifacts.cas import ArtifactStore
    from mloop.store.metadata.protocol import MetadataStore

log = logging.getLogger("mloop.predictions")
FLUSH_SECONDS = 10.0
FLUSH_REQUESTS = 10_000
MAX_REQUESTS = 100_000
SPOOLED = ".parquet"
CLAIMED = ".claimed"


@dataclass
class _Pending:
    """An encoded file not uploaded yet; its id stays the same on every attempt, so a retry
    after an upload that did land adds no second index row."""

    id: str
    encoded: Encoded
    digest: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """Who answered a record's requests: one version in one role on one endpoint (a server
    makes one per slot and hands the same object with every record, so a flush groups by
    identity), with what the writer needs of it: the inputs' `names` and the model's class
    `scores` (`LoadedModel.scores`, or None)."""

    endpoint: str
    model: str
    role: str
    names: Sequence[str] | None = None
    scores: Any = None

    @property
    def key(self) -> tuple[str, str, str]:
        return str(self.endpoint), str(self.model), str(self.role)


# What a server's batcher carries for a request to be logged: its source and its request id.
Tag = tuple[Source, str]


class PredictionLog:
    """The prediction log's writer for one server process.

    Example:
        >>> plog = PredictionLog(project.metadata, project.artifacts)  # doctest: +SKIP
        >>> plog.record("web", "churn:3", "stable", "req-1", batch.data, answer, time.time())
        >>> plog.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        *,
        sample_rate: float = 1.0,
        flush_seconds: float = FLUSH_SECONDS,
        flush_requests: int = FLUSH_REQUESTS,
        max_requests: int = MAX_REQUESTS,
        spool: Path | None = None,
        clock: Callable[[], float] = time.time,
        scores: bool = True,
        score_seconds: float | None = None,
        closes: Callable[[], None] | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be from 0 to 1, not {sample_rate}")
        try:  # the server learns at start, not at its first flush, that Parquet needs pyarrow
            import mloop.services.predictions.encode  # noqa: F401
        except ImportError as exc:
            raise MissingDependency.for_import(exc) or exc from None
        self.metadata = metadata
        self.artifacts = artifacts
        self.sample_rate = sample_rate
        self.flush_seconds = flush_seconds
        self.flush_requests = flush_requests
        self.max_requests = max_requests
        self.spool = spool
        self.clock = clock
        self.scores = scores
        # called once the log is closed: the stores it wrote to, where they are its own (a
        # server worker opens a Project for its log alone; its connections end with the log)
        self.closes = closes
        self.scoring = Scoring(flush_seconds / 2 if score_seconds is None else score_seconds)
        # Counters a server exposes in /metrics: requests logged, and requests not logged
        # (a full buffer, or files given up while the stores were away); failed uploads.
        self.written = 0
        self.written_rows = 0
        self.turned_away = 0  # by `record`, on the server's loop: a full buffer
        self.given_up = 0  # by the writer's thread: a long outage, an answer it cannot encode
        self.failures = 0
        self.recovered = 0
        self._threshold = int(sample_rate * 2**32)
        self._buffer: deque[tuple[Any, ...]] = deque()
        # requests recorded and requests taken by the writer: each written by one thread only
        self._in = 0
        self._out = 0
        self._pending: list[_Pending] = []
        self._woken = False
        self._closed = False
        self._wake = threading.Event()
        self._flushing = threading.Lock()
        self._outage = False
        self._thread = threading.Thread(target=self._run, name="mloop-prediction-log", daemon=True)
        self._thread.start()

    # the server's side: cheap, never raises -------------------------------------------------
    def keeps(self, request_id: str) -> bool:
        """Whether the sampling rate keeps this request (by a hash of its id, so a shadow's
        copy is kept with its primary, and every server process keeps the same requests)."""
        return self._threshold >= 4294967296 or zlib.crc32(request_id.encode()) < self._threshold

    def record(
        self,
        endpoint: str,
        model: str,
        role: str,
        request_id: str,
        data: Any,
        result: Any,
        at: float,
        names: Any = None,
        scores: Any = None,
    ) -> None:
        """Log one answered request (or a shadow's copy, under its primary's `request_id`),
        if the sampling rate keeps it.

        `data` is the request's inputs as the server's reader made them (a 2-D array whose
        columns are `names`, the signature's inputs, or a DataFrame) and `result` the model's
        answer, one per row. Neither is copied: the server must not change them afterwards.
        `scores` is the model's (`LoadedModel.scores`: a batch -> its classes and a rows x
        classes array), called when the log flushes; None: the model has no class scores.
        """
        if not self.keeps(request_id):
            return
        source = Source(endpoint, model, role, names, scores)
        self.record_batch(source, (request_id,), None, data, result, at)

    def record_batch(
        self,
        source: Source,
        request_ids: Sequence[str],
        rows: Sequence[int] | None,
        data: Any,
        result: Any,
        at: float,
        firsts: Sequence[int] | None = None,
    ) -> None:
        """Log the requests of one predict call at once: `data` and `result` are the call's
        batch, `rows` each request's rows in it, in order (None: one request, all of it),
        `firsts` each request's first row (a request cut into parts; None: row 0). The caller
        has asked `keeps` already. What a server does per call rather than per request: its
        batches are stacked already, so the writer need not stack them again."""
        waiting = self._in - self._out
        if waiting >= self.max_requests or self._closed:
            self.turned_away += len(request_ids)
            return
        self._buffer.append((source, request_ids, rows, firsts, data, result, at))
        self._in += len(request_ids)
        if waiting + len(request_ids) >= self.flush_requests and not self._woken:
            self._woken = True
            self._wake.set()

    def record_tagged(
        self,
        tags: Sequence[Tag | None],
        firsts: Sequence[int],
        rows: Sequence[int],
        data: Any,
        result: Any,
    ) -> None:
        """Log a predict call as a server's batcher hands it over (`MicroBatcher`'s `log`):
        each request's `Tag` (None: not logged), the row of its request it starts at, and its
        rows in the call's `data` and `result`. A call of one version whose requests are all
        logged is the usual case and is recorded whole; otherwise each version's requests are
        taken out of it (versions that are one model share their batches). Never raises: the
        batch's answers are about to go out."""
        try:
            at = time.time()
            parted = firsts.count(0) != len(firsts)
            first = tags[0]
            if first is not None and all(t is not None and t[0] is first[0] for t in tags):
                ids = [t[1] for t in tags]  # type: ignore[index]
                self.record_batch(first[0], ids, rows, data, result, at, firsts if parted else None)
            else:
                self._split(tags, firsts if parted else None, rows, data, result, at)
        except Exception:  # a request is never failed by its log: the rows are given up
            self.turned_away += sum(1 for tag in tags if tag is not None)
            log.exception("prediction log: a predict call could not be logged; dropped")

    def _split(
        self,
        tags: Sequence[Tag | None],
        firsts: Sequence[int] | None,
        rows: Sequence[int],
        data: Any,
        result: Any,
        at: float,
    ) -> None:
        """Record each version's requests of a call, taken out of it by position."""
        import numpy as np

        from mloop.services.predictions.encode import pick

        where: dict[Source, list[int]] = {}  # each version's requests in the call, in order
        for n, tag in enumerate(tags):
            if tag is not None:
                where.setdefault(tag[0], []).append(n)
        counts = np.asarray(rows, np.int64)
        starts = np.cumsum(counts) - counts
        single = bool((counts == 1).all())
        for source, found in where.items():
            index = np.asarray(found, np.int64)
            if not single:  # each request's rows: from its start, as many as it has
                length = counts[index]
                index = np.repeat(starts[index] - np.cumsum(length) + length, length)
                index += np.arange(len(index))
            self.record_batch(
                source,
                [tags[n][1] for n in found],  # type: ignore[index]
                [rows[n] for n in found],
                pick(data, index),
                pick(result, index),
                at,
                None if firsts is None else [firsts[n] for n in found],
            )

    @property
    def dropped(self) -> int:
        """Requests answered but not logged. Two counters, each written by one thread only,
        so no increment is lost to the other."""
        return self.turned_away + self.given_up

    @property
    def unscored(self) -> int:
        """Rows of models with class scores that were logged without them."""
        return self.scoring.unscored

    @property
    def waiting(self) -> int:
        """Requests buffered or encoded but not stored yet."""
        return self._in - self._out + sum(p.encoded.requests for p in list(self._pending))

    # the writer's side: a background thread --------------------------------------------------
    def _run(self) -> None:
        self._recover()
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._woken = False
            if self._closed:
                break
            try:
                self.flush()
            except Exception:  # never let the thread die: the next flush tries again
                log.exception("prediction log: flush failed")

    def flush(self) -> int:
        """Encode what is buffered, then store every file waiting; returns files stored.

        Called by the writer's thread; a test or `close` may call it too.
        """
        with self._flushing:
            self._encode(self._take())
            return self._upload()

    def _take(self) -> list[tuple[Any, ...]]:
        buffer = self._buffer
        taken = [buffer.popleft() for _ in range(len(buffer))]
        self._out += sum(map(len, (entry[1] for entry in taken)))
        return taken

    def _encode(self, taken: list[tuple[Any, ...]]) -> None:
        if not taken:
            return
        from mloop.services.predictions.encode import Requests, encode

        self.scoring.start()
        for (endpoint, model, role), (source, columns) in _groups(taken).items():
            scorer = source.scores if self.scores else None  # one version: one way to score
            score = None if scorer is None else self.scoring.of(model, scorer)
            ids, rows, firsts, data, results, at = columns[1:]
            requests = Requests(ids, rows, firsts, data, results, at, [source.names] * len(ids))
            try:
                encoded = encode(endpoint, model, role, requests, score)
            except Exception:  # what the model answered cannot be stored: say so, keep going
                log.exception(
                    "prediction log: %d requests of %s %s could not be encoded; dropped",
                    sum(map(len, requests.request_ids)),
                    endpoint,
                    model,
                )
                self.given_up += sum(map(len, requests.request_ids))
                continue
            self._pending.append(_Pending(uuid.uuid4().hex, encoded))
        self._bound()

    def _bound(self) -> None:
        """Give up the oldest files once more than `max_requests` requests wait in them."""
        waiting = sum(p.encoded.requests for p in self._pending)
        while self._pending and waiting > self.max_requests:
            oldest = self._pending.pop(0)
            waiting -= oldest.encoded.requests
            self.given_up += oldest.encoded.requests
            log.warning(
                "prediction log: the stores were away too long; gave up %d requests of %s",
                oldest.encoded.requests,
                oldest.encoded.endpoint,
            )

    def _upload(self) -> int:
        stored: list[_Pending] = []
        try:
            for pending in self._pending:
                pending.digest = self.artifacts.put_bytes(pending.encoded.parquet)
                stored.append(pending)
            if stored:
                self.artifacts.sync()  # objects durable before the index names them
            for pending in stored:
                self.metadata.predictions.add(self._batch(pending))
                self.written += pending.encoded.requests
                self.written_rows += pending.encoded.rows
                self._pending.remove(pending)
        except Exception as exc:
            self.failures += 1
            if not self._outage:  # once per outage, not once per flush
                log.warning("prediction log: storing failed, will retry: %s", exc)
            self._outage = True
            return 0
        if self._outage:
            log.warning("prediction log: storing works again")
        self._outage = False
        return len(stored)

    def _batch(self, pending: _Pending) -> PredictionBatch:
        encoded = pending.encoded
        assert pending.digest is not None  # stored before its index row is added
        return PredictionBatch(
            id=pending.id,
            endpoint=encoded.endpoint,
            model=ModelRef.parse(encoded.model),
            role=encoded.role,
            first_at=encoded.first_at,
            last_at=encoded.last_at,
            rows=encoded.rows,
            requests=encoded.requests,
            digest=pending.digest,
            bytes=len(encoded.parquet),
            created=self.clock(),
        )

    # restarts: the spool --------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread, store everything buffered, and spool what cannot be stored."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        try:
            self.flush()
        except Exception:
            log.exception("prediction log: the last flush failed")
        if self._pending:
            self._spool_pending()
        if self.closes is not None:
            try:
                self.closes()
            except Exception:
                log.exception("prediction log: closing its stores failed")

    def _spool_pending(self) -> None:
        with self._flushing:
            for pending in list(self._pending):
                if self.spool is None:
                    self.given_up += pending.encoded.requests
                else:
                    try:
                        self.spool.mkdir(parents=True, exist_ok=True)
                        tmp = self.spool / f".{pending.id}.tmp"
                        tmp.write_bytes(pending.encoded.parquet)
                        os.replace(tmp, self.spool / f"{pending.id}{SPOOLED}")
                    except OSError:
                        log.exception("prediction log: could not spool %s", pending.id)
                        self.given_up += pending.encoded.requests
                self._pending.remove(pending)

    def _recover(self) -> None:
        """Take up files an earlier server spooled; each is claimed by a rename first, so of
        several processes starting at once exactly one uploads it."""
        if self.spool is None or not self.spool.is_dir():
            return
        from mloop.services.predictions.encode import decode

        for path in sorted(self.spool.iterdir()):
            if path.suffix != SPOOLED and not _abandoned(path):
                continue
            claimed = path.with_name(f"{path.name.split('.')[0]}.{os.getpid()}{CLAIMED}")
            try:
                os.rename(path, claimed)
                encoded = decode(claimed.read_bytes())
            except FileNotFoundError:
                continue  # another process claimed it first
            except Exception:
                log.exception("prediction log: spooled file %s is unreadable; left there", path)
                continue
            pending = _Pending(claimed.name.split(".")[0], encoded)
            with self._flushing:
                self._pending.append(pending)
                self._upload()
                if pending in self._pending:  # the stores are away: leave it for the next start
                    self._pending.remove(pending)
                    os.rename(claimed, path.with_name(pending.id + SPOOLED))
                    return
            claimed.unlink(missing_ok=True)
            self.recovered += encoded.requests


def _groups(
    taken: list[tuple[Any, ...]],
) -> dict[tuple[str, str, str], tuple[Source, list[tuple[Any, ...]]]]:
    """The taken records by (endpoint, model version, role), each group as its `Source` and
    columns (one tuple per field of `record_batch`'s entry). A server serving one version
    hands every record the same `Source`: that flush is one group, transposed at once with
    no Python step per record."""
    first = taken[0][0]
    columns = list(zip(*taken, strict=True))
    if columns[0].count(first) == len(taken):
        return {first.key: (first, columns)}
    groups: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    sources: dict[tuple[str, str, str], Source] = {}
    for entry in taken:
        key = entry[0].key
        sources.setdefault(key, entry[0])
        groups.setdefault(key, []).append(entry)
    return {key: (sources[key], list(zip(*same, strict=True))) for key, same in groups.items()}


def _abandoned(path: Path) -> bool:
    """A file claimed by a process that is gone (it died while uploading it)."""
    if not path.name.endswith(CLAIMED):
        return False
    try:
        os.kill(int(path.name.split(".")[1]), 0)
    except (ValueError, IndexError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    return False
