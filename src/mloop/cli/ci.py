"""`mloop ci`: what a CI system runs; exits 1 unless data, tests, pipeline and gates all pass."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mloop.cli import output
from mloop.cli.main import Context


def register(commands: Any) -> None:
    p = commands.add_parser(
        "ci",
        help="what CI runs: check new data, test, run the pipeline, check its gates",
        description="Validate changed data (and version it if it holds), run the tests "
        "(pytest, in tests/), run the pipeline and check its gates from mloop.yaml; write a "
        "Markdown report for the pull request. Exits 1 if any stage fails; the stages after "
        "it are not run.",
    )
    p.add_argument("--pipeline", metavar="NAME", help="default: the only pipeline")
    p.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a pipeline param"
    )
    p.add_argument(
        "--report",
        metavar="PATH",
        type=Path,
        help="where to write the Markdown report (default: .mloop/ci-report.md)",
    )
    p.add_argument("--skip-tests", action="store_true", help="do not run the project's tests")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run_ci)


def _print_stage(stage: Any) -> None:
    output.line(f"  {stage.name:<9} {stage.state:<8} {stage.details}")
    sys.stdout.flush()


def _print_step(event: Any) -> None:
    if event.state == "running":
        return
    took = f" {output.duration(event.seconds)}" if event.seconds is not None else ""
    output.line(f"    {event.step:<14} {event.state}{took}")


def run_ci(ctx: Context) -> int:
    from mloop.cli.pipelines import parse_params

    args = ctx.args
    params = parse_params(args.param)
    ci = ctx.project.ci
    if not ctx.json:
        output.line(f"mloop ci: pipeline {ci.pipelines.resolve_name(args.pipeline)}")
    result = ci.run(
        args.pipeline,
        params,
        run_tests=not args.skip_tests,
        report=args.report,
        on_stage=None if ctx.json else _print_stage,
        on_event=None if ctx.json else _print_step,
    )
    if ctx.json:
        output.emit_json({"ok": result.ok, **_plain(result)})
    else:
        shown = _shown(Path(result.report))
        output.line(f"ci {'passed' if result.ok else 'failed'}; report: {shown}")
    return 0 if result.ok else 1


def _plain(result: Any) -> dict[str, Any]:
    from mloop.domain.gate import parse_gate
    from mloop.domain.records import to_plain

    plain: dict[str, Any] = to_plain(result)
    # `ci --json` showed each gate as its parts and the value seen as `value` before its
    # gates became the registry's GateRecord: both stay, beside `observed` and `required`.
    plain["gates"] = [
        {**g, "gate": to_plain(parse_gate(g["gate"])), "value": g["observed"]}
        for g in plain["gates"]
    ]
    return plain


def _shown(path: Path) -> str:
    """The report's path as the user would type it from here."""
    here = Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)
