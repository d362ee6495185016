"""`mloop deploy` and `mloop endpoints …`: serve model versions behind a stable name, with a
rollout strategy, and watch, promote or roll back what is deployed.

The options are those of Flagger and Argo Rollouts: `--steps 10,25,50,100 --interval 60s
--threshold 5 --max-p99 500ms` for a canary, `--keep 10m` for blue/green, `--weights 50,50
--sticky header:x-user-id` for an A/B test, `--fraction 0.2` for a shadow. Each is checked
by the domain's one rule (`domain/deploy_request.py`), so a wrong one is named with its fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mloop.cli import output
from mloop.cli.args import add_timeout
from mloop.cli.main import Context
from mloop.domain.endpoint import EndpointState, Role
from mloop.domain.records import to_plain

if TYPE_CHECKING:
    from mloop.domain.endpoint import Deployment
    from mloop.domain.sequential import ABDecision
    from mloop.services.serving.endpoints import EndpointStatus

STRATEGIES = "direct|blue_green|canary|ab|shadow"
# option -> its help; every one is passed on as text and checked in one place
OPTIONS = {
    "steps": "canary: traffic weights to climb, e.g. 10,25,50,100",
    "interval": "canary: time between analyses, e.g. 60s",
    "threshold": "canary: failed analyses in a row that roll back (default 5)",
    "min-requests": "canary: requests an interval needs to count (default 100)",
    "min-success-rate": "canary: percent of non-5xx answers required (default 99)",
    "max-p99": "canary: p99 latency bound, e.g. 500ms, or 2x the stable version's",
    "deadline": "canary: roll back if not promoted by then, e.g. 1h",
    "accuracy-margin": "canary: how far below stable's accuracy (from feedback) is allowed",
    "min-labels": "canary: labelled predictions needed to judge accuracy",
    "keep": "blue_green: how long blue stays loaded after the switch, e.g. 10m",
    "weights": "ab: one weight per model, summing to 100, e.g. 50,50",
    "sticky": "ab: header:NAME or field:NAME, so a user always gets the same variant",
    "alpha": "ab: the test's error rate (default 0.05)",
    "outcome": "ab: rate (0/1 per answer, e.g. a conversion; default) or mean (a number)",
    "fraction": "shadow: share of requests copied to the shadow, e.g. 0.2",
}


def register(commands: Any) -> None:
    dep = commands.add_parser(
        "deploy",
        help="serve model versions on an endpoint: direct, blue_green, canary, ab or shadow",
        description="Deploy MODEL@ALIAS or MODEL:V on ENDPOINT (created on first use). Servers "
        "started with `mloop serve --endpoint ENDPOINT` follow the change within a second.",
    )
    dep.add_argument("endpoint", metavar="ENDPOINT")
    dep.add_argument("models", nargs="+", metavar="MODEL:V|MODEL@ALIAS")
    dep.add_argument("--strategy", default="direct", metavar=STRATEGIES, help="default: direct")
    for name, helptext in OPTIONS.items():
        dep.add_argument(f"--{name}", dest=f"opt_{name.replace('-', '_')}", help=helptext)
    dep.add_argument("--force", action="store_true", help="abort a rollout in progress first")
    dep.add_argument("--reason", help="why (recorded with the change)")
    dep.add_argument("--json", action="store_true", help="print JSON")
    dep.set_defaults(handler=deploy)

    p = commands.add_parser("endpoints", help="list endpoints; status, history, promote, rollback")
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="action", metavar="ACTION", prog=p.prog)
    ls = sub.add_parser("list", help="endpoints, their strategy, state and weights")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=list_endpoints)
    for name, helptext, handler in (
        ("status", "the deployment, its traffic and each analysis step", show_status),
        ("history", "every change, newest first, with who and why", show_history),
        ("promote", "make the new version (or --winner) the only one", promote),
        ("rollback", "send all traffic back to the version served before", rollback),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("endpoint", metavar="ENDPOINT")
        if name == "promote":
            cmd.add_argument("--winner", metavar="MODEL:V", help="ab: the variant to keep")
        if name in ("promote", "rollback"):
            cmd.add_argument("--reason", help="why (recorded with the change)")
        if name == "history":
            cmd.add_argument("--limit", type=int, default=50, help="default: 50")
        if name == "status":
            cmd.add_argument(
                "--watch",
                action="store_true",
                help="print each decision as it is made until the rollout settles; exits 0 "
                "when the new version serves (promoted), 1 when it rolled back or failed",
            )
            add_timeout(cmd, "--watch")
        cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.set_defaults(handler=handler)


def deploy(ctx: Context) -> None:
    args = ctx.args
    options = {
        name: value
        for name in OPTIONS
        if (value := getattr(args, f"opt_{name.replace('-', '_')}")) is not None
    }
    deployment = ctx.project.endpoints.deploy(
        args.endpoint, args.models, args.strategy, options, force=args.force, reason=args.reason
    )
    if ctx.json:
        output.emit_json(deployment_json(deployment))
        return
    output.line(
        f"endpoint {deployment.endpoint}: deployment {deployment.sequence} "
        f"({deployment.strategy}, {deployment.state}) {_weights(deployment)}"
    )


def deployment_json(deployment: Deployment) -> dict[str, Any]:
    """A deployment as scripts read it: `endpoint`, `strategy`, `state`, `versions` as
    `{"model": "NAME:V", "role", "weight"}`, and the rest of its fields."""
    plain: dict[str, Any] = to_plain(deployment)
    return plain


def _weights(deployment: Deployment) -> str:
    return ", ".join(f"{v.model} {v.role} {v.weight}%" for v in deployment.versions)


def list_endpoints(ctx: Context) -> None:
    found = ctx.project.endpoints.find()
    if ctx.json:
        output.emit_json([deployment_json(d) for d in found])
        return
    if not found:
        output.line("no endpoints yet; create one with mloop deploy ENDPOINT MODEL:V")
        return
    output.table(
        ["ENDPOINT", "DEPLOYMENT", "STRATEGY", "STATE", "VERSIONS", "UPDATED"],
        [
            [d.endpoint, d.sequence, d.strategy, d.state, _weights(d), output.when(d.updated)]
            for d in found
        ],
    )


def show_status(ctx: Context) -> int:
    if ctx.args.watch:
        return watch(ctx)
    status = ctx.project.endpoints.status(ctx.args.endpoint)
    if ctx.json:
        output.emit_json(status_json(status))
        return 0
    output.fields(
        [
            ("endpoint", status.endpoint),
            ("deployment", f"{status.deployment} ({status.strategy})"),
            ("state", status.state),
            ("last change", f"{output.when(status.updated)} by {status.actor}: {status.reason}"),
            ("next decision", output.when(status.next_decision) if status.next_decision else "-"),
        ]
    )
    shadow = any(v.role is Role.SHADOW for v in status.versions)
    outcomes = any(v.outcomes for v in status.versions)
    headers = ["MODEL", "ROLE", "WEIGHT", "REQUESTS", "ERRORS", "SUCCESS", "P99"]
    headers += ["AGREEMENT", "DROPPED"] if shadow else []
    headers += ["OUTCOMES", "MEAN OUTCOME"] if outcomes else []
    rows = []
    for v in status.versions:
        row = [
            v.model,
            v.role,
            f"{v.weight}%",
            v.requests,
            v.errors,
            output.percent(v.success_rate, 1),
            output.milliseconds(v.p99),
        ]
        if shadow:
            mine = v.role is Role.SHADOW
            row += [output.percent(v.agreement_rate), v.dropped if mine else "-"]
        if outcomes:
            row += [v.outcomes, output.number(v.outcome_mean, 4)]
        rows.append(row)
    title = "traffic since the rollout began"
    output.table(headers, rows, title=title + (" (a shadow's: copies predicted)" if shadow else ""))
    if status.ab is not None:
        _show_ab(status.ab)
    if status.analysis:
        output.table(
            ["WHEN", "ACTION", "VERDICT", "DETAIL"],
            [
                [output.when(s.at), s.action.removeprefix("endpoint."), s.verdict or "-", s.reason]
                for s in status.analysis
            ],
            title="analysis",
        )
    return 0


def watch(ctx: Context) -> int:
    """Follow the rollout as `kubectl argo rollouts get --watch` does: one line per decision
    (with its numbers) until the state settles, or an A/B test names its winner (its numbers
    every few seconds until then); the exit code says how it ended."""
    import time

    endpoints, name = ctx.project.endpoints, ctx.args.endpoint
    deadline = time.monotonic() + ctx.args.timeout
    shown = 0
    next_look = 0.0  # an A/B test's numbers, every few seconds
    while True:
        status = endpoints.status(name)
        for step in status.analysis[shown:]:
            action = step.action.removeprefix("endpoint.")
            if ctx.json:
                output.emit_json(step)
            else:
                output.line(f"{output.when(step.at)}  {action:<11} {step.reason}")
        shown = len(status.analysis)
        ab = status.ab
        if ab is not None and (ab.winner or time.monotonic() >= next_look):
            next_look = time.monotonic() + 5.0
            looks = ", ".join(
                f"{v.name} {v.n} outcomes {output.number(v.value, 4)}" for v in ab.variants
            )
            if ctx.json:
                output.emit_json(ab)
            else:
                output.line(f"{output.when(time.time())}  ab          {looks}: {ab.reason}")
            if ab.winner:
                if not ctx.json:
                    output.line(
                        f"endpoint {name}: {ab.winner} wins; make it the only version with "
                        f"`mloop endpoints promote {name}`"
                    )
                return 0
        if status.state is not EndpointState.PROGRESSING:
            weights = ", ".join(f"{v.model} {v.weight}%" for v in status.versions)
            if not ctx.json:
                output.line(f"endpoint {name}: {status.state} ({weights})")
            good = status.state in (EndpointState.PROMOTED, EndpointState.STABLE)
            return 0 if good else 1
        if time.monotonic() > deadline:
            output.warn(
                f"endpoint {name} is still {status.state} after {ctx.args.timeout:g} s; "
                f"see `mloop endpoints status {name}`"
            )
            return 1
        time.sleep(1.0)  # the servers decide about once a second


def _show_ab(ab: ABDecision) -> None:
    """The A/B test's look: each variant against the control, then the verdict."""
    output.table(
        ["VARIANT", "OUTCOMES", ab.outcome.upper(), "EFFECT", "ALWAYS-VALID CI", "P-VALUE"],
        [
            [
                v.name,
                v.n,
                output.number(v.value, 4),
                "(control)" if i == 0 else output.number(v.effect, 4),
                "-"
                if v.ci_low is None or v.ci_high is None
                else f"[{output.number(v.ci_low, 4)}, {output.number(v.ci_high, 4)}]",
                output.number(v.p_value, 4),
            ]
            for i, v in enumerate(ab.variants)
        ],
        title=f"A/B test ({ab.method}, alpha {ab.alpha:g}, valid however often you look)",
    )
    verdict = f"winner: {ab.winner}" if ab.winner else str(ab.state).replace("_", " ")
    output.line(f"{verdict} - {ab.reason}")


