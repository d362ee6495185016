"""The Python SDK against a real SQLite project: runs, nesting, threads, tasks, exit, capture."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import mloop
from mloop.errors import Conflict, InvalidInput, InvalidPath
from mloop.project import Project


def stored(run_id: str):
    return Project.open().runs.get(run_id)


def test_run_records_params_metrics_tags_and_status(project: Path) -> None:
    with mloop.start_run("train", params={"lr": 0.1}, tags={"team": "a"}) as run:
        mloop.log_param("depth", 3)
        mloop.log_params({"model": "rf"})
        for step in range(100):
            mloop.log_metric("loss", 1 / (step + 1))
        mloop.log_metrics({"acc": 0.9, "f1": 0.8}, step=7)
        mloop.set_tag("stage", "dev")
    saved = stored(run.id)
    assert saved.status.value == "finished" and saved.ended is not None
    assert saved.params == {"lr": "0.1", "depth": "3", "model": "rf"}
    assert saved.tags == {"team": "a", "stage": "dev"}
    assert saved.metrics["loss"].step == 99 and saved.metrics["loss"].value == pytest.approx(0.01)
    assert saved.metrics["acc"].step == 7
    history = Project.open().runs.metric_history(run.id, "loss")
    assert [m.step for m in history] == list(range(100))


def test_exception_marks_the_run_failed_and_keeps_what_was_logged(project: Path) -> None:
    with pytest.raises(ZeroDivisionError), mloop.start_run("boom") as run:
        mloop.log_metric("before", 1.0)
        _ = 1 / 0
    saved = stored(run.id)
    assert saved.status.value == "failed"
    assert "ZeroDivisionError" in (saved.error or "")
    assert saved.metrics["before"].value == 1.0
    assert mloop.active_run() is None


def test_nested_runs_are_children_and_share_code_and_environment(project: Path) -> None:
    with mloop.start_run("parent") as parent:
        with mloop.start_run("child") as child:
            mloop.log_metric("m", 1)
        assert mloop.active_run() is parent._active
    saved = stored(child.id)
    assert saved.parent_id == parent.id
    assert saved.environment == stored(parent.id).environment
    children = Project.open().metadata.runs.children(parent.id)
    assert [c.id for c in children] == [child.id]


def test_each_thread_has_its_own_active_run(project: Path) -> None:
    ids: dict[int, str] = {}
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        with mloop.start_run(f"thread-{n}") as run:
            barrier.wait(timeout=30)
            for i in range(500):
                mloop.log_metric("value", n * 1000 + i)
            ids[n] = run.id

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(ids) == 4
    for n, run_id in ids.items():
        history = Project.open().runs.metric_history(run_id, "value")
        assert [m.value for m in history] == [n * 1000 + i for i in range(500)]
        assert stored(run_id).parent_id is None


def test_each_asyncio_task_has_its_own_active_run(project: Path) -> None:
    async def task(n: int) -> str:
        with mloop.start_run(f"task-{n}") as run:
            for _ in range(50):
                mloop.log_metric("v", n)
                await asyncio.sleep(0)
            return run.id

    async def both() -> list[str]:
        return await asyncio.gather(task(1), task(2))

    first, second = asyncio.run(both())
    assert stored(first).metrics["v"].value == 1 and stored(second).metrics["v"].value == 2
    assert stored(first).parent_id is None and stored(second).parent_id is None


def test_values_are_stored_at_interpreter_exit_without_a_with_block(project: Path) -> None:
    script = textwrap.dedent(
        """
        import mloop
        run = mloop.start_run("no-with")
        for i in range(5000):
            mloop.log_metric("x", i)
        print(run.id)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, check=True
    )
    saved = stored(done.stdout.strip())
    assert saved.status.value == "finished"
    assert len(Project.open().runs.metric_history(saved.id, "x")) == 5000


def test_log_artifact_file_and_folder(project: Path) -> None:
    (project / "model").mkdir()
    (project / "model/weights.txt").write_text("1 2 3")
    (project / "model/sub").mkdir()
    (project / "model/sub/meta.json").write_text("{}")
    (project / "report.txt").write_text("ok")
    with mloop.start_run("art") as run:
        mloop.log_artifact("report.txt")
        mloop.log_artifact("model", name="outputs/model")
    names = sorted(o.name for o in stored(run.id).outputs)
    assert names == ["outputs/model/sub/meta.json", "outputs/model/weights.txt", "report.txt"]
    digest = next(o.digest for o in stored(run.id).outputs if o.name == "report.txt")
    assert Project.open().artifacts.read_bytes(digest) == b"ok"


