"""mloop side of bench_tracking: N × `mloop.log_metric` in one run; prints one JSON line.

Run by the project venv's interpreter with the current folder an initialised mloop project.
Timed: from just inside `with mloop.start_run()` until the block has been left, i.e. every value
is written and the run is ended. Project creation and the first opening of its database (schema
creation) happen before the clock starts; `start_run` (code and environment capture) is timed
separately and reported beside it.
"""

import json
import sys
import time

N = int(sys.argv[1])

t_import = time.perf_counter()
import mloop  # noqa: E402
from mloop.project import Project  # noqa: E402

import_s = time.perf_counter() - t_import

# Not timed: make the project's database exist (part of project creation).
project = Project.open()
project.metadata  # noqa: B018
project.close()

t_start = time.perf_counter()
with mloop.start_run("bench") as run:
    t0 = time.perf_counter()
    for i in range(N):
        mloop.log_metric("loss", 1.0 / (i + 1), step=i)
    t_logged = time.perf_counter()
t1 = time.perf_counter()

print(
    json.dumps(
        {
            "run_id": run.id,
            "n": N,
            "seconds": t1 - t0,  # log_metric × N + leaving the block (flush, end)
            "calls_s": t_logged - t0,  # the log_metric calls alone
            "end_s": t1 - t_logged,  # leaving the block
            "start_run_s": t0 - t_start,
            "import_s": import_s,
        }
    )
)
