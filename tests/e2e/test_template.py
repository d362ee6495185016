"""`mloop init --template` as a user meets it: the new project works before anything is edited.

Each test makes a project from a template and uses it as its users would: `mloop run` (twice:
the second run reuses every step), the project's own tests with pytest, the notebook through a
real Jupyter kernel, the CI files through check-jsonschema's vendored schemas (no network), and
the code through ruff, since template files are linted only once rendered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import mloop.templates as templates
from mloop.cli.init import TEMPLATE_NAMES
from tests.conftest import CliResult, run_mloop

Cli = Callable[..., CliResult]
BIN = Path(sys.executable).parent
# Any download would go to a closed port and fail: the builtin schemas must be vendored.
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
RUFF = ("--isolated", "--no-cache")  # ruff's defaults, and no cache left in the project
STEPS = ["ingest", "validate", "prepare", "train", "evaluate", "register"]
TEMPLATES = [
    pytest.param("classification", "churn", ["accuracy", "f1"], id="classification"),
    pytest.param("regression", "sales", ["rmse", "mae", "r2"], id="regression"),
]


def init(cli: Cli, tmp_path: Path, template: str = "classification") -> Path:
    root = tmp_path / "demo"
    done = cli("init", str(root), "--template", template)
    assert done.code == 0, done.err
    return root


def run(root: Path) -> dict:
    done = run_mloop("run", "--json", cwd=root)
    assert done.code == 0, done.out + done.err
    return json.loads(done.out)


def shell(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(("template", "dataset", "metrics"), TEMPLATES)
def test_mloop_run_works_right_after_init_and_then_reuses_every_step(
    cli: Cli, tmp_path: Path, template: str, dataset: str, metrics: list[str]
) -> None:
    root = init(cli, tmp_path, template)
    versions = run_mloop("data", "show", dataset, "--versions", "--json", cwd=root)
    assert [(v["version"], v["message"]) for v in json.loads(versions.out)] == [(1, "sample data")]

    first = run(root)
    assert first["status"] == "finished"
    assert [(s["step"], s["state"]) for s in first["steps"]] == [(s, "finished") for s in STEPS]
    shown = json.loads(run_mloop("runs", "show", first["run"], "--json", cwd=root).out)
    assert set(metrics) <= set(shown["metrics"])

    register = next(s for s in first["steps"] if s["step"] == "register")
    step = json.loads(run_mloop("runs", "show", register["run_id"], "--json", cwd=root).out)
    card = {o["name"] for o in step["outputs"]}
    assert {"model_card.md", "outputs/0"} <= card  # the model, and its filled-in card

    second = run(root)
    assert [(s["step"], s["state"]) for s in second["steps"]] == [(s, "cached") for s in STEPS]


@pytest.mark.parametrize(("template", "dataset", "metrics"), TEMPLATES)
def test_the_projects_own_tests_pass(
    cli: Cli, tmp_path: Path, template: str, dataset: str, metrics: list[str]
) -> None:
    root = init(cli, tmp_path, template)
    done = shell(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_the_notebook_runs_top_to_bottom_in_a_kernel(cli: Cli, tmp_path: Path) -> None:
    import nbclient  # the `notebooks` extra, part of the dev install
    import nbformat

    root = init(cli, tmp_path)
    notebook = nbformat.read(root / "notebooks" / "explore.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code[0].metadata["tags"] == ["parameters"]  # papermill's convention
    assert any("mloop.data.get(DATASET)" in c.source for c in code)
    assert any("mloop.validate(" in c.source for c in code)

    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": root}}
    )
    client.execute()
    last = code[-1].outputs[0]["data"]["text/plain"]
    assert "'accuracy'" in last and "'f1'" in last
    runs = json.loads(run_mloop("runs", "list", "--json", cwd=root).out)
    assert [r["name"] for r in runs] == ["explore"]  # tracked, as the notebook says


def test_the_ci_files_pass_the_vendored_schemas_and_call_mloop_ci(cli: Cli, tmp_path: Path) -> None:
    root = init(cli, tmp_path)
    github = root / ".github" / "workflows" / "mloop.yml"
    azure = root / "azure-pipelines.yml"
    checks = {
        github: ["--builtin-schema", "vendor.github-workflows"],
        # As check-jsonschema's own Azure hook runs it: the schema's patterns are not valid in
        # Unicode-mode regex (check-jsonschema issue #550), and `${{ }}` needs the transform.
        azure: [
            "--builtin-schema",
            "vendor.azure-pipelines",
            "--data-transform",
            "azure-pipelines",
            "--regex-variant",
            "nonunicode",
        ],
    }
    for path, args in checks.items():
        assert "mloop ci --report" in path.read_text()
        assert "mloop data add churn data/churn.csv" in path.read_text()
        done = shell(BIN / "check-jsonschema", *args, path, cwd=root, env=OFFLINE)
        assert done.returncode == 0, done.stdout + done.stderr
        broken = tmp_path / path.name  # the same check refuses a file with a typo in a key
        broken.write_text(path.read_text().replace("runs-on:", "runs_on:").replace("task:", "tsk:"))
        refused = shell(BIN / "check-jsonschema", *args, broken, cwd=root, env=OFFLINE)
        assert refused.returncode == 1, refused.stdout + refused.stderr


@pytest.mark.parametrize(("template", "dataset", "metrics"), TEMPLATES)
def test_the_rendered_code_is_lint_clean_with_ruffs_defaults(
    cli: Cli, tmp_path: Path, template: str, dataset: str, metrics: list[str]
) -> None:
    root = init(cli, tmp_path, template)  # a new project has no ruff settings of its own
    lint = shell(BIN / "ruff", "check", *RUFF, "--select", "E,F,W,I,B,UP,SIM,RUF,PT", ".", cwd=root)
    assert lint.returncode == 0, lint.stdout
    formatted = shell(BIN / "ruff", "format", *RUFF, "--check", ".", cwd=root)
    assert formatted.returncode == 0, formatted.stdout
    made = templates.planned(templates.find(template))
    texts = [(root / rel).read_text() for rel in made if not rel.endswith(".csv")]
    leftovers = [t for t in texts if "{{" in t.replace("${{", "")]
    assert leftovers == []  # every placeholder was filled


def test_an_unknown_template_is_a_clear_error_and_makes_nothing(cli: Cli, tmp_path: Path) -> None:
    done = cli("init", str(tmp_path / "demo"), "--template", "nope")
    assert done.code == 1
    assert "error: there is no template 'nope'" in done.err
    assert "classification" in done.err and "regression" in done.err
    assert set(TEMPLATE_NAMES) == set(templates.TEMPLATES)  # what `init --help` lists
    assert not (tmp_path / "demo").exists()


def test_a_template_never_overwrites_work(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    (root / "pipeline.py").write_text("# mine\n")
    done = cli("init", str(root), "--template", "regression")
    assert done.code == 1
    assert "already has files the regression template would write: pipeline.py" in done.err
    assert (root / "pipeline.py").read_text() == "# mine\n"
    assert not (root / "mloop.yaml").exists()
