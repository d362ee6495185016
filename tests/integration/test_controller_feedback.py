"""Labelled production rows joining the dataset an iteration trains on: a real `mloop serve
--endpoint web` logs requests, feedback labels a known subset, a schedule fires, and the
controller adds exactly the labelled rows as the dataset's next version (once: a restart after
the version was written finds it), trains on it, and says so in its Events."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from mloop.domain.controller import FeedbackPolicy, Iteration, IterationState, Outcome, TriggerState
from mloop.domain.event import Event
from mloop.domain.feedback import Label
from mloop.errors import InvalidInput
from mloop.project import Project
from mloop.services.automation.controller import Controller
from mloop.services.automation.feedback_snapshot import LOGGED_WITHIN, REQUESTS, SETTLE
from tests.conftest import CliResult
from tests.integration.controller_project import forget, land, trained, write_loop_project
from tests.integration.test_serve_endpoint import serving

FEEDBACK = (
    "controller:\n  train:\n    endpoint: web\n    strategy: direct\n"
    "    feedback: {dataset: sales, label: y, since: 1h}\n"
)
SCHEDULE = '    - schedule: "0 3 * * *"\n      cooldown: "0"\n'
DAY = 86_400.0
LABELLED = {f"r-{i}": 100 + i for i in range(0, 10, 2)}  # y for the even requests


STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
def loop(make_project: Callable[..., Path], request: pytest.FixtureRequest) -> Iterator[Path]:
    """sales:1 (3 rows) and sales:2 (6 landed rows) trained into sales:1, which serves web;
    a schedule (checked before new_data) is the trigger the tests fire."""
    root = make_project("loop", store=getattr(request, "param", "sqlite"))
    write_loop_project(root, cooldown="0", extra=FEEDBACK)
    text = (root / "mloop.yaml").read_text()
    (root / "mloop.yaml").write_text(text.replace("    - new_data:", SCHEDULE + "    - new_data:"))
    land(root, "a.csv", 6)
    project = Project.open(root)
    try:
        controller = _controller(project, [_at(2)])
        controller.tick()  # the schedule is first seen; new_data fires
        controller.release()  # as `--once` does: a controller process may take over at once
        (first,) = project.metadata.controller.recent()
        assert first.outcome is Outcome.PROMOTED and first.dataset == "sales:2"
    finally:
        project.close()
    yield root
    forget(root)


def _at(hour: int, day: int = 1) -> float:
    return datetime(2026, 12, day, hour, 0, tzinfo=UTC).timestamp()


def _controller(project: Project, now: list[float]) -> Controller:
    """The controller on the schedule's clock `now[0]`; the snapshot on the real clock (the
    labels' times are the server's), moved on by SETTLE: labels posted before a tick are its."""
    controller = project.controller()
    controller.clock = lambda: now[0]
    controller.steps.feedback.clock = lambda: time.time() + SETTLE
    return controller


def traffic(root: Path, labelled: Mapping[str, object]) -> None:
    """Ten requests r-0..r-9 (x = 1000 + i) to the served sales:1, and labels for `labelled`;
    the server is stopped before returning, so its log is stored."""
    with serving(root) as url, httpx.Client(base_url=url, timeout=30) as client:
        for i in range(10):
            answer = client.post(
                "/invocations",
                json={"dataframe_records": [{"x": 1000.0 + i}]},
                headers={"mloop-request-id": f"r-{i}"},
            )
            assert answer.status_code == 200, answer.text
        items = [{"request_id": rid, "label": y} for rid, y in labelled.items()]
        posted = client.post("/feedback", json={"feedback": items})
        assert posted.status_code == 200, posted.text


def begin_iteration(project: Project, iteration: str, now: float) -> Iteration:
    """An iteration of the schedule, begun and not yet moved on (as `Controller` begins one)."""
    it = Iteration(
        iteration, "train", "triggers.train[0].schedule", "schedule", "due",
        IterationState.TRIGGERED, now, now,
    )  # fmt: skip
    begun = Event(now, "test", "controller.triggered", "pipeline/train", "due")
    state = TriggerState("triggers.train[0].schedule", checked=now, fired=now, mark=now)
    project.metadata.controller.begin(it, begun, state)
    return it


def snapshotted(project: Project) -> Event:
    """The latest iteration's snapshot Event."""
    found = project.metadata.events.find("pipeline/train")
    return next(e for e in found if e.action == "controller.snapshotted")


