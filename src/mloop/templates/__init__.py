"""Project templates for `mloop init --template NAME` (package data with a small renderer).

A template is a folder here (`classification/`, `regression/`) whose files are copied into a
new project on top of the files all templates share (`common/`). A file named `*.tmpl` is
rendered first: its `{{ name }}` placeholders are filled (project name, dataset, versions pinned
from this environment) and the suffix is dropped. So no template file ends in `.py`: mloop's own
linters, type checker and house-rule tests never take a template for mloop code, and the e2e
tests lint the rendered project instead, as its users will. Three things are made in code:
the sample data, from a seeded generator (the same rows on every machine); the notebook, as
nbformat 4 JSON written directly (nbformat is an optional extra; `init` must not need it); and
a wheel of the running mloop in `wheels/`, which the project's requirements install (`wheel.py`
says why).

Used by `cli/init.py`; imports nothing of mloop's but the errors, and numpy and pandas only
when it generates data.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mloop.errors import InvalidInput, InvalidPath
from mloop.templates.wheel import running_wheel, wheel_name

HERE = Path(__file__).parent
COMMON = "common"
SUFFIX = ".tmpl"
NOTEBOOK = "notebooks/explore.ipynb"
WHEELS = "wheels"
# Stored without the dot: a `.gitignore` here would apply to this folder, in git and the wheel.
RENAMED = {"gitignore": ".gitignore"}
ROWS = 500
SEED = 7
_PLACEHOLDER = re.compile(r"\{\{ ?(\w+) ?\}\}")  # GitHub's `${{ a.b }}` never matches: a dot


@dataclass(frozen=True)
class Template:
    """What differs between templates beyond their files: the sample data and its names."""

    name: str
    summary: str
    dataset: str
    target: str
    target_role: str  # what the target is called in prose: label or target
    param: str  # the model's main param, as the pipeline and `mloop run -p` name it
    target_look: str  # a notebook expression that shows the target
    make_data: Callable[[int, int], Any]  # (rows, seed) -> DataFrame

    @property
    def data_file(self) -> str:
        return f"data/{self.dataset}.csv"

    @property
    def holdout(self) -> str:
        """A second sample, never trained on: the registry's gates compare models on it."""
        return f"{self.dataset}-holdout"

    @property
    def holdout_file(self) -> str:
        return f"data/{self.holdout}.csv"


def _churn(rows: int, seed: int) -> Any:
    """Customers with a binary label `churned`, driven by contract, tenure, charges and calls."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows, p=[0.5, 0.3, 0.2])
    payment = rng.choice(["card", "bank-transfer", "check"], rows, p=[0.45, 0.35, 0.2])
    tenure = rng.integers(1, 73, rows)
    charges = rng.uniform(20, 120, rows).round(2)
    calls = rng.poisson(1.5, rows)
    score = (
        -0.05 * tenure
        + 0.02 * charges
        + 0.6 * calls
        + np.select([contract == "month-to-month", contract == "one-year"], [1.2, -0.3], -1.5)
        + np.where(payment == "check", 0.5, 0.0)
        - 1.0
    )
    churned = (rng.random(rows) < 1 / (1 + np.exp(-2.5 * score))).astype(int)
    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "contract": contract,
            "payment_method": payment,
            "churned": churned,
        }
    )


def _sales(rows: int, seed: int) -> Any:
    """Store-days with a numeric target `units_sold`: price, advertising, visitors, region."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east", "west"], rows)
    promotion = rng.choice(["none", "discount", "bundle"], rows, p=[0.6, 0.25, 0.15])
    price = rng.uniform(5, 25, rows).round(2)
    advertising = rng.uniform(0, 10, rows).round(2)
    visitors = rng.integers(200, 1200, rows)
    expected = (
        60
        + 0.08 * visitors
        + 6.0 * advertising
        - 2.5 * price
        + np.select([region == "north", region == "south", region == "east"], [10, -5, 3], 0)
        + np.select([promotion == "discount", promotion == "bundle"], [15, 8], 0)
    )
    return pd.DataFrame(
        {
            "price": price,
            "advertising": advertising,
            "visitors": visitors,
            "region": region,
            "promotion": promotion,
            "units_sold": (expected + rng.normal(0, 8, rows)).round(1),
        }
    )


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "classification",
            "predict customer churn (logistic regression)",
            "churn",
            "churned",
            "label",
            "C",
            "frame[TARGET].value_counts(normalize=True)",
            _churn,
        ),
        Template(
            "regression",
            "forecast units sold (ridge regression)",
            "sales",
            "units_sold",
            "target",
            "alpha",
            "frame.corr(numeric_only=True)[TARGET].sort_values()",
            _sales,
        ),
    )
}


