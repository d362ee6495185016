"""Notebook steps run for real: a Jupyter kernel started by nbclient, params and an upstream
DataFrame injected, metrics logged from a cell, the executed notebook stored and cached."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest

import mloop
from mloop.domain.run import RunStatus
from mloop.errors import PipelineError
from mloop.project import Project
from tests.integration.pipeline_project import write_sales

PIPELINE = """
import json
from pathlib import Path

import pandas as pd

import mloop


@mloop.step
def ingest(raw) -> pd.DataFrame:
    return raw.to_pandas()


@mloop.step
def read_model(model: Path) -> dict:
    data = json.loads(model.read_text())
    mloop.log_metric("rows_seen", data["rows"])
    return data


@mloop.pipeline
def train(scale: float = 2.0):
    fit = mloop.notebook_step(
        "notebooks/train.ipynb", params={"scale": scale}, outputs=["model.json"]
    )
    read_model(fit(frame=ingest(mloop.dataset("sales")), raw=mloop.dataset("sales")))


@mloop.pipeline
def untagged():
    mloop.notebook_step("notebooks/untagged.ipynb")()


@mloop.pipeline
def failing():
    mloop.notebook_step("notebooks/fail.ipynb", params={"x": 1})()
"""

YAML = """project: notebooks
pipelines:
  train: nbpipeline:train
  untagged: nbpipeline:untagged
  failing: nbpipeline:failing
