"""new_data triggers on real folders, a real metadata store and moto's S3 server: rows counted
without loading files, files the dataset holds not new, files being written not counted, the
remembered state sparing re-reads across restarts, and landing idempotent."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mloop.domain.landing import CheckStatus
from mloop.domain.trigger import Trigger, parse_triggers
from mloop.project import Project
from mloop.services.automation.landing import read_landed
from tests.conftest import CliResult

OLD = time.time() - 3600  # an hour ago: long settled


def csv_rows(n: int, start: int = 0) -> str:
    return "id,tenure,churned\n" + "".join(
        f"{i},{i % 70},{i % 2}\n" for i in range(start, start + n)
    )


def write(path: Path, text: str, mtime: float = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def new_data(path: str = "landing/", rows: int = 1000, settle: str = "5s") -> Trigger:
    spec = {"path": path, "rows": rows, "dataset": "churn", "settle": settle}
    return parse_triggers({"train": [{"new_data": spec}]})["train"][0]


# counting rows ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("a,b\n1,2\n3,4\n", 2),
        ("a,b\n1,2\n3,4", 2),  # no newline at the end
        ("a,b\r\n1,2\r\n3,4\r\n", 2),
        ('a,b\n1,"two\nlines"\n3,"say ""hi"""\n', 2),  # a quoted field holding a newline
        ("a,b\n1,2\n\n3,4\n\n", 2),  # blank lines are not records
        ("a,b\n", 0),
        ("", 0),
    ],
    ids=["plain", "no-final-newline", "crlf", "quoted-newline", "blank-lines", "header", "empty"],
)
def test_csv_rows_are_counted_by_streaming(tmp_path: Path, text: str, rows: int) -> None:
    found = read_landed(str(write(tmp_path / "x.csv", text)))
    assert found.rows == rows


def test_a_large_csv_is_counted_across_chunks_with_its_quotes(tmp_path: Path) -> None:
    # 3 MiB: the chunks split quoted fields, and a quote appears only past the first chunk
    body = "".join(f"{i},plain\n" for i in range(150_000))
    body += "".join(f'{i},"multi\nline"\n' for i in range(100_000))
    found = read_landed(str(write(tmp_path / "big.csv", "a,b\n" + body)))
    assert found.rows == 250_000


