"""Steps mloop provides: `validate` checks a table against a reference version's profile.

Put it between reading data and training: a failure stops the pipeline there, the steps that
need the data are skipped, and the run's error names every failing column and check.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from mloop.domain.pipeline import StepOptions
from mloop.errors import PipelineError, ValidationFailed
from mloop.services.data.checkout import LocalDataset
from mloop.services.pipelines.dsl import StepFunction
from mloop.services.tracking import active


def validate(
    frame: pd.DataFrame,
    reference: LocalDataset,
    table: str | None = None,
    tolerance: float = 0.1,
    max_psi: float = 0.2,
    columns: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> pd.DataFrame:
    """Check `frame` against the profile of a table in `reference`; pass it on if it holds.

    Types, nullability, ranges and categories come from a pandera schema inferred from the
    reference profile; distributions are compared by PSI. Only the reference's profile is read,
    never its data. `columns` checks only those columns (say, the features and the label, so a
    shift in a column the model never reads does not stop the pipeline); `exclude` checks all
    but those. The frame is passed on whole either way.

    Example:
        >>> checked = mloop.validate(ingest(mloop.dataset("sales")),  # doctest: +SKIP
        ...                          mloop.dataset("sales", version=1),
        ...                          columns=["price", "region", "units_sold"])
    """
    from mloop.services.data.validation import Thresholds, validate_frame

    tables = reference.version.tables
    if table is not None:
        tables = tuple(t for t in tables if t.path == table)
    if len(tables) != 1:
        names = ", ".join(t.path for t in reference.version.tables) or "none"
        raise PipelineError(
            f"{reference.version.ref} has {len(tables)} matching tables ({names})",
            "name one with table='path/in/the/dataset.csv'",
        )
    limits = Thresholds(tolerance=tolerance, max_psi=max_psi)
    report = validate_frame(frame, tables[0], limits, columns=columns, exclude=exclude)
    run = active.current()
    if run is not None:
        run.log_metric("validation.failed_checks", len(report.failures))
        run.set_tag("mloop.validated_against", f"{reference.version.ref} {tables[0].path}")
    if not report.ok:
        details = "; ".join(
            f"{f.column or 'table'}: {f.check}: {f.message}" for f in report.failures[:10]
        )
        raise ValidationFailed(
            f"{len(report.failures)} checks failed against {reference.version.ref}: {details}",
            "see `mloop data validate` for failing rows",
        )
    return frame


# Wrapped under its own name, so the worker resolves `builtins:validate` to this step.
validate = StepFunction(validate, "validate", StepOptions())
