"""`mloop init --template` as a user meets it: the new project works before anything is edited.

Each test makes a project from a template and uses it as its users would: `mloop run` (twice:
the second run reuses every step), the project's own tests with pytest, the notebook through a
real Jupyter kernel, the CI files through check-jsonschema's vendored schemas (no network) and
their data step in a fresh checkout, the code through ruff, since template files are linted
only once rendered, and `requirements.txt` in a new virtual environment. Then as a user adapts
it: another table (three string classes, missing values, a column no step reads), and the
pipeline's own validation settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from base64 import urlsafe_b64encode
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import mloop
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
    pytest.param("classification", "churn", ["accuracy", "f1_macro"], id="classification"),
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
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def project_tests(
    root: Path, python: str | Path = sys.executable, env: dict[str, str] | None = None
) -> None:
    """The generated project's own tests pass, run as its README says."""
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    done = shell(*command, cwd=root, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def set_constants(root: Path, **values: object) -> None:
    """Edit `NAME = ...` lines of the project's pipeline.py, as a user adapting it would."""
    path = root / "pipeline.py"
    text = path.read_text()
    for name, value in values.items():
        text, found = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, flags=re.M)
        assert found == 1, f"pipeline.py has no single {name} = ... line"
    path.write_text(text)


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
    project_tests(init(cli, tmp_path, template))


def test_the_notebook_runs_top_to_bottom_in_a_kernel(cli: Cli, tmp_path: Path) -> None:
    import nbclient  # the `notebooks` extra, part of the dev install
    import nbformat

    root = init(cli, tmp_path)
    notebook = nbformat.read(root / "notebooks" / "explore.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code[0].metadata["tags"] == ["parameters"]  # papermill's convention
    assert any("mloop.data.get(DATASET)" in c.source for c in code)
    assert any("mloop.validate(frame, reference, **VALIDATION)" in c.source for c in code)
    assert not any('"churn"' in c.source for c in code)  # the names come from pipeline.py

    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": root}}
    )
    client.execute()
    last = code[-1].outputs[0]["data"]["text/plain"]
    assert "'accuracy'" in last and "'f1_macro'" in last
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
        assert "pip install -r requirements.txt" in path.read_text()
        assert "churn" not in path.read_text()  # the dataset's name is in pipeline.py only
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
    texts = [(root / rel).read_text() for rel in made if not rel.endswith((".csv", ".whl"))]
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


# --- a user's own data ----------------------------------------------------------------------

SPECIES = {  # bill length, bill depth, flipper length, body mass: roughly as in the real data
    "Adelie": (38.8, 18.3, 190.0, 3700.0),
    "Chinstrap": (48.8, 18.4, 196.0, 3733.0),
    "Gentoo": (47.5, 15.0, 217.0, 5076.0),
}
NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def penguins(rows: int, seed: int) -> pd.DataFrame:
    """Penguins-like rows: three species as text, missing numbers and a missing category, and
    a `year` column that no step reads."""
    rng = np.random.default_rng(seed)
    species = rng.choice(list(SPECIES), rows, p=[0.44, 0.2, 0.36])
    centres = np.array([SPECIES[s] for s in species])
    frame = pd.DataFrame(centres * rng.normal(1.0, 0.04, centres.shape), columns=NUMBERS)
    frame = frame.round(1)
    frame["island"] = np.where(
        species == "Gentoo", "Biscoe", np.where(species == "Chinstrap", "Dream", "Torgersen")
    )
    frame["sex"] = rng.choice(["male", "female"], rows)
    frame["year"] = rng.choice([2007, 2008, 2009], rows)
    frame["species"] = species
    for column in [*NUMBERS, "sex"]:  # about 3% missing in each
        frame.loc[rng.random(rows) < 0.03, column] = np.nan
    return frame


def test_a_multiclass_table_with_missing_values_works_unchanged(cli: Cli, tmp_path: Path) -> None:
    """Only the constants change: the steps, the tests and validation take three text labels,
    missing values, and a shift in a column the model does not read."""
    root = init(cli, tmp_path)
    data = penguins(344, seed=1)
    assert data[[*NUMBERS, "sex"]].isna().any().all()
    data.to_csv(root / "data" / "penguins.csv", index=False)
    penguins(150, seed=2).to_csv(root / "data" / "penguins-holdout.csv", index=False)
    set_constants(
        root,
        DATASET="penguins",
        TARGET="species",
        NUMERIC=NUMBERS,
        CATEGORICAL=["island", "sex"],
    )
    assert run_mloop("data", "add", "penguins", "data/penguins.csv", cwd=root).code == 0

    first = run(root)
    assert [(s["step"], s["state"]) for s in first["steps"]] == [(s, "finished") for s in STEPS]
    shown = json.loads(run_mloop("runs", "show", first["run"], "--json", cwd=root).out)
    assert shown["metrics"]["accuracy"]["value"] > 0.9  # the species are well apart
    assert 0.0 < shown["metrics"]["f1_macro"]["value"] <= 1.0
    project_tests(root)

    # Without registering or serving: the trained model, on rows with missing values,
    # predicts each of the three species.
    check = (
        "import json, mloop; from pipeline import *\n"
        "frame = ingest(mloop.data.get(DATASET))\n"
        "model = train(prepare(frame)[0])\n"
        "gaps = frame[FEATURES].isna().any(axis=1)\n"
        "print(json.dumps([sorted(set(model.predict(frame[FEATURES]))),"
        " sorted(set(model.predict(frame.loc[gaps, FEATURES])))]))"
    )
    done = shell(sys.executable, "-c", check, cwd=root)
    assert done.returncode == 0, done.stderr
    every, with_gaps = json.loads(done.stdout)
    assert every == sorted(SPECIES)
    assert with_gaps and set(with_gaps) <= set(SPECIES)

    # A new delivery without 2009: `year` shifts, but validation checks the model's columns.
    data[data["year"] != 2009].to_csv(root / "data" / "penguins.csv", index=False)
    assert run_mloop("data", "add", "penguins", "data/penguins.csv", cwd=root).code == 0
    year = run_mloop("data", "validate", "penguins", "--columns", "year", cwd=root)
    assert year.code == 1 and "of values are equal to 2007" in year.out
    second = run(root)
    assert [(s["step"], s["state"]) for s in second["steps"]] == [(s, "finished") for s in STEPS]


