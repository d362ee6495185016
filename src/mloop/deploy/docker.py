"""A container build context for one model version: `mloop export docker NAME@ALIAS DIR`.

The context is self-contained, so `docker build DIR` needs neither the original store nor any
credentials for it:

    Dockerfile         python:X.Y-slim (X.Y from the version's environment), a non-root user,
                       pinned requirements, a HEALTHCHECK, `mloop serve` as the entrypoint
    requirements.txt   mloop and the flavor's libraries, pinned to the version's environment
    constraints.txt    every package of that environment, pinned, so what pip pulls in as a
                       dependency gets the version the model was trained with
    wheels/            mloop itself: the running mloop packed as a wheel (it is on no index)
    model/             the version as a model bundle (`mloop export bundle`): its record and
                       its files, exported verified from the store; the image serves it with
                       `mloop serve /app/model`, with no project and no metadata store
    MODEL_DIGEST       the version and the digest of its bundle
    README.md, .dockerignore

Digests are checked twice: the build loads the model once as the server will (every bundle file
is verified against its digest, and the bundle against MODEL_DIGEST), and `mloop serve`
verifies each file again whenever it loads the model at start.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.deploy import prepare_folder, resolve
from mloop.errors import InvalidInput, NeedsTrust

if TYPE_CHECKING:
    from mloop.domain.lineage import Environment
    from mloop.domain.model import ModelVersion
    from mloop.project import Project

PORT = 8080
_HEALTHZ = f"http://127.0.0.1:{PORT}/healthz"
# A PEP 440 version as installers name dist-info folders; pip refuses a constraint without one.
_VERSION = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9.]+)?", re.I)
UID = 10001
WRITTEN: tuple[str, ...] = ("Dockerfile", ".dockerignore", "README.md", "MODEL_DIGEST")
WRITTEN += ("requirements.txt", "constraints.txt", "wheels", "model")
BUNDLE = "/app/model"  # where the image keeps the model bundle
# The libraries each model flavor loads with (the `mloop[extra]` it names when they are missing).
FLAVOR_PACKAGES: dict[str, tuple[str, ...]] = {
    "sklearn": ("scikit-learn", "skops"),
    "onnx": ("onnx", "onnxruntime"),
}


@dataclass(frozen=True)
class DockerContext:
    """What `export_docker` wrote: the folder, the version, what the image serves, and how."""

    folder: Path
    version: ModelVersion
    serves: str
    image: str
    base_image: str
    requirements: tuple[str, ...]
    entrypoint: tuple[str, ...]


def normalise(name: str) -> str:
    """A distribution name in PEP 503 form, as environment records list them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def export_docker(
    project: Project,
    ref: str,
    dest: Path,
    *,
    packages: Sequence[str] = (),
    trust: bool = False,
    force: bool = False,
) -> DockerContext:
    """Write a build context serving `ref` into `dest` (empty, or emptied of ours with `force`).

    Args:
        project: the project whose registry holds the version.
        ref: `NAME@ALIAS`, `NAME:V` or `NAME` (pinned to the latest version).
        dest: the folder to write; created if missing.
        packages: extra distributions the model imports (a python or pickle model's
            libraries), as `NAME` (pinned from the environment) or `NAME==VERSION`.
        trust: serve a model that needs trust to load (`ModelService.trust_reason`: a python or
            pickle model, skops types off mloop's safe list): the build's check and the
            entrypoint get `--trust`, as `mloop serve` requires for it.
        force: replace what an earlier export wrote in `dest`.

    Example:
        >>> ctx = export_docker(project, "churn@champion", Path("build"))  # doctest: +SKIP
        >>> ctx.entrypoint[-4:]
        ('--host', '0.0.0.0', '--port', '8080')
    """
    version, serves = resolve(project, ref)
    reason = project.models.trust_reason(version)
    if reason is not None and not trust:  # the image's own check would refuse it otherwise
        raise NeedsTrust.of(reason, version.ref)
    trusting = reason is not None
    from mloop.services.registry.bundle import environment_of, write_bundle

    environment, listing = environment_of(project.models, version)
    if environment is None:  # registered outside a run: this interpreter's packages
        from mloop.services.tracking.capture import installed_packages

        listing = installed_packages()
    requirements = pinned(version, listing, packages)
    folder = prepare_folder(dest, force, WRITTEN, project.root)
    mloop_line = mloop_requirement(folder / "wheels")
    write_bundle(project.models, version, folder / "model")
    base = f"python:{python_tag(environment)}-slim"
    image = f"mloop-{version.name}:{version.version}"
    # 0.0.0.0: see the comment the Dockerfile carries above its ENTRYPOINT.
    serve = ["serve", BUNDLE, "--host", "0.0.0.0", "--port", str(PORT)]  # noqa: S104
    serve += ["--trust"] if trusting else []
    entrypoint = ("mloop", *serve)
    write_requirements(folder, version.ref, environment, listing, [mloop_line, *requirements])
    _write(folder / "MODEL_DIGEST", f"{version.ref} {version.digest}\n")
    _write(folder / "Dockerfile", _dockerfile(version, serves, base, image, entrypoint))
    _write(folder / ".dockerignore", DOCKERIGNORE)
    _write(folder / "README.md", _readme(version, serves, image, _example(project, version)))
    needed = (mloop_line, *requirements)
    return DockerContext(folder, version, serves, image, base, needed, entrypoint)


