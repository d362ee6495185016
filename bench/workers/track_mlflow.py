"""MLflow side of bench_tracking: N metric values in one run on a SQLite store.

Run by bench/.venvs/mlflow's interpreter in an empty folder as `track_mlflow.py N MODE`, MODE one of
  call   N × `mlflow.log_metric(...)`, each written before it returns (MLflow's default);
  async  N × `mlflow.log_metric(..., synchronous=False)`, queued and written by MLflow's thread;
  batch  one `MlflowClient().log_batch(...)` of the N values (what a user who collects values
         first would do; MLflow's fastest way).
Migrations and `set_experiment` happen before any clock starts. Two figures: `seconds` (the
logging calls alone, the research protocol for `call`) and `whole_s` (from before `start_run` until
the `with` block has been left, i.e. the run created, every value stored and the run ended).
Prints one JSON line.
"""

import json
import os
import sys
import time

N = int(sys.argv[1])
MODE = sys.argv[2] if len(sys.argv) > 2 else "call"

t_import = time.perf_counter()
import mlflow  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

import_s = time.perf_counter() - t_import

mlflow.set_tracking_uri(f"sqlite:///{os.path.abspath('mlflow.db')}")
mlflow.set_experiment("bench")
client = MlflowClient()
t_start = time.perf_counter()
with mlflow.start_run() as run:
    t0 = time.perf_counter()
    if MODE == "call":
        for i in range(N):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
    elif MODE == "async":
        for i in range(N):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i, synchronous=False)
    elif MODE == "batch":
        now = int(time.time() * 1000)
        values = [Metric("loss", 1.0 / (i + 1), now, i) for i in range(N)]
        client.log_batch(run.info.run_id, metrics=values)
    else:
        raise SystemExit(f"unknown mode {MODE!r}")
    t1 = time.perf_counter()
t_end = time.perf_counter()

history = client.get_metric_history(run.info.run_id, "loss")
assert len(history) == N, f"MLflow stored {len(history)} of {N} values ({MODE})"

print(
    json.dumps(
        {
            "run_id": run.info.run_id,
            "n": N,
            "mode": MODE,
            "seconds": t1 - t0,
            "end_s": t_end - t1,
            "start_run_s": t0 - t_start,
            "whole_s": t_end - t_start,
            "import_s": import_s,
            "stored": len(history),
        }
    )
)
