"""Per-version Prometheus counters in shared memory: slots come and go while the server runs.

The worker-wide counters (`metrics.py`) have a fixed layout made before the workers fork. The
versions an endpoint serves change at run time, and each worker follows the deployment on its
own, so the layout cannot name them up front. Instead every worker owns `SLOTS` fixed blocks of
floats plus, beside each, `LABEL_BYTES` of label text (`endpoint`, `model`, `role`, NUL-split).
A worker takes a block when it loads a version, writes the labels, then marks the block
active; whichever worker answers a scrape reads every active block of every worker and adds up
the blocks with the same labels. One writer per block, as for the rest, so no locks.

A version that retires keeps its block (and its series, which stay constant, as a Prometheus
counter should) until the block is needed for a new version; then the oldest released block is
zeroed and relabelled, and its old series disappears rather than going backwards. A version that
comes back (a rollback) finds its block still labelled and counts on from where it stopped.
"""

from __future__ import annotations

import mmap
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from mloop.errors import MloopError

SLOTS = 16  # per worker: far more versions than one deployment serves at once
LABEL_BYTES = 384
# Answers by status (a fixed list, "other" past it) and latency bounds; the same as metrics.py.
STATUSES = (200, 400, 401, 404, 405, 408, 413, 415, 422, 431, 499, 500, 503, 504)
SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_STATUS_INDEX = {status: i for i, status in enumerate(STATUSES)}
_NS = len(STATUSES) + 1
_HS = len(SECONDS) + 3  # buckets, +Inf, sum, count
# One version block:
ACTIVE = 0
REQUESTS = 1
ERRORS = REQUESTS + _NS  # answers with a 5xx status
LATENCY = ERRORS + 1
MIRRORED = LATENCY + _HS  # shadow: copies predicted by the shadow
DROPPED = MIRRORED + 1  # shadow: copies dropped, the queue being full
AGREED = DROPPED + 1  # shadow: copies whose every prediction matched the primary's
MIRROR_FAILED = AGREED + 1  # shadow: copies the shadow failed to predict
MIRROR_LATENCY = MIRROR_FAILED + 1  # predict seconds on mirrored requests (either role)
OUTCOMES = MIRROR_LATENCY + _HS  # outcomes posted for the version's answers (POST /feedback)
OUTCOME_TOTAL = OUTCOMES + 1  # their sum: a conversion rate is OUTCOME_TOTAL / OUTCOMES
VBLOCK = OUTCOME_TOTAL + 1


def observe(
    block: memoryview[float], base: int, bounds: tuple[float, ...], value: float, times: int = 1
) -> None:
    """One value (seen `times` times) into the histogram at `base` (buckets, +Inf, sum, count)."""
    block[base + bisect_left(bounds, value)] += times
    block[base + len(bounds) + 1] += value * times
    block[base + len(bounds) + 2] += times


@dataclass(frozen=True, slots=True)
class Labels:
    """Which series a version block counts: the endpoint, the version (NAME:V) and its role."""

    endpoint: str
    model: str
    role: str

    def encode(self) -> bytes:
        raw = "\0".join((self.endpoint, self.model, self.role)).encode()
        if len(raw) >= LABEL_BYTES:
            raise MloopError(
                f"the labels of {self.model} ({self.role}) on {self.endpoint} are too long",
                f"use endpoint and model names under {LABEL_BYTES // 3} characters",
            )
        return raw


