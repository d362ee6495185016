"""Sweeps run trials side by side and rank them; an unchanged pipeline is replayed without
importing its code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mloop.domain.run import RunKind
from mloop.errors import InvalidInput
from mloop.project import Project
from mloop.services.pipelines.sweep import Sweeper, combinations, parse_axis
from tests.conftest import run_mloop
from tests.e2e.test_progress import run_on_a_terminal


@pytest.mark.parametrize(
    ("spec", "grid"),
    [
        ("depth=3:5", [3, 4, 5]),
        ("lr=0.1:0.3:0.1", [0.1, 0.2, 0.3]),
        ("model=rf,svm", ["rf", "svm"]),
        ("lr=0.01,0.1", [0.01, 0.1]),
    ],
    ids=["int-range", "float-range-step", "words", "numbers"],
)
def test_sweep_axes(spec: str, grid: list[object]) -> None:
    assert parse_axis(spec).grid() == grid


@pytest.mark.parametrize(
    "spec", ["depth", "depth=5:3", "depth=1:5:0", "depth=a:b", "lr=nan:1", "lr=0:inf", "a=0:1e999"]
)
def test_bad_sweep_axes_are_refused(spec: str) -> None:
    with pytest.raises(InvalidInput):
        parse_axis(spec)


@pytest.mark.parametrize(
    "specs",
    [["a=1:1000000", "b=1:1000000"], ["lr=0:1:1e-300"], ["a=0:1e300"]],
    ids=["two-axes", "tiny-step", "huge-range"],
)
def test_a_grid_too_large_is_refused_before_it_is_built(specs: list[str]) -> None:
    axes = [parse_axis(spec) for spec in specs]
    with pytest.raises(InvalidInput, match="combinations") as refused:
        combinations(axes, {}, None, None)
    assert refused.value.hint is not None and "--random N" in refused.value.hint
    assert len(combinations(axes, {}, 3, seed=1)) == 3  # sampling the same grid works


def test_grid_and_seeded_random_combinations() -> None:
    axes = [parse_axis("depth=1:2"), parse_axis("model=a,b")]
    assert len(combinations(axes, {}, None, None)) == 4
    first = combinations(axes, {}, 5, seed=7)
    assert first == combinations(axes, {}, 5, seed=7)  # reproducible with a seed
    assert all(1 <= t["depth"] <= 2 and t["model"] in ("a", "b") for t in first)


def test_a_sweep_ranks_trials_and_shares_common_steps(pipes: Path) -> None:
    pipelines = Project.open().pipelines
    trials = combinations([parse_axis("depth=1:3")], {}, None, None)
    result = Sweeper(pipelines).run("train", trials, executor="process")
    assert [t.params["depth"] for t in result.trials] == [1, 2, 3]  # higher accuracy first
    scores = [t.score for t in result.trials]
    assert scores == sorted(scores, reverse=True)
    metadata = Project.open().metadata
    children = metadata.runs.children(result.run_id)
    assert sorted(c.id for c in children) == sorted(t.result.run_id for t in result.trials)
    computed = [
        step
        for trial in children
        for step in metadata.runs.children(trial.id)
        if step.name == "ingest" and "mloop.cached_from" not in step.tags
    ]
    assert len(computed) == 1  # one trial computed ingest; the others reused it
    sweep = Project.open().runs.get(result.run_id)
    assert sweep.tags["mloop.best_run"] == result.trials[0].result.run_id
    assert (sweep.kind, sweep.pipeline) == (RunKind.SWEEP, "train")
    assert {(c.kind, c.pipeline) for c in children} == {(RunKind.PIPELINE, "train")}


def test_sweep_cli_prints_the_ranking(pipes: Path) -> None:
    done = run_mloop("sweep", "train", "-p", "depth=1,4", "--json", cwd=pipes)
    assert done.code == 0, done.err
    ranking = json.loads(done.out)
    assert ranking["metric"] == "accuracy"
    assert [t["params"]["depth"] for t in ranking["trials"]] == [1, 4]


def test_an_unchanged_pipeline_is_replayed_without_importing_it(pipes: Path) -> None:
    first = run_mloop("run", "train", cwd=pipes)
    assert first.code == 0, first.err
    probe = (
        "import sys\nfrom mloop.cli.main import main\nrc = main(['run', 'train', '--json'])\n"
        "print(json.dumps({'rc': rc, 'pandas': 'pandas' in sys.modules,"
        " 'user': 'pipeline' in sys.modules}), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + probe],
        cwd=pipes,
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"rc": 0, "pandas": False, "user": False}
    replayed = json.loads(done.stdout)
    assert {s["state"] for s in replayed["steps"]} == {"cached"}
    # the replay is a pipeline run like the one it copies, and so are its steps
    run = Project.open().runs.get(replayed["run"])
    assert "mloop.replayed_from" in run.tags
    assert (run.kind, run.pipeline) == (RunKind.PIPELINE, "train")
    kinds = {(c.kind, c.pipeline) for c in Project.open().metadata.runs.children(run.id)}
    assert kinds == {(RunKind.STEP, "train")}

    # A changed helper makes the plan differ: the pipeline is traced and keys decide again.
    (pipes / "helpers.py").write_text("def scale_of(factor):\n    return factor * 3\n")
    changed = json.loads(run_mloop("run", "train", "--json", cwd=pipes).out)["steps"]
    assert {s["step"]: s["state"] for s in changed}["prepare"] == "finished"
    # New data: replay must not reuse the old run either.
    (pipes / "data/sales.csv").write_text("price,region\n9.0,a\n")
    assert run_mloop("data", "add", "sales", "data/sales.csv", cwd=pipes).code == 0
    fresh = json.loads(run_mloop("run", "train", "--json", cwd=pipes).out)["steps"]
    assert {s["step"]: s["state"] for s in fresh}["ingest"] == "finished"


def test_a_sweep_shows_each_trial_as_it_ends_on_a_terminal_only(pipes: Path) -> None:
    code, screen = run_on_a_terminal(["sweep", "train", "-p", "depth=1,2,3"], pipes)
    assert code == 0, screen
    for done in ("trial 1/3", "trial 2/3", "trial 3/3"):
        assert done in screen, screen  # a line per trial while the sweep runs
    assert screen.index("trial 3/3") < screen.index("RANK")  # before the ranking
    assert "score" in screen.split("trial 1/3")[1].splitlines()[0]

    piped = run_mloop("sweep", "train", "-p", "depth=1,2,3", cwd=pipes)
    assert piped.code == 0, piped.err
    assert "trial 1/3" not in piped.out + piped.err  # logs and pipes get the ranking only
    quiet, screen = run_on_a_terminal(["sweep", "-q", "train", "-p", "depth=1,2"], pipes)
    assert quiet == 0 and "trial 1/2" not in screen
