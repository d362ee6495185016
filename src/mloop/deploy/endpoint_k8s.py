"""Kubernetes manifests for an endpoint: `mloop export k8s --endpoint ENDPOINT DIR`.

N replicas of `mloop serve --endpoint ENDPOINT` on one shared metadata store (PostgreSQL): each
server reads the endpoint's deployment from the store and follows it, reports its traffic there,
and one of them at a time decides each analysis step (a lease in the store). So a canary, a
blue/green switch or an A/B test runs inside the application, the same on one replica as on
fifty: no service mesh splits the traffic and no Argo drives the rollout. A Kubernetes rolling
update is only needed when the *image* changes, never when a model version does.

    deployment.yaml            the servers: the store's URL from a Secret (never written here),
                               the artifact store's URL, probes on /readyz and /healthz, a
                               rolling update that keeps every replica up, a non-root read-only
                               container, Prometheus annotations
    service.yaml               ClusterIP port 80 -> the servers' port
    pdb.yaml                   policy/v1: one replica through a voluntary disruption
    configmap.yaml             the project's name as an mloop.yaml (`mloop -C /etc/mloop`):
                               every other setting comes from the environment
    store-secret.yaml.example  the Secret to create, with a placeholder; not a `.yaml`, so
                               `kubectl apply -f DIR` leaves it alone
    README.md                  the commands, in order
    image/                     the build context of the generic image: mloop with its serve,
                               postgres and s3 extras and the model flavors' libraries, pinned;
                               no model in it (the servers load versions from the artifact store
                               as the deployment changes), so one image serves every rollout

Nothing is written until everything is known: the files are made in a temporary folder beside
DIR and moved in at the end, so an error leaves DIR as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.deploy import prepare_folder
from mloop.deploy.docker import (
    PORT,
    dockerignore,
    install,
    mloop_requirement,
    pinned,
    python_tag,
    write_requirements,
)
from mloop.deploy.kubernetes import (
    deployment,
    disruption_budget,
    dump_yaml,
    k8s_object,
    object_name,
    scrape_annotations,
    server_container,
    service,
    token_env,
)
from mloop.errors import InvalidInput

if TYPE_CHECKING:
    from mloop.domain.endpoint import Deployment
    from mloop.domain.model import ModelVersion
    from mloop.project import Project
    from mloop.services.registry.models import ModelService

# Each replica holds up to `pool_size` store connections and reports to the store every few
# seconds: a thousand already exceeds what one PostgreSQL server accepts by default.
MAX_REPLICAS = 1000
PROJECT_DIR = "/etc/mloop"  # where the ConfigMap's mloop.yaml is mounted
SECRET_TEMPLATE = "store-secret.yaml.example"  # noqa: S105 (a file name)
WRITTEN = (
    "deployment.yaml",
    "service.yaml",
    "pdb.yaml",
    "configmap.yaml",
    SECRET_TEMPLATE,
    "README.md",
    "image",
)
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")  # what Kubernetes accepts as a data key
PLACEHOLDER = "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB"


@dataclass(frozen=True)
class EndpointManifests:
    """What `export_endpoint` wrote, and what the CLI says about it."""

    folder: Path
    files: tuple[Path, ...]
    deployment: Deployment
    image: str
    artifacts_uri: str
    store_secret: str
    store_secret_key: str
    local_store: bool  # the project's store is SQLite: the cluster needs its PostgreSQL one


def export_endpoint(
    project: Project,
    endpoint: str,
    dest: Path,
    *,
    replicas: int = 2,
    image: str | None = None,
    namespace: str | None = None,
    store_secret: str = "mloop-store",  # noqa: S107 (a Secret's name, not its value)
    store_secret_key: str = "uri",  # noqa: S107 (the key in it)
    artifacts_uri: str | None = None,
    cpu: str = "500m",
    memory: str = "1Gi",
    port: int = PORT,
    token_secret: str | None = None,
    packages: Sequence[str] = (),
    trust: bool = False,
    force: bool = False,
) -> EndpointManifests:
    """Write manifests running `replicas` servers of `endpoint`, and the image's build context.

    Args:
        project: the project whose store holds the endpoint (NotFound when it does not).
        endpoint: the endpoint's name.
        dest: the folder to write; created if missing.
        replicas: how many servers (1 to 1000).
        image: the image to run (default `mloop-serve:VERSION`, as `image/` builds it).
        namespace: set on every object; without it, kubectl's current namespace applies.
        store_secret: the Secret holding the store's URL (created by hand, never written here).
        store_secret_key: the key in that Secret.
        artifacts_uri: the artifact store the servers load versions from (default: the
            project's, when it is a URL such as s3://; a folder on this machine is refused).
        cpu: each server's CPU request (its limit is twice that).
        memory: each server's memory request and limit.
        port: the servers' port in the pod.
        token_secret: a Secret whose key `token` the servers require as a bearer token.
        packages: more distributions the models import, pinned as `mloop export docker` does.
        trust: the servers load versions with `--trust` (code runs when a python model or a
            pickle loads): every version deployed on the endpoint later, too.
        force: replace what an earlier export wrote in `dest`.

    Example:
        >>> export_endpoint(project, "web", Path("k8s"), replicas=3).image  # doctest: +SKIP
        'mloop-serve:0.1.0'
    """
    from mloop.domain.names import check_name

    if not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidInput(
            f"{replicas} replicas for endpoint {endpoint!r} is out of range",
            f"give --replicas from 1 to {MAX_REPLICAS}",
        )
    check_secret(store_secret, store_secret_key)
    if token_secret is not None:
        check_name(token_secret, "secret name")
    current = project.endpoints.get(endpoint)  # NotFound, as `mloop endpoints status` says it
    artifacts = shared_artifacts_uri(project, artifacts_uri)
    from mloop._version import __version__

    image = image or f"mloop-serve:{re.sub(r'[^A-Za-z0-9_.-]', '-', __version__)}"
    versions = [project.models.get(str(v.model)) for v in current.versions]
    name = object_name(f"endpoint-{endpoint}")
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "mloop",
        "mloop.io/endpoint": endpoint,
    }
    serve = ["-C", PROJECT_DIR, "serve", "--endpoint", endpoint]
    serve += ["--host", "0.0.0.0", "--port", str(port)]  # noqa: S104 (the pod's network is the boundary)
    serve += ["--trust"] if trust else []
    env = [*store_env(store_secret, store_secret_key, artifacts), *token_env(token_secret)]
    server = server_container(image, env, cpu, memory, port, args=serve)
    server["volumeMounts"].append({"name": "project", "mountPath": PROJECT_DIR, "readOnly": True})
    project_volume = {"name": "project", "configMap": {"name": f"{name}-project"}}
    annotations = scrape_annotations(port, token_secret)
    command = f"mloop export k8s --endpoint {endpoint}"
    first = header(command, image, dest)
    objects = {
        "deployment.yaml": deployment(
            meta, labels, labels, server, annotations, replicas, [project_volume]
        ),
        "service.yaml": service(meta, labels),
        "pdb.yaml": disruption_budget(meta, labels, replicas),
        "configmap.yaml": _project_file(meta, labels, project.settings.project),
    }
    texts = {f: first + dump_yaml(body) for f, body in objects.items()}
    texts[SECRET_TEMPLATE] = secret_template(namespace, store_secret, store_secret_key)
    texts["README.md"] = _readme(endpoint, dest, image, store_secret, store_secret_key, namespace)
    folder = write_atomically(
        dest,
        project.root,
        force,
        WRITTEN,
        texts,
        lambda context: _build_context(context, project.models, versions, port, packages),
    )
    files = tuple(folder / f for f in texts)
    local = project.settings.store_uri.startswith("sqlite")
    return EndpointManifests(
        folder, files, current, image, artifacts, store_secret, store_secret_key, local
    )


def check_secret(name: str, key: str) -> None:
    """A Secret's name (a DNS name) and a key in it, as Kubernetes accepts them."""
    from mloop.domain.names import check_name

    check_name(name, "secret name")
    if not _SECRET_KEY.fullmatch(key):
        raise InvalidInput(
            f"invalid secret key {key!r}",
            "a Secret's keys use letters, digits, '-', '_' and '.', e.g. uri",
        )


def shared_artifacts_uri(project: Project, given: str | None) -> str:
    """The artifact store the pods use: `given`, or the project's; a folder on this machine
    (no pod reads it) and a URL holding a password (it would be written in a file) are refused."""
    from mloop.domain.uris import redact

    uri = given if given is not None else project.settings.artifacts_uri
    if "://" not in uri or uri.startswith("file://"):
        where = "is" if given is not None else "(the project's) is"
        raise InvalidInput(
            f"the artifact store {uri} {where} a folder on this machine, which no pod can read",
            "give the store the project pushes to: --artifacts-uri s3://BUCKET/PREFIX",
        )
    if redact(uri) != uri:
        raise InvalidInput(
            f"the artifact store's URL {redact(uri)} holds a password, which would be "
            "written into the manifests",
            "give the URL without it (--artifacts-uri s3://BUCKET/PREFIX) and the pods their "
            "credentials from a Secret or a service account",
        )
    return uri


def store_env(secret: str, key: str, artifacts: str) -> list[dict[str, Any]]:
    """What every mloop pod on the shared store is given: the store's URL from the Secret, the
    artifact store's, and the pod's name as the user its Events name (so `endpoints history`
    and `controller status` say which pod)."""
    return [
        from_secret("MLOOP_STORE_URI", secret, key),
        {"name": "MLOOP_ARTIFACTS_URI", "value": artifacts},
        {"name": "MLOOP_USER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]


def header(command: str, image: str, dest: Path) -> str:
    """The first lines of every manifest: what wrote it and how to apply it."""
    return f"# Generated by `{command}` (image {image}).\n# Apply with: kubectl apply -f {dest}\n"


def secret_step(secret: str, key: str, namespace: str | None, manifest: str) -> str:
    """The README's step creating the store's Secret (its URL is never in the files)."""
    ns = f" -n {namespace}" if namespace else ""
    return f"""\
The store's URL, as a Secret (never in these files; `{SECRET_TEMPLATE}` shows its shape):

       kubectl{ns} create secret generic {secret} \\
           --from-literal={key}='{PLACEHOLDER}'

   The pods also need read access to the artifact store (for S3: a service account with an
   IAM role, or AWS_* variables from a Secret added to {manifest})."""


def from_secret(variable: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _project_file(meta: dict[str, Any], labels: dict[str, str], project: str) -> dict[str, Any]:
    """The project's mloop.yaml as the servers read it: its name only. The store and artifact
    URLs come from the environment; the rest (pipelines, gates) is not the server's business."""
    body = k8s_object("ConfigMap", "v1", {**meta, "name": f"{meta['name']}-project"}, labels)
    body["data"] = {"mloop.yaml": f"project: {project}"}
    return body


def secret_template(namespace: str | None, secret: str, key: str) -> str:
    meta: dict[str, Any] = {"name": secret, **({"namespace": namespace} if namespace else {})}
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque"}
    body["stringData"] = {key: PLACEHOLDER}
    return (
        "# A template: its name does not end in .yaml, so `kubectl apply -f DIR` skips it.\n"
        "# Rather than filling it in (and keeping a password in a file), create the Secret:\n"
        f"#   kubectl create secret generic {secret} --from-literal={key}='{PLACEHOLDER}'\n"
        + dump_yaml(body)
    )


def write_atomically(
    dest: Path,
    root: Path,
    force: bool,
    written: Sequence[str],
    texts: dict[str, str],
    build: Callable[[Path], None],
) -> Path:
    """Make every file in a temporary folder beside `dest`, then move them in: an error on
    the way (a full disk, a folder that is not empty) leaves `dest` as it was."""
    parent = dest.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=parent))
    try:
        for filename, text in texts.items():
            (staging / filename).write_text(text, encoding="utf-8")
        build(staging / "image")
        folder = prepare_folder(dest, force, written, root)
        for entry in staging.iterdir():
            os.replace(entry, folder / entry.name)
        return folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build_context(
    folder: Path,
    models: ModelService,
    versions: Sequence[ModelVersion],
    port: int,
    packages: Sequence[str],
) -> None:
    """The generic image's build context: mloop (the running one, as a wheel) with the extras
    a cluster server needs, and the libraries of every flavor the endpoint serves now, pinned
    to the environment of its newest version (constraints.txt pins the rest of it)."""
    from mloop.services.registry.bundle import environment_of

    newest = max(versions, key=lambda v: v.created)
    environment, listing = environment_of(models, newest)
    if environment is None:  # registered outside a run: this interpreter's packages
        from mloop.services.tracking.capture import installed_packages

        listing = installed_packages()
    needed: list[str] = []
    for version in versions:
        for line in pinned(version, listing, packages):
            if line not in needed:
                needed.append(line)
    folder.mkdir()
    mloop_line = mloop_requirement(folder / "wheels", "serve,postgres,s3")
    subject = f"{newest.ref} (the newest version the endpoint serves)"
    write_requirements(folder, subject, environment, listing, [mloop_line, *needed])
    base = f"python:{python_tag(environment)}-slim"
    (folder / "Dockerfile").write_text(_dockerfile(base, port), encoding="utf-8")
    (folder / ".dockerignore").write_text(DOCKERIGNORE, encoding="utf-8")


DOCKERIGNORE = dockerignore("requirements.txt", "constraints.txt", "wheels/")


def _dockerfile(base: str, port: int) -> str:
    url = f"http://127.0.0.1:{port}/healthz"
    probe = f"import urllib.request; urllib.request.urlopen('{url}', timeout=4)"
    check = json.dumps(["python", "-c", probe])
    return f"""\
# Generated by `mloop export k8s --endpoint`: a generic mloop server, no model in it.
#   docker build -t IMAGE .
# The servers load each model version from the artifact store (MLOOP_ARTIFACTS_URI) when the
# endpoint's deployment in the metadata store (MLOOP_STORE_URI) names it, so a new version
# needs no new image; one image serves every endpoint of the project.
{install(base)}
USER app
EXPOSE {port}
# slim has no curl: Python's urllib asks the server's liveness endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\
    CMD {check}
# The manifests give the arguments: -C {PROJECT_DIR} serve --endpoint NAME --host 0.0.0.0 ...
ENTRYPOINT ["mloop"]
CMD ["--help"]
"""


def _readme(
    endpoint: str,
    dest: Path,
    image: str,
    secret: str,
    key: str,
    namespace: str | None,
) -> str:
    ns = f" -n {namespace}" if namespace else ""
    return f"""\
# Endpoint {endpoint} on Kubernetes

Written by `mloop export k8s --endpoint {endpoint}`. Every replica runs
`mloop serve --endpoint {endpoint}` against the project's shared metadata store (PostgreSQL)
and artifact store: the servers follow the endpoint's deployment as `mloop deploy` changes it,
report their traffic to the store, and one of them at a time decides each canary step. No
service mesh, no Argo: a rollout is `mloop deploy {endpoint} MODEL:V --strategy canary` from
any machine that reaches the store, and `mloop endpoints status {endpoint}` shows it.

1. The image (no model in it; build once per mloop release, not per model version):

       docker build -t REGISTRY/{image} {dest}/image
       docker push REGISTRY/{image}

   then export again with `--image REGISTRY/{image}` (or edit deployment.yaml).

2. {secret_step(secret, key, namespace, "deployment.yaml")}

3. The servers:

       kubectl apply -f {dest}
       kubectl{ns} rollout status deployment/{object_name(f"endpoint-{endpoint}")}

A pod is ready (/readyz) once it has loaded the versions the deployment names; a rolling update
of the image never takes a replica away before its successor is ready (maxUnavailable 0), and a
stopping pod finishes its requests before it exits.
"""
