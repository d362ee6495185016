"""Notebooks as pipeline steps: `mloop.notebook_step("notebooks/train.ipynb", params=...)`.

A notebook step is a StepFunction, so a pipeline body calls it with step outputs and datasets.
Workers import a step's code by name and a notebook is not a module, so its target is a runner
here; the notebook's path, the digest of its code cells, its outputs and kernel travel as one
constant input, `notebook`, and so are part of the cache key: editing a code cell runs the step
again, saving the notebook with fresh outputs does not. The digest is taken when the pipeline
is traced and checked before the notebook runs, so a step never runs other code than its key
says. The worker runs the notebook in a fresh folder with nbclient, after adding a cell tagged
`injected-parameters` below the one tagged `parameters` (papermill's convention); it stores the
executed notebook on the step's run, failed or not. The kernel finds the step run's id in its
environment, so `mloop.log_metric` in a cell lands on the step's run.
"""

from __future__ import annotations

import contextvars
import copy
import inspect
import json
import keyword
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mloop.domain.digests import digest_bytes
from mloop.domain.names import check_relative_path
from mloop.domain.pipeline import StepOptions, canonical_json
from mloop.errors import InvalidPath, MissingDependency, PipelineError, StepFailed
from mloop.services.pipelines.dsl import StepFunction
from mloop.services.tracking import active

SPEC = "notebook"  # the name of the constant input that says which notebook to run, and how
PARAMETERS = "parameters"
INJECTED = "injected-parameters"
PROJECT_FILE = "mloop.yaml"  # relative notebook paths start at the folder holding it
TAG_HINT = (
    "tag the cell that sets the defaults `parameters`: in JupyterLab select it and add the tag "
    "under Cell Tags in the property inspector (the gear icon); in classic Jupyter use "
    "View > Cell Toolbar > Tags"
)
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def _missing(package: str) -> MissingDependency:
    return MissingDependency(
        f"notebook steps need {package}, which is not installed", "pip install 'mloop[notebooks]'"
    )


def _nbformat() -> Any:
    try:
        import nbformat
    except ImportError:
        raise _missing("nbformat") from None
    return nbformat


def _project_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding mloop.yaml, else `start`: notebook paths
    start there, as the modules mloop.yaml names do, whatever folder a pipeline is run from."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    return here


def _read(path: Path, shown: str) -> tuple[Any, int]:
    """The notebook and the index of its one cell tagged `parameters`. Called when the pipeline
    is traced, so a bad notebook fails the build with one line before any step runs."""
    nbformat = _nbformat()
    if not path.is_file():
        raise PipelineError(
            f"no notebook at {shown}", "give the path of an .ipynb file, relative to the project"
        )
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # JSON, schema or encoding: each means it is not a notebook
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(
            f"cannot read the notebook {shown}: {reason}", "open and save it in Jupyter"
        ) from None
    tagged = [i for i, cell in enumerate(nb.cells) if PARAMETERS in _tags(cell)]
    if not tagged:
        raise PipelineError(f"the notebook {shown} has no cell tagged 'parameters'", TAG_HINT)
    if len(tagged) > 1:
        cells = ", ".join(str(i) for i in tagged)
        raise PipelineError(
            f"the notebook {shown} has {len(tagged)} cells tagged 'parameters' (cells {cells})",
            "keep the tag on the one cell that sets the defaults",
        )
    return nb, tagged[0]


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _code_digest(nb: Any) -> str:
    """What a notebook computes: its code cells (source and tags) and kernel. Outputs, execution
    counts and markdown are left out: a notebook run by hand and saved keeps its key."""
    cells = [[c.source, _tags(c)] for c in nb.cells if c.cell_type == "code"]
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    return digest_bytes(canonical_json({"cells": cells, "kernel": kernel}).encode())