def python_tag(environment: Environment | None) -> str:
    """`3.11` from `CPython 3.11.9 (linux)`: the image's Python is the one the model knew."""
    found = re.search(r"(\d+)\.(\d+)", environment.python) if environment else None
    if found is None:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"{found.group(1)}.{found.group(2)}"


def pinned(version: ModelVersion, listing: Sequence[str], extra: Sequence[str]) -> list[str]:
    """The flavor's libraries and the `extra` packages, each `name==version` from `listing`."""
    pins = {normalise(n): v for n, _, v in (line.partition("==") for line in listing)}
    wanted = [*FLAVOR_PACKAGES.get(version.flavor, ()), *extra]
    lines: list[str] = []
    for item in wanted:
        name, sep, given = item.partition("==")
        name = name.strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise InvalidInput(f"{item!r} is not a package name", "give NAME or NAME==VERSION")
        pin = given.strip() if sep else pins.get(normalise(name))
        if not pin:
            raise InvalidInput(
                f"{name} is not in the environment {version.ref} was made in, so there is no "
                "version to pin it to",
                f"give the version: --package {name}==VERSION",
            )
        line = f"{name}=={pin}"
        if line not in lines:
            lines.append(line)
    return lines


def mloop_requirement(wheels: Path, extras: str = "serve") -> str:
    """How the image installs mloop: the running mloop packed as a wheel into the context (as
    `mloop init` does for a project). mloop is on no package index, and a name on an index
    could be someone else's; the wheel is exactly the code that exported the image."""
    from mloop.templates.wheel import running_wheel

    wheel = running_wheel()
    wheels.mkdir(parents=True, exist_ok=True)
    (wheels / wheel.filename).write_bytes(wheel.content)
    return f"./wheels/{wheel.filename}[{extras}]"  # the model server's extra, and more


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def write_requirements(
    folder: Path,
    subject: str,
    environment: Environment | None,
    listing: Sequence[str],
    needed: Sequence[str],
) -> None:
    """requirements.txt: what the server needs; constraints.txt: the whole environment, so
    whatever pip installs as a dependency gets the version the model was made with."""
    source = (
        f"# Pinned from environment {environment.digest[:12]}: {environment.python}.\n"
        if environment
        else "# The version records no environment (registered outside a run): pinned from\n"
        "# the interpreter that exported it.\n"
    )
    _write(
        folder / "requirements.txt",
        f"# What the server of {subject} needs. Install from this folder:\n"
        "#   pip install -r requirements.txt\n"
        + source
        + "-c constraints.txt\n"
        + "".join(f"{line}\n" for line in needed),
    )
    # mloop comes from requirements.txt (a wheel of its own, maybe another build of it).
    others = [
        f"{name}=={pin}"
        for name, _, pin in (line.partition("==") for line in listing)
        if normalise(name) != "mloop" and _VERSION.fullmatch(pin)
    ]
    _write(
        folder / "constraints.txt",
        f"# Every package of the environment {subject} was made in, pinned; read by\n"
        "# requirements.txt with -c, so only what the server needs is installed.\n"
        + source
        + "".join(f"{line}\n" for line in others),
    )


# Loads the bundle as the server does (each file verified against its digest) and says so.
VERIFY = (
    "import sys; from pathlib import Path; "
    "from mloop.services.registry.bundle import open_bundle; "
    "folder, ref, digest = sys.argv[1:4]; bundle = open_bundle(Path(folder)); "
    "found = bundle.version; bundle.load(trust=sys.argv[4:] == ['trust']); "
    "sys.exit(f'{folder} holds {found.ref} bundle {found.digest}, not {ref} {digest}') "
    "if (found.ref, found.digest) != (ref, digest) "
    "else print(f'verified {ref}: bundle {digest[:12]} and every file in it match their digests')"
)