def _feedback_tables(project: Project, ref: str) -> list[str]:
    """The paths of the version's snapshot files (not their sidecars)."""
    version = project.data.get(ref, files=True)
    return [f.path for f in version.files if "/feedback/" in f.path and REQUESTS not in f.path]


def _feedback_rows(project: Project, ref: str) -> list[tuple[float, int]]:
    """(x, y) of the version's feedback files, as the pipeline reads them."""
    version = project.data.get(ref, files=True)
    (extra,) = [f for f in version.files if f.path in _feedback_tables(project, ref)]
    frame = project.data.open("sales", version.version).to_pandas(extra.path)
    assert list(frame.columns) == ["x", "y"]  # the dataset's columns, in its order
    return sorted(zip(frame["x"].tolist(), frame["y"].tolist(), strict=True))


@pytest.mark.parametrize("loop", STORES, indirect=True)
def test_a_fired_schedule_adds_exactly_the_labelled_rows_and_trains_on_them(
    loop: Path, cli: Callable[..., CliResult]
) -> None:
    traffic(loop, LABELLED)
    project = Project.open(loop)
    try:
        now = [_at(3, 1) + 30]
        controller = _controller(project, now)
        (it,) = controller.tick().begun
        ended = project.metadata.controller.get(it.id)
        assert ended.kind == "schedule" and ended.dataset == "sales:3"
        assert ended.outcome is Outcome.PROMOTED and ended.model == "sales:2"
        taken = ended.numbers["feedback"]
        assert taken["rows"] == 5 and taken["labels"] == 5 and taken["endpoint"] == "web"
        assert _feedback_rows(project, "sales:3") == [
            (1000.0 + i, 100 + i) for i in range(0, 10, 2)
        ]
        # sales.csv, a.csv, the rows and their sidecar: the request and row of each
        assert project.data.get("sales:3").file_count == 4
        (sidecar,) = [
            f for f in project.data.get("sales:3", files=True).files if REQUESTS in f.path
        ]
        said = json.loads(project.artifacts.read_bytes(sidecar.digest))
        assert said["endpoint"] == "web" and said["file"] == _feedback_tables(project, "sales:3")[0]
        assert sorted(rid for rid, _ in said["requests"]) == sorted(LABELLED)
        assert trained(loop) == 2  # 3 + 6 rows, then 3 + 6 + 5
        assert (loop / "trained.txt").read_text().splitlines() == ["9", "14"]
        assert project.models.get("sales:2").datasets[0].version == 3
        said = snapshotted(project)
        assert said.reason == "sales:3 adds 5 labelled rows from endpoint web"
        assert said.details["dataset"] == "sales:3" and said.details["feedback"]["rows"] == 5
        landed = project.metadata.events.find("pipeline/train")[-2]  # the fixture's iteration
        assert landed.reason == (
            "sales:2 holds the landed files; no labelled rows from endpoint web yet: "
            "trains on sales:2 as it is"
        )

        # The next fire time, no label since: nothing added, said, trained on sales:3 as it is.
        now[0] += DAY
        (again,) = controller.tick().begun
        second = project.metadata.controller.get(again.id)
        assert second.dataset is None and second.numbers["feedback"]["rows"] == 0
        assert project.data.get("sales").version == 3
        said = snapshotted(project)
        assert said.reason == (
            "no labelled rows from endpoint web new since the last snapshot: "
            "trains on sales:3 as it is"
        )
        assert second.outcome is Outcome.NO_CHALLENGER  # the same data: every step reused

        # Labels for the odd requests arrive (a labelling job's file): only they are added.
        odd = "\n".join(f"r-{i},{200 + i}" for i in range(1, 10, 2))
        (loop / "labels.csv").write_text("id,truth\n" + odd + "\nghost,7\n")
        stored = cli(
            "feedback", "web", "labels.csv", "--id-column", "id", "--label-column", "truth"
        )
        assert stored.code == 0, stored.err
        now[0] += DAY
        # a while later: the ghost's request could still be on its way to the log until then
        controller.steps.feedback.clock = lambda: time.time() + SETTLE + LOGGED_WITHIN
        (third,) = controller.tick().begun
        last = project.metadata.controller.get(third.id)
        assert last.dataset == "sales:4" and last.numbers["feedback"]["unlogged"] == 1
        version = project.data.get("sales:4", files=True)
        new = _feedback_tables(project, "sales:4")
        assert len(new) == 2 and all(p.startswith("data/feedback/web-") for p in new)
        assert len(version.files) == 6  # each with its sidecar
        frame = project.data.open("sales", 4).to_pandas(max(new))
        rows = sorted(zip(frame["x"].tolist(), frame["y"].tolist(), strict=True))
        assert rows == [(1000.0 + i, 200 + i) for i in range(1, 10, 2)]
        assert len(project.data.open("sales", 4).to_pandas()) == 3 + 6 + 5 + 5
        assert snapshotted(project).reason == (
            "sales:4 adds 5 labelled rows from endpoint web "
            "(1 label names a request not in the log's window)"
        )
    finally:
        project.close()
    shown = cli("controller", "status")
    assert shown.code == 0, shown.err
    assert "sales:4 (+5 rows from endpoint web)" in shown.out
    assert "sales:3 (+0 rows from endpoint web)" in shown.out  # the iteration that added none
    events = cli("events", "pipeline/train")
    assert "sales:3 adds 5 labelled rows from endpoint web" in events.out


