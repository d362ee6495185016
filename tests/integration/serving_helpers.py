"""Models and servers for the model-serving tests.

- `cancer_model()`: scikit-learn's LogisticRegression on the breast-cancer data (30 float
  columns), with the signature a registry would record; `mixed_model()`: a pipeline over int,
  float (nullable), string and bool columns that takes a DataFrame.
- Predictors that make server behaviour observable: `Recording` (batch sizes of every predict
  call), `Slow` (sleeps in predict), `Reporting` (answers with a fact of the worker: its pid,
  its GIL switch interval).
- `running(app)`: a real uvicorn server in a thread on 127.0.0.1, on a socket bound to port 0
  (no port race), polled until it answers.
- `python -m tests.integration.serving_helpers KIND [--workers N] [--timeout S] [--delay S]`:
  the same models served as their own process through `mloop.server.workers.serve`; the first
  line on stdout is the URL, printed once every worker is ready.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np

from mloop.domain.model import ColumnSpec, Signature
from mloop.sdk.python_model import PythonModel
from mloop.services.serving.predictor import LoadedModel
from tests.servers import wait_for


@functools.cache
def cancer_model() -> tuple[Any, Signature, np.ndarray, list[str]]:
    """(fitted model, signature, features, column names) for the breast-cancer data."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(data.data, data.target)
    names = [str(n) for n in data.feature_names]
    signature = Signature(tuple(ColumnSpec(n, "float64") for n in names))
    return model, signature, data.data, names


def cancer(name: str = "cancer", version: int = 3) -> LoadedModel:
    model, signature, _, _ = cancer_model()
    return LoadedModel(name, version, model, signature)


MIXED_SIGNATURE = Signature(
    (
        ColumnSpec("age", "int64"),
        ColumnSpec("income", "float64", nullable=True),
        ColumnSpec("region", "string"),
        ColumnSpec("member", "bool"),
    )
)


@functools.cache
def mixed_model() -> Any:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 200),
            "income": rng.normal(50_000, 10_000, 200),
            "region": rng.choice(["north", "south", "east"], 200),
            "member": rng.integers(0, 2, 200).astype(bool),
        }
    )
    target = (frame["age"] > 45).astype(int)
    prepare = ColumnTransformer(
        [
            ("num", SimpleImputer(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["region"]),
            ("flag", "passthrough", ["member"]),
        ]
    )
    return make_pipeline(prepare, LogisticRegression(max_iter=1000)).fit(frame, target)


def mixed() -> LoadedModel:
    return LoadedModel("mixed", 1, mixed_model(), MIXED_SIGNATURE, wants_frame=True)


class Recording:
    """Wraps a predictor and records the rows of every predict call (optionally slowed)."""

    def __init__(self, inner: Any, delay: float = 0.0) -> None:
        self.inner = inner
        self.delay = delay
        self.name, self.version = inner.name, inner.version
        self.signature, self.wants_frame = inner.signature, inner.wants_frame
        self.categories = inner.categories
        self.sizes: list[int] = []

    def predict(self, batch: Any) -> Any:
        self.sizes.append(len(batch))
        if self.delay:
            time.sleep(self.delay)
        return self.inner.predict(batch)


class Slow(Recording):
    def __init__(self, seconds: float) -> None:
        super().__init__(cancer("slow", 1), delay=seconds)


class Reporting(Recording):
    """Predicts `fact()` of the worker process that answered, once per row (its pid, its GIL
    switch interval): what a test cannot read from outside that process."""

    def __init__(self, name: str, fact: Callable[[], float], delay: float = 0.0) -> None:
        super().__init__(cancer(name, 1), delay=delay)
        self.fact = fact

    def predict(self, batch: Any) -> Any:
        super().predict(batch)
        return np.full(len(batch), self.fact())


class Broken(PythonModel):
    """A version whose every predict fails: it can never pass its readiness check."""

    def predict(self, batch: Any) -> Any:
        raise RuntimeError("the weights file is empty")


class Gated(PythonModel):
    """A challenger that says 0 for every row, but only while the file `gate` exists: a shadow
    as slow as the test wants, without a clock. (A file, since a registered PythonModel is
    loaded from its stored code, in a module of its own: no object of the test's reaches it.)"""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    def predict(self, batch: Any) -> Any:
        deadline = time.monotonic() + 60
        while not os.path.exists(self.gate):
            assert time.monotonic() < deadline, "the gate was never opened"
            time.sleep(0.005)  # polls the gate: the model stands for one that takes its time
        return np.zeros(len(batch), dtype=np.int64)


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` from a thread on 127.0.0.1; yields the base URL."""
    import uvicorn

    from mloop.server.workers import bind_socket, uvicorn_config

    sock = bind_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn_config(app, app.settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: _answers(url), 30, f"the model server at {url}")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def split_body(rows: np.ndarray, names: list[str]) -> dict[str, Any]:
    return {"dataframe_split": {"columns": names, "data": rows.tolist()}}


KINDS = {
    "cancer": cancer,
    "slow": Slow,
    "pid": functools.partial(Reporting, "pid", os.getpid),
    "switch": functools.partial(Reporting, "switch", sys.getswitchinterval),
}


def read_plan(path: str) -> Any:
    """The deployment a test wrote to `path` (JSON: endpoint, versions as [model, role,
    weight], sticky): the source an endpoint's workers poll; the test changes the file."""
    import json

    from mloop.server.slots import ServedVersion, ServingPlan

    with open(path, encoding="utf-8") as file:
        plan = json.load(file)
    versions = tuple(ServedVersion(*version) for version in plan["versions"])
    return ServingPlan(plan["endpoint"], versions, plan.get("sticky"))


def write_plan(
    path: Any, versions: list[tuple[str, str, float]], sticky: str | None = None
) -> None:
    """Write a plan for `read_plan` atomically (a rename), so a poll never reads half of it."""
    import json

    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump({"endpoint": "cancer", "versions": versions, "sticky": sticky}, file)
    os.replace(temporary, path)


def load_version(delay: float, ref: str) -> LoadedModel:
    """The cancer model as version `ref` (NAME:V), slowed by `delay` seconds per predict."""
    name, _, version = ref.partition(":")
    loaded = cancer(name, int(version))
    return Recording(loaded, delay) if delay else loaded  # type: ignore[return-value]


def main() -> None:
    from mloop.server.inference import ServeSettings
    from mloop.server.workers import serve

    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=[*sorted(KINDS), "endpoint"])
    parser.add_argument("--plan", help="endpoint: the plan file the workers follow")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--delay", type=float, help="seconds per predict (slow, pid: 1.0)")
    args = parser.parse_args()
    settings = ServeSettings(timeout=args.timeout)
    factory: Any
    if args.kind == "endpoint":
        from mloop.server.follower import Follow

        load = functools.partial(load_version, args.delay or 0.0)
        factory = Follow(functools.partial(read_plan, args.plan), load, poll=0.05)
    else:
        make = KINDS[args.kind]
        delay = 1.0 if args.delay is None else args.delay
        factory = functools.partial(make, delay) if args.kind != "cancer" else make
    serve(
        factory, "127.0.0.1", 0, args.workers, settings, on_ready=lambda url: print(url, flush=True)
    )


if __name__ == "__main__":
    main()
