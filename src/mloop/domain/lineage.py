"""What made a run: the code version and the environment, and the edges of the lineage graph."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CodeVersion:
    """A git commit plus a digest of uncommitted changes; `commit` is None outside git."""

    commit: str | None = None
    diff_digest: str | None = None
    repo: str | None = None

    @property
    def state(self) -> str:
        if self.commit is None:
            return "not in git"
        return "dirty" if self.diff_digest else "clean"

    def describe(self) -> str:
        """`a1b2c3d4e5f6`, `a1b2c3d4e5f6 +uncommitted 9f8e7d6c5b4a`, or `not in git`."""
        if self.commit is None:
            return "not in git"
        text = self.commit[:12]
        if self.diff_digest:
            text += f" +uncommitted {self.diff_digest[:12]}"
        return text


@dataclass(frozen=True, slots=True)
class Environment:
    """The interpreter and the installed distributions, digested; the full list is an artifact."""

    digest: str
    python: str
    packages_digest: str
    package_count: int


class NodeKind(enum.StrEnum):
    RUN = "run"
    DATASET = "dataset"
    MODEL = "model"
    ARTIFACT = "artifact"
    CODE = "code"
    ENVIRONMENT = "environment"


@dataclass(frozen=True, slots=True)
class LineageNode:
    """One node of a lineage tree: what it is (`kind`), its address (`ref`) and how it is
    tied to its parent (`relation`)."""

    kind: NodeKind
    ref: str
    label: str
    relation: str = ""
    children: tuple[LineageNode, ...] = ()
