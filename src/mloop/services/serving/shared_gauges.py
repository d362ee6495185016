"""The monitor's last result, in shared memory, for whichever worker answers /metrics.

One monitor per server (a process of its own, `server/monitor.py`) computes drift, accuracy and
bias every `monitoring_interval`; a scrape must never do that work, and may reach any worker.
So the monitor publishes its gauges here, in one anonymous shared map made before the monitor
and the workers are forked (beside `SharedCounters`), as one serialized blob: a header and JSON
lines.

One writer at a time (the monitor; its keeper counts a pass only once the monitor is dead),
many readers, no lock: a sequence number (odd while writing, as a seqlock) and a CRC-32 of the
blob let a reader tell a torn copy from a whole one and read again. The region is
bounded (`CAPACITY`); a result that does not fit keeps the families and samples that do, and
counts the samples left out (`dropped`), so a huge feature set costs a gap, never the server.

The header also holds the monitor's own numbers: passes, failed passes, when the last pass
published and what it cost. A monitor started again (after it died) counts on from there.
"""

from __future__ import annotations

import mmap
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

CAPACITY = 4 * 1024 * 1024  # bytes of JSON lines; pages are only touched as far as they are used
# seq (u64), length (u64), crc (u64), then doubles: passes, errors, last run, duration, dropped
_HEADER = struct.Struct("<QQQddddd")
READ_TRIES = 1000

Sample = tuple[Sequence[str], float]
# One gauge family: (name, help, label names, samples of (label values, value)).
Family = tuple[str, str, Sequence[str], Sequence[Sample]]


@dataclass(frozen=True, slots=True)
class Published:
    """What a reader sees: the families of the last published pass, and the monitor's counts."""

    sequence: int
    families: tuple[Family, ...] = ()
    passes: float = 0.0
    errors: float = 0.0
    last_run: float = 0.0  # epoch seconds of the last pass that published (0: none yet)
    duration: float = 0.0  # seconds that pass took
    dropped: float = 0.0  # samples the last pass had no room for


class SharedGauges:
    """A bounded shared region for the monitor's gauges: `publish` (one writer), `read` (any).

    Example:
        >>> board = SharedGauges(4096)
        >>> board.publish([("mloop_x", "An example", ["feature"], [(["age"], 0.5)])], 0.01)
        >>> board.read().families[0][3]
        ((('age',), 0.5),)
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, _HEADER.size + capacity)  # MAP_SHARED | MAP_ANONYMOUS
        self._cached = Published(0)

    def publish(
        self, families: Iterable[Family], duration: float, incomplete: bool = False
    ) -> None:
        """Replace the result with `families` from a pass that took `duration` seconds;
        `incomplete`: a part of it failed (a version without a reference), counted as an error."""
        blob, dropped = _encode(families, self.capacity)
        seq, _, _, passes, errors, *_ = self._header()
        seq = self._begin(seq)
        self._map[_HEADER.size : _HEADER.size + len(blob)] = blob
        errors += 1 if incomplete else 0
        header = (len(blob), zlib.crc32(blob), passes + 1, errors, time.time(), duration, dropped)
        _HEADER.pack_into(self._map, 0, seq, *header)
        self._end(seq)

    def failed(self) -> None:
        """Count a pass that published nothing; the last result stays."""
        seq, length, crc, passes, errors, last, duration, dropped = self._header()
        seq = self._begin(seq)
        _HEADER.pack_into(
            self._map, 0, seq, length, crc, passes + 1, errors + 1, last, duration, dropped
        )
        self._end(seq)

    def read(self) -> Published:
        """The last whole result (parsed once per publication); the previous one while the
        writer is busy past `READ_TRIES` looks."""
        for _ in range(READ_TRIES):
            first = struct.unpack_from("<Q", self._map, 0)[0]
            if first % 2:
                continue
            if first == self._cached.sequence:
                return self._cached
            header = _HEADER.unpack_from(self._map, 0)
            _, length, crc, passes, errors, last, duration, dropped = header
            length = min(length, self.capacity)
            blob = self._map[_HEADER.size : _HEADER.size + length]
            if struct.unpack_from("<Q", self._map, 0)[0] != first or zlib.crc32(blob) != crc:
                continue  # written over while copied: look again
            families = _decode(blob)
            self._cached = Published(first, families, passes, errors, last, duration, dropped)
            return self._cached
        return self._cached

    def _header(self) -> tuple[int, int, int, float, float, float, float, float]:
        found: tuple[int, int, int, float, float, float, float, float] = _HEADER.unpack_from(
            self._map, 0
        )
        return found

    def _begin(self, seq: int) -> int:
        """Mark the region as being written: an odd sequence (a writer that died mid-way left
        one odd already: step over it)."""
        seq += 1 if seq % 2 == 0 else 2
        struct.pack_into("<Q", self._map, 0, seq)
        return seq

    def _end(self, seq: int) -> None:
        struct.pack_into("<Q", self._map, 0, seq + 1)


def _encode(families: Iterable[Family], capacity: int) -> tuple[bytes, int]:
    """JSON lines: a family's `{"n", "h", "l"}`, then one `[values..., value]` per sample; the
    first lines that fit in `capacity`, and how many samples did not."""
    lines: list[bytes] = []
    used = dropped = 0
    full = False  # once a line does not fit, none after it is kept: the result is a prefix
    for name, text, labels, samples in families:
        head = orjson.dumps({"n": name, "h": text, "l": list(labels)}) + b"\n"
        kept = False
        for values, value in samples:
            line = orjson.dumps([*values, value]) + b"\n"
            need = len(line) + (0 if kept else len(head))
            full = full or used + need > capacity
            if full:
                dropped += 1
                continue
            if not kept:
                lines.append(head)
                kept = True
            lines.append(line)
            used += need
    return b"".join(lines), dropped


def _decode(blob: bytes) -> tuple[Family, ...]:
    families: list[Family] = []
    samples: list[Sample] = []
    for line in blob.splitlines():
        item = orjson.loads(line)
        if isinstance(item, dict):
            samples = []
            families.append((item["n"], item["h"], tuple(item["l"]), samples))
        else:
            samples.append((tuple(item[:-1]), float(item[-1])))
    return tuple((n, h, labels, tuple(s)) for n, h, labels, s in families)
