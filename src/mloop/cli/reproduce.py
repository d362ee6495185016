"""`mloop reproduce NAME:V`: re-run the pipeline that made a model version and compare.

The pipeline runs in a separate `mloop` process rooted in a git worktree of the recorded commit
(`--rerun-request`, an internal option, is that process's side; `services/registry/rerun.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.args import number
from mloop.cli.main import Context
from mloop.errors import InvalidInput

if TYPE_CHECKING:
    from mloop.services.registry.reproduce import Reproduction


def register(commands: Any) -> None:
    p = commands.add_parser(
        "reproduce",
        help="re-run the pipeline that made a model version; compare metrics and digest",
        description="Re-run the pipeline that made NAME:V from its recorded commit (a git "
        "worktree), dataset versions and params, with every step recomputed; report whether "
        "the metrics and the model digest match, and how the environment differs. Nothing is "
        "registered: the model the re-run makes is compared, not kept as a version "
        "(--register keeps it).",
    )
    p.add_argument("ref", nargs="?", metavar="NAME:V", help="the model version")
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="re-run the commit alone when the version was made with uncommitted changes",
    )
    p.add_argument(
        "--tolerance",
        type=number(0),
        default=1e-6,
        metavar="X",
        help="relative and absolute tolerance for metrics (default: 1e-6)",
    )
    p.add_argument("--keep-worktree", action="store_true", help="leave the checkout for a look")
    p.add_argument(
        "--register",
        action="store_true",
        help="let the re-run register its model as a new version, as the pipeline does",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--rerun-request", metavar="FILE", help=argparse.SUPPRESS)
    p.set_defaults(handler=reproduce)


def reproduce(ctx: Context) -> int:
    args = ctx.args
    if args.rerun_request:
        return _rerun_here(ctx)
    if not args.ref:
        raise InvalidInput("which model version?", "mloop reproduce NAME:V, e.g. churn:3")
    result = ctx.project.reproducer.reproduce(
        args.ref,
        allow_dirty=args.allow_dirty,
        tolerance=args.tolerance,
        keep_worktree=args.keep_worktree,
        register=args.register,
        on_output=None if ctx.quiet else sys.stderr.write,
    )
    if ctx.json:
        output.emit_json(result)
    else:
        _report(result)
    return 0 if result.ok else 1


def _rerun_here(ctx: Context) -> int:
    """The worktree's side: run the recorded pipeline, pinned, with every step recomputed; the
    outcome goes to stdout as JSON for the process that asked."""
    from mloop.project import init_project
    from mloop.services.registry.rerun import RerunRequest

    source = ctx.args.rerun_request
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    init_project(Path.cwd())  # the checkout's state folder, which ignores itself in git
    outcome = ctx.project.reproducer.rerun(RerunRequest.from_json(text), on_event=_step_line)
    output.line(outcome.to_json())
    return 0 if outcome.ok else 1


def _digest(r: Reproduction) -> str:
    if r.reproduced_digest is None:
        return f"{r.digest[:12]}, NOT compared: the re-run produced no model"
    made = f" ({r.reproduced_version})" if r.reproduced_version else ""
    verdict = "match" if r.digest_match else "DIFFERS"
    return f"{verdict} {r.digest[:12]} vs {r.reproduced_digest[:12]}{made}"


def _step_line(event: Any) -> None:
    if event.state != "running":
        seconds = f" {output.duration(event.seconds)}" if event.seconds is not None else ""
        sys.stderr.write(f"  {event.step:<16} {event.state}{seconds}\n")
        sys.stderr.flush()


def _report(r: Reproduction) -> None:
    verdict = "reproduced" if r.ok else "NOT reproduced"
    output.line(f"{r.ref}: {verdict}")
    output.fields(
        [
            ("pipeline", f"{r.pipeline} at commit {r.commit[:12]}"),
            ("params", ", ".join(f"{k}={v}" for k, v in sorted(r.params.items())) or "-"),
            ("datasets", ", ".join(map(str, r.datasets)) or "-"),
            (
                "re-run",
                f"{(r.run_id or '-')[:12]} {r.status}" + (f": {r.error}" if r.error else ""),
            ),
            ("steps", _steps(r.steps)),
            ("digest", _digest(r)),
            ("python", r.python[0] if r.python[0] == r.python[1] else " -> ".join(r.python)),
        ]
    )
    if r.metrics:
        output.table(
            ["METRIC", "RECORDED", "REPRODUCED", "DIFFERENCE", "MATCH"],
            [
                [
                    m.name,
                    output.number(m.recorded),
                    output.number(m.reproduced),
                    output.number(m.difference),
                    "exact" if m.exact else (f"within {r.tolerance:g}" if m.close else "NO"),
                ]
                for m in r.metrics
            ],
            title="metrics",
        )
    for warning in r.warnings:
        output.line(f"warning: {warning}")
    if r.worktree:
        output.line(f"worktree kept at {r.worktree} (remove: git worktree remove {r.worktree})")


def _steps(steps: tuple[tuple[str, str], ...]) -> str:
    if steps and all(state == "finished" for _, state in steps):
        return f"all {len(steps)} recomputed"
    return ", ".join(f"{step} {state}" for step, state in steps) or "-"
