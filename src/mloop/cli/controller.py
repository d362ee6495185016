"""`mloop controller`: the loop that retrains, gates and rolls out by itself when a trigger
fires; `mloop controller status`: its triggers, the iteration in progress and the story so far.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.args import add_timeout
from mloop.cli.main import Context
from mloop.domain.controller import Iteration, IterationState, Outcome

if TYPE_CHECKING:
    from mloop.services.automation.controller import Controller, ControllerStatus, Tick


def register(commands: Any) -> None:
    p = commands.add_parser(
        "controller",
        help="retrain, gate and roll out by itself when a trigger fires",
        description="Evaluate the triggers of mloop.yaml every --interval; when one fires (and "
        "its cooldown and max_per_day allow), take the new data as a dataset version (the "
        "landed files; the endpoint's labelled requests under `controller: {PIPELINE: "
        "{feedback: ...}}`), run the "
        "pipeline, check the challenger against the registry's gates and roll it out on the "
        "endpoint under `controller: {PIPELINE: {endpoint: ...}}` (canary by default); the "
        "endpoint's servers promote or roll back. Progress is kept in the store: killed and "
        "started again, it continues the same iteration. Of several controllers on one store, "
        "one acts (a lease). SIGTERM or Ctrl+C stops it between steps.",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one evaluation: take an open iteration on, or start one if a trigger fires, up "
        "to the rollout's start (a later run watches it), then exit",
    )
    p.add_argument("--interval", default="30s", help="time between evaluations (default 30s)")
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on --metrics-host:PORT/metrics (iterations by outcome, "
        "the lease, failing checks)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address the metrics listen on (default 127.0.0.1; 0.0.0.0 in a pod, for "
        "Prometheus and the kubelet's probe)",
    )
    p.add_argument(
        "--alerts-port",
        type=int,
        default=9095,
        help="with an alertmanager trigger: where Alertmanager's webhook posts, "
        "http://HOST:PORT/alerts (default 9095)",
    )
    p.add_argument(
        "--alerts-host",
        default="127.0.0.1",
        help="the address the alert receiver listens on (default 127.0.0.1)",
    )
    p.set_defaults(handler=run_controller)
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    status = sub.add_parser(
        "status",
        help="triggers, the iteration in progress and the latest ones",
        description="Each trigger with its last value, last fire and next check; the "
        "iteration in progress; the latest iterations with their outcome.",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--limit", type=int, default=10, help="iterations shown (default 10)")
    status.add_argument(
        "--wait",
        action="store_true",
        help="first wait for the iteration in progress, or the next one to start, to end; "
        "exits 0 when its challenger was promoted, 1 when it was rolled back, held by the "
        "gates or failed",
    )
    add_timeout(status, "--wait")
    status.set_defaults(handler=show_status)


def run_controller(ctx: Context) -> int:
    from mloop.domain.durations import parse_duration

    interval = parse_duration(ctx.args.interval, "--interval")
    controller = ctx.project.controller()
    if not controller.triggers.triggers:
        from mloop.errors import ConfigError

        raise ConfigError(
            "no triggers in mloop.yaml: the controller would never start anything",
            "declare them per pipeline, e.g. triggers: {train: [{schedule: '0 3 * * *'}]}",
        )

    def stop(signum: int, frame: Any) -> None:
        output.warn("stopping after the current step")
        controller.stop.set()

    if ctx.args.metrics_port is not None:
        _serve_metrics(controller, ctx.args.metrics_host, ctx.args.metrics_port)
    if not ctx.quiet:
        controller.on_step = _print_step
    receiver = None if ctx.args.once else _receive_alerts(ctx, controller)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return _loop(ctx, controller, interval)
    finally:
        if receiver is not None:
            receiver.stop()


def _receive_alerts(ctx: Context, controller: Controller) -> Any:
    """Alertmanager posts its alerts: with an alertmanager trigger declared, a long-lived
    controller listens for them (`--once` does not; its checks read what a running receiver
    recorded)."""
    from mloop.domain.trigger import TriggerKind

    declared = controller.triggers.triggers.values()
    if not any(t.kind is TriggerKind.ALERTMANAGER for items in declared for t in items):
        return None
    from mloop.server.alerts import start

    running = start(ctx.project, ctx.args.alerts_host, ctx.args.alerts_port)
    if not ctx.quiet:
        output.line(f"receiving Alertmanager's webhook at {running.url}")
    return running


def _loop(ctx: Context, controller: Controller, interval: float) -> int:
    if ctx.args.once:
        try:
            result = controller.tick(interval)
        finally:
            controller.release()
        _said(result, ctx.quiet)
        return 0
    if not ctx.quiet:
        output.line(
            f"controller {controller.holder}: checking triggers every {ctx.args.interval}; "
            "SIGTERM stops it"
        )
        sys.stdout.flush()
    controller.run(interval, on_tick=lambda t: _said(t, ctx.quiet))
    if not ctx.quiet:
        output.line("controller stopped")
    return 0


def _serve_metrics(controller: Controller, host: str, port: int) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    from mloop.services.automation.metrics import ControllerCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerCollector(controller))
    start_http_server(port, addr=host, registry=registry)  # a daemon thread


def _said(tick: Tick, quiet: bool) -> None:
    if quiet:
        return
    if tick.error is not None:
        from mloop.domain.durations import format_duration

        again = "at the next" if tick.retry_in is None else f"in {format_duration(tick.retry_in)}"
        output.warn(f"this evaluation stopped: {tick.error} (tried again {again})")
    elif not tick.leader:
        holder = tick.holder or "nobody (the store did not answer)"
        output.line(f"standing by: the lease is held by {holder}")
    sys.stdout.flush()


def _print_step(it: Iteration) -> None:
    """Each step as the controller takes it (the tick's own lines come at its end)."""
    if it.state is IterationState.TRIGGERED:
        output.line(f"{it.pipeline} iteration {it.id[:8]}: {it.state} by {it.trigger}: {it.reason}")
    else:
        output.line(_step(it))
    sys.stdout.flush()


# What each step means, in the words a reader looks for (`mloop controller` prints one line per
# step as it is taken: trigger, retrain, promote, rollback).
_SAID = {
    IterationState.SNAPSHOTTED: "the landed rows are a dataset version",
    IterationState.TRAINING: "retraining",
    IterationState.REGISTERED: "retrained, the challenger is registered",
    IterationState.GATED: "the challenger passed the registry's gates",
    IterationState.DEPLOYING: "deploying the challenger",
    IterationState.ROLLING_OUT: "rolling out; the endpoint's analysis decides",
}
_ENDED = {
    Outcome.PROMOTED: "the rollout promoted the challenger: it is the champion",
    Outcome.PASSED: "no endpoint to roll out on: the challenger is promoted to the alias",
    Outcome.ROLLED_BACK: "rollback: the endpoint went back to the champion",
    Outcome.HELD: "held by the gates: not deployed",
    Outcome.NO_CHALLENGER: "nothing new was registered",
    Outcome.FAILED: "failed; the champion serves on",
}
_GOOD = (Outcome.PROMOTED, Outcome.PASSED)


def _step(it: Iteration) -> str:
    what = f"{it.pipeline} iteration {it.id[:8]}: {it.state}"
    if it.outcome is not None:
        what += f", {it.outcome}: {_ENDED[it.outcome]}"
    elif it.state in _SAID:
        what += f": {_SAID[it.state]}"
    extra = [
        f"{name} {value}"
        for name, value in (
            ("dataset", _data(it)),
            ("run", None if it.run_id is None else it.run_id[:12]),
            ("model", it.model),
            ("endpoint", it.endpoint),
            ("deployment", it.deployment),
        )
        if value is not None
    ]
    if extra:
        what += f" ({', '.join(extra)})"
    if it.error:
        what += f": {it.error}"
    return what


def _recent(i: Iteration) -> list[str]:
    shown = [i.id[:8], i.pipeline, i.trigger, i.state, i.outcome or "-", _data(i) or "-"]
    return [*shown, i.model or "-", i.error or i.reason]


def _data(it: Iteration) -> str | None:
    """The version the iteration made, and the labelled rows it added: `sales:3 (+5 rows
    from endpoint web)`."""
    taken = it.numbers.get("feedback")
    if not isinstance(taken, dict):
        return it.dataset
    added = f"+{taken.get('rows', 0)} rows"
    if taken.get("corrected"):
        added += f", {taken['corrected']} corrected"
    added += f" from endpoint {taken.get('endpoint')}"
    return f"{it.dataset or taken.get('dataset')} ({added})"


def show_status(ctx: Context) -> int:
    controller = ctx.project.controller()
    ended = _wait(controller, ctx.args.timeout) if ctx.args.wait else None
    found = controller.status(limit=ctx.args.limit)
    if ctx.json:
        from mloop.domain.records import to_plain

        plain = to_plain(found)
        plain["failed"] = found.failed
        output.emit_json(plain)
    else:
        _print_status(found)
    if ctx.args.wait:
        return 0 if ended is not None and ended.outcome in _GOOD else 1
    return 0


def _wait(controller: Controller, timeout: float) -> Iteration | None:
    """The iteration in progress, or the next to start, once it ended (None: `timeout` seconds
    passed first). One that ended since the wait began counts, so a wait typed just after new
    data landed cannot miss an iteration that was quick."""
    began = time.time()
    deadline = time.monotonic() + timeout
    output.line(
        f"waiting for the iteration in progress, or the next one, to end (at most {timeout:g} s)"
    )
    sys.stdout.flush()
    while True:
        found = controller.status(limit=5)
        ended = [i for i in found.recent if not i.state.open and i.updated >= began]
        if ended and not found.current:
            return ended[0]
        if time.monotonic() > deadline:
            output.warn(
                f"no iteration ended within {timeout:g} s; see `mloop controller status` and "
                "whether a controller runs (`lease:`)"
            )
            return None
        time.sleep(1.0)


def _print_status(found: ControllerStatus) -> None:
    output.line(f"lease: {found.holder or 'free (no controller running)'}")
    if not found.triggers:
        output.line("no triggers: declare them per pipeline under `triggers:` in mloop.yaml")
    rows = []
    for t in found.triggers:
        value = t.error or str(t.value.get("reason") or "-")
        if t.value.get("held"):
            value += f" (held: {t.value['held']})"
        rows.append(
            [t.trigger, value, output.when(t.checked), output.when(t.fired), _next(t.next_check)]
        )
    if rows:
        output.table(["trigger", "last value", "checked", "last fired", "next check"], rows)
    for it in found.current:
        output.line(f"in progress: {_step(it)}")
    if found.recent:
        columns = ["iteration", "pipeline", "trigger", "state", "outcome", "data", "model"]
        columns.append("reason")
        output.table(columns, [_recent(i) for i in found.recent], title="latest iterations")
    failed = found.failed
    if failed:
        output.line(f"{failed} iterations failed so far (`mloop events` says why)")


def _next(at: float | None) -> str:
    if at is None:
        return "-"
    if at <= time.time():
        return "at the next tick"
    return output.when(at)