def find(name: str) -> Template:
    """The template called `name`, or an error listing the templates there are.

    Example:
        >>> find("regression").dataset
        'sales'
    """
    found = TEMPLATES.get(name)
    if found is None:
        known = ", ".join(f"{t.name} ({t.summary})" for t in TEMPLATES.values())
        raise InvalidInput(f"there is no template {name!r}", f"choose one of: {known}")
    return found


def _sources(template: Template) -> dict[str, Path]:
    """Target path (relative, rendered name) -> source file; the template's own files win."""
    found: dict[str, Path] = {}
    for folder in (HERE / COMMON, HERE / template.name):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(folder).as_posix().removesuffix(SUFFIX)
            found[RENAMED.get(rel, rel)] = path
    return found


def planned(template: Template) -> list[str]:
    """Every file the template writes, relative to the project root, sorted."""
    made = [template.data_file, template.holdout_file, NOTEBOOK, f"{WHEELS}/{wheel_name()}"]
    return sorted([*_sources(template), *made])


def conflicts(template: Template, root: Path) -> list[str]:
    """The template's files that already exist under `root` (init refuses to overwrite them)."""
    return [rel for rel in planned(template) if (root / rel).exists()]


def missing_packages() -> list[str]:
    """What the templates' code needs that is not installed here (pip names), in order.

    Example:
        >>> missing_packages()  # doctest: +SKIP
        ['scikit-learn', 'skops']
    """
    found = []
    for distribution in ("scikit-learn", "skops"):
        try:
            metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found.append(distribution)
    return found


def _pin(distribution: str, requirement: str) -> str:
    try:
        return f"{requirement}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return requirement


def values(template: Template, project: str) -> dict[str, str]:
    """What the placeholders stand for: names, and versions pinned from this environment."""
    wheel = f"./{WHEELS}/{wheel_name()}"
    return {
        "project": project,
        "template": template.name,
        "dataset": template.dataset,
        "data_file": template.data_file,
        "target": template.target,
        "target_role": template.target_role,
        "param": template.param,
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "mloop_wheel": wheel,
        "pin_mloop": f"{wheel}[data,sklearn]",
        "pin_pandas": _pin("pandas", "pandas"),
        "pin_sklearn": _pin("scikit-learn", "scikit-learn"),
        "pin_skops": _pin("skops", "skops"),
        "pin_pytest": _pin("pytest", "pytest"),
    }


def render(text: str, fill: dict[str, str]) -> str:
    """Fill `{{ name }}` placeholders; an unknown name is a bug in the template, not ignored.

    Example:
        >>> render("project: {{ project }}", {"project": "churn"})
        'project: churn'
    """

    def one(found: re.Match[str]) -> str:
        if found[1] not in fill:
            raise KeyError(f"template placeholder {found[0]} has no value")
        return fill[found[1]]

    return _PLACEHOLDER.sub(one, text)


