"""`mloop.register_model` and `mloop.load_model`: the registry from Python."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.sdk import _open_project, active_run

if TYPE_CHECKING:
    from mloop.domain.model import ModelVersion, Signature


def register_model(
    model: Any,
    name: str,
    run: Any = None,
    signature: Signature | None = None,
    input_example: Any = None,
    description: str = "",
    project: str | Path | None = None,
) -> ModelVersion:
    """Register `model` as the next version of `name`, linked to `run` (default: the active
    run) with its data, code, environment, metrics and params.

    The signature is taken from `signature`, else inferred from `input_example`, else from the
    model's own feature names typed by the run's training frame.

    Registering never loads the model, so it never needs trust. A model that will need it to
    load (a skops type off mloop's audited list, such as a custom transformer class) is
    registered all the same, with a `UserWarning` naming the types: whoever loads it then
    passes `trust=True` (`--trust` on the command line) themselves.

    Example:
        >>> with mloop.start_run("train"):  # doctest: +SKIP
        ...     model = LogisticRegression().fit(x, y)
        ...     mloop.register_model(model, "churn", input_example=x.head())
    """
    run = run if run is not None else active_run()
    registry = _open_project(project).models
    version = registry.register(
        model,
        name,
        run=run if run is None or isinstance(run, str) else getattr(run, "_active", run),
        signature=signature,
        input_example=input_example,
        description=description,
    )
    reason = registry.trust_reason(version)
    if reason is not None:
        warnings.warn(
            f"{version.ref} needs trust to load: {reason}; whoever loads it must pass "
            "trust=True (--trust on the command line)",
            UserWarning,
            stacklevel=2,
        )
    return version


def load_model(ref: str, trust: bool = False, project: str | Path | None = None) -> Any:
    """A registered model ready to predict: `churn@champion`, `churn:3` or `churn` (latest),
    or the path of a bundle `mloop export bundle` wrote (`./churn-bundle`: a path holds a `/`
    or starts with `.`), which needs no project; every file is checked against its digest.

    A model that needs trust to load (pickle and Python models, skops types off mloop's
    audited list) loads only with `trust=True`; any other loads without it.

    Example:
        >>> mloop.load_model("churn@champion").predict(frame)  # doctest: +SKIP
        >>> mloop.load_model("./churn-bundle").predict(frame)  # doctest: +SKIP
    """
    from mloop.services.registry.bundle import names_a_bundle, open_bundle

    if names_a_bundle(ref):
        return open_bundle(Path(ref)).load(trust=trust)
    return _open_project(project).models.load(ref, trust=trust)