def _identifier(name: object, what: str, shown: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise PipelineError(
            f"{what} {name!r} of the notebook step {shown} is not a Python name",
            "notebook params and inputs become variables: use names like learning_rate",
        )
    if name == SPEC:
        raise PipelineError(
            f"{what} {name!r} of the notebook step {shown} is reserved",
            f"mloop passes the notebook itself as {SPEC!r}: choose another name",
        )
    return name


class NotebookStep(StepFunction):
    """A notebook as a pipeline step; `notebook_step` makes one. Inputs are passed by name."""

    def __init__(
        self, source: Path, spec: dict[str, Any], params: dict[str, Any], name: str, retries: int
    ) -> None:
        super().__init__(run_notebook, name, StepOptions(retries=retries))
        self.source = source
        self.fixed = spec  # the `notebook` input but its digest: path, outputs, kernel, timeout
        self.params = params
        self.output_types: tuple[Any, ...] = (Path,) * len(spec["outputs"])

    @property
    def target(self) -> str:
        return f"{__name__}:runners.outputs_{len(self.output_types)}"

    def spec(self) -> dict[str, Any]:
        """The `notebook` input, digesting the file now: a process tracing the pipeline twice,
        with an edit in between, keys each run on the notebook as it is then."""
        nb, _ = _read(self.source, self.fixed["path"])
        return {**self.fixed, "digest": _code_digest(nb)}

    def __call__(self, *args: Any, **inputs: Any) -> Any:
        if args:
            raise PipelineError(
                f"the notebook step {self.name!r} takes its inputs by name",
                f"call it as {self.name}(frame=frame): each name becomes a variable",
            )
        for arg in inputs:
            _identifier(arg, "input", self.fixed["path"])
            if arg in self.params:
                raise PipelineError(f"notebook step {self.name!r} got {arg!r} as param and input")
        given = {**self.params, **inputs, SPEC: self.spec()}
        traced = copy.copy(self)  # a signature per call: the inputs are whatever the call names
        keyword_only = inspect.Parameter.KEYWORD_ONLY
        traced.signature = inspect.Signature([inspect.Parameter(k, keyword_only) for k in given])
        return StepFunction.__call__(traced, **given)


def notebook_step(
    path: str | os.PathLike[str],
    *,
    params: Mapping[str, Any] | None = None,
    outputs: Sequence[str] = (),
    name: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    kernel: str | None = None,
) -> NotebookStep:
    """A Jupyter notebook as a pipeline step, run with `params` injected after its cell tagged
    `parameters`.

    Call the result in a `@mloop.pipeline` body with the step outputs or datasets it needs, by
    name: each becomes a variable in the notebook (JSON values as themselves; DataFrames as the
    path of a Parquet file, also as `NAME_path`; datasets as their local folder; Paths as text).
    Each name in `outputs` is a file or folder the notebook writes in its working folder; the
    step returns it as a Path (several: a tuple of Paths). The executed notebook is stored on the
    step's run as `notebook/FILE`, and `mloop.log_metric` in the notebook logs to that run.

    Args:
        path: the .ipynb file, relative to the project root (the folder with mloop.yaml).
        params: JSON values for the notebook's parameters; they are also the step run's params.
        outputs: files (or folders) the notebook writes, relative to its working folder.
        name: the step's name (default: the file name without `.ipynb`).
        timeout: seconds any one cell may run (nbclient's timeout); default: no limit.
        retries: how many times to run the notebook again after it fails.
        kernel: the Jupyter kernel (default: the notebook's own, else python3).

    Example:
        >>> @mloop.pipeline  # doctest: +SKIP
        ... def train(alpha: float = 0.5):
        ...     frame = prepare(mloop.dataset("sales"))
        ...     fit = mloop.notebook_step(
        ...         "notebooks/train.ipynb", params={"alpha": alpha}, outputs=["model.json"]
        ...     )
        ...     evaluate(fit(frame=frame))
    """
    root = _project_root(Path.cwd())
    source = (root / path).resolve()  # an absolute `path` stays itself
    try:
        shown = source.relative_to(root).as_posix()
    except ValueError:  # outside the project: kept absolute
        shown = str(source)
    _read(source, shown)
    values = dict(params or {})
    for key, value in values.items():
        _json_value(_identifier(key, "param", shown), value, shown)
    try:
        declared = [check_relative_path(o, "notebook output") for o in _names(outputs)]
    except InvalidPath as exc:
        raise PipelineError(f"{exc.message} (notebook step {shown})", exc.hint) from None
    if len(set(declared)) != len(declared):
        raise PipelineError(f"the notebook step {shown} declares an output twice")
    if retries < 0 or (timeout is not None and timeout <= 0):
        raise PipelineError("retries must be >= 0 and timeout > 0")
    spec: dict[str, Any] = {"path": shown, "outputs": declared}
    spec.update({k: v for k, v in (("kernel", kernel), ("timeout", timeout)) if v is not None})
    stem = _NOT_A_NAME.sub("-", source.stem)
    default = stem if re.match(r"[A-Za-z_]", stem) else f"notebook-{stem}"
    return NotebookStep(source, spec, values, name or default[:100], retries)


def _names(outputs: Sequence[str]) -> Sequence[str]:
    return (outputs,) if isinstance(outputs, str) else outputs


def _json_value(name: str, value: Any, shown: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise PipelineError(
            f"{name!r} of the notebook step {shown} is a {type(value).__name__}, which a "
            "notebook cannot be given",
            "params are JSON values; inputs may also be DataFrames, datasets and Paths",
        ) from None


class NotebookRunner:
    """What a notebook step's target names in the worker, which reads the number of outputs
    from that object: the runner, with one Path per declared output."""

    def __init__(self, outputs: int) -> None:
        self.fn = _run_as_step
        self.__wrapped__ = _run_as_step  # what the step's code fingerprint digests
        self.output_types: tuple[Any, ...] = (Path,) * outputs


class _Runners:
    """`runners.outputs_2` is the runner for a notebook step with two outputs: a notebook
    step's output count is only known when it is declared, so its target carries it."""

    def __getattr__(self, name: str) -> NotebookRunner:
        count = name.removeprefix("outputs_")
        if count == name or not count.isdigit():
            raise AttributeError(name)
        return NotebookRunner(int(count))


runners = _Runners()


def run_notebook(notebook: Mapping[str, Any], **inputs: Any) -> Any:
    """Run a notebook step here, outside a pipeline (calling the step does this); the working
    folder, holding the returned output files, is left for the caller.

    Example:
        >>> model = fit(frame=frame)  # fit = mloop.notebook_step(...)  # doctest: +SKIP
    """
    return _execute(notebook, inputs, in_step=False)


def _run_as_step(notebook: Mapping[str, Any], **inputs: Any) -> Any:
    return _execute(notebook, inputs, in_step=True)


def _assign(name: str, value: Any, inputs: Path, shown: str) -> list[str]:
    """The lines that hand one value to the notebook."""
    from mloop.services.data.checkout import LocalDataset

    if isinstance(value, Path):
        return [f"{name} = {str(value)!r}"]
    if isinstance(value, LocalDataset):
        return [f"{name} = {str(value.path())!r}"]
    pandas = sys.modules.get("pandas")  # a DataFrame means pandas is imported already
    if pandas is not None and isinstance(value, pandas.DataFrame):
        inputs.mkdir(exist_ok=True)
        file = inputs / f"{name}.parquet"
        value.to_parquet(file)
        return [f"{name} = {str(file)!r}", f"{name}_path = {str(file)!r}"]
    _json_value(name, value, shown)
    return [f"{name} = {value!r}"]  # JSON values print as Python literals


def _failure(exc: Exception, timeout: float | None) -> str:
    if isinstance(exc, TimeoutError):
        return f"a cell ran longer than the timeout of {timeout:g} s"
    name, value = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if name is None:
        return "the kernel died"
    return f"{name}: {value}".strip().splitlines()[0]


def _execute(spec: Mapping[str, Any], inputs: Mapping[str, Any], *, in_step: bool) -> Any:
    nbformat = _nbformat()
    try:
        from jupyter_client.kernelspec import NoSuchKernel
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    except ImportError:
        raise _missing("nbclient") from None
    run = active.current()
    # The step run's tracker knows the project root wherever the worker's working folder is.
    root = run._runs.root if run is not None else _project_root(Path.cwd())
    shown = str(spec["path"])
    source = root / shown
    nb, index = _read(source, shown)
    if _code_digest(nb) != spec["digest"]:
        raise PipelineError(f"the notebook {shown} changed since the pipeline was built")
    scratch = run.workdir if in_step and run is not None else None
    # Inside a step the worker's folder outlives this call until the outputs are stored.
    folder = Path(tempfile.mkdtemp(prefix="mloop-notebook-", dir=scratch))
    work = folder / "work"
    work.mkdir()
    lines = ["# Parameters injected by mloop"]
    for name, value in inputs.items():
        lines.extend(_assign(name, value, folder / "inputs", shown))
    for cell in nb.cells:  # the stored notebook shows this run's outputs only
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    injected = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED]})
    nb.cells.insert(index + 1, injected)
    env = dict(os.environ)
    if run is not None:
        env.update({active.RUN_ID_ENV: run.id, active.ROOT_ENV: str(root)})
    kernel = spec.get("kernel") or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    timeout = spec.get("timeout")
    current = [index + 1]  # the cell running, set by nbclient's hook
    client = NotebookClient(
        nb,
        timeout=math.ceil(timeout) if timeout else None,
        kernel_name=kernel,
        resources={"metadata": {"path": str(work)}},
        on_cell_start=lambda cell, cell_index: current.__setitem__(0, cell_index),
        # Kernel start-up chatter (the TCP-on-localhost warning) is not the user's business;
        # what cells print is kept in the notebook.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    failure: str | None = None
    executed = folder / source.name
    try:
        # In an empty context: asyncio copies the context into its tasks and handles, and a
        # copy holding the active run would keep the run, and so the folder, alive.
        contextvars.Context().run(client.execute, env=env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        failure = _failure(exc, timeout)
        # The error sits in a cycle with asyncio's task and its traceback holds this frame,
        # and so the step's run: dropped here, the run (and the folder) go when the step ends.
        exc.__traceback__ = None
    except NoSuchKernel:
        raise PipelineError(
            f"no Jupyter kernel named {kernel!r} for the notebook {shown}",
            f"install one (python -m ipykernel install --user --name {kernel}) or pass kernel=",
        ) from None
    finally:
        nbformat.write(nb, executed)
        if run is not None:
            run.log_artifact(executed, name=f"notebook/{source.name}")
    if failure is not None:
        cell = current[0] - (current[0] > index)  # counted in the user's file, without ours
        raise StepFailed(
            f"the notebook {shown} failed at cell index {cell}: {failure}",
            f"the executed notebook is stored as notebook/{source.name} on the step's run",
        )
    for rel in spec["outputs"]:
        if not (work / rel).exists():
            raise StepFailed(
                f"the notebook {shown} did not write its output {rel!r}",
                f"write it relative to the working folder, e.g. Path({rel!r}).write_text(...)",
            )
    paths = tuple(work / rel for rel in spec["outputs"])
    return paths[0] if len(paths) == 1 else (paths or None)
