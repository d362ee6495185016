"""`mloop ci`: what a CI system runs on a change, as four stages and one Markdown report.

1. **data**: the changed tables of each dataset whose working files changed since its latest
   version are validated against that version's profiles; if they pass, the files become a new
   version (message "ci") for the pipeline to train on;
2. **tests**: `python -m pytest -q tests` in the project root, when there is a `tests/` folder;
3. **pipeline**: the pipeline runs (unchanged steps are reused, as with `mloop run`);
4. **gates**: the pipeline's gates from mloop.yaml against the run's metrics.

A stage that fails stops the ones after it, which report "not run": training on data that failed
validation, or code whose tests fail, would only produce a run nobody should trust. The result
is returned, never printed, and the report is written whatever happened, since a failed run is
exactly when the pull request needs it.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.domain.dataset import is_table_path
from mloop.domain.gate import Gate, GateRecord, evaluate, value_text
from mloop.errors import InvalidInput, MloopError
from mloop.services.data.versioning import DataService, StatusReport
from mloop.services.pipelines.catalog import PipelineService
from mloop.services.pipelines.runner import PipelineResult, StepEvent

if TYPE_CHECKING:
    from mloop.services.data.checks import CheckFailure

PASSED, FAILED, SKIPPED, NOT_RUN = "passed", "failed", "skipped", "not run"
STAGES = ("data", "tests", "pipeline", "gates")
OUTPUT_LINES = 60  # of a failing test run, kept in the report
FAILING_ROWS = 3  # example values per failing check
ICONS = {PASSED: "✅", FAILED: "❌", SKIPPED: "➖", NOT_RUN: "⏸️"}


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    state: str  # passed | failed | skipped | not run
    details: str
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class DataCheck:
    """One dataset in the data stage: `state` is unchanged, validated (and versioned), failed
    (not versioned), versioned (no table changed) or absent (no working files: not checked)."""

    dataset: str
    state: str
    version: str | None  # the latest version after the stage; None if the files failed
    reference: str | None = None
    failures: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TestRun:
    code: int
    summary: str
    output: str  # the end of pytest's output when it failed


@dataclass(frozen=True, slots=True)
class CIResult:
    pipeline: str
    stages: tuple[Stage, ...]
    datasets: tuple[DataCheck, ...] = ()
    tests: TestRun | None = None
    run_id: str | None = None
    steps: tuple[StepEvent, ...] = ()
    gates: tuple[GateRecord, ...] = ()
    report: str = ""

    @property
    def ok(self) -> bool:
        return all(stage.state in (PASSED, SKIPPED) for stage in self.stages)


class CIService:
    def __init__(
        self,
        data: DataService,
        pipelines: PipelineService,
        root: Path,
        gates: Mapping[str, Sequence[Gate]],
        *,
        report: Path,
        python: str = sys.executable,
    ) -> None:
        self.data = data
        self.pipelines = pipelines
        self.root = root
        self.gates = {name: tuple(rules) for name, rules in gates.items()}
        self.default_report = report
        self.python = python

    def run(
        self,
        pipeline: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        run_tests: bool = True,
        report: Path | None = None,
        on_stage: Callable[[Stage], None] | None = None,
        on_event: Callable[[StepEvent], None] | None = None,
    ) -> CIResult:
        """Run the four stages, write the report, and return what happened.

        Example:
            >>> result = project.ci.run("train", report=Path("ci-report.md"))  # doctest: +SKIP
            >>> [(s.name, s.state) for s in result.stages]  # doctest: +SKIP
            [('data', 'passed'), ('tests', 'passed'), ('pipeline', 'passed'), ('gates', 'passed')]
        """
        name = self.pipelines.resolve_name(pipeline)  # a wrong name is an error, not a stage
        stages: list[Stage] = []
        result = CIResult(name, ())

        def finish(stage: Stage, started: float, **found: Any) -> bool:
            nonlocal result
            stage = dataclasses.replace(stage, seconds=time.monotonic() - started)
            stages.append(stage)
            result = dataclasses.replace(result, stages=tuple(stages), **found)
            if on_stage is not None:
                on_stage(stage)
            return stage.state != FAILED

        started = time.monotonic()
        datasets = tuple(self._check_data())
        going = finish(_data_stage(datasets), started, datasets=datasets)
        if going:
            started = time.monotonic()
            tests = self._run_tests() if run_tests and (self.root / "tests").is_dir() else None
            going = finish(_tests_stage(tests, run_tests), started, tests=tests)
        if going:
            started = time.monotonic()
            stage, ran = self._run_pipeline(name, dict(params or {}), on_event)
            steps = tuple(ran.steps.values()) if ran else ()
            going = finish(stage, started, run_id=ran.run_id if ran else None, steps=steps)
        if going:
            started = time.monotonic()
            stage, checked = self._check_gates(name, result.run_id)
            finish(stage, started, gates=checked)
        for missing in STAGES[len(stages) :]:
            finish(Stage(missing, NOT_RUN, "an earlier stage failed"), time.monotonic())
        path = (report or self.default_report).resolve()
        result = dataclasses.replace(result, report=str(path))
        _write(path, render_report(result))
        return result

    # stages --------------------------------------------------------------------------------
    def _check_data(self) -> list[DataCheck]:
        checks: list[DataCheck] = []
        for status in self.data.status():
            latest = f"{status.name}:{status.version}"
            if status.clean:
                checks.append(DataCheck(status.name, "unchanged", latest))
            elif not (status.added or status.modified or status.unchanged):
                checks.append(DataCheck(status.name, "absent", latest))
            else:
                checks.append(self._validate_then_version(status, latest))
        return checks

    def _validate_then_version(self, status: StatusReport, latest: str) -> DataCheck:
        """Check the changed tables against the latest version's profiles, and version the
        files only if they pass: a failed delivery never becomes the latest version, so it is
        neither the reference for the next one nor "unchanged" when the job is run again."""
        from mloop.services.data.profile import read_table
        from mloop.services.data.validation import validate_frame

        reference = self.data.get(latest)
        changed = sorted(p for p in (*status.modified, *status.added) if is_table_path(p))
        tables = {t.path: t for t in reference.tables}
        if len(changed) == 1 and len(tables) == 1:  # this month's file against last month's
            tables = {changed[0]: reference.tables[0]}
        failures: list[str] = []
        for path in changed:
            table = tables.get(path)
            if table is None:
                failures.append(f"{path}: {latest} has no table to compare it with")
                continue
            try:
                report = validate_frame(read_table(self.root / path, path), table)
            except InvalidInput as exc:
                failures.append(f"{path}: {exc.message}")
                continue
            failures += [f"{path}: {_failure(f)}" for f in report.failures]
        if failures:
            return DataCheck(status.name, FAILED, None, latest, tuple(failures))
        try:
            added = self.data.add(status.name, [self.root / s for s in reference.sources], "ci")
        except MloopError as exc:
            return DataCheck(status.name, FAILED, None, latest, (exc.message,))
        state = "validated" if changed else "versioned"
        return DataCheck(status.name, state, added.version.ref, latest if changed else None)

    def _run_tests(self) -> TestRun:
        done = subprocess.run(
            [self.python, "-m", "pytest", "-q", "tests"],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        summary = next(
            (line.strip("= ") for line in reversed(done.stdout.splitlines()) if line.strip()),
            lines[-1] if lines else f"pytest exited with {done.returncode}",
        )
        tail = "\n".join(lines[-OUTPUT_LINES:]) if done.returncode not in (0, 5) else ""
        return TestRun(done.returncode, summary, tail)

    def _run_pipeline(
        self, name: str, params: dict[str, Any], on_event: Callable[[StepEvent], None] | None
    ) -> tuple[Stage, PipelineResult | None]:
        try:
            ran = self.pipelines.run(name, params, on_event=on_event)
        except MloopError as exc:
            return Stage("pipeline", FAILED, exc.message), None
        states = [e.state for e in ran.steps.values()]
        counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        if ran.ok:
            return Stage("pipeline", PASSED, f"run {ran.run_id[:12]}: {counts}"), ran
        return Stage("pipeline", FAILED, f"run {ran.run_id[:12]}: {ran.error}"), ran

    def _check_gates(self, name: str, run_id: str | None) -> tuple[Stage, tuple[GateRecord, ...]]:
        unknown = sorted(set(self.gates) - set(self.pipelines.targets))
        if unknown:
            return Stage(
                "gates",
                FAILED,
                f"mloop.yaml has gates for {', '.join(unknown)}, which it names no pipeline "
                "for: fix the name under `gates:`",
            ), ()
        rules = self.gates.get(name, ())
        if not rules or run_id is None:
            return Stage("gates", SKIPPED, f"no gates for {name!r} in mloop.yaml"), ()
        run = self.pipelines.runner.runs.get(run_id)
        checked = evaluate(rules, {key: m.value for key, m in run.metrics.items()})
        failed = [r for r in checked if not r.passed]
        passed = f"{len(checked) - len(failed)} of {len(checked)} passed"
        details = f"{passed}: " + "; ".join(r.reason for r in (failed or checked))
        return Stage("gates", FAILED if failed else PASSED, details), checked


def _data_stage(checks: Sequence[DataCheck]) -> Stage:
    if not checks:
        return Stage("data", SKIPPED, "no datasets")
    state = FAILED if any(c.state == FAILED for c in checks) else PASSED
    return Stage("data", state, "; ".join(_describe(c) for c in checks))


def _describe(check: DataCheck) -> str:
    if check.state == "absent":
        return f"{check.dataset}: no working files, nothing to check"
    if check.state == FAILED:
        count = len(check.failures)
        checks = f"{count} check{'s' if count != 1 else ''}"
        return f"{check.dataset}: changed files failed {checks} against {check.reference}"
    if check.state == "validated":
        return f"{check.version}: validated against {check.reference}"
    if check.state == "versioned":
        return f"{check.version}: versioned (no table changed)"
    return f"{check.version} {check.state}"


def _failure(failure: CheckFailure) -> str:
    """`column: check: message (row 5: 500, …)`, with the first failing values."""
    rows = [
        f"row {r['row']}: {r['values'].get(failure.column)!r}"
        for r in failure.failing_rows[:FAILING_ROWS]
        if failure.column in r.get("values", {})
    ]
    shown = f" ({', '.join(rows)}{', …' if failure.failure_count > len(rows) else ''})"
    return f"{failure.column or '(table)'}: {failure.check}: {failure.message}" + (
        shown if rows else ""
    )


def _tests_stage(tests: TestRun | None, asked: bool) -> Stage:
    if tests is None:
        return Stage("tests", SKIPPED, "--skip-tests" if not asked else "no tests/ folder")
    if tests.code == 5:
        return Stage("tests", SKIPPED, "no tests collected")
    return Stage("tests", PASSED if tests.code == 0 else FAILED, tests.summary)


# the report ----------------------------------------------------------------------------------
def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_report(result: CIResult) -> str:
    """The Markdown report: a summary table, then each stage's detail, for a PR comment.

    Example:
        >>> text = render_report(CIResult("train", (Stage("data", "passed", "ok"),)))
        >>> text.splitlines()[0]
        '## mloop ci: passed ✅'
    """
    verdict = "passed ✅" if result.ok else "failed ❌"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    run = f", run `{result.run_id[:12]}`" if result.run_id else ""
    out = [f"## mloop ci: {verdict}", "", f"Pipeline `{result.pipeline}`{run}, {when}.", ""]
    out += ["| stage | result | details |", "|---|---|---|"]
    out += [
        f"| {s.name} | {ICONS[s.state]} {s.state} | {_cell(s.details)} |" for s in result.stages
    ]
    if result.datasets:
        out += ["", "### Data", "", "| dataset | result | version | validated against |"]
        out += ["|---|---|---|---|"]
        for c in result.datasets:
            version = f"`{c.version}`" if c.version else "not versioned"
            out.append(f"| {c.dataset} | {c.state} | {version} | {c.reference or '-'} |")
        for c in (c for c in result.datasets if c.failures):
            out += ["", f"The changed files of `{c.dataset}` failed these checks:", ""]
            out += [f"- {failure}" for failure in c.failures]
    if result.tests is not None:
        out += ["", "### Tests", "", f"`{result.tests.summary}`"]
        if result.tests.output:
            out += ["", "<details><summary>pytest output</summary>", "", "```"]
            out += [result.tests.output, "```", "", "</details>"]
    if result.steps:
        out += ["", f"### Pipeline `{result.pipeline}`", "", "| step | state | duration |"]
        out += ["|---|---|---|"]
        for e in result.steps:
            took = f"{e.seconds:.1f} s" if e.seconds is not None else "-"
            origin = f" (from run `{e.cached_from[:12]}`)" if e.cached_from else ""
            out.append(f"| {e.step} | {e.state}{origin} | {took} |")
        failed = [e for e in result.steps if e.state == "failed" and e.error]
        for e in failed:
            last = e.error.strip().splitlines()[-1] if e.error else ""
            out += ["", f"Step `{e.step}` failed: {_cell(last)}"]
    if result.gates:
        out += ["", "### Gates", "", "| gate | value | result |", "|---|---|---|"]
        for g in result.gates:
            value = "missing" if g.observed is None else value_text(g.observed, g.required or 0.0)
            verdict = f"{ICONS[PASSED]} {PASSED}" if g.passed else f"{ICONS[FAILED]} {FAILED}: "
            out.append(f"| `{g.gate}` | {value} | {verdict}{'' if g.passed else _cell(g.reason)} |")
    if result.run_id:
        out += ["", f"Run id: `{result.run_id}` (`mloop runs show {result.run_id[:12]}`)"]
    return "\n".join(out) + "\n"


def _write(path: Path, text: str) -> None:
    """Write atomically: a CI step reading the report never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
