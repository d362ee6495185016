"""Kubernetes manifests for the controller: `mloop export k8s --controller DIR`.

`mloop controller` evaluates the project's triggers and, when one fires, lands the new data,
runs the pipeline, gates the challenger and starts its rollout on the endpoint's servers. The
pipeline runs *inside* the controller's pod, so its image carries the project: its code, its
mloop.yaml (pipelines, triggers, gates) and its requirements. The generic image of
`export k8s --endpoint` holds mloop alone (a server loads models, never the project's code), so
it cannot run a pipeline; this image is built from the project, once per change of its code.

    deployment.yaml            one replica of `mloop controller` (a lease in the store makes
                               any extra replica stand by, so one is enough); `Recreate`, since
                               a second pod would only stand by until the first stops anyway.
                               Metrics on a port Prometheus scrapes (annotations), a liveness
                               probe on them, an hour between SIGTERM and SIGKILL (the
                               controller stops between steps)
    cronjob.yaml               instead, with `--once`: `mloop controller --once` on a schedule,
                               never two at a time (concurrencyPolicy Forbid)
    alerts-service.yaml        with an `alertmanager` trigger: the receiver Alertmanager posts to
    store-secret.yaml.example  the Secret holding the store's URL (and the alert token's), to
                               create by hand; not a `.yaml`, so `kubectl apply -f DIR` skips it
    README.md                  the commands, in order
    image/                     the build context: mloop and the project's requirements, pinned
                               to this environment, and a copy of the project (dot-folders such
                               as .git, .mloop and .venv left out)

The project is copied from the image into an emptyDir when the pod starts (an init container),
so the container's root filesystem stays read-only while the pipeline writes its outputs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.deploy.docker import (
    dockerignore,
    install,
    mloop_requirement,
    python_tag,
    write_requirements,
)
from mloop.deploy.endpoint_k8s import (
    SECRET_TEMPLATE,
    check_secret,
    from_secret,
    header,
    secret_step,
    secret_template,
    shared_artifacts_uri,
    store_env,
    write_atomically,
)
from mloop.deploy.kubernetes import (
    container,
    dump_yaml,
    k8s_object,
    object_name,
    pod_spec,
    scrape_annotations,
    service,
)
from mloop.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from mloop.project import Project

METRICS_PORT = 9108
ALERTS_PORT = 9095  # `mloop controller --alerts-port`'s default
# SIGTERM stops the controller once the step in progress ends: give a training step an hour.
# A step killed anyway is run again by the next controller (the iteration is in the store).
STEP_GRACE_SECONDS = 3600
BAKED = "/app/project"  # where the image holds the project
PROJECT_DIR = "/srv/project"  # the writable copy the controller runs in
ALERTS_SECRET = "mloop-alertmanager"  # noqa: S105 (a Secret's name)
WRITTEN = (
    "deployment.yaml",
    "cronjob.yaml",
    "alerts-service.yaml",
    SECRET_TEMPLATE,
    "README.md",
    "image",
)


@dataclass(frozen=True)
class ControllerManifests:
    """What `export_controller` wrote, and what the CLI says about it."""

    folder: Path
    files: tuple[Path, ...]
    image: str
    once: bool
    token_envs: tuple[str, ...]  # the alert tokens' variables (keys of ALERTS_SECRET)
    local_store: bool  # SQLite on this machine: the cluster needs the PostgreSQL store


def export_controller(
    project: Project,
    dest: Path,
    *,
    once: bool = False,
    schedule: str | None = None,
    interval: str = "30s",
    image: str | None = None,
    namespace: str | None = None,
    store_secret: str = "mloop-store",  # noqa: S107 (a Secret's name, not its value)
    store_secret_key: str = "uri",  # noqa: S107 (the key in it)
    artifacts_uri: str | None = None,
    cpu: str = "1",
    memory: str = "2Gi",
    force: bool = False,
) -> ControllerManifests:
    """Write the manifests running the project's controller, and its image's build context.

    Args:
        project: the project whose triggers the controller evaluates (ConfigError without).
        dest: the folder to write; created if missing.
        once: a CronJob of `mloop controller --once` instead of a long-lived Deployment.
        schedule: the CronJob's cron expression (required with `once`, refused without).
        interval: the Deployment's `--interval`.
        image: the image to run (default `mloop-controller-PROJECT:DIGEST`, the project's).
        namespace: set on every object; without it, kubectl's current namespace applies.
        store_secret: the Secret holding the store's URL (created by hand, never written here).
        store_secret_key: the key in that Secret.
        artifacts_uri: the artifact store (default: the project's, when it is a URL).
        cpu: the controller's CPU request (its limit is twice that); the pipeline runs there.
        memory: its memory request and limit.
        force: replace what an earlier export wrote in `dest`.
    """
    from mloop.domain.durations import parse_duration
    from mloop.domain.trigger import TriggerKind

    if once and not schedule:
        raise InvalidInput(
            "--once writes a CronJob, which needs a --schedule",
            'add --schedule "*/5 * * * *" (cron: minute hour day month weekday)',
        )
    if schedule and not once:
        raise InvalidInput(
            "--schedule applies to the CronJob of --once only",
            "add --once, or leave --schedule out (the Deployment checks every --interval)",
        )
    if schedule is not None:
        _check_cron(schedule)
    parse_duration(interval, "--interval")
    declared = [t for items in project.settings.triggers.values() for t in items]
    if not declared:
        raise ConfigError(
            "no triggers in mloop.yaml: the controller would never start anything",
            "declare them per pipeline, e.g. triggers: {train: [{schedule: '0 3 * * *'}]}",
        )
    token_envs = tuple(
        dict.fromkeys(
            t.spec.token_env  # type: ignore[union-attr]
            for t in declared
            if t.kind is TriggerKind.ALERTMANAGER
        )
    )
    if once and token_envs:
        raise InvalidInput(
            "an alertmanager trigger needs a receiver running, which a CronJob is not",
            "export the Deployment instead: mloop export k8s --controller DIR (without --once)",
        )
    check_secret(store_secret, store_secret_key)
    artifacts = shared_artifacts_uri(project, artifacts_uri)
    source = _project_sources(project.root, dest)
    default = object_name(f"mloop-controller-{project.settings.project}")
    image = image or f"{default}:{_tag(project.root, source)}"
    name = object_name(f"{project.settings.project}-controller")
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "controller",
        "app.kubernetes.io/managed-by": "mloop",
    }
    env = [
        *store_env(store_secret, store_secret_key, artifacts),
        *(from_secret(variable, ALERTS_SECRET, variable) for variable in token_envs),
    ]
    command = "mloop export k8s --controller" + (f' --once --schedule "{schedule}"' if once else "")
    first = header(command, image, dest)
    texts: dict[str, str] = {}
    if schedule is not None:  # --once (checked above)
        args = ["-C", PROJECT_DIR, "controller", "--once"]
        texts["cronjob.yaml"] = first + dump_yaml(
            _cronjob(meta, labels, _pod(image, env, cpu, memory, args, ports=[]), schedule)
        )
    else:
        args = ["-C", PROJECT_DIR, "controller", "--interval", interval]
        args += ["--metrics-port", str(METRICS_PORT), "--metrics-host", "0.0.0.0"]  # noqa: S104
        ports = [_port("metrics", METRICS_PORT)]
        if token_envs:
            args += ["--alerts-port", str(ALERTS_PORT), "--alerts-host", "0.0.0.0"]  # noqa: S104
            ports.append(_port("alerts", ALERTS_PORT))
        pod = _pod(image, env, cpu, memory, args, ports)
        texts["deployment.yaml"] = first + dump_yaml(_deployment(meta, labels, pod))
        if token_envs:
            alerts_meta = {**meta, "name": f"{name}-alerts"}
            body = service(alerts_meta, labels, port=ALERTS_PORT, target="alerts")
            texts["alerts-service.yaml"] = first + dump_yaml(body)
    texts[SECRET_TEMPLATE] = secret_template(namespace, store_secret, store_secret_key)
    alerts = _alerts_readme(name, namespace, token_envs) if token_envs else ""
    readme = _readme(project, dest, image, store_secret, store_secret_key, namespace, alerts)
    texts["README.md"] = readme
    folder = write_atomically(
        dest,
        project.root,
        force,
        WRITTEN,
        texts,
        lambda context: _build_context(context, project.root, source),
    )
    return ControllerManifests(
        folder,
        tuple(folder / f for f in texts),
        image,
        once,
        token_envs,
        project.settings.store_uri.startswith("sqlite"),
    )


def _check_cron(schedule: str) -> None:
    """Five cron fields, as a CronJob reads them (the cluster would refuse anything else only
    at apply time)."""
    from datetime import UTC, datetime

    from mloop.domain.trigger import Schedule, schedule_due

    if len(schedule.split()) != 5:
        raise InvalidInput(
            f"--schedule {schedule!r} is not five cron fields", 'e.g. --schedule "*/5 * * * *"'
        )
    schedule_due(Schedule(schedule), None, datetime.now(UTC))  # InvalidInput, with cronsim's why


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "containerPort": port, "protocol": "TCP"}


def _pod(
    image: str,
    env: list[dict[str, Any]],
    cpu: str,
    memory: str,
    args: list[str],
    ports: list[dict[str, Any]],
) -> dict[str, Any]:
    """The controller, after an init container copied the project where it may write."""
    controller = container("controller", image, env, cpu, memory, args)
    controller["volumeMounts"].append({"name": "project", "mountPath": PROJECT_DIR})
    if ports:
        controller["ports"] = ports
        # Honest: the metrics answer only while the controller's process runs.
        controller["livenessProbe"] = {
            "httpGet": {"path": "/metrics", "port": "metrics"},
            "initialDelaySeconds": 10,
            "periodSeconds": 30,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        }
    copy = container("project", image, [], "100m", "128Mi")
    copy["command"] = ["cp", "-R", f"{BAKED}/.", f"{PROJECT_DIR}/"]
    copy["volumeMounts"].append({"name": "project", "mountPath": PROJECT_DIR})
    spec = pod_spec([controller], [{"name": "project", "emptyDir": {}}], STEP_GRACE_SECONDS)
    return {"initContainers": [copy], **spec}


def _deployment(meta: dict[str, Any], labels: dict[str, str], pod: dict[str, Any]) -> Any:
    body = k8s_object("Deployment", "apps/v1", meta, labels)
    body["spec"] = {
        # One: the store's lease lets one controller act; another would only stand by.
        "replicas": 1,
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": {"app.kubernetes.io/name": meta["name"]}},
        # The old pod finishes its step before the new one starts (it would stand by anyway).
        "strategy": {"type": "Recreate"},
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": scrape_annotations(METRICS_PORT, None),
            },
            "spec": pod,
        },
    }
    return body


def _cronjob(
    meta: dict[str, Any], labels: dict[str, str], pod: dict[str, Any], schedule: str
) -> Any:
    body = k8s_object("CronJob", "batch/v1", meta, labels)
    body["spec"] = {
        "schedule": schedule,
        "timeZone": "Etc/UTC",
        "concurrencyPolicy": "Forbid",  # one evaluation at a time (the lease would hold it too)
        "startingDeadlineSeconds": 300,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": labels},
            "spec": {
                "backoffLimit": 0,  # the next schedule tries again, from the store's state
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {**pod, "restartPolicy": "Never"},
                },
            },
        },
    }
    return body


def _project_sources(root: Path, dest: Path) -> list[Path]:
    """The project's files the image carries: all but dot-entries (.git, .mloop, .venv),
    caches, links and the export's own folder."""
    skip = dest.resolve()
    found: list[Path] = []
    for path in sorted(root.resolve().rglob("*")):
        relative = path.relative_to(root.resolve())
        if any(p.startswith(".") or p == "__pycache__" for p in relative.parts):
            continue
        if path == skip or skip in path.parents or path.is_symlink() or not path.is_file():
            continue
        found.append(relative)
    return found


def _tag(root: Path, files: list[Path]) -> str:
    """mloop's version and a digest of the project's files: an export after a code change
    names a new image, so applying it rolls that image out."""
    from mloop._version import __version__

    digest = hashlib.sha256()
    for relative in files:
        digest.update(f"{relative}\0".encode())
        digest.update(hashlib.sha256((root / relative).read_bytes()).digest())
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '-', __version__)}-{digest.hexdigest()[:12]}"