def write(template: Template, root: Path, project: str) -> list[str]:
    """Write the template's files, its sample data and its notebook into `root`.

    Files are written over what is there, so the caller checks `conflicts` first; only
    mloop.yaml, which `init` has just written, is meant to be replaced.

    Returns:
        The paths written, relative to `root`, sorted.

    Example:
        >>> write(find("classification"), Path("churn"), "churn")[:2]  # doctest: +SKIP
        ['.github/workflows/mloop.yml', '.gitignore']
    """
    fill = values(template, project)
    for rel, source in _sources(template).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.name.endswith(SUFFIX):
            target.write_text(render(source.read_text(encoding="utf-8"), fill), encoding="utf-8")
        else:
            target.write_bytes(source.read_bytes())
    data = root / template.data_file
    data.parent.mkdir(parents=True, exist_ok=True)
    template.make_data(ROWS, SEED).to_csv(data, index=False, lineterminator="\n")
    holdout = template.make_data(ROWS // 2, SEED + 1)
    holdout.to_csv(root / template.holdout_file, index=False, lineterminator="\n")
    notebook = root / NOTEBOOK
    notebook.parent.mkdir(parents=True, exist_ok=True)
    notebook.write_text(json.dumps(_notebook(template, fill), indent=1) + "\n", encoding="utf-8")
    wheel = running_wheel()
    (root / WHEELS).mkdir(exist_ok=True)
    (root / WHEELS / wheel.filename).write_bytes(wheel.content)
    return planned(template)


# The notebook: markdown and code cells calling the same SDK functions and steps as the
# pipeline. The first code cell is tagged `parameters` (papermill's convention), so the
# notebook can run with other values, or become a pipeline step.
_CELLS: tuple[tuple[str, str], ...] = (
    (
        "markdown",
        "# Explore `{{ dataset }}`\n\n"
        "The steps of `pipeline.py`, called one by one on the latest version of the data. "
        "When a change works here, move it into `pipeline.py`: `mloop run` and CI run that code.",
    ),
    ("parameters", "{{ param }} = 1.0\nSEED = 0"),
    (
        "code",
        "import sys\nfrom pathlib import Path\n\nimport mloop\n\n"
        "# pipeline.py sits in the project root; the notebook may run from notebooks/.\n"
        "here = Path.cwd()\n"
        'ROOT = next(p for p in (here, *here.parents) if (p / "mloop.yaml").exists())\n'
        "sys.path.insert(0, str(ROOT))\n\n"
        "from pipeline import (  # noqa: E402\n"
        "    DATASET,\n"
        "    TARGET,\n"
        "    VALIDATION,\n"
        "    evaluate,\n"
        "    ingest,\n"
        "    prepare,\n"
        "    train,\n"
        ")",
    ),
    (
        "markdown",
        "## The data\n\n`mloop.data.get` returns a dataset version (the latest unless you "
        "give `version=`); inside a run it is recorded as the run's input.",
    ),
    (
        "code",
        "raw = mloop.data.get(DATASET)\nprint(raw.version.ref, raw.version.message)\n"
        "frame = ingest(raw)\nframe.describe()",
    ),
    ("code", "{{ target_look }}"),
    (
        "markdown",
        "## Validate against the first version\n\nThe pipeline's `validate` step, with its "
        "settings (`VALIDATION`): types, nulls, ranges, categories and distributions of the "
        "columns the model reads, against the profile recorded for version 1.",
    ),
    (
        "code",
        "reference = mloop.data.get(DATASET, version=1)\n"
        "checked = mloop.validate(frame, reference, **VALIDATION)\nlen(checked)",
    ),
    (
        "markdown",
        "## Train and evaluate, tracked as a run\n\n"
        "`mloop runs list` shows this run beside the pipeline's runs.",
    ),
    (
        "code",
        "train_rows, test_rows = prepare(checked, seed=SEED)\n"
        'with mloop.start_run("explore", params={"{{ param }}": {{ param }}, "seed": SEED}):\n'
        "    model = train(train_rows, {{ param }}={{ param }})\n"
        "    metrics = evaluate(model, test_rows)\nmetrics",
    ),
)


def _notebook(template: Template, fill: dict[str, str]) -> dict[str, Any]:
    cells: list[dict[str, Any]] = []
    for index, (kind, source) in enumerate(_CELLS, start=1):
        text = render(source.replace("{{ target_look }}", template.target_look), fill)
        cell: dict[str, Any] = {
            "cell_type": "markdown" if kind == "markdown" else "code",
            "id": f"cell-{index}",
            "metadata": {"tags": ["parameters"]} if kind == "parameters" else {},
            "source": text.splitlines(keepends=True),
        }
        if kind != "markdown":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def check_folder(template: Template, root: Path) -> None:
    """Refuse a folder where the template would overwrite files (a project, or someone's work).

    Example:
        >>> check_folder(find("regression"), Path("new-folder"))  # doctest: +SKIP
    """
    taken = conflicts(template, root)
    if taken:
        shown = ", ".join(taken[:5]) + (", …" if len(taken) > 5 else "")
        raise InvalidPath(
            f"{root} already has files the {template.name} template would write: {shown}",
            "give a new or empty folder: mloop init DIR --template " + template.name,
        )