"""

PARAMS = "scale = 1.0\nframe = None\nraw = None"
TRAIN_CELLS = [
    "import json\nimport os\nimport pandas as pd\nimport mloop",
    "df = pd.read_parquet(frame)\n"
    'total = float(df["price"].sum() * scale)\n'
    'mloop.log_metric("total", total)\n'
    'print("total", total, frame == frame_path, os.path.isdir(raw))',
    'with open("model.json", "w") as f:\n    json.dump({"total": total, "rows": len(df)}, f)',
]


def write_notebook(path: Path, cells: list[str], parameters: str | None = None) -> None:
    """A notebook of code cells after a markdown title; `parameters` is the tagged cell."""
    made = [nbformat.v4.new_markdown_cell(f"# {path.stem}")]
    if parameters is not None:
        made.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    made.extend(nbformat.v4.new_code_cell(source) for source in cells)
    nb = nbformat.v4.new_notebook(cells=made)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def nbproject(project: Path) -> Iterator[Path]:
    """A project with notebooks and a dataset; its pipeline module is forgotten afterwards."""
    (project / "nbpipeline.py").write_text(textwrap.dedent(PIPELINE))
    (project / "mloop.yaml").write_text(YAML)
    (project / "data").mkdir()
    write_sales(project, [1.5, 2.5, 3.0])
    notebooks = project / "notebooks"
    write_notebook(notebooks / "train.ipynb", TRAIN_CELLS, PARAMS)
    write_notebook(notebooks / "untagged.ipynb", ["x = 1"])
    write_notebook(
        notebooks / "fail.ipynb", ["y = x + 1", 'raise ValueError(f"boom {y}")'], "x = 0"
    )
    mloop.data.add("sales", "data/sales.csv")
    yield project
    sys.modules.pop("nbpipeline", None)
    while str(project) in sys.path:
        sys.path.remove(str(project))


def run(name: str, traced: bool = False, **kwargs: Any) -> tuple[Any, dict[str, str]]:
    """Run a pipeline; `traced` skips the replay of unchanged pipelines, which looks only at
    Python modules, so what is checked is the per-step cache key."""
    pipelines = Project.open().pipelines
    if traced:
        result = pipelines.run_graph(pipelines.graph(name), **kwargs)
    else:
        result = pipelines.run(name, **kwargs)
    return result, {step: event.state for step, event in result.steps.items()}


def stored_notebook(run_id: str, name: str) -> dict[str, Any]:
    project = Project.open()
    outputs = {o.name: o.digest for o in project.runs.get(run_id).outputs}
    return json.loads(project.artifacts.read_bytes(outputs[f"notebook/{name}"]))


def test_a_notebook_step_runs_logs_and_is_stored_then_cached(nbproject: Path, cli) -> None:
    result, states = run("train")
    assert result.ok, result.error
    assert states == {"ingest": "finished", "train": "finished", "read_model": "finished"}
    tracking = Project.open().runs
    step = tracking.get(result.steps["train"].run_id or "")
    assert step.metrics["total"].value == 14.0  # logged in the kernel: (1.5 + 2.5 + 3.0) * 2
    assert step.params["scale"] == "2.0"
    downstream = tracking.get(result.steps["read_model"].run_id or "")
    assert downstream.metrics["rows_seen"].value == 3  # read the file the notebook wrote

    executed = stored_notebook(step.id, "train.ipynb")
    injected = executed["cells"][2]
    assert injected["metadata"]["tags"] == ["injected-parameters"]
    assert "scale = 2.0" in "".join(injected["source"])
    printed = executed["cells"][4]["outputs"][0]
    assert printed["name"] == "stdout" and "".join(printed["text"]) == "total 14.0 True True\n"

    lineage = cli("lineage", f"run/{step.id}", "--downstream")
    assert lineage.code == 0 and "notebook/train.ipynb" in lineage.out
    assert "notebook/train.ipynb" in cli("runs", "show", step.id).out

    again, states = run("train")
    assert set(states.values()) == {"cached"}
    assert again.steps["train"].cached_from == step.id
    assert stored_notebook(again.steps["train"].run_id or "", "train.ipynb") == executed

    path = nbproject / "notebooks" / "train.ipynb"
    saved = nbformat.read(path, as_version=4)  # run by hand and saved: outputs, same code
    saved.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    nbformat.write(saved, path)
    assert set(run("train")[1].values()) == {"cached"}

    edited = [*TRAIN_CELLS]
    edited[1] = edited[1].replace("* scale)", "* scale) + 1")
    write_notebook(path, edited, PARAMS)
    result, states = run("train")
    assert states == {"ingest": "cached", "train": "finished", "read_model": "finished"}
    assert tracking.get(result.steps["train"].run_id or "").metrics["total"].value == 15.0


def test_a_notebook_without_a_parameters_cell_fails_the_build(nbproject: Path, cli) -> None:
    before = Project.open().runs.count()
    result = cli("run", "untagged")
    assert result.code == 1
    first, *rest = result.err.splitlines()
    assert first == "error: the notebook notebooks/untagged.ipynb has no cell tagged 'parameters'"
    assert rest[0].startswith("hint: tag the cell") and "Cell Tags" in rest[0]
    assert Project.open().runs.count() == before


def test_a_failing_notebook_fails_its_step_and_is_still_stored(nbproject: Path) -> None:
    result, states = run("failing")
    assert result.status is RunStatus.FAILED
    assert states == {"fail": "failed"}
    message = "the notebook notebooks/fail.ipynb failed at cell index 3: ValueError: boom 2"
    assert result.error == f"step 'fail' failed: StepFailed: {message}"
    step = Project.open().runs.get(result.steps["fail"].run_id or "")
    assert step.status is RunStatus.FAILED
    executed = stored_notebook(step.id, "fail.ipynb")
    error = executed["cells"][4]["outputs"][0]
    assert (error["output_type"], error["ename"], error["evalue"]) == (
        "error",
        "ValueError",
        "boom 2",
    )


def test_called_outside_a_pipeline_it_runs_here_and_logs_to_the_active_run(
    nbproject: Path,
) -> None:
    fit = mloop.notebook_step(
        "notebooks/train.ipynb", params={"scale": 0.5}, outputs=["model.json"], name="fit"
    )
    with mloop.start_run("by-hand") as handle:
        model = fit(frame=pd.DataFrame({"price": [2.0, 4.0]}), raw=nbproject / "data")
    try:
        assert json.loads(model.read_text()) == {"total": 3.0, "rows": 2}
    finally:
        shutil.rmtree(model.parent.parent)  # outside a pipeline the folder is the caller's
    stored = Project.open().runs.get(handle.id)
    assert stored.metrics["total"].value == 3.0
    assert "notebook/train.ipynb" in {o.name for o in stored.outputs}


BAD = [
    ("notebooks/missing.ipynb", {}, (), "no notebook at notebooks/missing.ipynb"),
    ("nbpipeline.py", {}, (), "cannot read the notebook nbpipeline.py"),
    ("notebooks/twice.ipynb", {}, (), "has 2 cells tagged 'parameters' (cells 1, 2)"),
    ("notebooks/train.ipynb", {"learning-rate": 1}, (), "'learning-rate' of the notebook"),
    (
        "notebooks/train.ipynb",
        {"when": object()},
        (),
        "'when' of the notebook step notebooks/train.ipynb is a object",
    ),
    ("notebooks/train.ipynb", {"notebook": 1}, (), "param 'notebook' of the notebook step"),
    ("notebooks/train.ipynb", {}, ("../model.json",), "leaves its folder with '..'"),
]


@pytest.mark.parametrize(
    ("path", "params", "outputs", "message"),
    BAD,
    ids=["missing", "not-json", "two-tags", "bad-name", "not-a-value", "reserved", "outside"],
)
def test_bad_notebook_steps_are_refused_when_declared(
    nbproject: Path, path: str, params: dict[str, Any], outputs: tuple[str, ...], message: str
) -> None:
    twice = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# twice"),
            nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("b = 2", metadata={"tags": ["parameters"]}),
        ]
    )
    nbformat.write(twice, nbproject / "notebooks" / "twice.ipynb")
    with pytest.raises(PipelineError) as raised:
        mloop.notebook_step(path, params=params, outputs=outputs)
    assert message in raised.value.message
