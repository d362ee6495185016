"""`mloop run` and `mloop pipelines list|show`: run a pipeline, and look at its DAG."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from mloop.cli import output
from mloop.cli.args import integer
from mloop.cli.main import Context
from mloop.domain.records import to_plain
from mloop.errors import InvalidInput


def register(commands: Any) -> None:
    run = commands.add_parser("run", help="run a pipeline; unchanged steps are reused")
    run.add_argument("name", nargs="?", metavar="NAME", help="default: the only pipeline")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--executor", choices=("local", "process", "ray"), help="where steps run")
    run.add_argument("--resume", metavar="RUN", help="rerun only failed and later steps of RUN")
    run.add_argument("--no-cache", action="store_true", help="run every step again")
    _add_working_data_flag(run)
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(handler=run_pipeline)

    sweep = commands.add_parser("sweep", help="run a pipeline over many params and rank them")
    sweep.add_argument("name", nargs="?", metavar="NAME", help="default: the only pipeline")
    sweep.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=A,B|LO:HI[:STEP]",
        help="values to try: a list (lr=0.01,0.1) or a range (depth=3:8)",
    )
    sweep.add_argument(
        "--random", type=integer(1, 100_000), metavar="N", help="N random combinations"
    )
    sweep.add_argument("--seed", type=integer(0), help="seed for --random")
    sweep.add_argument("--executor", choices=("local", "process", "ray"))
    sweep.add_argument("--parallel", type=integer(1, 1024), metavar="K", help="trials at once")
    sweep.add_argument("--no-cache", action="store_true", help="run every step again")
    _add_working_data_flag(sweep)
    sweep.add_argument("--json", action="store_true", help="print the ranking as JSON")
    sweep.set_defaults(handler=run_sweep)

    p = commands.add_parser("pipelines", help="list the project's pipelines and show their DAG")
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog)
    ls = sub.add_parser("list", help="the pipelines named in mloop.yaml")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=list_pipelines)
    show = sub.add_parser("show", help="a pipeline's steps in run order, with their inputs")
    show.add_argument("name", nargs="?", metavar="NAME")
    show.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_pipeline)


def _add_working_data_flag(parser: Any) -> None:
    parser.add_argument(
        "--no-version-data",
        action="store_true",
        help="use the datasets' latest versions as they are (by default, changed working "
        "files of the datasets the pipeline reads become a new version first); what differs "
        "is still reported",
    )


def _working_data(args: Any) -> Any:
    from mloop.services.pipelines.working import WorkingData

    return WorkingData.LATEST if args.no_version_data else WorkingData.VERSION


def _data_printer(json_out: bool) -> Any:
    """How a command tells about working data that differed: a line per dataset; with --json
    the answer carries them, and only the warnings (on stderr) are printed as well."""
    return lambda change: _print_change(change, stdout=not json_out)


def _print_change(change: Any, stdout: bool = True) -> None:
    ref = f"{change.dataset}:{change.latest}"
    if change.action == "versioned":
        if stdout:
            output.line(
                f"{change.dataset}: working files changed → {change.dataset}:{change.version} "
                "(versioned by this run)"
            )
    elif change.action == "kept":
        output.warn(
            f"{change.dataset}: working files differ from {ref} ({change.files}); "
            f"using {ref} as it is (--no-version-data)"
        )
    else:
        record = ""
        if change.unchanged or change.modified or change.added:  # some files are left
            record = f", or record the deletion: mloop data add {change.dataset} " + " ".join(
                change.sources
            )
        output.warn(
            f"{change.dataset}: working files differ from {ref} ({change.files}); using {ref}, "
            f"since a run never versions a deletion (restore them: mloop data checkout {ref}"
            f"{record})"
        )
    sys.stdout.flush()


def parse_params(items: list[str]) -> dict[str, Any]:
    """`-p key=value`: values are read as JSON when they parse (numbers, true, lists), else
    as text, so `-p lr=0.1` is a number and `-p model=rf` a string."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"invalid param {item!r}", "write -p NAME=VALUE, e.g. -p depth=5")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


STATE_WIDTH = 9


def _print_event(event: Any) -> None:
    if event.state == "running" and not output.is_terminal():
        return  # in logs and pipes, one line per step: how it ended
    line = f"  {event.step:<16} {event.state:<{STATE_WIDTH}}"
    if event.state == "cached" and event.cached_from:
        line += f" from run {event.cached_from[:12]}"
    elif event.seconds is not None:
        line += f" {output.duration(event.seconds)}"
        if event.attempts > 1:
            line += f" after {event.attempts} attempts"
    if event.state == "failed" and event.error:
        line += "  " + event.error.strip().splitlines()[-1]
    output.line(line)
    sys.stdout.flush()


