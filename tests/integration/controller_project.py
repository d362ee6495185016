"""A tiny project the controller retrains: dataset `sales` (x, y), a pipeline that trains a
linear model and registers it, and a `landing/` folder watched by a new_data trigger.

The steps can be held at a point (`CONTROLLER_TEST_HOLD=FOLDER`: a step waits there until the
file named after it exists), so a test can kill the controller in the middle of a run; the
train step can be broken (`CONTROLLER_TEST_BREAK=1`), or make a model that registers and then
fails every prediction (`CONTROLLER_TEST_BROKEN_MODEL=1`), or register instead the tour's flaky
model, which passes the gates and the servers' check and fails one predict in N on traffic
(`CONTROLLER_TEST_FLAKY_EVERY=N`: docs/examples/flaky_model.py, served with --trust), and counts
the executions that got past its hold in `trained.txt`, so a test can tell a retrain from a
reused step.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import mloop

PIPELINE = """
import os
import time
from pathlib import Path

import pandas as pd
from sklearn.linear_model import LinearRegression

import mloop

EXAMPLES = __EXAMPLES__


def _hold(name: str) -> None:
    folder = os.environ.get("CONTROLLER_TEST_HOLD")
    if not folder:
        return
    Path(folder, f"at-{name}").write_text("")
    deadline = time.monotonic() + 120
    while not Path(folder, name).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} was never released")
        time.sleep(0.02)


@mloop.step
def ingest(raw) -> pd.DataFrame:
    _hold("ingest")
    return raw.to_pandas()


@mloop.step
def train(frame: pd.DataFrame) -> LinearRegression:
    _hold("train")
    if os.environ.get("CONTROLLER_TEST_BREAK") == "1":
        raise RuntimeError("broken on purpose")
    with Path(__file__).with_name("trained.txt").open("a") as counter:
        counter.write(f"{len(frame)}\\n")
    mloop.log_metric("rows", len(frame))
    model = LinearRegression().fit(frame[["x"]], frame["y"])
    if os.environ.get("CONTROLLER_TEST_BROKEN_MODEL") == "1":
        model.coef_ = model.coef_.repeat(2)  # registers, and fails every prediction
    return model


@mloop.step
def register(model: LinearRegression) -> str:
    if mloop.active_run() is None:
        return ""
    every = int(os.environ.get("CONTROLLER_TEST_FLAKY_EVERY", "0"))
    if every:
        import sys

        sys.path.insert(0, EXAMPLES)
        from flaky_model import Flaky

        example = pd.DataFrame({"x": [1.0]})
        return mloop.register_model(Flaky(every=every), "sales", input_example=example).ref
    ref = mloop.register_model(model, "sales").ref
    _hold("register")
    return ref


@mloop.pipeline
def train_pipeline():
    register(train(ingest(mloop.dataset("sales"))))
"""

YAML = """project: loop
pipelines:
  train: pipeline:train_pipeline
triggers:
  train:
    - new_data: {{path: landing/, rows: 5, dataset: sales, settle: "0"}}
      cooldown: {cooldown}
models:
  sales:
    gates: [{gate}]
{extra}"""


def write_loop_project(
    root: Path, *, cooldown: str = "1h", gate: str = "rows >= 2", extra: str = ""
) -> None:
    """The project in `root` with its first dataset version (3 rows)."""
    examples = str(Path(__file__).resolve().parents[2] / "docs" / "examples")
    (root / "pipeline.py").write_text(
        textwrap.dedent(PIPELINE.replace("__EXAMPLES__", repr(examples)))
    )
    write_yaml(root, cooldown=cooldown, gate=gate, extra=extra)
    (root / "data").mkdir(exist_ok=True)
    (root / "landing").mkdir(exist_ok=True)
    (root / "data" / "sales.csv").write_text("x,y\n1,2\n2,4\n3,6\n")
    mloop.data.add("sales", root / "data" / "sales.csv", project=root)


def write_yaml(
    root: Path, *, cooldown: str = "1h", gate: str = "rows >= 2", extra: str = ""
) -> None:
    (root / "mloop.yaml").write_text(YAML.format(cooldown=cooldown, gate=gate, extra=extra))


def land(root: Path, name: str, rows: int, start: int = 10) -> Path:
    """A CSV of `rows` new rows in the watched folder."""
    path = root / "landing" / name
    lines = "".join(f"{x},{2 * x}\n" for x in range(start, start + rows))
    path.write_text("x,y\n" + lines)
    return path


def trained(root: Path) -> int:
    """How many times the train step really ran."""
    counter = root / "trained.txt"
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def forget(root: Path) -> None:
    sys.modules.pop("pipeline", None)
    while str(root) in sys.path:
        sys.path.remove(str(root))