def test_the_projects_tests_validate_with_the_pipelines_own_settings(
    cli: Cli, tmp_path: Path
) -> None:
    """A user who loosens the pipeline's PSI bound for a known shift need not edit the tests."""
    root = init(cli, tmp_path)
    frame = pd.read_csv(root / "data" / "churn.csv")
    frame.nlargest(300, "monthly_charges").to_csv(root / "data" / "churn.csv", index=False)
    assert run_mloop("data", "add", "churn", "data/churn.csv", cwd=root).code == 0
    stopped = run_mloop("run", "--json", cwd=root)
    assert stopped.code == 1
    steps = {s["step"]: s["state"] for s in json.loads(stopped.out)["steps"]}
    assert steps["validate"] == "failed"

    text = (root / "pipeline.py").read_text()
    loosened, found = re.subn(r'"max_psi": [0-9.]+', '"max_psi": 50.0', text)
    assert found == 1
    (root / "pipeline.py").write_text(loosened)
    assert run(root)["status"] == "finished"
    project_tests(root)


def ci_data_step(path: Path) -> str:
    """The script of the CI file's "Version the data in a new store" step."""
    spec = yaml.safe_load(path.read_text())
    steps = spec["jobs"]["ci"]["steps"] if "jobs" in spec else spec["steps"]
    (step,) = (
        s for s in steps if "Version the data" in (s.get("name") or s.get("displayName", ""))
    )
    return str(step.get("run") or step["script"])


def test_the_ci_data_step_versions_the_datasets_pipeline_py_names_in_a_checkout(
    cli: Cli, tmp_path: Path
) -> None:
    """A CI checkout has the project's files but no .mloop/ (it ignores itself)."""
    root = init(cli, tmp_path)
    for source in (root / ".github" / "workflows" / "mloop.yml", root / "azure-pipelines.yml"):
        checkout = tmp_path / f"checkout-{source.stem}"
        shutil.copytree(root, checkout, ignore=shutil.ignore_patterns(".mloop"))
        for name in ("customers", "customers-holdout"):  # the user's own data
            old = name.replace("customers", "churn")
            (checkout / "data" / f"{old}.csv").rename(checkout / "data" / f"{name}.csv")
        set_constants(checkout, DATASET="customers")
        script = ci_data_step(checkout / source.relative_to(root))
        path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
        for _ in range(2):  # the second time finds both and adds nothing
            done = shell("bash", "-euc", script, cwd=checkout, env={"PATH": path})
            assert done.returncode == 0, done.stdout + done.stderr
        listed = json.loads(run_mloop("data", "list", "--json", cwd=checkout).out)
        assert sorted((d["name"], d["latest"]) for d in listed) == [
            ("customers", 1),
            ("customers-holdout", 1),
        ]


# --- installing a generated project ---------------------------------------------------------


def test_the_wheel_of_this_mloop_follows_the_wheel_format(cli: Cli, tmp_path: Path) -> None:
    root = init(cli, tmp_path)
    (wheel,) = (root / "wheels").glob("*.whl")
    assert wheel.name == f"mloop-{mloop.__version__}-py3-none-any.whl"
    assert f"./wheels/{wheel.name}[data,sklearn]" in (root / "requirements.txt").read_text()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"mloop-{mloop.__version__}.dist-info"
        assert names[-1] == f"{info}/RECORD"  # .dist-info last, RECORD last of all
        assert "mloop/templates/common/.github/workflows/mloop.yml.tmpl" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert "mloop = mloop.cli.main:main" in archive.read(f"{info}/entry_points.txt").decode()
        assert "Root-Is-Purelib: true" in archive.read(f"{info}/WHEEL").decode()
        rows = [r.split(",") for r in archive.read(names[-1]).decode().splitlines()]
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, size in rows[:-1]:
            data = archive.read(path)
            expected = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, size) == (f"sha256={expected}", str(len(data)))
    again = init(cli, tmp_path / "again")
    assert (again / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()  # reproducible


def test_a_new_venv_installs_the_requirements_and_passes_the_projects_tests(
    cli: Cli, tmp_path: Path
) -> None:
    """As the README says, from the project folder, with pip from the package index (its cache
    may help) and nothing from this environment: only mloop's own wheel is local."""
    root = init(cli, tmp_path)
    venv = tmp_path / "venv"
    made = shell(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    bin_dir = venv / "bin"
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "VIRTUAL_ENV": str(venv)}
    install = [bin_dir / "python", "-m", "pip", "install", "-q", "--no-compile"]
    done = shell(*install, "-r", "requirements.txt", cwd=root, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    where = shell("python", "-c", "import mloop; print(mloop.__file__)", cwd=tmp_path, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    version = shell("mloop", "--version", cwd=root, env=env)
    assert mloop.__version__ in version.stdout, version.stdout + version.stderr
    project_tests(root, "python", env)
    # The installed (not editable) mloop packs itself into the very same wheel.
    again = shell("mloop", "init", "again", "--template", "regression", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    (wheel,) = (root / "wheels").glob("*.whl")
    assert (tmp_path / "again" / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