def dockerignore(*kept: str) -> str:
    """A .dockerignore sending the builder only what the Dockerfile copies (`kept`)."""
    lines = ["# Only what the Dockerfile copies is sent to the builder.", "*"]
    return "\n".join([*lines, *(f"!{k}" for k in kept), "**/__pycache__", ""])


DOCKERIGNORE = dockerignore(
    "requirements.txt", "constraints.txt", "wheels/", "model/", "MODEL_DIGEST"
)


def install(base: str) -> str:
    """The Dockerfile's first steps, for every image mloop writes: the base, a non-root user,
    and the pinned requirements (mloop from its wheel in `wheels/`)."""
    return f"""\
FROM {base}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# The server never needs root: it runs as this fixed, unprivileged user (Kubernetes'
# runAsNonRoot checks the numeric id).
RUN groupadd --gid {UID} app \\
 && useradd --uid {UID} --gid app --create-home --shell /usr/sbin/nologin app

WORKDIR /app
COPY requirements.txt constraints.txt ./
COPY wheels/ ./wheels/
RUN pip install --no-cache-dir -r requirements.txt
"""


def _dockerfile(
    version: ModelVersion,
    serves: str,
    base: str,
    image: str,
    entrypoint: Sequence[str],
) -> str:
    probe = f"import urllib.request; urllib.request.urlopen('{_HEALTHZ}', timeout=4)"
    check = json.dumps(["python", "-c", probe])
    trust = ["trust"] if "--trust" in entrypoint else []
    verify = json.dumps(["python", "-c", VERIFY, BUNDLE, version.ref, version.digest, *trust])
    return f"""\
# Generated by `mloop export docker {serves}` ({version.ref}, bundle {version.digest[:12]}).
#   docker build -t {image} .
#   docker run --rm -p {PORT}:{PORT} {image}
{install(base)}
# The model bundle of {version.ref}: its record and files; the server only reads it (no
# project, no metadata store). Owned by the server's user, so a strict umask on the machine
# that exported it cannot leave it unreadable.
COPY --chown=app:app model/ ./model/
COPY MODEL_DIGEST ./
LABEL org.opencontainers.image.title="{image.split(":")[0]}" \\
      io.mloop.model="{version.ref}" \\
      io.mloop.model.digest="{version.digest}"

USER app
# Load the model once now, as the server will: every file is checked against its digest on the
# way (the build fails on a damaged one), and so it is again each time the server starts.
RUN {verify}

EXPOSE {PORT}
# slim has no curl: Python's urllib asks the server's liveness endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\
    CMD {check}
# 0.0.0.0 on purpose: inside the container the server must accept connections arriving from
# outside its network namespace (`docker run -p`, a Kubernetes Service); the container's own
# network, not the bind address, is the boundary here.
ENTRYPOINT {json.dumps(list(entrypoint))}
"""


def _example(project: Project, version: ModelVersion) -> str:
    """An MLflow `/invocations` body the image's server accepts: one row of the signature's
    types, with values the training data really held where it was profiled."""
    from mloop.services.registry.signature import example_row

    if version.signature is None:
        return json.dumps({"dataframe_split": {"columns": ["..."], "data": [["..."]]}})
    row = example_row(version.signature, project.models.training_tables(version))
    return json.dumps({"dataframe_split": {"columns": list(row), "data": [list(row.values())]}})


def _readme(version: ModelVersion, serves: str, image: str, example: str) -> str:
    return f"""\
# {image}: a container that serves {version.ref}

Written by `mloop export docker {serves}`. Everything the image needs is in this folder:
`model/` is the model bundle of {version.ref} (its record and files, served with no project
or store: `mloop serve ./model` runs it here too), and `requirements.txt` pins what the server
needs to the environment the model was made in (`constraints.txt` pins the rest). The digest
of the model, also in `MODEL_DIGEST`:

    {version.digest}

    docker build -t {image} .
    docker run --rm -p {PORT}:{PORT} {image}

    curl -s localhost:{PORT}/readyz
    curl -s localhost:{PORT}/invocations -H 'Content-Type: application/json' \\
         -d {shlex.quote(example)}

The image runs as the unprivileged user `app` (uid {UID}), checks every object's digest while
it builds and again when the server loads the model, and answers `/healthz` for Docker's
HEALTHCHECK, `/readyz` once the model is loaded, and `/metrics` for Prometheus. To run it on
Kubernetes, push it to a registry and write manifests with
`mloop export k8s {serves} DIR --image REGISTRY/{image}`.
"""
