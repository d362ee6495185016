"""Lineage: what made a run, a dataset version, a model version or an artifact, and what was
made from it.

The graph is not stored as such: its edges are records runs and datasets keep anyway (a run's
inputs, outputs, parent, code and environment; the run that created a dataset version or
registered a model), read back one node at a time. Each tree is cut at a depth and every node
is expanded once, at its first appearance, so a cycle in hand-logged inputs or a diamond (two
runs reading one dataset) stays small and finite.

Identical bytes can come from many runs (every re-run of an unchanged step makes them again).
Traced from a step of a pipeline run, an artifact the step read is followed only to the step of
the same pipeline run that wrote it, so a model's lineage is the one chain that made it; traced
from the artifact itself, every run that wrote those bytes is listed.
The audit log is read here too: it is the other half of "where did this come from".
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal

from mloop.domain.dataset import DatasetVersion
from mloop.domain.digests import is_digest
from mloop.domain.event import Event
from mloop.domain.lineage import LineageNode, NodeKind
from mloop.domain.model import ModelVersion
from mloop.domain.names import DatasetRef, ModelRef, parse_address
from mloop.domain.records import human_size
from mloop.domain.run import Run, RunKind, RunOutput
from mloop.errors import InvalidAddress, InvalidInput, MloopError, NotFound
from mloop.store.metadata.protocol import MetadataStore

Direction = Literal["upstream", "downstream", "both"]
DEFAULT_DEPTH = 5
MAX_DEPTH = 100
REPEATED = "(see above)"
NOT_RECORDED = "(not in the metadata store)"
_HEX = re.compile(r"[0-9a-f]+")
_LINEAGE_KINDS = ("run", "dataset", "model", "artifact")
_REF_HINT = (
    "give run/ID, dataset/NAME:V (or dataset/NAME for the latest), model/NAME:V (or "
    "model/NAME@ALIAS) or artifact/DIGEST"
)


@dataclass(frozen=True, slots=True)
class LineageTrace:
    """The lineage of one object: `upstream` and `downstream` are None when not asked for.

    `truncated` says a branch went on beyond `depth`, so the caller can suggest a larger one.
    """

    root: LineageNode
    upstream: tuple[LineageNode, ...] | None
    downstream: tuple[LineageNode, ...] | None
    depth: int
    truncated: bool


@dataclass
class _Walk:
    """State of one trace: nodes already expanded, per-trace caches of store reads, and the
    runs that wrote an artifact where a pipeline run says which (see the module docstring)."""

    seen: set[str] = field(default_factory=set)
    runs: dict[str, Run] = field(default_factory=dict)
    writers: dict[str, list[Run]] = field(default_factory=dict)
    truncated: bool = False


def _run_node(run: Run, relation: str = "") -> LineageNode:
    return LineageNode(NodeKind.RUN, f"run/{run.id}", f"{run.name}  {run.status.value}", relation)


def _dataset_node(version: DatasetVersion, relation: str = "") -> LineageNode:
    files = "1 file" if version.file_count == 1 else f"{version.file_count} files"
    label = f"({files}, {human_size(version.total_size)})"
    return LineageNode(NodeKind.DATASET, f"dataset/{version.ref}", label, relation)


def _model_node(version: ModelVersion, relation: str = "") -> LineageNode:
    aliases = f"  @{', @'.join(version.aliases)}" if version.aliases else ""
    label = f"({version.flavor}, {human_size(version.size)}){aliases}"
    return LineageNode(NodeKind.MODEL, f"model/{version.ref}", label, relation)


def _artifact_node(digest: str, outputs: list[RunOutput], relation: str = "") -> LineageNode:
    names = ", ".join(sorted({o.name for o in outputs}))
    known = outputs[0].size if outputs else None  # None: a size recorded before 0004
    size = f"({human_size(known)})" if known is not None else ""
    label = "  ".join(part for part in (names, size) if part)
    return LineageNode(NodeKind.ARTIFACT, f"artifact/{digest}", label, relation)


class LineageService:
    """Trace lineage through runs, dataset versions and artifacts; read the audit log."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    # resolving references -----------------------------------------------------------------
    def resolve(self, ref: str) -> LineageNode:
        """The node `ref` names, without children; raise NotFound or InvalidAddress.

        `ref` is `run/ID` or a bare run id prefix, `dataset/NAME:V` (or `dataset/NAME`, the
        latest; a bare `NAME:V` works too), or `artifact/DIGEST` or a bare 64-digit digest; a
        digest prefix of at least 6 digits is resolved against what metadata refers to.

        Example:
            >>> lineage.resolve("dataset/sales:2").label  # doctest: +SKIP
            '(12 files, 3.4 MiB)'
        """
        text = ref.strip()
        lowered = text.lower()
        if "/" not in text and _HEX.fullmatch(lowered):
            return self._resolve_bare_hex(text, lowered)
        address = parse_address(text, None if "/" in text else "dataset")
        if address.kind == "run":
            return _run_node(self._run(address.name))
        if address.kind == "artifact":
            digest = self._digest(address.name.lower())
            return _artifact_node(digest, self._outputs_named(digest))
        if address.kind == "dataset":
            if address.alias is not None:
                raise InvalidAddress(
                    f"datasets have no aliases: {text!r}",
                    f"give a version, as in dataset/{address.name}:1",
                )
            return _dataset_node(self.metadata.datasets.get_version(address.name, address.version))
        if address.kind == "model":
            found = self.metadata.models.get_version(address.name, address.version, address.alias)
            return _model_node(found)
        raise InvalidAddress(f"lineage does not follow {address.kind}s yet: {text!r}", _REF_HINT)

    def _resolve_bare_hex(self, text: str, lowered: str) -> LineageNode:
        """A bare hex string is a run id prefix, a digest (prefix), or a dataset name, in turn."""
        if is_digest(lowered):
            return self.resolve(f"artifact/{lowered}")
        attempts: list[str] = []
        if len(lowered) <= 32:
            attempts.append("run")
        if len(lowered) >= 6:
            attempts.append("artifact")
        attempts.append("dataset")
        for kind in attempts:
            try:
                return self.resolve(f"{kind}/{lowered}")
            except (NotFound, InvalidAddress):
                continue
        raise NotFound(
            f"no run, artifact or dataset matches {text!r}",
            "see `mloop runs list` and `mloop data list`; " + _REF_HINT,
        )

    def _run(self, run_id: str, walk: _Walk | None = None) -> Run:
        if walk is not None and run_id in walk.runs:
            return walk.runs[run_id]
        run = self.metadata.runs.get(run_id)
        if walk is not None:
            walk.runs[run.id] = run
        return run

    def _digest(self, text: str) -> str:
        try:
            return self.metadata.housekeeping.resolve_digest(text)
        except NotFound:
            # A digest only ever logged as a run input is not among the stored references.
            if is_digest(text) and self.metadata.runs.with_input("artifact", text):
                return text
            raise

    def _outputs_named(self, digest: str) -> list[RunOutput]:
        """How the runs that wrote an object named it (for an artifact's label)."""
        found: list[RunOutput] = []
        for run in self.metadata.runs.with_output(digest):
            found.extend(o for o in self.metadata.runs.get(run.id).outputs if o.digest == digest)
        return found

    # tracing ------------------------------------------------------------------------------
    def trace(
        self, ref: str, direction: Direction = "both", depth: int = DEFAULT_DEPTH
    ) -> LineageTrace:
        """What `ref` came from (upstream) and what came from it (downstream), `depth` deep.

        Example:
            >>> trace = lineage.trace("dataset/sales:2", "downstream")  # doctest: +SKIP
            >>> [n.ref for n in trace.downstream]  # the runs that used sales:2  # doctest: +SKIP
            ['run/3f2a9c1b2d4e…']
        """
        if direction not in ("upstream", "downstream", "both"):
            raise InvalidInput(
                f"unknown direction {direction!r}", "use upstream, downstream or both"
            )
        if not 1 <= depth <= MAX_DEPTH:
            raise InvalidInput(
                f"depth must be between 1 and {MAX_DEPTH}, not {depth}", "try --depth 5"
            )
        root = self.resolve(ref)
        walk = _Walk()
        trees: dict[str, tuple[LineageNode, ...] | None] = {"upstream": None, "downstream": None}
        for side in ("upstream", "downstream"):
            if direction in (side, "both"):
                walk.seen = {root.ref}
                trees[side] = self._expand(root, side, depth, walk).children
        return LineageTrace(root, trees["upstream"], trees["downstream"], depth, walk.truncated)

    def _expand(self, node: LineageNode, side: str, depth: int, walk: _Walk) -> LineageNode:
        """`node` with its children `depth` levels deep; each node is expanded only once."""
        edges = self._edges(node, side, walk)
        if depth == 0:
            if any(child.ref not in walk.seen for child in edges):
                walk.truncated = True
            return node
        children: list[LineageNode] = []
        for child in edges:
            if child.ref in walk.seen:
                repeated = f"{child.label}  {REPEATED}".strip()
                children.append(dataclasses.replace(child, label=repeated))
                continue
            walk.seen.add(child.ref)
            children.append(self._expand(child, side, depth - 1, walk))
        return dataclasses.replace(node, children=tuple(children))

    def _edges(self, node: LineageNode, side: str, walk: _Walk) -> list[LineageNode]:
        """The neighbours of `node` on one side, without their own children."""
        if node.label.endswith(NOT_RECORDED):
            return []
        kind, _, key = node.ref.partition("/")
        if kind == "run":
            run = self._run(key, walk)
            return self._run_upstream(run, walk) if side == "upstream" else self._run_down(run)
        if kind == "dataset":
            dataset = DatasetRef.parse(key)
            if side == "upstream":
                found = self.metadata.datasets.get_version(dataset.name, dataset.version)
                if found.run_id is None:
                    return []
                return [_run_node(self._run(found.run_id, walk), "created by")]
            used = self.metadata.runs.with_input("dataset", key)
            return [_run_node(r, "used by") for r in used]
        if kind == "model":
            model = ModelRef.parse(key)
            if side == "downstream":
                return []  # deployments, when they exist
            found_model = self.metadata.models.get_version(model.name, model.version)
            if found_model.run_id is None:
                return []
            return [_run_node(self._run(found_model.run_id, walk), "registered by")]
        if kind == "artifact":
            if side == "upstream":
                writers = walk.writers.get(key) or self.metadata.runs.with_output(key)
                made = [_run_node(r, "output of") for r in writers]
                part = self.metadata.datasets.versions_with_file(key)
                return made + [_dataset_node(v, "part of") for v in part]
            return [_run_node(r, "used by") for r in self.metadata.runs.with_input("artifact", key)]
        return []

    def _run_upstream(self, run: Run, walk: _Walk) -> list[LineageNode]:
        found = self._made_with(run)  # first: a run's own code, before the runs it reads from
        siblings = self._siblings(run, walk)
        for item in run.inputs:
            if item.kind == "dataset":
                found.append(self._dataset_input(item.ref))
            elif item.kind == "artifact":
                writers = [s for s in siblings if any(o.digest == item.ref for o in s.outputs)]
                if writers:
                    walk.writers.setdefault(item.ref, writers)
                label = item.name or ""
                found.append(LineageNode(NodeKind.ARTIFACT, f"artifact/{item.ref}", label, "input"))
            else:
                found.append(
                    LineageNode(NodeKind(item.kind), f"{item.kind}/{item.ref}", "", "input")
                )
        # A pipeline run reads nothing itself: its steps do. The datasets they read are what
        # the whole run came from (the artifacts passed between steps are internal to it).
        seen = {item.ref for item in run.inputs if item.kind == "dataset"}
        for listed in self.metadata.runs.children(run.id):
            child = self._run(listed.id, walk)  # listings leave inputs out; the run has them
            for item in child.inputs:
                if item.kind == "dataset" and item.ref not in seen:
                    seen.add(item.ref)
                    node = self._dataset_input(item.ref)
                    found.append(dataclasses.replace(node, relation=f"input of {child.name}"))
        if run.parent_id is not None:
            found.append(_run_node(self._run(run.parent_id, walk), "parent"))
        return found

    def _siblings(self, run: Run, walk: _Walk) -> list[Run]:
        """The other steps of the pipeline run `run` is a step of, with their outputs."""
        if run.parent_id is None or run.kind is not RunKind.STEP:
            return []
        listed = self.metadata.runs.children(run.parent_id)
        return [self._run(child.id, walk) for child in listed if child.id != run.id]

    def _made_with(self, run: Run) -> list[LineageNode]:
        """The code and the environment the run recorded: what, besides data, made it."""
        found: list[LineageNode] = []
        if run.code is not None:
            commit, diff = run.code.commit, run.code.diff_digest
            ref = f"code/{commit or 'none'}" + (f"+{diff}" if diff else "")
            found.append(LineageNode(NodeKind.CODE, ref, run.code.describe()))
        if run.environment:
            try:
                env = self.metadata.environments.get(run.environment)
                label = f"{env.python}, {env.package_count} packages"
            except NotFound:
                label = NOT_RECORDED
            found.append(LineageNode(NodeKind.ENVIRONMENT, f"environment/{run.environment}", label))
        return found

    def _dataset_input(self, ref: str) -> LineageNode:
        """A dataset a run read; one that is not (or no longer) recorded is shown, not hidden."""
        try:
            dataset = DatasetRef.parse(ref)
            return _dataset_node(
                self.metadata.datasets.get_version(dataset.name, dataset.version), "input"
            )
        except (NotFound, InvalidAddress):
            return LineageNode(NodeKind.DATASET, f"dataset/{ref}", NOT_RECORDED, "input")

    def _run_down(self, run: Run) -> list[LineageNode]:
        by_digest: dict[str, list[RunOutput]] = {}
        for output in run.outputs:
            by_digest.setdefault(output.digest, []).append(output)
        found = [_artifact_node(d, outs, "output") for d, outs in by_digest.items()]
        found += [
            _dataset_node(v, "created") for v in self.metadata.datasets.versions_of_run(run.id)
        ]
        found += [
            _model_node(m, "registered") for m in self.metadata.models.versions_of_run(run.id)
        ]
        found += [_run_node(child, "child") for child in self.metadata.runs.children(run.id)]
        return found

    # the audit log ------------------------------------------------------------------------
    def events(self, ref: str | None = None, limit: int = 100) -> list[Event]:
        """The audit log newest first, all of it or only events about `ref`.

        `dataset/NAME` matches every version's events; a run id prefix is resolved first.

        Example:
            >>> [e.action for e in lineage.events("dataset/sales", limit=2)]  # doctest: +SKIP
            ['dataset.version_created', 'dataset.version_created']
        """
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, not {limit}")
        return self.metadata.events.find(self._event_ref(ref) if ref else None, limit)

    def _event_ref(self, ref: str) -> str:
        """The address events are recorded under; nothing has to exist any more to have history."""
        text = ref.strip()
        lowered = text.lower()
        if "/" not in text and _HEX.fullmatch(lowered) and len(lowered) <= 32:
            try:
                return f"run/{self.metadata.runs.get(lowered).id}"
            except NotFound:
                pass  # a dataset may well be called "cafe"
        address = parse_address(text, None if "/" in text else "dataset")
        if address.kind == "run":
            if len(address.name) == 32:  # a whole id: its history outlives the run (gc purges)
                return f"run/{address.name}"
            return f"run/{self.metadata.runs.get(address.name).id}"
        if address.kind == "artifact" and not is_digest(address.name):
            try:
                return f"artifact/{self.metadata.housekeeping.resolve_digest(address.name)}"
            except MloopError:
                return str(address)
        return str(address)