@pytest.mark.parametrize(
    "name",
    ["../escape.txt", "/etc/passwd", "a\\b.txt", "bad\x00name", "C:/x", "a/../../b"],
    ids=["dotdot", "absolute", "backslash", "nul", "drive", "nested-dotdot"],
)
def test_artifact_names_cannot_leave_the_store(project: Path, name: str) -> None:
    (project / "f.txt").write_text("x")
    with mloop.start_run("names") as run, pytest.raises(InvalidPath):
        mloop.log_artifact("f.txt", name=name)
    assert stored(run.id).outputs == ()


def test_bad_values_are_refused_clearly(project: Path) -> None:
    with pytest.raises(InvalidInput, match="no active run"):
        mloop.log_metric("x", 1.0)
    with mloop.start_run("bad") as run:
        with pytest.raises(InvalidInput, match="must be a number"):
            mloop.log_metric("x", "high")
        with pytest.raises(InvalidInput, match="invalid metric key"):
            mloop.log_metric("", 1.0)
        mloop.log_param("lr", 0.1)
        with pytest.raises(Conflict, match="already"):
            mloop.log_param("lr", 0.2)
        mloop.log_metric("nan", math.nan)
    saved = stored(run.id)
    assert saved.params == {"lr": "0.1"}
    assert saved.metrics["nan"].value is None


def test_code_version_outside_git_and_in_a_clean_and_dirty_repo(project: Path) -> None:
    with mloop.start_run("no-git") as run:
        pass
    assert stored(run.id).code is not None and stored(run.id).code.state == "not in git"

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.email=t@e", "-c", "user.name=t", *args],
            cwd=project,
            check=True,
            capture_output=True,
        )

    (project / "train.py").write_text("print('hi')\n")
    git("init", "-q", ".")
    git("add", "train.py", "mloop.yaml")
    git("commit", "-qm", "code")
    with mloop.start_run("clean") as clean:
        pass
    (project / "train.py").write_text("print('changed')\n")
    with mloop.start_run("dirty") as dirty:
        pass
    (project / "train.py").write_text("print('changed again')\n")
    with mloop.start_run("dirtier") as dirtier:
        pass
    c, d, d2 = stored(clean.id).code, stored(dirty.id).code, stored(dirtier.id).code
    assert c is not None and d is not None and d2 is not None
    assert c.state == "clean" and len(c.commit or "") == 40
    assert d.state == "dirty" and d.commit == c.commit
    assert d.diff_digest != d2.diff_digest  # a different working tree, a different digest


def test_environment_is_digested_and_its_package_list_stored(project: Path) -> None:
    with mloop.start_run("env") as run:
        pass
    project_ = Project.open()
    env = project_.metadata.environments.get(stored(run.id).environment or "")
    listing = project_.artifacts.read_bytes(env.packages_digest).decode()
    assert "blake3==" in listing and env.package_count == len(listing.splitlines())
    assert env.python.startswith("CPython 3.")


def test_data_get_inside_a_run_is_recorded_as_input(project: Path) -> None:
    (project / "data").mkdir()
    (project / "data/sales.csv").write_text("price,units\n1.5,10\n2.5,20\n")
    version = mloop.data.add("sales", "data/sales.csv", message="m1")
    assert version.ref == "sales:1" and version.tables[0].rows == 2
    with mloop.start_run("uses-data") as run:
        frame = mloop.data.get("sales").to_pandas()
    assert list(frame["units"]) == [10, 20]
    assert [(i.kind, i.ref) for i in stored(run.id).inputs] == [("dataset", "sales:1")]
    local = mloop.data.get("sales", version=1).path("data/sales.csv")
    assert local.read_text().startswith("price,units")


def test_an_uncaught_exception_at_exit_marks_an_open_run_failed(project: Path) -> None:
    script = textwrap.dedent(
        """
        import mloop
        run = mloop.start_run("crashes")
        mloop.log_metric("x", 1.0)
        print(run.id, flush=True)
        raise SystemError("out of luck")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    saved = stored(done.stdout.strip())
    assert saved.status.value == "failed"
    assert "out of luck" in (saved.error or "")
    assert saved.metrics["x"].value == 1.0


def test_runs_in_one_process_reuse_the_open_project(project: Path) -> None:
    with mloop.start_run("one") as first:
        pass
    with mloop.start_run("two") as second:
        pass
    assert first._active._runs is second._active._runs
