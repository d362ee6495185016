"""`mloop export …`: write deployable files for a model version (a model bundle, a container
build context, Kubernetes manifests). The exporters live in `mloop.deploy`, imported only when
a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop.cli import output
from mloop.cli.args import integer
from mloop.cli.main import Context
from mloop.cli.models import add_trust

REF = "NAME@ALIAS|NAME:V"


def register(commands: Any) -> None:
    p = commands.add_parser(
        "export",
        help="write a model version's bundle, container build context or Kubernetes manifests",
        description="Write files that deploy a model version. Nothing is built or applied: "
        "review the files, then `docker build` / `kubectl apply` them.",
    )
    p.set_defaults(parser=p)
    sub = p.add_subparsers(dest="target", metavar="TARGET", prog=p.prog)

    bundle = _target(
        sub,
        "bundle",
        help="a folder holding the version's record and files, for `mloop serve DIR`",
        description="Write a model bundle: the version's record (bundle.json), its value "
        "manifest (every file's digest), its files and the packages it was made with "
        "(environment.txt). `mloop serve ./DIR` and "
        "`mloop.load_model('./DIR')` load it with no project or store, checking every file "
        "against its digest; `tar czf` makes one file of it.",
    )
    bundle.set_defaults(handler=export_bundle)

    docker = _target(
        sub,
        "docker",
        help="a self-contained build context: Dockerfile, pinned requirements, the model bundle",
        description="Write a Docker build context serving the version with `mloop serve`: a "
        "slim Python image, a non-root user, requirements pinned from the version's "
        "environment, the model as a bundle (served with no store; digests checked at build "
        "and at start), a HEALTHCHECK.",
    )
    docker.add_argument(
        "--package",
        action="append",
        default=[],
        metavar="NAME[==VERSION]",
        help="another package the server needs, pinned from the environment (repeatable)",
    )
    add_trust(docker)  # the image's build check and its server then load with --trust
    docker.set_defaults(handler=export_docker)

    k8s = _target(
        sub,
        "k8s",
        optional_ref=True,
        aliases=["kubernetes"],
        help="Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget",
        description="Write Kubernetes manifests running the image `mloop export docker` "
        "builds: probes, resources, a non-root read-only container, Prometheus scrape "
        "annotations, a ClusterIP Service, CPU autoscaling and a disruption budget. With "
        "--endpoint ENDPOINT instead of a version: N replicas of `mloop serve --endpoint` on "
        "the shared store (its URL from a Secret), which run the endpoint's rollouts "
        "themselves, and the build context of the generic image they run. With --controller: "
        "`mloop controller` as a Deployment of one replica (or, with --once --schedule CRON, "
        "a CronJob), and the build context of an image carrying the project's code.",
    )
    k8s.add_argument(
        "--endpoint",
        metavar="ENDPOINT",
        help="serve this endpoint (instead of one version) from the shared store",
    )
    k8s.add_argument(
        "--image", help="the image to run (mloop-NAME:V; mloop-serve:MLOOP_VERSION with --endpoint)"
    )
    k8s.add_argument("--namespace", help="set on every object (default: kubectl's current)")
    k8s.add_argument(
        "--replicas",
        type=integer(1, 2**31 - 1),
        help="pods (2): the autoscaler's minimum for a version; at most 1000 for --endpoint",
    )
    k8s.add_argument(
        "--max-replicas",
        type=integer(1, 2**31 - 1),
        help="the autoscaler's maximum (10; a version's manifests only)",
    )
    k8s.add_argument("--cpu", default="500m", help="CPU request; the limit is twice it (500m)")
    k8s.add_argument("--memory", default="1Gi", help="memory request and limit (1Gi)")
    k8s.add_argument(
        "--token-secret",
        metavar="SECRET",
        help="require a bearer token: the Secret's key `token` becomes MLOOP_SERVE_TOKEN",
    )
    endpoint = k8s.add_argument_group("with --endpoint (the first three with --controller too)")
    endpoint.add_argument(
        "--store-secret",
        metavar="SECRET",
        help="the Secret holding the metadata store's URL (mloop-store)",
    )
    endpoint.add_argument("--store-secret-key", metavar="KEY", help="its key (uri)")
    endpoint.add_argument(
        "--artifacts-uri",
        metavar="URL",
        help="the artifact store the servers read (default: the project's, if a URL)",
    )
    endpoint.add_argument("--port", type=integer(1, 65535), help="the servers' port (8080)")
    endpoint.add_argument(
        "--trust",
        action="store_true",
        default=None,  # None: not given (a version's manifests refuse it, as other options)
        help="the servers load every version deployed on the endpoint with --trust (python "
        "models, pickles): only when you trust whoever can deploy to it",
    )
    endpoint.add_argument(
        "--package",
        action="append",
        metavar="NAME[==VERSION]",
        help="another package the image needs, pinned as for `export docker` (repeatable)",
    )
    controller = k8s.add_argument_group("with --controller")
    controller.add_argument(
        "--controller",
        action="store_true",
        default=None,
        help="run the project's `mloop controller` (a Deployment of one replica) and write "
        "the build context of its image, which carries the project's code",
    )
    controller.add_argument(
        "--once",
        action="store_true",
        default=None,
        help="a CronJob of `mloop controller --once` instead (needs --schedule)",
    )
    controller.add_argument("--schedule", metavar="CRON", help='the CronJob\'s, e.g. "*/5 * * * *"')
    controller.add_argument("--interval", help="the Deployment's time between evaluations (30s)")
    k8s.set_defaults(handler=export_kubernetes)


def _target(sub: Any, name: str, optional_ref: bool = False, **kwargs: Any) -> Any:
    """An export target's parser with what every target takes: the version, the folder to
    write, --force and --json. With `optional_ref`, the version may be left out (the target
    has another way to say what it exports)."""
    p = sub.add_parser(name, **kwargs)
    p.add_argument("ref", metavar=REF, nargs="?" if optional_ref else None)
    p.add_argument("dest", type=Path, metavar="DIR", help="an empty (or new) folder")
    p.add_argument("--force", action="store_true", help="replace an earlier export in DIR")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def export_bundle(ctx: Context) -> None:
    from mloop.deploy.bundle import export_bundle as export

    args = ctx.args
    done = export(ctx.project, args.ref, args.dest, force=args.force)
    version = done.version
    reason = done.trust_reason
    if ctx.json:
        output.emit_json(
            {
                "folder": str(done.folder),
                "model": version.ref,
                "digest": version.digest,
                "flavor": version.flavor,
                "files": sorted(done.manifest["files"]),
                "needs_trust": reason,
            }
        )
        return
    output.line(f"wrote a bundle of {version.ref} to {args.dest}")
    trust = " --trust" if reason is not None else ""
    output.line(f"  serve: mloop serve {_as_path(args.dest)}{trust}")
    if reason is not None:
        output.warn(f"{version.ref} needs trust to load: {reason}")


def _as_path(dest: Path) -> str:
    """`dest` as `mloop serve` reads a path: with a `/` in it (`churn` -> `./churn`)."""
    from mloop.services.registry.bundle import names_a_bundle

    text = str(dest)
    return text if names_a_bundle(text) else f"./{text}"


def export_docker(ctx: Context) -> None:
    from mloop.deploy.docker import export_docker as export

    args = ctx.args
    done = export(
        ctx.project,
        args.ref,
        args.dest,
        packages=args.package,
        trust=args.trust,
        force=args.force,
    )
    if ctx.json:
        output.emit_json(
            {
                "folder": str(done.folder),
                "model": done.version.ref,
                "digest": done.version.digest,
                "serves": done.serves,
                "image": done.image,
                "base_image": done.base_image,
                "requirements": list(done.requirements),
                "entrypoint": list(done.entrypoint),
            }
        )
        return
    output.line(f"wrote a build context for {done.version.ref} to {args.dest}")
    output.line(f"  build: docker build -t {done.image} {args.dest}")
    output.line(f"  run:   docker run --rm -p 8080:8080 {done.image}")


def export_kubernetes(ctx: Context) -> None:
    from mloop.deploy.kubernetes import export_kubernetes as export

    args = ctx.args
    _one_source(args)  # before --replicas defaults: the controller refuses it, given
    args.replicas = 2 if args.replicas is None else args.replicas
    if args.controller:
        export_controller(ctx)
        return
    if args.endpoint is not None:
        export_endpoint(ctx)
        return
    done = export(
        ctx.project,
        args.ref,
        args.dest,
        image=args.image,
        namespace=args.namespace,
        replicas=args.replicas,
        max_replicas=10 if args.max_replicas is None else args.max_replicas,
        cpu=args.cpu,
        memory=args.memory,
        token_secret=args.token_secret,
        force=args.force,
    )
    if ctx.json:
        output.emit_json(
            {
                "folder": str(done.folder),
                "model": done.version.ref,
                "image": done.image,
                "files": [str(f) for f in done.files],
            }
        )
        return
    names = ", ".join(f.name for f in done.files)
    output.line(f"wrote {names} for {done.version.ref} (image {done.image}) to {args.dest}")
    output.line(f"  apply: kubectl apply -f {args.dest}")
    if args.token_secret:
        output.line(
            f"  first: kubectl create secret generic {args.token_secret} --from-literal=token=..."
        )
        output.line("  Prometheus: scrape /metrics with the token (authorization.credentials_file)")


# What only one of `export k8s REF` and `export k8s --endpoint` takes (the option's dest, and
# for the endpoint's, the exporter's keyword it becomes).
_ENDPOINT_ONLY = {
    "store_secret": "store_secret",
    "store_secret_key": "store_secret_key",
    "artifacts_uri": "artifacts_uri",
    "port": "port",
    "package": "packages",
    "trust": "trust",
}
_VERSION_ONLY = ("max_replicas",)
_CONTROLLER_ONLY = ("once", "schedule", "interval")
# What the controller's manifests take (the option's dest and the exporter's keyword).
_FOR_CONTROLLER = {
    "store_secret": "store_secret",
    "store_secret_key": "store_secret_key",
    "artifacts_uri": "artifacts_uri",
    "once": "once",
    "schedule": "schedule",
    "interval": "interval",
    "image": "image",
    "namespace": "namespace",
}


def _one_source(args: Any) -> None:
    """A version, --endpoint or --controller (one of them), and only the options it takes."""
    from mloop.errors import InvalidInput

    if args.controller:
        if args.ref is not None or args.endpoint is not None:
            raise InvalidInput(
                "export k8s --controller takes no model version nor --endpoint",
                "mloop export k8s --controller DIR",
            )
        others = (*_ENDPOINT_ONLY, *_VERSION_ONLY, "token_secret", "replicas")
        stray = [o for o in others if o not in _FOR_CONTROLLER and getattr(args, o) is not None]
        if stray:
            option = "--" + stray[0].replace("_", "-")
            raise InvalidInput(
                f"{option} does not apply to the controller's manifests",
                "leave it out; see `mloop export k8s --help`",
            )
        return
    given_controller = [o for o in _CONTROLLER_ONLY if getattr(args, o) is not None]
    if given_controller:
        raise InvalidInput(
            f"--{given_controller[0]} applies to the controller's manifests only",
            "add --controller, or leave it out",
        )
    if (args.ref is None) == (args.endpoint is None):
        both = args.ref is not None
        raise InvalidInput(
            "export k8s takes a model version or --endpoint, "
            + ("not both" if both else "and neither was given"),
            f"mloop export k8s {REF} DIR, or mloop export k8s --endpoint ENDPOINT DIR",
        )
    wrong = _VERSION_ONLY if args.endpoint is not None else _ENDPOINT_ONLY
    given = [o for o in wrong if getattr(args, o) is not None]
    if given:
        option = "--" + given[0].replace("_", "-")
        source = "--endpoint" if args.endpoint is not None else f"a model version ({args.ref})"
        raise InvalidInput(
            f"{option} does not apply to the manifests of {source}",
            "leave it out; see `mloop export k8s --help`",
        )


def export_endpoint(ctx: Context) -> None:
    from mloop.deploy.endpoint_k8s import export_endpoint as export

    args = ctx.args
    given = {k: getattr(args, o) for o, k in _ENDPOINT_ONLY.items() if getattr(args, o)}
    done = export(
        ctx.project,
        args.endpoint,
        args.dest,
        replicas=args.replicas,
        image=args.image,
        namespace=args.namespace,
        cpu=args.cpu,
        memory=args.memory,
        token_secret=args.token_secret,
        force=args.force,
        **given,
    )
    deployment = done.deployment
    if ctx.json:
        output.emit_json(
            {
                "folder": str(done.folder),
                "endpoint": deployment.endpoint,
                "deployment": deployment.sequence,
                "versions": sorted(deployment.weights),
                "image": done.image,
                "replicas": args.replicas,
                "trust": bool(args.trust),
                "artifacts_uri": done.artifacts_uri,
                "store_secret": {"name": done.store_secret, "key": done.store_secret_key},
                "files": [str(f) for f in done.files],
            }
        )
        return
    names = ", ".join(f.name for f in done.files)
    output.line(
        f"wrote {names} and image/ for endpoint {deployment.endpoint} "
        f"({args.replicas} replicas of image {done.image}) to {args.dest}"
    )
    output.line(f"  image: docker build -t {done.image} {args.dest / 'image'}")
    output.line(
        f"  first: kubectl create secret generic {done.store_secret} "
        f"--from-literal={done.store_secret_key}=postgresql+psycopg://..."
    )
    output.line(f"  apply: kubectl apply -f {args.dest}")
    if done.local_store:
        output.warn(
            "this project's metadata store is SQLite on this machine: the servers need a "
            "shared PostgreSQL store holding the endpoint (set MLOOP_STORE_URI, deploy there)"
        )


def export_controller(ctx: Context) -> None:
    from mloop.deploy.controller_k8s import export_controller as export

    args = ctx.args
    given = {k: getattr(args, o) for o, k in _FOR_CONTROLLER.items() if getattr(args, o)}
    done = export(
        ctx.project, args.dest, cpu=args.cpu, memory=args.memory, force=args.force, **given
    )
    if ctx.json:
        output.emit_json(
            {
                "folder": str(done.folder),
                "image": done.image,
                "once": done.once,
                "alert_tokens": list(done.token_envs),
                "files": [str(f) for f in done.files],
            }
        )
        return
    names = ", ".join(f.name for f in done.files)
    output.line(f"wrote {names} and image/ for the controller (image {done.image}) to {args.dest}")
    output.line(f"  image: docker build -t {done.image} {args.dest / 'image'}")
    output.line(
        f"  then:  see {args.dest / 'README.md'} (the Secrets), kubectl apply -f {args.dest}"
    )
    if done.local_store:
        output.warn(
            "this project's metadata store is SQLite on this machine: the controller needs a "
            "shared PostgreSQL store (set MLOOP_STORE_URI)"
        )
