"""mloop: the whole machine-learning lifecycle as one loop.

This module is the Python SDK; importing it is cheap (nothing heavy loads until used).

    import mloop

    with mloop.start_run("baseline", params={"lr": 0.1}):
        frame = mloop.data.get("sales").to_pandas()
        mloop.log_metric("rmse", 3.2)
"""

from mloop._version import __version__ as __version__
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
from mloop.sdk.models import load_model, register_model

_PIPELINE_NAMES = ("validate", "dataset", "notebook_step", "pipeline", "step")


def __getattr__(name: str) -> object:
    # The pipeline DSL loads on first use, so the `mloop` command (which imports this package
    # first) does not pay for it.
    if name in _PIPELINE_NAMES:
        from mloop.sdk import pipelines

        return getattr(pipelines, name)
    if name == "PythonModel":
        from mloop.sdk.python_model import PythonModel

        return PythonModel
    raise AttributeError(f"module 'mloop' has no attribute {name!r}")


__all__ = [
    "PythonModel",
    "active_run",
    "data",
    "dataset",
    "end_run",
    "get_run",
    "load_model",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "notebook_step",
    "pipeline",
    "register_model",
    "set_tag",
    "start_run",
    "step",
    "validate",
]