@pytest.mark.parametrize("loop", STORES, indirect=True)
def test_a_snapshot_written_before_a_crash_is_found_again_not_made_twice(loop: Path) -> None:
    """The store as a controller killed between writing the version and moving the iteration
    on leaves it: the iteration `triggered`, the version made. Restarted, it makes none."""
    traffic(loop, LABELLED)
    project = Project.open(loop)
    try:
        now = _at(3, 1) + 30
        it = begin_iteration(project, "crashed", now)
        controller = _controller(project, [now])
        policy = project.settings.controller["train"].feedback
        assert policy is not None
        made = controller.steps.feedback.take(policy, it.id, "controller.train.feedback")
        assert made.version.ref == "sales:3" and made.taken.rows == 5
        # labels arriving meanwhile are the next snapshot's, not a second one of this
        more = [Label(f"r-{i}", 0, time.time(), "test") for i in range(1, 10, 2)]
        project.metadata.feedback.add("web", more)

        controller.tick()  # restarted: continues the same iteration
        ended = project.metadata.controller.get("crashed")
        assert ended.dataset == "sales:3" and ended.state is IterationState.DONE
        assert project.data.get("sales").version == 3  # one version, not two
        versions = [
            e for e in project.metadata.events.find("dataset/sales") if e.details.get("feedback")
        ]
        assert len(versions) == 1
        assert "made before the controller restarted" in (snapshotted(project).reason or "")
        assert (loop / "trained.txt").read_text().splitlines()[-1] == "14"
    finally:
        project.close()