def test_parquet_rows_come_from_its_footer_and_the_digest_is_the_datasets(
    tmp_path: Path,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mloop.domain.digests import digest_bytes

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": list(range(1234))}), path, row_group_size=100)
    found = read_landed(str(path))
    assert (found.rows, found.digest) == (1234, digest_bytes(path.read_bytes()))


# checking -----------------------------------------------------------------------------------
@pytest.fixture
def churn(project: Path) -> Project:
    """A project whose dataset churn:1 holds data/churn.csv (500 rows)."""
    write(project / "data/churn.csv", csv_rows(500))
    opened = Project.open(project)
    opened.data.add("churn", ["data/churn.csv"])
    return opened


def test_rows_below_the_threshold_do_not_fire_and_reaching_it_does(
    churn: Project, project: Path
) -> None:
    trigger = new_data()
    write(project / "landing/copy-of-v1.csv", csv_rows(500))  # churn:1 holds this content
    write(project / "landing/a.csv", csv_rows(600, start=1000))
    write(project / "landing/readme.txt", "not data")

    first = churn.triggers.check_new_data(trigger)
    assert first.status is CheckStatus.OK
    assert [(Path(f.path).name, f.rows) for f in first.new_files] == [("a.csv", 600)]
    assert (first.new_rows, first.threshold, first.fired) == (600, 1000, False)
    assert [(Path(s.path).name, s.reason) for s in first.skipped] == [
        ("readme.txt", "not CSV or Parquet")
    ]

    write(project / "landing/b.csv", csv_rows(400, start=2000))
    second = churn.triggers.check_new_data(trigger)
    assert (second.new_rows, second.fired) == (1000, True)


def test_a_file_still_being_written_is_not_counted(churn: Project, project: Path) -> None:
    trigger = new_data(rows=100)
    growing = write(project / "landing/growing.csv", csv_rows(300, start=1000), time.time())

    check = churn.triggers.check_new_data(trigger)
    assert (check.new_rows, check.fired) == (0, False)
    assert [(s.path, s.reason) for s in check.skipped] == [(str(growing), "still being written")]

    # settled (older than 5 s) but its size changed since the last check: still waiting
    write(growing, csv_rows(400, start=1000))
    assert churn.triggers.check_new_data(trigger).new_rows == 0
    # the same size at the next check: counted
    assert churn.triggers.check_new_data(trigger).new_rows == 400


def test_unchanged_files_are_not_read_again_even_after_a_restart(
    churn: Project, project: Path
) -> None:
    trigger = new_data()
    landed = write(project / "landing/a.csv", csv_rows(600, start=1000))
    before = churn.triggers.check_new_data(trigger)

    # Same size and mtime, other content: a check that re-read it would see another digest.
    write(landed, csv_rows(600, start=5000))
    restarted = Project.open(project)  # a new process: only the store remembers
    after = restarted.triggers.check_new_data(trigger)
    assert after.new_files == before.new_files
    # a changed mtime is a change: read again
    write(landed, csv_rows(600, start=5000), OLD + 1)
    assert restarted.triggers.check_new_data(trigger).new_files != before.new_files


def test_a_vanished_folder_is_the_checks_status_not_an_exception(
    churn: Project, project: Path
) -> None:
    trigger = new_data()
    write(project / "landing/a.csv", csv_rows(10))
    assert churn.triggers.check_new_data(trigger).status is CheckStatus.OK
    (project / "landing/a.csv").unlink()
    (project / "landing").rmdir()

    check = churn.triggers.check_new_data(trigger)
    assert (check.status, check.fired, check.new_rows) == (CheckStatus.UNREACHABLE, False, 0)
    assert check.error == "landing/: does not exist"


def test_a_broken_parquet_file_is_skipped_with_its_reason(churn: Project, project: Path) -> None:
    write(project / "landing/broken.parquet", "PAR1 not really")
    check = churn.triggers.check_new_data(new_data())
    assert check.new_files == ()
    assert "not a readable Parquet file" in check.skipped[0].reason


# landing ------------------------------------------------------------------------------------
def test_landing_makes_the_next_version_once(churn: Project, project: Path) -> None:
    trigger = new_data(rows=1000)
    write(project / "landing/a.csv", csv_rows(600, start=1000))
    write(project / "landing/day2/b.csv", csv_rows(600, start=2000))
    write(project / "landing/copy-of-v1.csv", csv_rows(500))
    check = churn.triggers.check_new_data(trigger)
    assert check.fired

    landed = churn.triggers.land(trigger, check)
    assert landed.created and landed.version.version == 2
    v2 = churn.data.get("churn:2", files=True)
    assert [f.path for f in v2.files] == ["data/churn.csv", "landing/a.csv", "landing/day2/b.csv"]
    assert {t.path: t.rows for t in v2.tables} == {
        "data/churn.csv": 500,
        "landing/a.csv": 600,
        "landing/day2/b.csv": 600,
    }
    event = churn.metadata.events.find("dataset/churn", limit=1)[0]
    assert (event.details["trigger"], event.details["landed"], event.details["rows"]) == (
        "triggers.train[0].new_data",
        2,
        1200,
    )

    # called again for the same files (a controller restarted mid-step): no second version
    again = churn.triggers.land(trigger, check)
    assert (again.created, again.version.version) == (False, 2)
    assert [v.version for v in churn.data.versions("churn")] == [1, 2]
    # the landed files are now the dataset's: nothing new
    after = churn.triggers.check_new_data(trigger)
    assert (after.new_rows, after.fired) == (0, False)
    # the landing folder is one of the version's sources: status finds the landed files where
    # they are, and names only what the version lacks (here the copy of a file it holds)
    assert v2.sources == ("data/churn.csv", "landing")
    (status,) = churn.data.status("churn")
    assert (status.added, status.modified, status.deleted) == (("landing/copy-of-v1.csv",), (), ())
    # and the version's files check out as landed
    assert churn.data.checkout("churn:2", Path("out")).written >= 3
    assert (project / "out/landing/day2/b.csv").read_text() == csv_rows(600, start=2000)


# S3 -----------------------------------------------------------------------------------------
@pytest.mark.s3
def test_a_bucket_is_watched_and_landed_like_a_folder(churn: Project, s3_prefix: str) -> None:
    import fsspec

    bucket = s3_prefix.split("/")[2]
    fs = fsspec.filesystem("s3")
    fs.pipe(f"{bucket}/landing/a.csv", csv_rows(700, start=1000).encode())
    fs.pipe(f"{bucket}/landing/notes.json", b"{}")
    trigger = new_data(f"s3://{bucket}/landing/", rows=500, settle="0")

    check = churn.triggers.check_new_data(trigger)
    assert (check.status, check.new_rows, check.fired) == (CheckStatus.OK, 700, True)
    assert [s.reason for s in check.skipped] == ["not CSV or Parquet"]
    landed = churn.triggers.land(trigger, check)
    assert [f.path for f in churn.data.get("churn:2", files=True).files] == [
        "data/churn.csv",
        "landing/a.csv",
    ]
    assert landed.created
    assert churn.triggers.check_new_data(trigger).new_rows == 0
    # the landed object was never in the working tree: `mloop data status` does not call it
    # deleted, first from the manifest, then from the snapshot that check saved
    for _ in range(2):
        (status,) = churn.data.status("churn")
        assert (status.version, status.deleted, status.clean) == (2, (), True)

    # a prefix nothing has landed under yet is no files, not an error
    empty = churn.triggers.check_new_data(new_data(f"s3://{bucket}/nothing-yet/"))
    assert (empty.status, empty.new_rows) == (CheckStatus.OK, 0)
    gone = churn.triggers.check_new_data(new_data("s3://no-such-bucket-here/landing/"))
    assert gone.status is CheckStatus.UNREACHABLE
    assert gone.error is not None and "no-such-bucket-here" in gone.error


def test_check_results_are_plain_records(churn: Project, project: Path) -> None:
    from mloop.domain.landing import NewDataCheck
    from mloop.domain.records import from_plain, to_plain

    write(project / "landing/a.csv", csv_rows(3))
    check = churn.triggers.check_new_data(new_data())
    assert from_plain(NewDataCheck, to_plain(check)) == check


# the CLI ------------------------------------------------------------------------------------
def test_triggers_check_shows_each_trigger_without_acting(
    churn: Project, project: Path, cli: Callable[..., CliResult]
) -> None:
    with (project / "mloop.yaml").open("a") as fh:
        fh.write(
            "pipelines: {train: 'pipeline:train'}\n"
            "triggers:\n  train:\n"
            "    - new_data: {path: landing/, rows: 500, dataset: churn}\n"
            "    - schedule: {cron: '0 3 * * *', timezone: Europe/Paris}\n"
            "    - drift: {endpoint: churn}\n"
        )
    write(project / "landing/a.csv", csv_rows(600, start=1000))
    write(project / "landing/notes.txt", "x")

    shown = cli("triggers", "check")
    assert shown.code == 0, shown.err
    assert "600 new rows in 1 file (threshold 500): fires" in shown.out
    assert "triggers.train[1].schedule" in shown.out and "UTC" in shown.out
    assert "drift     waits: no endpoint 'churn' (create it with" in shown.out  # no traffic yet
    assert "skipped" in shown.err and "notes.txt: not CSV or Parquet" in shown.err
    as_json = json.loads(cli("triggers", "check", "--json").out)
    assert [c["trigger"]["kind"] for c in as_json] == ["new_data", "schedule", "drift"]
    assert as_json[0]["new_data"]["new_rows"] == 600
    assert as_json[1]["schedule"]["next_fire"].endswith("+00:00")
    assert [v.version for v in churn.data.versions("churn")] == [1]  # nothing acted on


def test_triggers_of_an_undeclared_pipeline_are_one_line_with_the_fix(
    project: Path, cli: Callable[..., CliResult]
) -> None:
    with (project / "mloop.yaml").open("a") as fh:
        fh.write(
            "pipelines: {train: 'pipeline:train'}\ntriggers: {trian: [{schedule: '0 3 * * *'}]}\n"
        )
    shown = cli("triggers", "check")
    assert shown.code == 1
    assert "triggers.trian: no pipeline 'trian' in mloop.yaml" in shown.err
    assert "did you mean 'train'?" in shown.err
    assert "Traceback" not in shown.err


def test_a_bucket_that_answers_errors_is_the_checks_status(
    project: Path, mloop_process: Callable[..., CliResult]
) -> None:
    """A real process whose S3 endpoint refuses connections: botocore's own errors must come
    out as the check's status, not a traceback (a controller would die on one)."""
    from tests.servers import free_port

    with (project / "mloop.yaml").open("a") as fh:
        fh.write(
            "pipelines: {train: 'pipeline:train'}\n"
            "triggers: {train: [{new_data: {path: 's3://b/landing/', rows: 1, dataset: d}}]}\n"
        )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    shown = mloop_process("triggers", "check", "--json", cwd=project, env=env)
    assert shown.code == 0, shown.err
    (found,) = json.loads(shown.out)
    assert found["new_data"]["status"] == "unreachable"
    assert "Could not connect" in found["new_data"]["error"]
