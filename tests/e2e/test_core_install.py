"""A core install (`pip install mloop`, no extras) tracks runs; a part it lacks is named with
its pip command.

Each case runs in a fresh interpreter. "Not installed" is made by putting None in
`sys.modules` for the library before anything imports it, which is how Python itself marks a
module that cannot be imported: the import raises ModuleNotFoundError exactly as on a machine
without it (building a venv with only the core dependencies would take minutes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mloop.errors import EXTRAS, MissingDependency

HEAVY = ("pandas", "pyarrow", "pandera", "uvicorn")


def python(code: str, cwd: Path, without: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    hide = "".join(f"sys.modules[{name!r}] = None\n" for name in without)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{hide}{code}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_tracking_a_run_imports_none_of_the_extras(project: Path) -> None:
    done = python(
        "import mloop\n"
        "with mloop.start_run('fit', params={'C': 1.0}):\n"
        "    mloop.log_metric('accuracy', 0.9)\n"
        "    mloop.log_metric('loss', 0.1, step=1)\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n",
        project,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""  # the names of the extras' libraries it imported


def test_tracking_a_run_works_without_the_extras(project: Path) -> None:
    done = python(
        "import mloop\n"
        "with mloop.start_run('fit') as run:\n"
        "    mloop.log_metric('accuracy', 0.9)\n"
        "print(mloop.get_run(run.id).metrics['accuracy'].value)\n",
        project,
        without=HEAVY,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "0.9"


def test_the_cli_names_the_extra_a_command_needs(project: Path) -> None:
    (project / "sales.csv").write_text("a,b\n1,2\n")
    done = python(
        "from mloop.cli.main import main\n"
        "raise SystemExit(main(['data', 'add', 'sales', 'sales.csv']))",
        project,
        without=("pandas", "pyarrow", "pandera"),
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        "error: this needs pandas (mloop's data extra), which is not installed",
        "hint: pip install 'mloop[data]'",
    ]


def test_the_sdk_raises_missing_dependency_with_the_pip_command(project: Path) -> None:
    (project / "sales.csv").write_text("a,b\n1,2\n")
    done = python(
        "import mloop\n"
        "from mloop.errors import MissingDependency\n"
        "try:\n"
        "    mloop.data.add('sales', 'sales.csv')\n"
        "except MissingDependency as exc:\n"
        "    print(exc.hint)\n",
        project,
        without=("pandas", "pyarrow", "pandera"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "pip install 'mloop[data]'"


@pytest.mark.parametrize(("module", "extra"), [("pandas", "data"), ("uvicorn.config", "serve")])
def test_an_optional_librarys_import_error_names_its_extra(module: str, extra: str) -> None:
    error = MissingDependency.for_import(ModuleNotFoundError(name=module))
    assert error is not None and error.hint == f"pip install 'mloop[{extra}]'"


def test_anything_else_missing_is_no_missing_dependency() -> None:
    assert MissingDependency.for_import(ModuleNotFoundError(name="pipeline_helpers")) is None
    assert (
        MissingDependency.for_import(ImportError("cannot import name 'x'", name="pandas")) is None
    )


def test_every_extra_named_exists_in_pyproject() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert {extra for _, extra in EXTRAS.values()} <= set(extras)
    assert set(extras["all"][0].partition("[")[2].rstrip("]").split(",")) == set(extras) - {
        "all",
        "dev",
    }