@pytest.mark.parametrize(
    ("feedback", "message", "hint"),
    [
        ("{label: y}", "controller.train.feedback.dataset is missing", "feedback: {dataset:"),
        (
            "{dataset: sales, label: y, since: soon}",
            "controller.train.feedback: since 'soon'",
            "30d",
        ),
        (
            "{dataset: sales, lable: y}",
            "controller.train.feedback: unknown option 'lable'",
            "label",
        ),
        ("[sales]", "controller.train.feedback must be a mapping", "feedback: {dataset:"),
    ],
    ids=["no-dataset", "bad-since", "typo", "not-a-mapping"],
)
def test_a_bad_feedback_setting_is_one_line(
    loop: Path, cli: Callable[..., CliResult], feedback: str, message: str, hint: str
) -> None:
    text = (loop / "mloop.yaml").read_text()
    text = text.replace("feedback: {dataset: sales, label: y, since: 1h}", f"feedback: {feedback}")
    (loop / "mloop.yaml").write_text(text)
    done = cli("controller", "--once")
    assert done.code == 1
    assert done.err.startswith("error: ") and message in done.err, done.err
    assert "hint: " in done.err and hint in done.err and "Traceback" not in done.err
    assert len(done.err.strip().splitlines()) == 2  # the error and its hint


def test_a_label_column_the_dataset_lacks_fails_the_iteration_and_names_it(loop: Path) -> None:
    text = (loop / "mloop.yaml").read_text().replace("label: y", "label: churned")
    (loop / "mloop.yaml").write_text(text)
    traffic(loop, LABELLED)
    project = Project.open(loop)
    try:
        (it,) = _controller(project, [_at(3, 1) + 30]).tick().begun
        ended = project.metadata.controller.get(it.id)
        assert ended.outcome is Outcome.FAILED and ended.state is IterationState.DONE
        assert ended.error == (
            "controller.train.feedback.label: dataset sales:2 has no column 'churned' "
            "(it has: x, y)"
        )
        assert project.data.get("sales").version == 2
    finally:
        project.close()


def test_labels_of_a_type_the_column_cannot_hold_fail_the_iteration_and_add_nothing(
    loop: Path,
) -> None:
    traffic(loop, {"r-0": "high", "r-1": "low"})  # text, for the numbers of column y
    project = Project.open(loop)
    try:
        (it,) = _controller(project, [_at(3, 1) + 30]).tick().begun
        ended = project.metadata.controller.get(it.id)
        assert ended.outcome is Outcome.FAILED
        assert ended.error == (
            "controller.train.feedback: labelled rows do not fit sales:2: column 'y' holds "
            "string values where the dataset holds integer"
        )
        assert project.data.get("sales").version == 2
        assert project.models.get("sales@champion").version == 1  # the champion serves on
    finally:
        project.close()


def test_the_datasets_columns_decide_the_rows_shape(loop: Path) -> None:
    """A column the log lacks is left empty and named; a dataset none of whose columns the
    endpoint logs is refused rather than filled with empty rows."""
    import mloop

    (loop / "wide").mkdir()
    (loop / "wide" / "t.csv").write_text("z,x,y\na,1,2\nb,2,4\n")
    mloop.data.add("wide", loop / "wide" / "t.csv", project=loop)
    (loop / "other").mkdir()
    (loop / "other" / "t.csv").write_text("a,y\n1,2\n")
    mloop.data.add("other", loop / "other" / "t.csv", project=loop)
    traffic(loop, {"r-3": 7})
    project = Project.open(loop)
    try:
        snapshots = _controller(project, [0.0]).steps.feedback
        made = snapshots.take(FeedbackPolicy("wide", "y", "web"), "i-1", "feedback")
        assert made.version.ref == "wide:2" and made.notes == ("not logged, left empty: z",)
        (extra,) = _feedback_tables(project, "wide:2")
        assert extra.startswith("wide/feedback/web-") and extra.endswith(".csv")
        frame = project.data.open("wide", 2).to_pandas()  # one schema: the tables concatenate
        assert frame.to_dict("list") == {"z": [None, "a", "b"], "x": [1003, 1, 2], "y": [7, 2, 4]}
        with pytest.raises(InvalidInput, match="endpoint web logs none of the columns") as caught:
            snapshots.take(FeedbackPolicy("other", "y", "web"), "i-2", "feedback")
        assert "other/t.csv (a); it logs x" in caught.value.message
        assert project.data.get("other").version == 1
    finally:
        project.close()


