"""Working data a run reads: dataset files edited since the dataset's latest version.

A step reads dataset versions, never working files, so an edited `data/churn.csv` would be
ignored without a word (`dvc repro` would hash it again). Before a run, each dataset it reads at
its latest version (never a pinned `NAME:V`) is compared with its working files through the data
service's status, which a stat cache makes cheap when nothing changed. By default changed files
become the dataset's next version, made exactly as `mloop data add` makes one (with an Event
naming the command that made it and why), so the steps reading it run again. With
`WorkingData.LATEST` the latest versions are used as they are and the difference is reported.
A run never versions a deletion: it reports it and uses the latest version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from mloop.domain.pipeline import PipelineGraph
from mloop.services.data.versioning import DataService, StatusReport

SHOWN_PATHS = 3


class WorkingData(StrEnum):
    """What a run does with changed working files of the datasets it reads."""

    VERSION = "version"  # version them, then run on the new version
    LATEST = "latest"  # use the latest versions as they are, and say what differs


@dataclass(frozen=True, slots=True)
class DataChange:
    """A dataset whose working files differed from its latest version when a run started.

    `action` is "versioned" (a new version was made: `version`), "kept" (the latest version
    was used as asked) or "deleted" (files are missing: the latest version was used).
    """

    dataset: str
    action: str
    latest: int  # the version the working files were compared with
    version: int  # the version the run reads
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    unchanged: int = 0  # files equal to the latest version's

    @property
    def files(self) -> str:
        """What changed, briefly: `modified data/a.csv; added data/b.csv and 3 more`."""
        parts = []
        for word, paths in (
            ("modified", self.modified),
            ("added", self.added),
            ("deleted", self.deleted),
        ):
            if paths:
                shown = ", ".join(paths[:SHOWN_PATHS])
                more = len(paths) - SHOWN_PATHS
                parts.append(f"{word} {shown}" + (f" and {more} more" if more > 0 else ""))
        return "; ".join(parts)


def latest_reads(graphs: Iterable[PipelineGraph]) -> set[str]:
    """The datasets the graphs read at their latest version (pinned versions left out)."""
    return {
        str(source.value)
        for graph in graphs
        for node in graph.steps
        for _, source in node.inputs
        if source.kind == "dataset" and source.version is None
    }


class WorkingDataCheck:
    """One run's look at its working data: each dataset is checked (and reported) once, even
    when the fast replay path and the traced pipeline both ask. `by` names what makes the
    versions (in their message and Event), e.g. "`mloop run train`"."""

    def __init__(
        self,
        data: DataService,
        mode: WorkingData,
        by: str,
        on_change: Callable[[DataChange], None] | None = None,
    ) -> None:
        self.data = data
        self.mode = mode
        self.by = by
        self.on_change = on_change or (lambda change: None)
        self.checked: set[str] = set()
        self.changes: list[DataChange] = []

    def sync(self, names: Iterable[str]) -> list[DataChange]:
        """Check the named datasets' working files; version the changed ones (by default).

        Example:
            >>> check = WorkingDataCheck(project.data, WorkingData.VERSION, "`mloop run train`")
            >>> [c.version for c in check.sync({"churn"})]  # doctest: +SKIP
            [2]
        """
        found: list[DataChange] = []
        for name in sorted(set(names) - self.checked):
            self.checked.add(name)
            (report,) = self.data.status(name)
            change = None if report.clean else self._settle(report)
            if change is None:
                continue
            found.append(change)
            self.changes.append(change)
            self.on_change(change)
        return found

    def _settle(self, report: StatusReport) -> DataChange | None:
        name, latest = report.name, report.version
        sources = self.data.get(f"{name}:{latest}").sources
        seen = DataChange(
            name,
            "kept",
            latest,
            latest,
            report.added,
            report.modified,
            report.deleted,
            tuple(sources),
            report.unchanged,
        )
        if report.deleted:
            return dataclasses.replace(seen, action="deleted")
        if self.mode is WorkingData.LATEST:
            return seen
        made = self.data.add(
            name,
            [self.data.root / source for source in sources],
            f"versioned by {self.by}: working files changed since {name}:{latest} ({seen.files})",
        )
        if not made.created:  # the files equal the latest version after all
            return None
        return dataclasses.replace(seen, action="versioned", version=made.version.version)