def status_json(status: EndpointStatus) -> dict[str, Any]:
    plain: dict[str, Any] = to_plain(status)
    return plain


def show_history(ctx: Context) -> None:
    events = ctx.project.endpoints.history(ctx.args.endpoint, limit=ctx.args.limit)
    if ctx.json:
        output.emit_json(events)
        return
    output.table(
        ["WHEN", "WHO", "ACTION", "DEPLOYMENT", "WEIGHTS", "WHY"],
        [
            [
                output.when(e.at),
                e.actor,
                e.action.removeprefix("endpoint."),
                e.details.get("deployment", "-"),
                ", ".join(f"{m} {w}%" for m, w in (e.details.get("weights") or {}).items()),
                e.reason or "-",
            ]
            for e in events
        ],
    )


def promote(ctx: Context) -> None:
    args = ctx.args
    deployment = ctx.project.endpoints.promote(args.endpoint, args.winner, reason=args.reason)
    _changed(ctx, deployment)


def rollback(ctx: Context) -> None:
    args = ctx.args
    deployment = ctx.project.endpoints.rollback(args.endpoint, reason=args.reason)
    _changed(ctx, deployment)


def _changed(ctx: Context, deployment: Deployment) -> None:
    if ctx.json:
        output.emit_json(deployment_json(deployment))
        return
    output.line(f"endpoint {deployment.endpoint}: {deployment.state}; {_weights(deployment)}")
