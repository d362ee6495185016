"""mloop: the whole machine-learning lifecycle as one loop.

This module is the Python SDK; importing it is cheap (nothing heavy loads until used).

    import mloop

    with mloop.start_run("baseline", params={"lr": 0.1}):
        frame = mloop.data.get("sales").to_pandas()
        mloop.log_metric("rmse", 3.2)
"""

from mloop.sdk import (
    active_run,
    end_run,
    get_run,
    log_artifact,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    set_tag,
    start_run,
)
from mloop.sdk import data as data

__version__ = "0.1.0"

__all__ = [
    "active_run",
    "data",
    "end_run",
    "get_run",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
    "start_run",
]
