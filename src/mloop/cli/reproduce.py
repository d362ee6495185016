"""`mloop reproduce NAME:V`: re-run the pipeline that made a model version and compare.

The pipeline runs in a separate `mloop` process rooted in a git worktree of the recorded commit
(`--rerun-request`, an internal option, is that process's side): the recorded code's modules
never meet anything this process imported, and the process records its own code and
environment as any run does.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.args import number
from mloop.cli.main import Context
from mloop.errors import InvalidInput

if TYPE_CHECKING:
    from mloop.services.registry.reproduce import Reproduction, RerunOutcome, RerunRequest


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
        functools.partial(_rerun_elsewhere, quiet=ctx.quiet),
        allow_dirty=args.allow_dirty,
        tolerance=args.tolerance,
        keep_worktree=args.keep_worktree,
        register=args.register,
    )
    if ctx.json:
        output.emit_json(result)
    else:
        _report(result)
    return 0 if result.ok else 1


def _rerun_elsewhere(
    request: RerunRequest, root: Path, env: Mapping[str, str], *, quiet: bool = False
) -> RerunOutcome:
    """Run `mloop reproduce --rerun-request -` in the worktree: its stdout is one JSON object;
    its stderr (a line per step as it ends, or an error) is passed on as it comes."""
    from mloop.services.registry.reproduce import RerunOutcome

    command = [sys.executable, "-m", "mloop", "-C", str(root), "reproduce", "--rerun-request", "-"]
    if not quiet:
        sys.stderr.write(f"re-running pipeline {request.pipeline} in a checkout of its commit\n")
    with subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    ) as child:
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None
        child.stdin.write(request.to_json())
        child.stdin.close()
        said = []
        for line in child.stderr:  # the JSON on stdout is small: it cannot fill its pipe first
            said.append(line)
            if not quiet:
                sys.stderr.write(line)
        printed = child.stdout.read()
    try:
        found = json.loads(printed)
    except ValueError:
        error = "".join(said).strip() or f"the re-run exited with code {child.returncode}"
        return RerunOutcome(None, "failed", error)
    steps = tuple((str(step), str(state)) for step, state in found["steps"])
    return RerunOutcome(found["run"], found["status"], found["error"], steps)


def _rerun_here(ctx: Context) -> int:
    """The worktree's side: run the recorded pipeline, pinned, with every step recomputed."""
    from mloop.services.registry.reproduce import RerunRequest, pin_datasets

    source = ctx.args.rerun_request
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    request = RerunRequest.from_json(text)
    pipelines = ctx.project.pipelines
    pipelines.targets[request.pipeline] = request.target  # the recorded target, not today's
    params = decode_params(request.params, pipelines.load(request.pipeline).defaults)
    graph = pin_datasets(pipelines.graph(request.pipeline, params), request)
    result = pipelines.run_graph(graph, use_cache=False, on_event=_step_line, tags=request.tags)
    output.emit_json(
        {
            "run": result.run_id,
            "status": result.status.value,
            "error": result.error,
            "steps": [[event.step, event.state] for event in result.steps.values()],
        }
    )
    return 0 if result.ok else 1


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


def decode_params(recorded: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded params back as values, read as `-p` reads them (JSON where it parses, else
    text), except that a param whose default is text stays text.

    Example:
        >>> decode_params({"C": "0.5", "tag": "1"}, {"tag": "a"})
        {'C': 0.5, 'tag': '1'}
    """
    params: dict[str, Any] = {}
    for key, text in recorded.items():
        try:
            params[key] = text if isinstance(defaults.get(key), str) else json.loads(text)
        except ValueError:
            params[key] = text
    return params


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