class VersionCounters:
    """`SLOTS` version blocks and their labels for each of `workers` processes, in shared memory
    made before forking (two anonymous maps: floats, and label bytes)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._floats = mmap.mmap(-1, workers * SLOTS * VBLOCK * 8)
        self._labels = mmap.mmap(-1, workers * SLOTS * LABEL_BYTES)
        self.slots = memoryview(self._floats).cast("d")

    def block(self, worker: int, index: int) -> memoryview[float]:
        start = (worker * SLOTS + index) * VBLOCK
        return self.slots[start : start + VBLOCK]

    def labels(self, worker: int, index: int) -> Labels | None:
        if not self.block(worker, index)[ACTIVE]:
            return None
        start = (worker * SLOTS + index) * LABEL_BYTES
        raw = self._labels[start : start + LABEL_BYTES].split(b"\0\0", 1)[0]
        parts = raw.decode(errors="replace").split("\0")
        return Labels(*parts) if len(parts) == 3 else None

    def publish(self, worker: int, index: int, labels: Labels) -> memoryview[float]:
        """Zero block `index` of `worker`, label it, then mark it active (in that order, so a
        scrape never adds a half-made block)."""
        block = self.block(worker, index)
        block[ACTIVE] = 0.0
        for i in range(VBLOCK):
            block[i] = 0.0
        raw = labels.encode()
        start = (worker * SLOTS + index) * LABEL_BYTES
        self._labels[start : start + LABEL_BYTES] = raw + b"\0" * (LABEL_BYTES - len(raw))
        block[ACTIVE] = 1.0
        return block

    def totals(self) -> Iterator[tuple[Labels, list[float]]]:
        """Every labelled series, its blocks added up over the workers."""
        summed: dict[Labels, list[float]] = {}
        for worker in range(self.workers):
            for index in range(SLOTS):
                labels = self.labels(worker, index)
                if labels is None:
                    continue
                block = self.block(worker, index)
                total = summed.setdefault(labels, [0.0] * VBLOCK)
                for i in range(VBLOCK):
                    total[i] += block[i]
        yield from summed.items()


class VersionMetrics:
    """The series of one served version in this worker: what a slot counts per request."""

    __slots__ = ("block", "labels")

    def __init__(self, block: memoryview[float], labels: Labels) -> None:
        self.block = block
        self.labels = labels

    def request(self, status: int, seconds: float) -> None:
        block = self.block
        block[REQUESTS + _STATUS_INDEX.get(status, _NS - 1)] += 1.0
        if status >= 500:
            block[ERRORS] += 1.0
        observe(block, LATENCY, SECONDS, seconds)

    def mirrored(self, seconds: float, copies: int = 1) -> None:
        """Predict seconds of mirrored requests (the primary's, or the shadow's, whose copies
        are predicted by group: each copy took the group's `seconds`)."""
        observe(self.block, MIRROR_LATENCY, SECONDS, seconds, copies)

    def outcome(self, value: float) -> None:
        block = self.block
        block[OUTCOMES] += 1.0
        block[OUTCOME_TOTAL] += value

    def count(self, field: int, more: int = 1) -> None:
        """`more` of MIRRORED, DROPPED, AGREED or MIRROR_FAILED."""
        self.block[field] += more


class VersionBlocks:
    """Which of this worker's version blocks counts which version: a block is taken when a slot
    is made and released when its version retires; a released block keeps its labels (and its
    series) until a new version needs the room."""

    def __init__(self, counters: VersionCounters, worker: int) -> None:
        self.counters = counters
        self.worker = worker
        self._by_labels: dict[Labels, int] = {}
        self._taken: dict[Labels, int] = {}  # labels -> slots using the block
        self._released: list[Labels] = []  # oldest first
        for index in range(SLOTS):  # a restarted worker counts on in its predecessor's blocks
            labels = counters.labels(worker, index)
            if labels is not None:
                self._by_labels[labels] = index
                self._released.append(labels)

    def take(self, labels: Labels) -> VersionMetrics:
        index = self._by_labels.get(labels)
        if index is None:
            index = self._free()
            self._by_labels[labels] = index
            block = self.counters.publish(self.worker, index, labels)
        else:
            block = self.counters.block(self.worker, index)
            if labels in self._released:
                self._released.remove(labels)
        self._taken[labels] = self._taken.get(labels, 0) + 1
        return VersionMetrics(block, labels)

    def release(self, labels: Labels) -> None:
        left = self._taken.get(labels, 0) - 1
        if left > 0:
            self._taken[labels] = left
            return
        self._taken.pop(labels, None)
        if labels in self._by_labels and labels not in self._released:
            self._released.append(labels)

    def _free(self) -> int:
        used = set(self._by_labels.values())
        for index in range(SLOTS):
            if index not in used:
                return index
        if not self._released:
            raise MloopError(
                f"a worker serves {SLOTS} versions at once, the most it can count",
                "deploy fewer versions to one endpoint",
            )
        oldest = self._released.pop(0)
        return self._by_labels.pop(oldest)
