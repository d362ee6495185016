"""A small project with pipelines, written into a test's folder: the code under test is real."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

USER_MODULES = ("pipeline", "helpers", "settings")

PIPELINE = '''
import os
from pathlib import Path

import pandas as pd

import mloop
import settings
from helpers import scale_of
from settings import LABELS

SHIFT = 0.0  # module constants the steps read: part of their cache keys


@mloop.step
def ingest(raw) -> pd.DataFrame:
    return raw.to_pandas()


@mloop.step
def prepare(frame: pd.DataFrame, factor: float = 1.0) -> pd.DataFrame:
    out = frame.copy()
    out["price"] = out["price"] * scale_of(factor)
    return out


@mloop.step
def train(frame: pd.DataFrame, depth: int) -> dict:
    mloop.log_metric("rows", len(frame))
    mean = float(frame["price"].mean()) * settings.WEIGHT + SHIFT
    return {"depth": depth, "mean": mean, "labels": sorted(LABELS)}


@mloop.step
def evaluate(model: dict, frame: pd.DataFrame) -> float:
    score = model["mean"] / (10 + model["depth"])
    mloop.log_metric("accuracy", score)
    return score


@mloop.pipeline(metric="accuracy")
def train_pipeline(depth: int = 3, factor: float = 1.0):
    frame = prepare(ingest(mloop.dataset("sales")), factor=factor)
    evaluate(train(frame, depth=depth), frame)


COUNTER = Path(os.environ.get("PIPES_TEST_COUNTER", "counter.txt"))


@mloop.step(retries=2, retry_delay=0.01)
def flaky(frame: pd.DataFrame) -> int:
    attempts = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
    COUNTER.write_text(str(attempts))
    if attempts <= int(os.environ.get("PIPES_TEST_FAILURES", "0")):
        raise ValueError(f"flaky failure {attempts}")
    return len(frame)


@mloop.step(timeout=1)
def slow(n: int) -> int:
    if os.environ.get("PIPES_TEST_SLOW") == "1":
        import time
        time.sleep(30)
    return n * 2


@mloop.step
def summarise(n: int, frame: pd.DataFrame) -> dict:
    return {"n": n, "rows": len(frame)}


@mloop.pipeline
def fragile():
    frame = ingest(mloop.dataset("sales"))
    n = flaky(frame)
    summarise(slow(n), frame)


@mloop.step
def left(folder: str) -> str:
    return _meet(Path(folder), "left", "right")


@mloop.step
def right(folder: str) -> str:
    return _meet(Path(folder), "right", "left")


def _meet(folder: Path, me: str, other: str) -> str:
    """Both steps must be running at once to finish: each waits for the other's mark."""
    import time
    (folder / me).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not (folder / other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never started while {me} ran")
        time.sleep(0.01)
    return (folder / other).read_text()


@mloop.pipeline
def parallel(folder: str = "meet"):
    left(folder)
    right(folder)


@mloop.pipeline
def checked():
    frame = mloop.validate(ingest(mloop.dataset("sales")), mloop.dataset("sales", version=1))
    train(frame, depth=2)


@mloop.pipeline
def pinned():
    train(ingest(mloop.dataset("sales", version=1)), depth=2)


@mloop.step
def wrong_type(frame: pd.DataFrame) -> pd.DataFrame:
    return [1, 2, 3]


@mloop.pipeline
def mistyped():
    wrong_type(ingest(mloop.dataset("sales")))
'''

HELPERS = """
def scale_of(factor: float) -> float:
    return factor
"""

SETTINGS = """
WEIGHT = 1.0
LABELS = {"north", "south", "east", "west"}
"""

YAML = """project: pipes
pipelines:
  train: pipeline:train_pipeline
  fragile: pipeline:fragile
  parallel: pipeline:parallel
  mistyped: pipeline:mistyped
  checked: pipeline:checked
  pinned: pipeline:pinned
"""


def write_project(root: Path) -> None:
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    (root / "helpers.py").write_text(textwrap.dedent(HELPERS))
    (root / "settings.py").write_text(textwrap.dedent(SETTINGS))
    (root / "mloop.yaml").write_text(YAML)
    (root / "data").mkdir(exist_ok=True)
    write_sales(root, [1.5, 2.5, 3.0])


def write_sales(root: Path, prices: list[float]) -> None:
    rows = "\n".join(f"{p},r{i % 2}" for i, p in enumerate(prices))
    (root / "data" / "sales.csv").write_text("price,region\n" + rows + "\n")


def forget_project(root: Path) -> None:
    """Drop the project's modules from this interpreter, so the next test imports its own."""
    for name in USER_MODULES:
        sys.modules.pop(name, None)
    while str(root) in sys.path:
        sys.path.remove(str(root))
