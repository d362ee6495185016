"""Copy objects between two artifact stores, verifying every byte on the way."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mloop.errors import CorruptArtifact
from mloop.store.artifacts.cas import ArtifactStore

WORKERS = 8


@dataclass(frozen=True, slots=True)
class TransferResult:
    copied: int
    copied_bytes: int
    present: int
    missing: tuple[str, ...]


def transfer(
    src: ArtifactStore,
    dst: ArtifactStore,
    digests: Iterable[str],
    progress: Callable[[int], None] | None = None,
) -> TransferResult:
    """Copy each object `dst` lacks from `src`. Objects missing from `src` are reported."""
    wanted = sorted(set(digests))
    tick = progress or (lambda n: None)

    def one(digest: str) -> tuple[str, int]:
        try:
            if dst.exists(digest):
                return "present", 0
            if not src.exists(digest):
                return "missing", 0
            local = src.backend.local_path(digest[:2] + "/" + digest[2:])
            if local is not None:
                stored, size, _ = dst.put_path(local)
            else:
                fd, name = tempfile.mkstemp(prefix="mloop-transfer-")
                os.close(fd)
                tmp = Path(name)
                try:
                    src.export(digest, tmp)
                    stored, size, _ = dst.put_path(tmp)
                finally:
                    tmp.unlink(missing_ok=True)
            if stored != digest:
                dst.delete(stored)
                raise CorruptArtifact(
                    f"object {digest[:12]} in {src.uri} is corrupt: its content does not match",
                    "run `mloop fsck --full` on the source store",
                )
            return "copied", size
        finally:
            tick(1)

    copied = present = copied_bytes = 0
    missing: list[str] = []
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="mloop-transfer") as pool:
        for digest, (outcome, size) in zip(wanted, pool.map(one, wanted), strict=True):
            if outcome == "copied":
                copied += 1
                copied_bytes += size
            elif outcome == "present":
                present += 1
            else:
                missing.append(digest)
    dst.sync()
    return TransferResult(copied, copied_bytes, present, tuple(missing))