def _build_context(folder: Path, root: Path, files: list[Path]) -> None:
    """mloop (the running one, as a wheel) with its data, serve, postgres and s3 extras, the
    project's requirements.txt, every package pinned to this environment, and the project."""
    from mloop.services.tracking.capture import installed_packages

    folder.mkdir()
    for relative in files:
        target = folder / "project" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    mloop_line = mloop_requirement(folder / "wheels", "data,serve,postgres,s3")
    needed = [mloop_line, *_project_requirements(root / "requirements.txt")]
    write_requirements(folder, "the project", None, installed_packages(), needed)
    base = f"python:{python_tag(None)}-slim"
    (folder / "Dockerfile").write_text(_dockerfile(base), encoding="utf-8")
    (folder / ".dockerignore").write_text(DOCKERIGNORE, encoding="utf-8")


def _project_requirements(path: Path) -> list[str]:
    """The project's own requirement lines (mloop itself comes from the wheel)."""
    if not path.is_file():
        return []
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [
        line
        for line in lines
        if line and not line.startswith("-") and not re.match(r"mloop\b", line, re.I)
    ]


DOCKERIGNORE = dockerignore("requirements.txt", "constraints.txt", "wheels/", "project/")


def _dockerfile(base: str) -> str:
    return f"""\
# Generated by `mloop export k8s --controller`: mloop and the project, whose pipeline the
# controller runs when a trigger fires. Build it again when the project's code changes.
#   docker build -t IMAGE .
{install(base)}
COPY project/ {BAKED}/
USER app
EXPOSE {METRICS_PORT} {ALERTS_PORT}
# The manifests copy {BAKED} to a writable {PROJECT_DIR} and give the arguments:
#   -C {PROJECT_DIR} controller --interval 30s --metrics-port {METRICS_PORT} ...
ENTRYPOINT ["mloop"]
CMD {json.dumps(["-C", BAKED, "controller", "status"])}
"""


