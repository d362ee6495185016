"""What starting a run costs, and that it still records everything: git processes for the code
version, the machine-local cache of the environment listing, the artifact store, commits and
imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mloop.domain.lineage import CodeVersion
from mloop.errors import Conflict
from mloop.project import Project
from mloop.services.tracking import capture
from mloop.services.tracking.capture import capture_code, capture_environment
from mloop.services.tracking.runs import RunService

REAL_GIT = shutil.which("git") or "git"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        [REAL_GIT, "-c", "user.email=t@e", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def make_repo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "train.py").write_text("print('hi')\n")
    git(folder, "init", "-q", ".")
    git(folder, "add", "train.py")
    git(folder, "commit", "-qm", "code")
    return folder


@pytest.fixture
def git_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """The git commands started from here on (`status`, `diff`, …), read from a log that a
    `git` placed first on PATH writes before it runs the real one. Git does not look for a
    repository above the test's folder."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "git-calls.log"
    (folder / "git").write_text(f'#!/bin/sh\necho "$3" >> "{log}"\nexec "{REAL_GIT}" "$@"\n')
    (folder / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))

    def calls() -> list[str]:
        found = log.read_text().split() if log.exists() else []
        log.unlink(missing_ok=True)
        return found

    return calls


# code version --------------------------------------------------------------------------------
def test_outside_git_no_git_process_is_started(
    tmp_path: Path, git_calls: Callable[[], list[str]]
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()

    assert capture_code(folder) == CodeVersion(None)
    assert git_calls() == []


def test_a_clean_tree_costs_one_git_process_and_a_dirty_one_two(
    tmp_path: Path, git_calls: Callable[[], list[str]]
) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")

    assert capture_code(repo) == CodeVersion(head, None, str(repo))
    assert git_calls() == ["status"]

    (repo / "train.py").write_text("print('changed')\n")
    edited = capture_code(repo)
    assert git_calls() == ["status", "diff"]
    assert (edited.commit, edited.state, edited.repo) == (head, "dirty", str(repo))
    assert capture_code(repo) == edited  # the same working tree, the same digest

    (repo / "notes.txt").write_text("a new file\n")
    untracked = capture_code(repo)
    (repo / "notes.txt").write_text("its content changed\n")
    changed = capture_code(repo)
    assert len({edited.diff_digest, untracked.diff_digest, changed.diff_digest}) == 3

    git(repo, "add", ".")
    git(repo, "commit", "-qm", "more")
    git_calls()
    assert capture_code(repo) == CodeVersion(git(repo, "rev-parse", "HEAD"), None, str(repo))
    assert git_calls() == ["status"]


def test_a_repository_without_a_commit_is_not_a_code_version(
    tmp_path: Path, git_calls: Callable[[], list[str]]
) -> None:
    repo = tmp_path / "new"
    repo.mkdir()
    git(repo, "init", "-q", ".")

    assert capture_code(repo) == CodeVersion(None)


def test_the_top_folder_is_git_s_from_a_subfolder_a_worktree_or_past_a_stray_git_folder(
    tmp_path: Path, git_calls: Callable[[], list[str]]
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    head = git(repo, "rev-parse", "HEAD")

    assert capture_code(repo / "sub") == CodeVersion(head, None, str(repo))
    assert git_calls() == ["status"]

    (repo / "sub" / ".git").mkdir()  # not a repository: git looks further up, and so do we
    assert capture_code(repo / "sub") == CodeVersion(head, None, str(repo))

    git(repo, "worktree", "add", "-q", "-b", "other", str(tmp_path / "linked"))
    linked = tmp_path / "linked"  # its .git is a file naming the repository
    assert capture_code(linked) == CodeVersion(head, None, str(linked))
    assert "rev-parse" in git_calls()


def test_ceiling_directories_stop_the_search_where_they_stop_git(
    tmp_path: Path, git_calls: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", f"{tmp_path}{os.pathsep}{repo}")

    assert capture_code(repo / "sub") == CodeVersion(None)
    assert git_calls() == []
    asked = subprocess.run(
        [REAL_GIT, "rev-parse", "--show-toplevel"], cwd=repo / "sub", capture_output=True
    )
    assert asked.returncode != 0  # git agrees: no repository


def test_git_dir_in_the_environment_is_followed(
    tmp_path: Path, git_calls: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(repo))

    assert capture_code(elsewhere) == CodeVersion(git(repo, "rev-parse", "HEAD"), None, str(repo))


# environment ---------------------------------------------------------------------------------
@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on sys.path, last modified a minute ago (so its listing may be cached)."""
    folder = tmp_path / "site"
    folder.mkdir()
    backdate(folder)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def backdate(folder: Path) -> None:
    past = time.time_ns() - 60 * 10**9
    os.utime(folder, ns=(past, past))


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders capture lists, in order (os.listdir, watched and still run)."""
    seen: list[str] = []
    real = os.listdir

    def watched(path: str) -> list[str]:
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(capture.os, "listdir", watched)
    return seen


def test_an_unchanged_environment_is_not_listed_again(
    tmp_path: Path, site: Path, listed: list[str]
) -> None:
    cache = tmp_path / "cache"
    fresh = capture_environment(None)
    env, listing = capture_environment(cache)
    assert (env, listing) == fresh and b"blake3==" in listing
    assert len(list(cache.glob("environment-*.json"))) == 1
    listed.clear()

    assert capture_environment(cache) == fresh
    assert listed == []


def test_installing_or_removing_a_package_changes_the_environment(
    tmp_path: Path, site: Path, listed: list[str]
) -> None:
    cache = tmp_path / "cache"
    before, _ = capture_environment(cache)
    listed.clear()

    (site / "fake_pkg-1.0.dist-info").mkdir()
    installed, listing = capture_environment(cache)
    assert b"fake-pkg==1.0\n" in listing
    assert installed.digest != before.digest
    assert installed.package_count == before.package_count + 1
    assert listed == [str(site)]  # only the folder that changed is listed again
    assert capture_environment(None) == (installed, listing)

    (site / "fake_pkg-1.0.dist-info").rename(site / "fake_pkg-2.0.dist-info")
    _, listing = capture_environment(cache)
    assert b"fake-pkg==2.0\n" in listing and b"fake-pkg==1.0" not in listing

    (site / "fake_pkg-2.0.dist-info").rmdir()
    assert capture_environment(cache)[0] == before


def test_a_folder_changed_in_the_same_clock_tick_is_listed_again(
    tmp_path: Path, site: Path
) -> None:
    cache = tmp_path / "cache"
    (site / "first-1.0.dist-info").mkdir()  # the folder was modified just now
    tick = site.stat().st_mtime_ns
    capture_environment(cache)

    (site / "second-1.0.dist-info").mkdir()
    os.utime(site, ns=(tick, tick))  # a change the folder's mtime does not show

    assert b"second==1.0\n" in capture_environment(cache)[1]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "edited", "folder"])
def test_a_damaged_or_unreadable_cache_is_never_trusted(
    tmp_path: Path, site: Path, listed: list[str], damage: str
) -> None:
    cache = tmp_path / "cache"
    expected = capture_environment(cache)
    (file,) = cache.glob("environment-*.json")
    good = file.read_bytes()
    if damage == "garbage":
        file.write_bytes(b"\x00\xff not json")
    elif damage == "truncated":
        file.write_bytes(good[: len(good) // 2])
    elif damage == "edited":  # well-formed, but not what was written: a planted package
        entry = json.loads(good)
        entry["body"]["folders"][0][1].append("planted==6.6.6")
        file.write_text(json.dumps(entry))
    else:
        file.unlink()
        file.mkdir()
    listed.clear()

    assert capture_environment(cache) == expected
    assert str(site) in listed  # listed again, not read from the damaged file
    if damage != "folder":
        listed.clear()
        assert capture_environment(cache) == expected  # the cache was written again
        assert listed == []


def test_a_package_installed_between_two_scripts_is_in_the_second_run_s_environment(
    project: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"  # a folder on the scripts' sys.path, as site-packages is
    site.mkdir()
    backdate(site)
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    script = "import mloop\nwith mloop.start_run('r') as run:\n    pass\nprint(run.id)\n"

    def recorded() -> tuple[str, bytes]:
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        opened = Project.open(project)
        digest = opened.runs.get(done.stdout.strip()).environment or ""
        listing = opened.artifacts.read_bytes(
            opened.metadata.environments.get(digest).packages_digest
        )
        return digest, listing

    before, listing = recorded()
    assert recorded() == (before, listing)  # unchanged: the cached listing, the same digest
    assert list((tmp_path / "cache" / "mloop").glob("environment-*.json"))

    (site / "fake_pkg-1.0.dist-info").mkdir()
    installed, listing = recorded()
    assert installed != before and b"fake-pkg==1.0\n" in listing

    (site / "fake_pkg-1.0.dist-info").rmdir()
    assert recorded()[0] == before


def test_the_cache_keeps_the_most_recently_written_files(tmp_path: Path, site: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    for n in range(capture.CACHE_FILES + 5):  # other interpreters' and script folders' files
        old = cache / f"environment-old{n:03d}.json"
        old.write_text("{}")
        os.utime(old, (1000 + n, 1000 + n))

    capture_environment(cache)

    kept = sorted(f.name for f in cache.glob("environment-*.json"))
    assert len(kept) == capture.CACHE_FILES
    assert "environment-old000.json" not in kept and "environment-old068.json" in kept
    assert [f for f in kept if not f.startswith("environment-old")]  # the one just written


# the run -------------------------------------------------------------------------------------
def test_a_project_that_has_its_environment_opens_no_artifact_store(project: Path) -> None:
    opened = Project.open()
    factories: list[str] = []

    def artifacts():  # type: ignore[no-untyped-def]
        factories.append("opened")
        return opened.artifacts

    first = RunService(opened.metadata, artifacts, "ada", project)
    with first.start("first") as run:
        pass
    assert factories == ["opened"]  # the package listing was stored, with the first run
    env = opened.metadata.environments.get(opened.metadata.runs.get(run.id).environment or "")
    listing = opened.artifacts.read_bytes(env.packages_digest)
    assert len(listing.splitlines()) == env.package_count

    later = RunService(opened.metadata, artifacts, "ada", project)  # as a new process would
    with later.start("later") as run:
        run.log_metric("loss", 0.5)
    assert factories == ["opened"]
    assert opened.metadata.runs.get(run.id).environment == env.digest


def test_starting_and_ending_a_run_commit_once_each(project: Path) -> None:
    opened = Project.open()
    tracker = opened.runs
    commits: list[str] = []  # write transactions: each waits for its commit to reach the disk
    connection = opened.metadata.db._sqlite()  # type: ignore[attr-defined]
    connection.set_trace_callback(lambda sql: sql == "BEGIN IMMEDIATE" and commits.append(sql))

    top = tracker.start("top", params={"lr": 0.1}, tags={"team": "a"})
    assert len(commits) == 1  # the run, its params and tags, its event and its environment
    step = tracker.start("step", params={"depth": 3}, tags={"kind": "step"}, parent=top)
    assert len(commits) == 2
    for i in range(50):
        step.log_metric("loss", 1 / (i + 1))
    step.set_tag("done", "yes")
    step.end()
    assert len(commits) == 3  # the values, the tag and the end
    top.log_metric("best", 0.02)
    top.end()
    assert len(commits) == 4
    connection.set_trace_callback(None)

    saved = tracker.get(step.id)
    assert saved.status.value == "finished" and saved.params == {"depth": "3"}
    assert saved.tags == {"kind": "step", "done": "yes"} and saved.metrics["loss"].step == 49
    assert len(tracker.metric_history(step.id, "loss")) == 50
    assert tracker.get(top.id).metrics["best"].value == 0.02
    assert top.id not in str(tracker.heartbeats.open_runs())


def test_an_end_that_cannot_write_its_values_still_ends_the_run(project: Path) -> None:
    tracker = Project.open().runs
    run = tracker.start("conflicted")
    elsewhere = tracker.attach(run.id)  # another process logging to the same run
    elsewhere.log_param("lr", 1)
    elsewhere.flush()
    run.log_param("lr", 2)
    run.log_metric("loss", 0.5)

    with pytest.raises(Conflict, match="lr"):
        run.end()

    saved = tracker.get(run.id)
    assert saved.status.value == "finished" and saved.params == {"lr": "1"}
    assert run.id not in str(tracker.heartbeats.open_runs())


UNUSED = (
    "mloop.services.pipelines.notebook",
    "mloop.domain.query",
    "mloop.store.artifacts.local",
    "platform",
    "socket",
    "subprocess",
    "tempfile",
    "traceback",
    "uuid",
)


def test_starting_a_run_imports_only_what_it_uses(project: Path, tmp_path: Path) -> None:
    script = (
        "import sys, mloop\n"
        "with mloop.start_run('r'):\n"
        "    mloop.log_metric('loss', 0.5)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")

    def modules() -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return set(done.stdout.split())

    modules()  # the first run in the project creates its schema and stores its environment
    assert [name for name in UNUSED if name in modules()] == []
