"""Finding runs (`store.runs.find` and `count`) on every implementation: filters, sorts, limits,
and what each found run carries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mloop.domain.query import parse_filter, parse_sort
from mloop.domain.run import Metric, RunInput, RunOutput, RunStatus
from mloop.store import open_metadata_store
from mloop.store.metadata.protocol import MetadataStore
from mloop.store.metadata.sql.db import Tx
from tests.contract.records import DAY, T0, add_run, digest

RUN_A, RUN_B, RUN_C, RUN_D = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)


@pytest.fixture(scope="module")
def zoo(module_metadata_uri: str) -> Iterator[MetadataStore]:
    """Four runs to filter and sort; the tests using it only read.

    | run | name         | status   | started  | params             | metrics          | tags   |
    | a   | baseline-rf  | finished | Oct 22   | model=rf lr=0.1    | acc .91 loss .3  | vision |
    | b   | baseline-svm | failed   | Nov 1    | model=svm lr=0.01  | acc .85          | nlp    |
    | c   | tuned-rf     | finished | Nov 6    | model=rf lr=1e-3   | acc .95          |        |
    | d   | smoke_test   | running  | Nov 7    |                    |                  |        |
    """
    store = open_metadata_store(module_metadata_uri)
    for run_id, name, status, start, params, metrics, tags, parent, user in [
        (RUN_A, "baseline-rf", "finished", T0 - 10 * DAY, {"model": "rf", "lr": "0.1"},
         {"acc": 0.91, "loss": 0.3}, {"team": "vision"}, None, "ada"),
        (RUN_B, "baseline-svm", "failed", T0, {"model": "svm", "lr": "0.01"},
         {"acc": 0.85}, {"team": "nlp"}, None, "ada"),
        (RUN_C, "tuned-rf", "finished", T0 + 5 * DAY, {"model": "rf", "lr": "1e-3"},
         {"acc": 0.95}, {}, RUN_A, "ada"),
        (RUN_D, "smoke_test", "running", T0 + 6 * DAY, {}, {}, {}, None, "bob"),
    ]:  # fmt: skip
        add_run(
            store,
            name,
            id=run_id,
            status=RunStatus(status),
            started=start,
            parent_id=parent,
            user=user,
            params=params,
            tags=tags,
            metrics={k: Metric(k, v, 0, start) for k, v in metrics.items()},
        )
    yield store
    store.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.acc > 0.9", "ac"),
        ("metrics.acc >= 0.85 and params.model = rf", "ac"),
        ("params.model = svm or tags.team = vision", "ab"),
        ("not status = finished", "bd"),
        ("metrics.acc > 0.9 and (params.model = svm or status = finished)", "ac"),
        ("not (metrics.acc > 0.9 or params.model = svm)", "d"),
        ("not metrics.acc > 0.9", "bd"),
        ("params.lr > 0.005", "ab"),
        ("params.lr < 0.05", "bc"),
        ("params.lr = 0.001", "c"),
        ("params.lr != 0.1", "bc"),
        ("params.`model` = 'rf'", "ac"),
        ("name ~ baseline", "ab"),
        ("name ~ 'SMOKE'", "d"),
        ("name ~ '*-rf'", "ac"),
        ("name ~ _", "d"),
        ("tags.team ~ vis", "a"),
        ("user = bob", "d"),
        ("status = FAILED", "b"),
        ("started >= 2026-11-01", "bcd"),
        ("started < 2026-10-30", "a"),
        (f"parent = {RUN_A}", "c"),
        ("id ~ cccc", "c"),
        ("metrics.loss < 1", "a"),
    ],
    ids=[
        "metric-gt",
        "and",
        "or",
        "not",
        "parentheses",
        "not-parentheses",
        "not-includes-missing-key",
        "param-numeric-gt",
        "param-numeric-lt",
        "param-numeric-eq",
        "param-ne",
        "backtick-key",
        "contains",
        "contains-case-insensitive",
        "contains-wildcard",
        "contains-underscore-literal",
        "tag-contains",
        "attribute-user",
        "attribute-status",
        "started-on-or-after",
        "started-before",
        "attribute-parent",
        "attribute-id",
        "other-metric",
    ],
)
def test_find_runs_filters(zoo: MetadataStore, text: str, expected: str) -> None:
    where = parse_filter(text)

    assert sorted(r.id[0] for r in zoo.runs.find(where)) == list(expected)
    assert zoo.runs.count(where) == len(expected)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("", "dcba"),
        ("-metrics.acc", "cabd"),
        ("metrics.acc", "bacd"),
        ("params.lr", "cbad"),
        ("-params.lr", "abcd"),
        ("name", "abdc"),
        ("-started", "dcba"),
        ("tags.team", "badc"),
    ],
    ids=[
        "default-newest-first",
        "metric-desc-missing-last",
        "metric-asc-missing-last",
        "param-numeric",
        "param-numeric-desc",
        "attribute",
        "started-desc",
        "tag-ties-newest-first",
    ],
)
def test_find_runs_sorts(zoo: MetadataStore, sort: str, expected: str) -> None:
    found = zoo.runs.find(order=parse_sort(sort) if sort else ())

    assert "".join(r.id[0] for r in found) == expected


def test_find_runs_limit_and_count(zoo: MetadataStore) -> None:
    best = zoo.runs.find(order=parse_sort("-metrics.acc"), limit=2)

    assert [r.id for r in best] == [RUN_C, RUN_A]
    assert best[1].params == {"model": "rf", "lr": "0.1"}
    assert best[1].metrics["loss"].value == 0.3
    assert zoo.runs.count() == 4


def test_parent_null_selects_top_level_runs(metadata_store: MetadataStore) -> None:
    top = add_run(metadata_store, "top")
    add_run(metadata_store, "step", parent_id=top.id)
    other = add_run(metadata_store, "other")

    for text in ("parent = null", "parent = NULL", "parent = ''", "parent = none"):
        assert sorted(r.id for r in metadata_store.runs.find(parse_filter(text))) == sorted(
            [top.id, other.id]
        )
    assert [r.name for r in metadata_store.runs.find(parse_filter("parent != null"))] == ["step"]


def test_found_runs_carry_their_inputs_and_outputs_in_a_fixed_number_of_queries(
    metadata_store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def add_runs(n: int) -> None:
        for i in range(n):
            run = add_run(metadata_store, f"r{i}")
            metadata_store.runs.write_data(
                run.id,
                inputs=[RunInput("dataset", f"sales:{i}", "train")],
                outputs=[RunOutput("model.pkl", digest(str(i)), i), RunOutput("b", digest("b"), 1)],
                metrics=[Metric("acc", 0.5, 0, T0)],
            )

    statements: list[str] = []
    real_execute = Tx.execute

    def counting(tx: Tx, sql: str, params: object = None) -> object:
        statements.append(sql)
        return real_execute(tx, sql, params)  # type: ignore[arg-type]

    add_runs(3)
    monkeypatch.setattr(Tx, "execute", counting)
    few = metadata_store.runs.find()
    few_statements = len(statements)
    monkeypatch.undo()
    add_runs(27)
    monkeypatch.setattr(Tx, "execute", counting)
    statements.clear()
    many = metadata_store.runs.find()

    assert len(statements) == few_statements  # 30 runs cost what 3 cost: no query per run
    assert len(few) == 3 and len(many) == 30
    r0 = next(r for r in many if r.name == "r0")
    assert r0.inputs == (RunInput("dataset", "sales:0", "train"),)
    assert r0.outputs == (RunOutput("b", digest("b"), 1), RunOutput("model.pkl", digest("0"), 0))