def _readme(
    project: Project,
    dest: Path,
    image: str,
    secret: str,
    key: str,
    namespace: str | None,
    alerts: str,
) -> str:
    return f"""\
# The controller of {project.settings.project} on Kubernetes

Written by `mloop export k8s --controller`. The controller evaluates the triggers of
mloop.yaml and, when one fires, lands the new data, runs the pipeline (in its own pod),
checks the challenger against the registry's gates and starts the rollout on the endpoint;
the endpoint's servers promote or roll back. Its progress is in the shared store: a pod
killed mid-iteration is replaced and the next one continues where it stopped. One replica
is enough: of several controllers on one store, one holds the lease and the rest stand by.

1. The image carries the project (its code, mloop.yaml and any requirements.txt, copied
   into `image/project/` now). The generic `mloop-serve` image holds no project code, so it
   cannot run a pipeline. Build again, and export again, whenever the code changes:

       docker build -t REGISTRY/{image} {dest}/image
       docker push REGISTRY/{image}

   then export again with `--image REGISTRY/{image}` (or edit the manifest).

2. {secret_step(secret, key, namespace, "the manifest")} A `new_data` trigger's
   path must be one the pod reads (an s3:// URL, not a folder on your machine).

{alerts}{4 if alerts else 3}. The controller:

       kubectl apply -f {dest}
       mloop controller status        # from any machine that reaches the store

SIGTERM stops the controller between steps: the pod has an hour to finish the step in
progress (terminationGracePeriodSeconds; raise it if a step takes longer).
"""


def _alerts_readme(name: str, namespace: str | None, token_envs: tuple[str, ...]) -> str:
    ns = f" -n {namespace}" if namespace else ""
    literals = " ".join(f"--from-literal={v}=$(openssl rand -hex 32)" for v in token_envs)
    return f"""\
3. Alertmanager's webhook: the controller receives it on port {ALERTS_PORT}, behind the
   Service {name}-alerts. Its bearer token, from the Secret {ALERTS_SECRET} (the pod does
   not start without it):

       kubectl{ns} create secret generic {ALERTS_SECRET} {literals}

   and in Alertmanager's receiver:

       webhook_configs:
         - url: http://{name}-alerts:{ALERTS_PORT}/alerts
           http_config: {{authorization: {{credentials: <the same token>}}}}

"""
