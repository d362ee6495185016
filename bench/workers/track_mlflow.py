"""MLflow side of bench_tracking: N × `mlflow.log_metric` in one run on a SQLite store.

Run by bench/.venvs/mlflow's interpreter in an empty folder. As in the research protocol
(shared/research/perf-baselines.md §1), only the logging calls are timed: schema migration,
experiment and run creation happen before the clock starts. Prints one JSON line.
"""

import json
import os
import sys
import time

N = int(sys.argv[1])

t_import = time.perf_counter()
import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

import_s = time.perf_counter() - t_import

mlflow.set_tracking_uri(f"sqlite:///{os.path.abspath('mlflow.db')}")
mlflow.set_experiment("bench")
t_start = time.perf_counter()
with mlflow.start_run() as run:
    t0 = time.perf_counter()
    for i in range(N):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
    t1 = time.perf_counter()
t_end = time.perf_counter()

history = MlflowClient().get_metric_history(run.info.run_id, "loss")
assert len(history) == N, f"MLflow stored {len(history)} of {N} values"

print(
    json.dumps(
        {
            "run_id": run.info.run_id,
            "n": N,
            "seconds": t1 - t0,
            "end_s": t_end - t1,
            "start_run_s": t0 - t_start,
            "import_s": import_s,
            "stored": len(history),
        }
    )
)
