"""`mloop reproduce`: re-run the pipeline that made a version from its commit (a real git
worktree), dataset versions and params, and compare metrics, digest and environment."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import mloop
from mloop.project import Project
from tests.conftest import run_mloop

PIPELINE = """
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import mloop

FEATURES = ["x1", "x2"]


@mloop.step
def ingest(raw) -> pd.DataFrame:
    return raw.to_pandas()


@mloop.step
def train(frame: pd.DataFrame, C: float, jitter: float) -> LogisticRegression:
    features = frame[FEATURES]
    if jitter:  # unseeded noise: a pipeline that cannot be reproduced
        rng = np.random.default_rng()
        features = features + rng.normal(0, jitter, features.shape)
        mloop.log_metric("noise", float(rng.normal()))
    return LogisticRegression(C=C).fit(features, frame["label"])


@mloop.step
def evaluate(model: LogisticRegression, frame: pd.DataFrame) -> float:
    accuracy = float(model.score(frame[FEATURES], frame["label"]))
    mloop.log_metric("accuracy", accuracy)
    return accuracy


@mloop.step
def register(model: LogisticRegression, accuracy: float) -> str:
    return mloop.register_model(model, "churn").ref


@mloop.pipeline(metric="accuracy")
def training(C: float = 1.0, jitter: float = 0.0):
    frame = ingest(mloop.dataset("train"))
    model = train(frame, C=C, jitter=jitter)
    register(model, evaluate(model, frame))
