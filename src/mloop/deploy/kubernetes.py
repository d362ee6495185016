"""Kubernetes manifests for one model version: `mloop export k8s NAME@ALIAS DIR`.

Four objects, one file each, so `kubectl apply -f DIR` takes them all and a diff shows which
changed:

    deployment.yaml   the image `mloop export docker` builds: probes on /readyz and /healthz,
                      requests and limits, a non-root read-only container, Prometheus annotations
    service.yaml      ClusterIP port 80 -> the server's 8080
    hpa.yaml          autoscaling/v2 on CPU
    pdb.yaml          policy/v1, at least one replica through a voluntary disruption

The container's root filesystem is read-only, yet the server opens the SQLite store baked into
the image (it writes a journal beside it) and fetches model files to /tmp. So an init container
copies the image's `/app/project` into an emptyDir that the server then mounts at that path
(loading the model from it checks every file's digest, so a damaged copy never turns ready),
and /tmp is an emptyDir too. The image itself stays unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.deploy import prepare_folder, resolve
from mloop.deploy.docker import PORT, UID

if TYPE_CHECKING:
    from mloop.domain.model import ModelVersion
    from mloop.project import Project

FILES = ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml")
# On SIGTERM the server finishes what is in flight: up to its request time-out (60 s by
# default) plus uvicorn's 5 s of grace. Kubernetes must wait longer than that before SIGKILL.
GRACE_SECONDS = 75


@dataclass(frozen=True)
class Manifests:
    """What `export_kubernetes` wrote: the folder, the files, the version and the image."""

    folder: Path
    files: tuple[Path, ...]
    version: ModelVersion
    image: str


def object_name(model: str) -> str:
    """A Kubernetes object name for a model: model names are DNS labels already, but a
    Service's name must also start with a letter (RFC 1035).

    Example:
        >>> object_name("churn"), object_name("2024-churn")
        ('churn', 'model-2024-churn')
    """
    name = model if model[:1].isalpha() else f"model-{model}"
    return name[:63].rstrip("-")


def export_kubernetes(
    project: Project,
    ref: str,
    dest: Path,
    *,
    image: str | None = None,
    namespace: str | None = None,
    replicas: int = 2,
    max_replicas: int = 10,
    cpu: str = "500m",
    memory: str = "1Gi",
    token_secret: str | None = None,
    force: bool = False,
) -> Manifests:
    """Write Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget for `ref`.

    Args:
        project: the project whose registry holds the version.
        ref: `NAME@ALIAS`, `NAME:V` or `NAME` (pinned to the latest version).
        dest: the folder to write; created if missing.
        image: the image to run (default `mloop-NAME:V`, as `mloop export docker` names it).
        namespace: set on every object; without it, kubectl's current namespace applies.
        replicas: the Deployment's replicas and the autoscaler's minimum.
        max_replicas: the autoscaler's maximum.
        cpu: the container's CPU request (its limit is twice that).
        memory: the container's memory request and limit (equal: memory cannot be throttled).
        token_secret: a Secret whose key `token` the server requires as a bearer token
            (`MLOOP_SERVE_TOKEN`); the Prometheus annotations are left out then, since
            annotation-based scraping cannot send it.
        force: replace what an earlier export wrote in `dest`.

    Example:
        >>> export_kubernetes(project, "churn@champion", Path("k8s")).files  # doctest: +SKIP
        (PosixPath('k8s/deployment.yaml'), PosixPath('k8s/service.yaml'), ...)
    """
    import yaml

    from mloop.errors import InvalidInput

    if replicas < 1 or max_replicas < replicas:
        raise InvalidInput(
            f"replicas {replicas} and max replicas {max_replicas} do not fit",
            "use at least 1 replica and a maximum no smaller than it",
        )
    if token_secret is not None:
        from mloop.domain.names import check_name

        check_name(token_secret, "secret name")
    version, serves = resolve(project, ref)
    image = image or f"mloop-{version.name}:{version.version}"
    folder = prepare_folder(dest, force, FILES, project.root)
    name = object_name(version.name)
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "mloop",
    }
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    objects = {
        "deployment.yaml": _deployment(
            version, meta, labels, image, replicas, cpu, memory, token_secret
        ),
        "service.yaml": _service(meta, labels),
        "hpa.yaml": _autoscaler(meta, labels, replicas, max_replicas),
        "pdb.yaml": _disruption_budget(meta, labels, replicas),
    }
    header = (
        f"# Generated by `mloop export k8s {serves}` ({version.ref}, image {image}).\n"
        f"# Apply with: kubectl apply -f {dest}\n"
    )

    class _PlainDumper(yaml.SafeDumper):
        """Writes a shared dict out in full each time: `&id001` anchors confuse readers."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

    written: list[Path] = []
    for filename, body in objects.items():
        path = folder / filename
        text = yaml.dump(body, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)
        path.write_text(header + text, encoding="utf-8")
        written.append(path)
    return Manifests(folder, tuple(written), version, image)