def run_pipeline(ctx: Context) -> int:
    args = ctx.args
    pipelines = ctx.project.pipelines
    name = pipelines.resolve_name(args.name)
    started: list[bool] = []

    def show(event: Any) -> None:
        if not started:  # the heading waits for the first step: a build error prints alone
            output.line(f"pipeline {name}")
            started.append(True)
        _print_event(event)

    result = pipelines.run(
        name,
        parse_params(args.param),
        executor=args.executor,
        use_cache=not args.no_cache,
        resume=args.resume,
        on_event=None if ctx.json else show,
        working_data=_working_data(args),
        on_data=_data_printer(ctx.json),
    )
    if ctx.json:
        output.emit_json(
            {
                "run": result.run_id,
                "status": result.status.value,
                "error": result.error,
                "data": result.data,
                "steps": list(result.steps.values()),
            }
        )
    elif result.ok:
        output.line(f"run {result.run_id[:12]} finished")
    else:
        reason = result.error.splitlines()[0] if result.error else ""
        output.line(f"run {result.run_id[:12]} failed: {reason}")
        output.line(f"(fix it, then: mloop run {name} --resume {result.run_id[:12]})")
    return 0 if result.ok else 1


def run_sweep(ctx: Context) -> int:
    from mloop.services.pipelines.sweep import Sweeper, combinations, parse_axis

    args = ctx.args
    axes = [parse_axis(spec) for spec in args.param]
    if not axes:
        raise InvalidInput("nothing to sweep", "give -p NAME=A,B or -p NAME=LO:HI")
    trials = combinations(axes, {}, args.random, args.seed)
    pipelines = ctx.project.pipelines
    name = pipelines.resolve_name(args.name)
    if not ctx.json:
        output.line(f"sweep {name}: {len(trials)} trials")
    live = not (ctx.json or ctx.quiet) and output.is_terminal()
    lock = threading.Lock()
    ended: list[int] = []
    with output.progress(f"sweep {name}", len(trials), ctx.quiet or ctx.json) as advance:

        def heard(index: int, trial: Any) -> None:
            with lock:  # trials end in their own threads
                ended.append(index)
                if live:
                    output.line(_trial_line(len(ended), len(trials), trial))
                advance(1)

        result = Sweeper(pipelines).run(
            name,
            trials,
            executor=args.executor,
            use_cache=not args.no_cache,
            parallel=args.parallel,
            on_trial=heard,
            working_data=_working_data(args),
            on_data=_data_printer(ctx.json),
        )
    label = result.metric or "metric"
    if ctx.json:
        output.emit_json(
            {
                "sweep": result.run_id,
                "metric": result.metric,
                "data": result.data,
                "trials": [
                    {
                        "rank": rank,
                        "run": t.result.run_id,
                        "status": t.result.status.value,
                        "params": t.params,
                        label: t.score,
                    }
                    for rank, t in enumerate(result.trials, start=1)
                ],
            }
        )
    else:
        keys = sorted({k for t in result.trials for k in t.params})
        output.table(
            ["RANK", "RUN", "STATUS", *keys, label.upper() if not result.metric else label],
            [
                [
                    rank,
                    t.result.run_id[:12],
                    t.result.status.value,
                    *(t.params.get(k) for k in keys),
                    output.number(t.score),
                ]
                for rank, t in enumerate(result.trials, start=1)
            ],
        )
        best = " ".join(t.result.run_id[:8] for t in result.trials[:3])
        output.line(f"sweep run {result.run_id[:12]}; compare: mloop runs compare {best}")
    return 0 if any(t.result.ok for t in result.trials) else 1


def _trial_line(done: int, total: int, trial: Any) -> str:
    params = " ".join(f"{k}={v}" for k, v in sorted(trial.params.items()))
    line = f"  trial {done}/{total}  {params}  {trial.result.status.value}"
    if trial.score is not None:
        line += f"  score {output.number(trial.score)}"
    return line + f"  run {trial.result.run_id[:12]}"


def list_pipelines(ctx: Context) -> None:
    pipelines = ctx.project.pipelines
    rows = [{"name": n, "target": pipelines.targets[n]} for n in pipelines.find()]
    if ctx.json:
        output.emit_json(rows)
        return
    if not rows:
        output.line("no pipelines yet; add them to mloop.yaml under `pipelines:`")
        return
    output.table(["NAME", "FUNCTION"], [[r["name"], r["target"]] for r in rows])


def show_pipeline(ctx: Context) -> None:
    from mloop.domain.pipeline import order

    graph = ctx.project.pipelines.graph(ctx.args.name, parse_params(ctx.args.param))
    steps = order(graph.steps)
    if ctx.json:
        output.emit_json({**to_plain(graph), "order": [s.name for s in steps]})
        return
    output.line(f"pipeline {graph.name}  ({graph.target})")
    if graph.params:
        output.line("params: " + ", ".join(f"{k}={v!r}" for k, v in graph.params.items()))
    for node in steps:
        inputs = ", ".join(f"{arg}={source.describe()}" for arg, source in node.inputs)
        after = ", ".join(sorted(node.upstream)) or "-"
        output.line(f"  {node.name:<16} after: {after:<24} inputs: {inputs or '-'}")
