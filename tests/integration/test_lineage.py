"""Lineage through runs, dataset versions and artifacts, and the audit log, on a real project."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import mloop
from mloop.domain.lineage import LineageNode
from mloop.errors import InvalidAddress, InvalidInput, NotFound
from mloop.project import Project
from tests.conftest import CliResult
from tests.integration.records import add_dataset_version

Cli = Callable[..., CliResult]


@dataclass
class Graph:
    """sales:1 --used by--> train --output--> model.pkl --used by--> score; train has a child
    run `fold-1`; ingest --created--> sales:2 --used by--> train-gb."""

    ingest: str
    train: str
    fold: str
    score: str
    train_gb: str
    model: str
    sales1_file: str


@pytest.fixture
def graph(project: Path) -> Graph:
    with mloop.start_run("ingest") as ingest:
        pass
    sales1 = add_dataset_version(project, "sales", {"a.csv": b"x\n1\n", "b.csv": b"x\n2\n"})
    add_dataset_version(project, "sales", {"a.csv": b"x\n1\n", "c.csv": b"x\n3\n"}, ingest.id)
    (project / "model.pkl").write_bytes(b"weights")
    with mloop.start_run("train") as train:
        train.log_input("dataset", "sales:1")
        [output] = train.log_artifact(project / "model.pkl")
        with mloop.start_run("fold-1") as fold:
            pass
    with mloop.start_run("score") as score:
        score.log_input("artifact", output.digest, "model.pkl")
    with mloop.start_run("train-gb") as train_gb:
        train_gb.log_input("dataset", "sales:2")
    file_digest = next(f.digest for f in sales1.files if f.path == "b.csv")
    return Graph(ingest.id, train.id, fold.id, score.id, train_gb.id, output.digest, file_digest)


@pytest.fixture
def lineage(project: Path) -> Iterator[Project]:
    opened = Project.open(project)
    yield opened
    opened.close()


def refs(nodes: tuple[LineageNode, ...] | None) -> list[str]:
    return [n.ref for n in nodes or ()]


def edges(nodes: tuple[LineageNode, ...] | None) -> list[tuple[str, str]]:
    """(relation, ref) of the data and run edges: the code and environment every run has
    are tested on their own."""
    return [(n.relation, n.ref) for n in nodes or () if n.kind not in ("code", "environment")]


def test_dataset_downstream_reaches_runs_outputs_and_their_users(
    graph: Graph, lineage: Project
) -> None:
    trace = lineage.lineage.trace("dataset/sales:1", "downstream")
    assert trace.upstream is None
    [train] = trace.downstream or ()
    assert (train.ref, train.relation, train.label) == (
        f"run/{graph.train}",
        "used by",
        "train  finished",
    )
    assert {(c.relation, c.ref) for c in train.children} == {
        ("output", f"artifact/{graph.model}"),
        ("child", f"run/{graph.fold}"),
    }
    model = next(c for c in train.children if c.kind == "artifact")
    assert model.label == "model.pkl  (7 B)"
    assert refs(model.children) == [f"run/{graph.score}"]


def test_run_upstream_reaches_inputs_parents_and_creating_runs(
    graph: Graph, lineage: Project
) -> None:
    score = lineage.lineage.trace(f"run/{graph.score}", "upstream")
    [model] = [n for n in score.upstream or () if n.kind == "artifact"]
    assert (model.relation, model.ref, model.label) == (
        "input",
        f"artifact/{graph.model}",
        "model.pkl",
    )
    [train] = model.children
    assert (train.relation, train.ref) == ("output of", f"run/{graph.train}")
    assert edges(train.children) == [("input", "dataset/sales:1")]

    fold = lineage.lineage.trace(graph.fold[:10], "upstream")
    assert edges(fold.upstream) == [("parent", f"run/{graph.train}")]

    gb = lineage.lineage.trace(f"run/{graph.train_gb}", "upstream")
    [sales2] = [n for n in gb.upstream or () if n.kind == "dataset"]
    assert [(c.relation, c.ref) for c in sales2.children] == [("created by", f"run/{graph.ingest}")]


def test_a_parent_runs_upstream_has_the_datasets_its_child_runs_read(
    project: Path, lineage: Project
) -> None:
    add_dataset_version(project, "sales", {"a.csv": b"x\n1\n"})
    add_dataset_version(project, "regions", {"r.csv": b"r\n1\n"})
    with mloop.start_run("pipeline") as pipeline:
        with mloop.start_run("ingest") as ingest:
            ingest.log_input("dataset", "sales:1")
        with mloop.start_run("enrich") as enrich:
            enrich.log_input("dataset", "sales:1")  # read by two steps: listed once
            enrich.log_input("dataset", "regions:1")
    trace = lineage.lineage.trace(f"run/{pipeline.id}", "upstream")
    assert edges(trace.upstream) == [
        ("input of ingest", "dataset/sales:1"),
        ("input of enrich", "dataset/regions:1"),
    ]


def test_run_downstream_includes_dataset_versions_it_created(
    graph: Graph, lineage: Project
) -> None:
    trace = lineage.lineage.trace(f"run/{graph.ingest}", "downstream")
    [sales2] = trace.downstream or ()
    assert (sales2.relation, sales2.ref, sales2.label) == (
        "created",
        "dataset/sales:2",
        "(2 files, 8 B)",
    )
    assert refs(sales2.children) == [f"run/{graph.train_gb}"]


def test_artifact_upstream_finds_runs_and_dataset_versions_holding_it(
    graph: Graph, lineage: Project
) -> None:
    shared = lineage.lineage.trace(graph.sales1_file[:8], "upstream")  # b.csv, only in sales:1
    assert shared.root.ref == f"artifact/{graph.sales1_file}"
    assert [(n.relation, n.ref) for n in shared.upstream or ()] == [("part of", "dataset/sales:1")]

    model = lineage.lineage.trace(f"artifact/{graph.model}")
    assert [(n.relation, n.ref) for n in model.upstream or ()] == [
        ("output of", f"run/{graph.train}")
    ]
    assert [(n.relation, n.ref) for n in model.downstream or ()] == [
        ("used by", f"run/{graph.score}")
    ]


def test_which_runs_used_a_dataset_version_is_one_command(graph: Graph, cli: Cli) -> None:
    result = cli("lineage", "dataset/sales:2", "--downstream")
    assert result.code == 0, result.err
    assert result.out == (
        "dataset/sales:2  (2 files, 8 B)\n"
        f"└── used by run {graph.train_gb[:12]}  train-gb  finished\n"
    )


def test_both_directions_are_drawn_as_two_branches(
    graph: Graph, cli: Cli, lineage: Project
) -> None:
    result = cli("lineage", f"run/{graph.train_gb[:8]}")
    assert result.code == 0, result.err
    made = lineage.runs.get(graph.train_gb)
    assert made.environment is not None
    env = lineage.metadata.environments.get(made.environment)
    ingest = lineage.runs.get(graph.ingest)  # same code and environment: see above
    assert (ingest.code, ingest.environment) == (made.code, made.environment)
    assert result.out == (
        f"run {graph.train_gb[:12]}  train-gb  finished\n"
        "├── upstream\n"
        "│   ├── code  not in git\n"
        f"│   ├── environment {made.environment[:12]}  {env.python}, "
        f"{env.package_count} packages\n"
        "│   └── input dataset/sales:2  (2 files, 8 B)\n"
        f"│       └── created by run {graph.ingest[:12]}  ingest  finished\n"
        "│           ├── code  not in git  (see above)\n"
        f"│           └── environment {made.environment[:12]}  {env.python}, "
        f"{env.package_count} packages  (see above)\n"
        "└── downstream: nothing\n"
    )


def test_lineage_json_is_the_tree(graph: Graph, cli: Cli) -> None:
    result = cli("lineage", "dataset/sales", "--downstream", "--json")  # latest: sales:2
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["root"]["ref"] == "dataset/sales:2"
    assert body["upstream"] is None
    assert [(n["relation"], n["ref"]) for n in body["downstream"]] == [
        ("used by", f"run/{graph.train_gb}")
    ]


def test_a_cycle_is_shown_once_and_stops(project: Path, lineage: Project) -> None:
    (project / "state.bin").write_bytes(b"state")
    with mloop.start_run("loop") as run:
        [out] = run.log_artifact(project / "state.bin")
        run.log_input("artifact", out.digest, "state.bin")  # reads what it writes
    trace = lineage.lineage.trace(f"run/{run.id}", "downstream", depth=10)
    [state] = trace.downstream or ()
    [again] = state.children
    assert again.ref == f"run/{run.id}"
    assert again.label.endswith("(see above)")
    assert again.children == ()
    assert not trace.truncated


def test_depth_cuts_the_tree_and_says_so(project: Path, cli: Cli) -> None:
    chain = []
    with mloop.start_run("r0") as r0:
        chain.append(r0.id)
        with mloop.start_run("r1") as r1:
            chain.append(r1.id)
            with mloop.start_run("r2") as r2:
                chain.append(r2.id)
                with mloop.start_run("r3") as r3:
                    chain.append(r3.id)
    result = cli("lineage", chain[0], "--downstream", "--depth", "2")
    assert result.code == 0, result.err
    assert result.out == (
        f"run {chain[0][:12]}  r0  finished\n"
        f"└── child run {chain[1][:12]}  r1  finished\n"
        f"    └── child run {chain[2][:12]}  r2  finished\n"
        "(stopped at depth 2; pass --depth N to follow further)\n"
    )
    full = cli("lineage", chain[0], "--downstream", "--depth", "3")
    assert chain[3][:12] in full.out
    assert "stopped at depth" not in full.out


@pytest.mark.parametrize(
    ("ref", "error", "words"),
    [
        ("dataset/nope:1", NotFound, "no dataset 'nope'"),
        ("dataset/sales:9", NotFound, "has no version 9"),
        ("run/abcdef12", NotFound, "no run"),
        ("artifact/abcdef", NotFound, "no artifact with digest"),
        ("0123456789", NotFound, "no run, artifact or dataset"),
        ("model/churn:1", NotFound, "no model .churn."),
        ("dataset/sales@prod", InvalidAddress, "no aliases"),
        ("widget/x", InvalidAddress, "unknown kind"),
    ],
    ids=["dataset", "version", "run", "digest", "bare-hex", "model", "alias", "kind"],
)
def test_unknown_refs_fail_clearly(
    graph: Graph, lineage: Project, ref: str, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words) as caught:
        lineage.lineage.trace(ref)
    assert getattr(caught.value, "hint", None)


def test_unknown_ref_on_the_cli_is_one_line_and_a_hint(project: Path, cli: Cli) -> None:
    result = cli("lineage", "dataset/nope:1")
    assert result.code == 1
    assert result.out == ""
    assert result.err == "error: no dataset 'nope'\nhint: list datasets with `mloop data list`\n"


def test_depth_must_be_positive(graph: Graph, lineage: Project) -> None:
    with pytest.raises(InvalidInput, match="depth"):
        lineage.lineage.trace("dataset/sales:1", depth=0)


def test_events_list_newest_first_and_filter_by_ref(graph: Graph, cli: Cli) -> None:
    everything = cli("events", "--json")
    assert everything.code == 0, everything.err
    events = json.loads(everything.out)
    assert events[0]["action"] == "run.finished"
    assert events[0]["ref"] == f"run/{graph.train_gb}"
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)

    one_run = json.loads(cli("events", graph.train[:8], "--json").out)
    assert [e["action"] for e in one_run] == ["run.finished", "run.started"]

    dataset = json.loads(cli("events", "dataset/sales", "--json").out)
    assert [e["ref"] for e in dataset] == ["dataset/sales:2", "dataset/sales:1"]

    table = cli("events", "dataset/sales:1", "--limit", "5")
    assert table.out.splitlines()[0].split() == ["TIME", "ACTOR", "ACTION", "REF", "REASON"]
    assert "dataset.version_created  dataset/sales:1" in table.out
    assert "tester" in table.out


def test_events_limit_says_when_more_exist(graph: Graph, cli: Cli) -> None:
    result = cli("events", "--limit", "2")
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 4  # header, two events, the note
    assert "raise --limit above 2" in result.out


def test_events_for_something_without_history(project: Path, cli: Cli) -> None:
    assert cli("events").out == "no events yet\n"
    assert cli("events", "dataset/nothing").out == "no events about dataset/nothing\n"


@pytest.mark.parametrize(
    "form",
    ["artifact/{model}", "{model}", "{model_prefix}", "{MODEL_PREFIX}"],
    ids=["address", "bare-digest", "bare-prefix", "upper-case"],
)
def test_every_way_of_naming_an_artifact_resolves(
    graph: Graph, lineage: Project, form: str
) -> None:
    ref = form.format(
        model=graph.model, model_prefix=graph.model[:10], MODEL_PREFIX=graph.model[:10].upper()
    )
    assert lineage.lineage.resolve(ref).ref == f"artifact/{graph.model}"


def test_a_bare_version_is_a_dataset(graph: Graph, lineage: Project) -> None:
    assert lineage.lineage.resolve("sales:1").ref == "dataset/sales:1"
    assert lineage.lineage.resolve("sales").ref == "dataset/sales:2"


def test_a_models_lineage_is_the_one_chain_that_made_its_version(project: Path, cli: Cli) -> None:
    from tests.integration.test_reproduce import commit, train, write_project

    write_project(project)
    sha = commit(project, "first")
    train(project, "train")  # churn:1
    with (project / "pipeline.py").open("a") as source:
        source.write("\n# tuned by hand\n")  # an uncommitted change: the code node says so
    train(project, "train", "--no-cache")  # churn:2: every step again, the same bytes
    opened = Project.open(project)
    first, second = opened.models.versions("churn")
    assert first.digest == second.digest and first.run_id != second.run_id

    body = json.loads(cli("lineage", "model/churn:2", "--upstream", "--depth", "12", "--json").out)

    def walk(nodes: list[dict]) -> Iterator[dict]:
        for node in nodes:
            yield node
            yield from walk(node["children"])

    nodes = list(walk(body["upstream"]))
    runs = {n["ref"].removeprefix("run/") for n in nodes if n["kind"] == "run"}
    made = opened.runs.get(second.run_id or "")
    pipeline = made.parent_id or ""
    assert runs == {pipeline, *(r.id for r in opened.metadata.runs.children(pipeline))}
    assert len(runs) == 5  # the pipeline run and its ingest, train, evaluate, register
    datasets = {n["ref"] for n in nodes if n["kind"] == "dataset"}
    assert datasets == {"dataset/train:1"}
    (code,) = {n["label"] for n in nodes if n["kind"] == "code" and "see above" not in n["label"]}
    assert code.startswith(sha[:12]) and "+uncommitted " in code
    assert any(n["kind"] == "environment" for n in nodes)
    everything = cli("lineage", f"artifact/{second.digest}", "--upstream", "--json")
    writers = [n for n in json.loads(everything.out)["upstream"] if n["relation"] == "output of"]
    assert len(writers) == 2  # asked about the bytes themselves: both train runs made them