def _object(kind: str, api: str, meta: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {**meta, "labels": dict(labels)}}


def _deployment(
    version: ModelVersion,
    meta: dict[str, Any],
    labels: dict[str, str],
    image: str,
    replicas: int,
    cpu: str,
    memory: str,
    token_secret: str | None = None,
) -> dict[str, Any]:
    pod_labels = {
        **labels,
        "app.kubernetes.io/version": str(version.version),
        "mloop.io/model": version.name,
        "mloop.io/version": str(version.version),
    }
    # The selector leaves the version out: a Deployment's selector cannot change, and the next
    # version rolls out through the same Deployment.
    selector = {"app.kubernetes.io/name": labels["app.kubernetes.io/name"]}
    hardened = {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    limit_cpu = _double(cpu)
    server = {
        "name": "model-server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {"name": "HOME", "value": "/tmp"},  # noqa: S108 (an emptyDir of its own)
            *(
                [
                    {
                        "name": "MLOOP_SERVE_TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}},
                    }
                ]
                if token_secret
                else []
            ),
        ],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": limit_cpu, "memory": memory},
        },
        # Loading a large model can take a while: the startup probe holds the others off.
        "startupProbe": _probe("/healthz", period=2, failures=60),
        "readinessProbe": _probe("/readyz", period=5, failures=3),
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "securityContext": hardened,
        "volumeMounts": [
            {"name": "project", "mountPath": "/app/project"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
        ],
    }
    seed = {
        "name": "seed-store",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        # A writable copy of the image's store; the server verifies the model when it loads it.
        "command": ["cp", "-R", "/app/project/.", "/seed/"],
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "128Mi"},
        },
        "securityContext": hardened,
        "volumeMounts": [{"name": "project", "mountPath": "/seed"}],
    }
    body = _object("Deployment", "apps/v1", meta, pod_labels)
    body["spec"] = {
        "replicas": replicas,
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {
                    **(
                        {}
                        if token_secret
                        else {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(PORT),
                            "prometheus.io/path": "/metrics",
                        }
                    ),
                    "mloop.io/model-digest": version.digest,
                },
            },
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": UID,
                    "runAsGroup": UID,
                    "fsGroup": UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationGracePeriodSeconds": GRACE_SECONDS,
                "initContainers": [seed],
                "containers": [server],
                "volumes": [
                    {"name": "project", "emptyDir": {}},
                    {"name": "tmp", "emptyDir": {}},
                ],
            },
        },
    }
    return body


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _double(quantity: str) -> str:
    """Twice a CPU quantity (`500m` -> `1`, `2` -> `4`): the limit leaves room for bursts."""
    from mloop.errors import InvalidInput

    try:
        millis = int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)
    except ValueError as exc:
        raise InvalidInput(
            f"CPU quantity {quantity!r} is not a number of cores", "write e.g. 500m or 2"
        ) from exc
    twice = 2 * millis
    return str(twice // 1000) if twice % 1000 == 0 else f"{twice}m"


def _service(meta: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    body = _object("Service", "v1", meta, labels)
    body["spec"] = {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": labels["app.kubernetes.io/name"]},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    }
    return body


def _autoscaler(
    meta: dict[str, Any], labels: dict[str, str], replicas: int, max_replicas: int
) -> dict[str, Any]:
    body = _object("HorizontalPodAutoscaler", "autoscaling/v2", meta, labels)
    body["spec"] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"]},
        "minReplicas": replicas,
        "maxReplicas": max_replicas,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ],
    }
    return body


def _disruption_budget(
    meta: dict[str, Any], labels: dict[str, str], replicas: int
) -> dict[str, Any]:
    body = _object("PodDisruptionBudget", "policy/v1", meta, labels)
    # With one replica, minAvailable 1 would block every node drain: allow that one to go.
    body["spec"] = {
        "minAvailable": 1 if replicas > 1 else 0,
        "selector": {"matchLabels": {"app.kubernetes.io/name": labels["app.kubernetes.io/name"]}},
    }
    return body