def _relabel(loop: Path, cli: Callable[..., CliResult], rows: str) -> None:
    """`mloop feedback web labels.csv` with `rows` (id,label lines)."""
    (loop / "labels.csv").write_text("id,truth\n" + rows + "\n")
    done = cli("feedback", "web", "labels.csv", "--id-column", "id", "--label-column", "truth")
    assert done.code == 0, done.err


def test_a_corrected_label_corrects_its_row_where_it_is_instead_of_adding_it_again(
    loop: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic(loop, LABELLED)  # r-0, r-2, ... r-8 labelled 100 + i
    project = Project.open(loop)
    try:
        snapshots = _controller(project, [0.0]).steps.feedback
        reads: Counter[str] = Counter()  # what the snapshots read from the artifact store
        read_bytes = snapshots.data.artifacts.read_bytes

        def counted(digest: str) -> bytes:
            reads[digest] += 1
            return read_bytes(digest)

        monkeypatch.setattr(snapshots.data.artifacts, "read_bytes", counted)
        policy = FeedbackPolicy("sales", "y", "web")
        first = snapshots.take(policy, "i-1", "feedback")
        assert first.version.ref == "sales:3" and first.taken.rows == 5
        (held,) = _feedback_tables(project, "sales:3")
        # r-2 was labelled wrong; r-4's label is sent again as it was; r-1 is labelled anew
        _relabel(loop, cli, "r-2,555\nr-4,104\nr-1,201")
        second = snapshots.take(policy, "i-2", "feedback")
        assert second.version.ref == "sales:4"
        assert (second.taken.labels, second.taken.rows, second.taken.corrected) == (3, 1, 1)
        assert second.describe() == (
            "sales:4 adds 1 labelled row from endpoint web and corrects the label of 1 row "
            "taken before"
        )
        tables = _feedback_tables(project, "sales:4")
        assert len(tables) == 2 and held in tables  # the corrected file keeps its path
        fixed = project.data.open("sales", 4).to_pandas(held)
        assert sorted(zip(fixed["x"], fixed["y"], strict=True)) == [
            (1000, 100),
            (1002, 555),
            (1004, 104),
            (1006, 106),
            (1008, 108),
        ]
        every = project.data.open("sales", 4).to_pandas()
        assert len(every) == 3 + 6 + 5 + 1 and (every["x"] == 1002).sum() == 1
        # the version before keeps what it held: versions are never changed
        assert (1002.0, 102) in _feedback_rows(project, "sales:3")
        # a correction alone makes a version too; one that changes nothing makes none
        _relabel(loop, cli, "r-1,202")
        # ...and the iteration trains on it (a schedule fires the controller's iteration)
        controller = _controller(project, [_at(3, 1) + 30])
        (it,) = controller.tick().begun
        third = project.metadata.controller.get(it.id)
        assert third.dataset == "sales:5" and third.model == "sales:2"
        assert (third.numbers["feedback"]["rows"], third.numbers["feedback"]["corrected"]) == (0, 1)
        assert snapshotted(project).reason.startswith(
            "sales:5 corrects the label of 1 row taken before from endpoint web"
        )
        assert len(project.data.open("sales", 5).to_pandas()) == 15
        _relabel(loop, cli, "r-1,202")  # sent again
        reads.clear()
        same = snapshots.take(policy, "i-4", "feedback")
        assert same.version.ref == "sales:5" and same.taken.corrected == 0
        # a sidecar's content never changes: these snapshots read each one once, not per take
        files = {f.path: f.digest for f in project.data.get("sales:5", files=True).files}
        old, new = (files[p.rsplit(".", 1)[0] + REQUESTS] for p in sorted(tables))
        assert (reads[old], reads[new]) == (0, 1), reads  # read in take 2; not by them yet
        events = project.metadata.events.find("dataset/sales")
        assert events[0].reason == "1 row taken before relabelled from endpoint web"
    finally:
        project.close()
    shown = cli("controller", "status")
    assert "sales:5 (+0 rows, 1 corrected from endpoint web)" in shown.out, shown.out


def test_requests_answered_before_the_window_are_not_taken(loop: Path) -> None:
    traffic(loop, LABELLED)
    project = Project.open(loop)
    try:
        snapshots = _controller(project, [0.0]).steps.feedback
        policy = FeedbackPolicy("sales", "y", "web", since="1h")
        snapshots.clock = lambda: time.time() + 7200  # two hours on: the requests are older
        late = snapshots.take(policy, "i-late", "feedback")
        assert late.taken.rows == 0 and late.taken.labels == 0
        assert (
            late.describe() == "no labelled rows from endpoint web yet: trains on sales:2 as it is"
        )
        snapshots.clock = lambda: time.time() + SETTLE  # within the hour
        assert snapshots.take(policy, "i-now", "feedback").taken.rows == 5
    finally:
        project.close()


def test_a_label_whose_request_is_not_stored_yet_waits_for_the_next_snapshot(loop: Path) -> None:
    """A server stores its log every few seconds; a label may come before its request is
    stored. The snapshot then stops before that label, and the next one takes it."""
    project = Project.open(loop)
    try:
        plog = project.prediction_log(flush_seconds=3600.0, flush_requests=1000)
        loaded = project.models.load_predictor("sales:1")
        frame = pd.DataFrame({"x": [1000.0 + i for i in range(6)]})
        for i in range(3):  # answered and stored before the others
            rows = frame.iloc[i : i + 1]
            plog.record(
                "web", "sales:1", "stable", f"s-{i}", rows, loaded.predict(rows), time.time()
            )
        plog.flush()
        for i in range(3, 6):  # answered, still in the server's buffer
            rows = frame.iloc[i : i + 1]
            plog.record(
                "web", "sales:1", "stable", f"s-{i}", rows, loaded.predict(rows), time.time()
            )
        now = time.time() - 1.0  # received a moment ago, in the order of their requests
        labels = [Label(f"s-{i}", 10 + i, now + i * 0.01, "test") for i in range(6)]
        labels.append(Label("ghost", 7, now - LOGGED_WITHIN - 60, "test"))  # never logged
        project.metadata.feedback.add("web", labels)
        snapshots = project.controller().steps.feedback
        snapshots.clock = lambda: time.time() + SETTLE
        policy = FeedbackPolicy("sales", "y", "web", since="1h")
        first = snapshots.take(policy, "i-first", "feedback")
        assert first.version.ref == "sales:3"
        assert (first.taken.labels, first.taken.rows, first.taken.unlogged) == (4, 3, 1)
        assert first.taken.until < labels[3].at  # it stops before the first waiting label
        assert "3 newer labels wait for their requests to reach the log" in first.describe()
        assert _feedback_rows(project, "sales:3") == [(1000.0 + i, 10 + i) for i in range(3)]
        assert snapshots.take(policy, "i-again", "feedback").taken.rows == 0  # still waiting
        plog.close()  # the server stores the rest
        second = snapshots.take(policy, "i-second", "feedback")
        assert second.version.ref == "sales:4"
        assert (second.taken.labels, second.taken.rows, second.taken.unlogged) == (3, 3, 0)
        new = _feedback_tables(project, "sales:4")
        assert len(new) == 2
        frame4 = project.data.open("sales", 4).to_pandas(max(new))
        assert sorted(zip(frame4["x"], frame4["y"], strict=True)) == [
            (1000.0 + i, 10 + i) for i in range(3, 6)
        ]
    finally:
        project.close()