"""


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def write_data(root: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=300), "x2": rng.normal(size=300)})
    frame["label"] = (frame.x1 + 0.5 * frame.x2 + rng.normal(0, 0.5, 300) > 0).astype(int)
    (root / "data").mkdir(exist_ok=True)
    frame.to_csv(root / "data/train.csv", index=False)


def write_project(root: Path) -> None:
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "mloop.yaml").write_text("project: repro\npipelines:\n  train: pipeline:training\n")
    (root / ".gitignore").write_text("data/\n__pycache__/\n")
    write_data(root, seed=0)
    mloop.data.add("train", "data/train.csv")


def commit(root: Path, message: str) -> str:
    if not (root / ".git").exists():
        git(root, "init", "-q", ".")
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return git(root, "rev-parse", "HEAD")


def train(root: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """`mloop run` in its own process, so the pipeline module never enters this one."""
    done = run_mloop("run", *args, cwd=root, env=env)
    assert done.code == 0, done.out + done.err


@pytest.fixture
def repo(project: Path) -> Path:
    write_project(project)
    return project


def test_a_version_is_reproduced_from_its_commit_data_and_params(
    repo: Path, tmp_path: Path, cli
) -> None:
    first = commit(repo, "training code")
    extra = tmp_path / "site" / "zzfakepkg-1.2.3.dist-info"  # a package only the first run had
    extra.mkdir(parents=True)
    (extra / "METADATA").write_text("Metadata-Version: 2.1\nName: zzfakepkg\nVersion: 1.2.3\n")
    train(repo, "-p", "C=0.5", env={"PYTHONPATH": str(extra.parent)})
    # Later: new data, new committed code, and an uncommitted edit; none of it may leak in.
    write_data(repo, seed=1)
    mloop.data.add("train", "data/train.csv")
    (repo / "pipeline.py").write_text(PIPELINE.replace("C: float = 1.0", "C: float = 0.01"))
    commit(repo, "weaker model")
    train(repo)
    (repo / "pipeline.py").write_text(PIPELINE.replace('"accuracy", accuracy', '"accuracy", 0.0'))

    done = cli("reproduce", "churn:1", "--json")
    assert done.code == 0, done.out + done.err
    result = json.loads(done.out)
    assert result["ok"] is True and result["status"] == "finished"
    assert result["commit"] == first and result["pipeline"] == "train"
    assert result["params"] == {"C": "0.5", "jitter": "0.0"}
    assert result["datasets"] == ["train:1"]
    original = Project.open().models.get("churn:1")
    assert result["digest_match"] is True and result["reproduced_digest"] == original.digest
    assert result["reproduced_version"] is None  # compared, not registered
    assert [v.version for v in Project.open().models.versions("churn")] == [1, 2]
    accuracy = next(m for m in result["metrics"] if m["name"] == "accuracy")
    assert accuracy["exact"] is True and accuracy["recorded"] == original.metrics["accuracy"]
    assert {"name": "zzfakepkg", "recorded": "1.2.3", "current": None} in result["packages"]
    assert "package zzfakepkg: recorded 1.2.3, now not installed" in result["warnings"]
    assert not any("registered" in w for w in result["warnings"])
    assert [s for s, state in result["steps"] if state == "finished"] == [
        "ingest",
        "train",
        "evaluate",
        "register",
    ]

    project = Project.open()
    rerun = project.runs.get(result["run_id"])
    assert rerun.tags["mloop.reproduces"] == "churn:1"
    assert rerun.code is not None and rerun.code.commit == first
    assert rerun.code.diff_digest is None  # the checkout stayed clean while it ran
    children = [project.runs.get(c.id) for c in project.metadata.runs.children(rerun.id)]
    read = {i.ref for c in children for i in c.inputs if i.kind == "dataset"}
    assert read == {"train:1"}
    assert git(repo, "worktree", "list").count("\n") == 0  # the worktree is gone
    events = project.metadata.events.find("model/churn:1")
    assert any(e.action == "model.reproduced" and e.details["ok"] is True for e in events)

    text = cli("reproduce", "churn:2", "--register")  # asked to: registers what it makes
    assert text.code == 0, text.out + text.err
    assert text.out.startswith("churn:2: reproduced\n")
    assert "datasets: train:2" in text.out and "C=0.01" in text.out
    assert "digest:   match" in text.out and "(churn:3)" in text.out
    assert (
        Project.open().models.get("churn:3").digest == Project.open().models.get("churn:2").digest
    )
    assert "steps:    all 4 recomputed" in text.out


def test_a_pipeline_that_cannot_be_reproduced_is_reported(repo: Path, cli) -> None:
    commit(repo, "training code")
    train(repo, "-p", "jitter=0.3")
    done = cli("reproduce", "churn:1")
    assert done.code == 1, done.out + done.err
    assert done.out.startswith("churn:1: NOT reproduced\n")
    assert "digest:   DIFFERS" in done.out
    assert [line.split()[-1] for line in done.out.splitlines() if line.startswith("noise")] == [
        "NO"
    ]
    heard: list[str] = []  # the service alone, as the SDK would call it: no CLI in between
    result = Project.open().reproducer.reproduce("churn:1", tolerance=1e6, on_output=heard.append)
    assert result.digest_match is False and result.ok is False  # digests are exact
    assert all(m.close for m in result.metrics)  # a huge tolerance forgives the numbers
    assert heard[0] == "re-running pipeline train in a checkout of its commit\n"
    assert [line.split()[:2] for line in heard[1:]] == [
        [step, "finished"] for step in ("ingest", "train", "evaluate", "register")
    ]  # the re-run's progress, a line per step as it ends


def test_versions_that_cannot_be_re_run_faithfully_are_refused(repo: Path, cli) -> None:
    train(repo)
    outside_git = cli("reproduce", "churn:1")
    assert outside_git.code == 1
    assert "churn:1 was made from code that was not in git" in outside_git.err

    commit(repo, "training code")
    (repo / "pipeline.py").write_text(PIPELINE + "\n# an uncommitted note\n")
    train(repo, "--no-cache")
    dirty = cli("reproduce", "churn:2")
    assert dirty.code == 1
    assert "uncommitted changes" in dirty.err and "cannot be restored" in dirty.err
    assert "hint: re-run the commit alone anyway (results may differ): add --allow-dirty" in (
        dirty.err
    )
    allowed = cli("reproduce", "churn:2", "--allow-dirty", "--json")
    assert allowed.code == 0, allowed.out + allowed.err
    warnings = json.loads(allowed.out)["warnings"]
    assert any("only the commit ran" in w for w in warnings)

    with mloop.start_run("notebook"):
        model = LogisticRegression().fit(np.eye(2), [0, 1])
        mloop.register_model(model, "adhoc")
    adhoc = cli("reproduce", "adhoc:1")
    assert adhoc.code == 1 and "not by a pipeline" in adhoc.err
    mloop.register_model(model, "loose")
    loose = cli("reproduce", "loose:1")
    assert loose.code == 1 and "registered outside any run" in loose.err
    assert cli("reproduce").code == 1
    assert git(repo, "worktree", "list").count("\n") == 0


def test_a_template_projects_model_is_reproduced_with_its_two_pinned_data_inputs(
    tmp_path: Path, cli
) -> None:
    root = tmp_path / "demo"
    assert cli("init", str(root), "--template", "classification").code == 0
    commit(root, "from the template")
    train(root)
    smaller = pd.read_csv(root / "data/churn.csv").head(300)
    smaller.to_csv(root / "data/churn.csv", index=False)
    assert run_mloop("data", "add", "churn", "data/churn.csv", cwd=root).code == 0
    done = run_mloop("reproduce", "churn:1", "--json", cwd=root)
    assert done.code == 0, done.out + done.err
    result = json.loads(done.out)
    assert result["ok"] is True and result["datasets"] == ["churn:1"]
    assert result["reproduced_version"] is None and result["digest_match"] is True
    assert [v.version for v in Project.open(root).models.versions("churn")] == [1]
    assert {m["name"] for m in result["metrics"]} >= {"accuracy", "f1_macro"}
