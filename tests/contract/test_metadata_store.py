"""The MetadataStore contract: every implementation (ids `sqlite`, `postgres`) behaves alike.

Records are built straight from mloop.domain and go in and out through
`open_metadata_store(uri)`, as the services use the store.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from mloop.domain.dataset import (
    ColumnProfile,
    DatasetSummary,
    DatasetVersion,
    FileEntry,
    Histogram,
    TableProfile,
)
from mloop.domain.digests import digest_bytes
from mloop.domain.event import Event
from mloop.domain.lineage import CodeVersion, Environment
from mloop.domain.query import parse_filter, parse_sort
from mloop.domain.run import Metric, Run, RunInput, RunOutput, RunStatus
from mloop.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from mloop.store import open_metadata_store
from mloop.store.metadata.protocol import MetadataStore

T0 = datetime(2026, 11, 1, 12, 0).timestamp()
DAY = 86_400.0
CODE = CodeVersion("0123456789abcdef0123456789abcdef01234567", "ab" * 32, "/srv/repo")


def make_run(name: str = "run", **fields: object) -> Run:
    values: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "name": name,
        "status": RunStatus.RUNNING,
        "started": T0,
        "user": "ada",
        "code": CODE,
        "environment": "e" * 64,
    }
    values.update(fields)
    return Run(**values)  # type: ignore[arg-type]


def started(run: Run) -> Event:
    return Event(run.started, run.user, "run.started", f"run/{run.id}", None, {"name": run.name})


def add_run(store: MetadataStore, name: str = "run", **fields: object) -> Run:
    run = make_run(name, **fields)
    store.runs.create(run, started(run))
    return run


def digest(seed: str) -> str:
    return digest_bytes(seed.encode())


def version_of(name: str, *files: FileEntry, **fields: object) -> DatasetVersion:
    values: dict[str, object] = {
        "name": name,
        "version": 0,  # the store allocates the number
        "created": T0,
        "user": "ada",
        "message": "",
        "file_count": len(files),
        "total_size": sum(f.size for f in files),
        "files": files,
    }
    values.update(fields)
    return DatasetVersion(**values)  # type: ignore[arg-type]


def created(name: str) -> Event:
    return Event(T0, "ada", "dataset.version_created", f"dataset/{name}", "new data", {"n": 1})


# runs ---------------------------------------------------------------------------------------
def test_run_reads_back_as_created_by_id_and_unique_prefix(metadata_store: MetadataStore) -> None:
    run = make_run(
        "baseline",
        params={"lr": "0.1", "model": "rf"},
        tags={"team": "vision"},
        metrics={"loss": Metric("loss", 0.25, 3, T0 + 1)},
    )
    metadata_store.runs.create(run, started(run))
    add_run(metadata_store, "other")

    assert metadata_store.runs.get(run.id) == run
    assert metadata_store.runs.get(run.id[:6]) == run
    assert metadata_store.runs.get(run.id.upper()) == run


def test_ambiguous_run_prefix_is_invalid_input(metadata_store: MetadataStore) -> None:
    first = add_run(metadata_store, id="abcd" + "0" * 28)
    second = add_run(metadata_store, id="abcd" + "1" * 28)

    with pytest.raises(InvalidInput, match="ambiguous"):
        metadata_store.runs.get("abcd")
    assert metadata_store.runs.get("abcd0").id == first.id
    assert metadata_store.runs.get("abcd1").id == second.id


@pytest.mark.parametrize("ref", ["f" * 32, "ffff"], ids=["full-id", "prefix"])
def test_unknown_run_is_not_found(metadata_store: MetadataStore, ref: str) -> None:
    add_run(metadata_store, id="0" * 32)

    with pytest.raises(NotFound):
        metadata_store.runs.get(ref)


def test_creating_a_run_twice_is_refused_without_an_event(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store, "first")

    with pytest.raises(AlreadyExists):
        metadata_store.runs.create(make_run("second", id=run.id), started(run))
    assert metadata_store.runs.get(run.id).name == "first"
    assert len(metadata_store.events.find(f"run/{run.id}")) == 1


def test_a_run_with_an_unknown_parent_is_refused(metadata_store: MetadataStore) -> None:
    run = make_run(parent_id="f" * 32)

    with pytest.raises(NotFound, match="parent"):
        metadata_store.runs.create(run, started(run))
    assert metadata_store.runs.count() == 0
    assert metadata_store.events.find() == []


def test_run_data_accumulates_and_latest_metric_has_the_highest_step(
    metadata_store: MetadataStore,
) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(
        run.id,
        params=[("lr", "0.1")],
        tags=[("stage", "dev")],
        metrics=[
            Metric("loss", 0.9, 0, T0),
            Metric("loss", 0.5, 5, T0 + 5),
            Metric("loss", 0.7, 2, T0 + 2),
        ],
    )
    metadata_store.runs.write_data(
        run.id,
        params=[("lr", "0.1"), ("depth", "3")],  # logging the same value again is fine
        tags=[("stage", "prod")],
        metrics=[Metric("loss", 0.6, 4, T0 + 10), Metric("acc", 0.8, 0, T0 + 10)],
    )

    got = metadata_store.runs.get(run.id)
    assert got.params == {"lr": "0.1", "depth": "3"}
    assert got.tags == {"stage": "prod"}
    assert got.metrics == {
        "loss": Metric("loss", 0.5, 5, T0 + 5),
        "acc": Metric("acc", 0.8, 0, T0 + 10),
    }
    history = metadata_store.runs.metric_history(run.id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (2, 0.7), (4, 0.6), (5, 0.5)]
    assert metadata_store.runs.metric_history(run.id, "never-logged") == []


def test_at_the_same_step_the_later_metric_wins(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(run.id, metrics=[Metric("acc", 0.1, 7, T0)])
    metadata_store.runs.write_data(run.id, metrics=[Metric("acc", 0.2, 7, T0 + 1)])
    metadata_store.runs.write_data(run.id, metrics=[Metric("acc", 0.3, 7, T0 - 1)])

    assert metadata_store.runs.get(run.id).metrics["acc"].value == 0.2


def test_nan_is_stored_and_read_back_as_none(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(
        run.id,
        metrics=[
            Metric("loss", 1.0, 0, T0),
            Metric("loss", math.nan, 1, T0 + 1),
            Metric("grad", math.inf, 0, T0),
        ],
    )

    got = metadata_store.runs.get(run.id)
    assert got.metrics["loss"].value is None
    assert got.metrics["grad"].value == math.inf
    assert [m.value for m in metadata_store.runs.metric_history(run.id, "loss")] == [1.0, None]
    assert metadata_store.runs.find(parse_filter("metrics.loss < 100")) == []


def test_changing_a_param_is_a_conflict_and_writes_nothing(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    metadata_store.runs.write_data(run.id, params=[("lr", "0.1")])

    with pytest.raises(Conflict, match="lr"):
        metadata_store.runs.write_data(
            run.id,
            params=[("lr", "0.2")],
            tags=[("stage", "dev")],
            metrics=[Metric("loss", 1.0, 0, T0)],
        )
    got = metadata_store.runs.get(run.id)
    assert (got.params, got.tags, got.metrics) == ({"lr": "0.1"}, {}, {})
    assert metadata_store.runs.metric_history(run.id, "loss") == []


def test_writing_to_an_unknown_run_is_not_found(metadata_store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        metadata_store.runs.write_data("f" * 32, metrics=[Metric("loss", 1.0, 0, T0)])


def test_end_run_records_status_time_error_and_event(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    ref = f"run/{run.id}"

    metadata_store.runs.end(
        run.id,
        RunStatus.FAILED,
        T0 + 60,
        "ValueError: boom",
        Event(T0 + 60, "ada", "run.failed", ref),
    )

    got = metadata_store.runs.get(run.id)
    assert (got.status, got.ended, got.error, got.duration) == (
        RunStatus.FAILED,
        T0 + 60,
        "ValueError: boom",
        60,
    )
    assert [e.action for e in metadata_store.events.find(ref)] == ["run.failed", "run.started"]


def test_ending_an_unknown_run_is_not_found_and_records_no_event(
    metadata_store: MetadataStore,
) -> None:
    ref = f"run/{'f' * 32}"

    with pytest.raises(NotFound):
        metadata_store.runs.end("f" * 32, RunStatus.FINISHED, T0, None, Event(T0, "ada", "x", ref))
    assert metadata_store.events.find(ref) == []


def test_child_runs_are_listed_oldest_first(metadata_store: MetadataStore) -> None:
    parent = add_run(metadata_store, "parent")
    late = add_run(metadata_store, "late", parent_id=parent.id, started=T0 + 20)
    early = add_run(metadata_store, "early", parent_id=parent.id, started=T0 + 10)

    assert [r.id for r in metadata_store.runs.children(parent.id)] == [early.id, late.id]
    assert metadata_store.runs.children(late.id) == []


# finding runs -------------------------------------------------------------------------------
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


# environments -------------------------------------------------------------------------------
def test_environments_are_stored_once_and_read_back(metadata_store: MetadataStore) -> None:
    env = Environment(digest("env"), "CPython 3.11.9 (linux)", digest("packages"), 42)

    metadata_store.environments.put(env)
    metadata_store.environments.put(env)

    assert metadata_store.environments.get(env.digest) == env
    with pytest.raises(NotFound):
        metadata_store.environments.get(digest("other"))


# datasets -----------------------------------------------------------------------------------
def test_dataset_versions_are_numbered_by_the_store(metadata_store: MetadataStore) -> None:
    b, a = FileEntry("b.csv", digest("b"), 20), FileEntry("a.csv", digest("a"), 10)
    made = [
        metadata_store.datasets.create_version(
            version_of("sales", b, a, version=99, created=T0 + n, message=f"v{n}"),
            created("sales"),
        )
        for n in (1, 2, 3)
    ]

    assert [v.version for v in made] == [1, 2, 3]
    latest = metadata_store.datasets.get_version("sales")
    assert (latest.version, latest.message, latest.files) == (3, "v3", ())
    assert (latest.file_count, latest.total_size, latest.created) == (2, 30, T0 + 3)
    second = metadata_store.datasets.get_version("sales", 2, files=True)
    assert second.message == "v2"
    assert second.files == (a, b)  # the manifest, sorted by path
    assert [v.version for v in metadata_store.datasets.list_versions("sales")] == [1, 2, 3]


def test_missing_datasets_and_versions_are_not_found(metadata_store: MetadataStore) -> None:
    metadata_store.datasets.create_version(version_of("sales"), created("sales"))

    with pytest.raises(NotFound, match="latest is 1"):
        metadata_store.datasets.get_version("sales", 2)
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        metadata_store.datasets.get_version("nope")
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        metadata_store.datasets.get_version("nope", 1)
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        metadata_store.datasets.list_versions("nope")


def test_list_datasets_summarises_the_latest_version(metadata_store: MetadataStore) -> None:
    one = FileEntry("x.csv", digest("x"), 5)
    metadata_store.datasets.create_version(version_of("sales", created=T0), created("sales"))
    metadata_store.datasets.create_version(
        version_of("sales", one, created=T0 + 9), created("sales")
    )
    metadata_store.datasets.create_version(version_of("iris", one, created=T0 + 1), created("iris"))

    assert metadata_store.datasets.all() == [
        DatasetSummary("iris", 1, T0 + 1, T0 + 1, 1, 5),
        DatasetSummary("sales", 2, T0, T0 + 9, 1, 5),
    ]


def test_dataset_profile_and_sources_read_back_unchanged(metadata_store: MetadataStore) -> None:
    table = TableProfile(
        "train.csv",
        3,
        (
            ColumnProfile(
                "age", "int64", "numeric", 3, 0, 1.0, 9.0, 4.5, 2.5,
                ((0.5, 4.0),), Histogram((1.0, 5.0, 9.0), (2, 1)), (), 3,
            ),
            ColumnProfile("city", "object", "categorical", 3, 1, top=(("oslo", 2),)),
        ),
    )  # fmt: skip
    made = metadata_store.datasets.create_version(
        version_of("sales", sources=("s3://raw/sales",), tables=(table,)), created("sales")
    )

    assert metadata_store.datasets.get_version("sales", 1) == made


def test_concurrent_writers_get_distinct_version_numbers(metadata_store: MetadataStore) -> None:
    def make(_: int) -> int:
        return metadata_store.datasets.create_version(version_of("sales"), created("sales")).version

    with ThreadPoolExecutor(max_workers=4) as pool:
        numbers = sorted(pool.map(make, range(20)))

    assert numbers == list(range(1, 21))
    assert metadata_store.datasets.get_version("sales").version == 20


def test_a_failed_dataset_version_leaves_no_trace(metadata_store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        metadata_store.datasets.create_version(
            version_of("sales", run_id="f" * 32), created("sales")
        )

    assert metadata_store.events.find("dataset/sales") == []
    made = metadata_store.datasets.create_version(version_of("sales"), created("sales"))
    assert made.version == 1


def test_dataset_versions_by_file_and_by_run(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    shared, only = FileEntry("a.csv", digest("a"), 1), FileEntry("b.csv", digest("b"), 1)
    metadata_store.datasets.create_version(version_of("sales", shared), created("sales"))
    metadata_store.datasets.create_version(
        version_of("sales", shared, only, run_id=run.id), created("sales")
    )
    metadata_store.datasets.create_version(version_of("iris", shared), created("iris"))

    with_shared = metadata_store.datasets.versions_with_file(shared.digest)
    assert [v.ref for v in with_shared] == ["iris:1", "sales:1", "sales:2"]
    assert [v.ref for v in metadata_store.datasets.versions_with_file(only.digest)] == ["sales:2"]
    assert [v.ref for v in metadata_store.datasets.versions_of_run(run.id)] == ["sales:2"]
    assert metadata_store.datasets.versions_of_run("f" * 32) == []


# lineage ------------------------------------------------------------------------------------
def test_runs_with_input_and_output(metadata_store: MetadataStore) -> None:
    model = digest("model")
    late = add_run(metadata_store, "late", started=T0 + 1)
    early = add_run(metadata_store, "early", started=T0)
    other = add_run(metadata_store, "other")
    for run in (late, early):
        metadata_store.runs.write_data(
            run.id,
            inputs=[RunInput("dataset", "sales:1", "train"), RunInput("dataset", "sales:1")],
            outputs=[RunOutput("model.pkl", model, 7), RunOutput("b/plot.png", digest("p"), 3)],
        )
    metadata_store.runs.write_data(other.id, inputs=[RunInput("artifact", model)])

    assert [r.id for r in metadata_store.runs.with_input("dataset", "sales:1")] == [
        early.id,
        late.id,
    ]
    assert [r.id for r in metadata_store.runs.with_input("artifact", model)] == [other.id]
    assert metadata_store.runs.with_input("dataset", "sales:2") == []
    assert [r.id for r in metadata_store.runs.with_output(model)] == [early.id, late.id]
    got = metadata_store.runs.get(late.id)
    assert got.inputs == (RunInput("dataset", "sales:1", "train"),)
    assert got.outputs == (
        RunOutput("b/plot.png", digest("p"), 3),
        RunOutput("model.pkl", model, 7),
    )


@pytest.fixture
def digests(metadata_store: MetadataStore) -> dict[str, str]:
    """Digests referenced from every table that holds them, some sharing a prefix."""
    found = {
        "out1": "ab12" + "0" * 60,
        "out2": "ab34" + "0" * 60,
        "packages": "cd" + "1" * 62,
        "file": "ef" + "2" * 62,
    }
    run = add_run(metadata_store)
    metadata_store.runs.write_data(
        run.id,
        outputs=[
            RunOutput("a", found["out1"], 1),
            RunOutput("b", found["out2"], 1),
            RunOutput("c", found["file"], 1),
        ],
    )
    metadata_store.environments.put(Environment(digest("env"), "CPython", found["packages"], 1))
    metadata_store.datasets.create_version(
        version_of("sales", FileEntry("x", found["file"], 1)), created("sales")
    )
    return found


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("ab1", "out1"), ("AB34", "out2"), ("cd", "packages"), ("ef22", "file")],
    ids=["run-output", "upper-case", "environment", "dataset-file-and-output"],
)
def test_resolve_digest_finds_a_unique_prefix(
    metadata_store: MetadataStore, digests: dict[str, str], prefix: str, expected: str
) -> None:
    assert metadata_store.housekeeping.resolve_digest(prefix) == digests[expected]


def test_resolve_digest_refuses_ambiguous_and_missing(
    metadata_store: MetadataStore, digests: dict[str, str]
) -> None:
    with pytest.raises(InvalidInput, match="ambiguous"):
        metadata_store.housekeeping.resolve_digest("ab")
    with pytest.raises(NotFound):
        metadata_store.housekeeping.resolve_digest("ff")


# events -------------------------------------------------------------------------------------
def test_events_are_listed_newest_first_by_ref(metadata_store: MetadataStore) -> None:
    for _ in range(3):
        metadata_store.datasets.create_version(version_of("sales"), created("sales"))
    metadata_store.datasets.create_version(version_of("sales-eu"), created("sales-eu"))
    metadata_store.events.append(
        Event(T0, "bob", "dataset.tagged", "dataset/sales:2", "why", {"tag": ["a", 1]})
    )

    refs = [e.ref for e in metadata_store.events.find("dataset/sales")]
    assert refs == ["dataset/sales:2", *(f"dataset/sales:{n}" for n in (3, 2, 1))]
    tagged = metadata_store.events.find("dataset/sales:2")
    assert [(e.action, e.actor, e.reason, e.details) for e in tagged] == [
        ("dataset.tagged", "bob", "why", {"tag": ["a", 1]}),
        ("dataset.version_created", "ada", "new data", {"n": 1}),
    ]
    assert all(e.id is not None for e in tagged)
    latest_two = metadata_store.events.find(limit=2)
    assert [e.ref for e in latest_two] == ["dataset/sales:2", "dataset/sales-eu:1"]


# housekeeping -------------------------------------------------------------------------------
def test_referenced_objects_names_every_owner(metadata_store: MetadataStore) -> None:
    run = add_run(metadata_store)
    env = Environment(digest("env"), "CPython", digest("packages"), 1)
    metadata_store.environments.put(env)
    metadata_store.runs.write_data(
        run.id,
        outputs=[RunOutput("model.pkl", digest("m"), 7)],
        inputs=[RunInput("artifact", digest("in")), RunInput("dataset", "sales:1")],
    )
    metadata_store.datasets.create_version(
        version_of("sales", FileEntry("a.csv", digest("a"), 3)), created("sales")
    )

    assert set(metadata_store.housekeeping.referenced_objects()) == {
        (digest("a"), 3, "dataset/sales:1 a.csv"),
        (digest("m"), 7, f"run/{run.id} model.pkl"),
        (digest("in"), None, f"run/{run.id} input"),
        (digest("packages"), None, f"environment {env.digest}"),
    }
