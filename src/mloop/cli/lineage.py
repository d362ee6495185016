"""`mloop lineage REF` and `mloop events [REF]`: where things came from, and what happened to them.

`mloop lineage dataset/sales:2 --downstream` answers "which runs used sales version 2", and
`mloop lineage run/ID --upstream` "which data, code, environment and parent run made this run".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.args import MAX_LIMIT, integer
from mloop.cli.main import Context

if TYPE_CHECKING:
    from mloop.domain.lineage import LineageNode

DEFAULT_DEPTH = 5
DEFAULT_EVENTS = 50


def register(commands: Any) -> None:
    p = commands.add_parser(
        "lineage",
        help="what made a run, dataset or model version or artifact, and what was made from it",
        description="Trace lineage through runs, dataset and model versions and artifacts. REF "
        "is run/ID (or a bare run id prefix), dataset/NAME:V (dataset/NAME is the latest), "
        "model/NAME:V or model/NAME@ALIAS, or artifact/DIGEST (or a bare digest; 6 or more "
        "hex digits). "
        "Which runs used dataset sales version 2: mloop lineage dataset/sales:2 --downstream",
    )
    p.add_argument(
        "ref", metavar="REF", help="run/ID, dataset/NAME:V, model/NAME:V or artifact/DIGEST"
    )
    side = p.add_mutually_exclusive_group()
    side.add_argument(
        "--upstream",
        dest="direction",
        action="store_const",
        const="upstream",
        help="only what REF came from (inputs, code, environment, creating and parent runs)",
    )
    side.add_argument(
        "--downstream",
        dest="direction",
        action="store_const",
        const="downstream",
        help="only what came from REF (runs that used it, outputs, datasets created)",
    )
    p.set_defaults(direction="both")
    p.add_argument(
        "--depth",
        type=integer(1),
        default=DEFAULT_DEPTH,
        metavar="N",
        help=f"follow at most N steps from REF (default {DEFAULT_DEPTH})",
    )
    p.add_argument("--json", action="store_true", help="print the trees as JSON")
    p.set_defaults(handler=show_lineage)

    ev = commands.add_parser(
        "events", help="the audit log, newest first: who changed what, when and why"
    )
    ev.add_argument(
        "ref",
        nargs="?",
        metavar="REF",
        help="only events about REF: run/ID, dataset/NAME (every version), dataset/NAME:V, "
        "model/NAME, endpoint/NAME, or pipeline/NAME (the controller's decisions)",
    )
    ev.add_argument(
        "--limit",
        type=integer(1, MAX_LIMIT),
        default=DEFAULT_EVENTS,
        metavar="N",
        help=f"at most N events (default {DEFAULT_EVENTS})",
    )
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.set_defaults(handler=list_events)


def describe(node: LineageNode) -> str:
    """One node as a line: short ids for runs, artifacts and environments, full addresses for
    datasets; the code's label says its commit."""
    kind, _, key = node.ref.partition("/")
    if kind == "code":
        shown = "code"
    elif kind in ("run", "artifact", "environment"):
        shown = f"{kind} {key[:12]}"
    else:
        shown = node.ref
    text = f"{node.relation} {shown}" if node.relation else shown
    return f"{text}  {node.label}" if node.label else text


def tree_lines(children: tuple[LineageNode, ...], prefix: str = "") -> list[str]:
    """Children drawn below their parent with box-drawing characters, depth first."""
    lines: list[str] = []
    for i, child in enumerate(children):
        last = i == len(children) - 1
        lines.append(f"{prefix}{'└── ' if last else '├── '}{describe(child)}")
        lines.extend(tree_lines(child.children, prefix + ("    " if last else "│   ")))
    return lines


def show_lineage(ctx: Context) -> None:
    args = ctx.args
    trace = ctx.project.lineage.trace(args.ref, args.direction, args.depth)
    if ctx.json:
        output.emit_json(trace)
        return
    output.line(describe(trace.root))
    sides = (("upstream", trace.upstream), ("downstream", trace.downstream))
    shown = [(name, tree) for name, tree in sides if tree is not None]
    if len(shown) == 1:
        name, tree = shown[0]
        for text in tree_lines(tree or ()) or [f"(nothing {name})"]:
            output.line(text)
    else:
        for i, (name, tree) in enumerate(shown):
            last = i == len(shown) - 1
            branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
            output.line(f"{branch}{name}" + ("" if tree else ": nothing"))
            for text in tree_lines(tree or (), indent):
                output.line(text)
    if trace.truncated:
        output.line(f"(stopped at depth {trace.depth}; pass --depth N to follow further)")


def _short_ref(ref: str) -> str:
    kind, _, key = ref.partition("/")
    return f"run/{key[:12]}" if kind == "run" else ref


def list_events(ctx: Context) -> None:
    args = ctx.args
    if args.limit < 1:
        from mloop.errors import InvalidInput

        raise InvalidInput(f"--limit must be at least 1, not {args.limit}")
    found = ctx.project.lineage.events(args.ref, args.limit + 1)
    more = len(found) > args.limit
    found = found[: args.limit]
    if ctx.json:
        output.emit_json(found)
        return
    if not found:
        output.line(f"no events about {args.ref}" if args.ref else "no events yet")
        return
    output.table(
        ["TIME", "ACTOR", "ACTION", "REF", "REASON"],
        [[output.when(e.at), e.actor, e.action, _short_ref(e.ref), e.reason or ""] for e in found],
    )
    if more:
        output.line(f"(older events exist; raise --limit above {args.limit} to see them)")
