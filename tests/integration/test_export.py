"""`mloop export docker|k8s`: a build context whose environment installs and serves the model,
and Kubernetes manifests that `kubernetes-validate` accepts.

There is no Docker engine here, so the container test does what the Dockerfile does, on this
machine: it makes a venv from the context's requirements.txt (pip, as the image's RUN step),
runs the Dockerfile's exec-form RUN steps and then its ENTRYPOINT, all parsed from the file,
with the WORKDIR mapped to the context folder, 127.0.0.1 for the bind address and a free port.
Building that venv takes about half a minute, so one context and one venv serve the module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from mloop.server.inference import ServeSettings
from tests.servers import free_port, wait_for

KUBERNETES_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
KUBERNETES_VERSION = "1.30.0"  # one of the schema sets kubernetes-validate ships (offline)


@dataclass
class Exported:
    root: Path  # the source project
    context: Path  # what `mloop export docker churn@champion` wrote
    output: str
    rows: pd.DataFrame
    expected: list[int]  # churn:2's own predictions on `rows`


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MLOOP_")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """A project with churn:1 and churn:2 (= champion), and churn@champion exported."""
    import mloop
    from mloop.cli.main import main
    from mloop.project import Project, init_project

    base = tmp_path_factory.mktemp("export")
    root, _ = init_project(base / "proj")
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"x1": rng.normal(size=300), "x2": rng.normal(size=300)})
    label = (frame.x1 - 0.7 * frame.x2 > 0).astype(int)
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("MLOOP_")]:
            mp.delenv(name)
        mp.chdir(root)
        for c in (0.001, 1.0):
            with mloop.start_run("fit", params={"C": c}):
                mloop.register_model(LogisticRegression(C=c).fit(frame, label), "churn")
        Project.open(root).models.set_alias("churn", 2, "champion")
        context = base / "context"
        stdout = base / "export.out"
        with stdout.open("w") as out, pytest.MonkeyPatch.context() as io:
            io.setattr(sys, "stdout", out)
            code = main(["-C", str(root), "export", "docker", "churn@champion", str(context)])
        assert code == 0, stdout.read_text()
        rows = frame.head(20)
        expected = Project.open(root).models.load("churn:2").predict(rows).tolist()
        yield Exported(root, context, stdout.read_text(), rows, expected)


@pytest.fixture(scope="module")
def context_venv(exported: Exported, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv made from the context's requirements.txt, as the image's pip step makes it."""
    venv = tmp_path_factory.mktemp("context-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
        cwd=exported.context,  # the Dockerfile's WORKDIR, where requirements.txt lies
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    yield venv
    shutil.rmtree(venv, ignore_errors=True)  # ~0.7 GB


@dataclass
class Dockerfile:
    base: str
    user: str
    workdir: str
    env: dict[str, str]
    runs: list[list[str]]  # exec-form RUN steps, in order
    healthcheck: str
    expose: str
    entrypoint: list[str]


def parse_dockerfile(path: Path) -> Dockerfile:
    """The instructions the test replays (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    found: dict[str, list[str]] = {}
    for line in logical:
        keyword, _, rest = line.partition(" ")
        found.setdefault(keyword.upper(), []).append(rest.strip())
    env: dict[str, str] = {}
    for item in found.get("ENV", []):
        for part in shlex.split(item):
            key, _, value = part.partition("=")
            env[key] = value
    return Dockerfile(
        base=found["FROM"][-1],
        user=found["USER"][-1],
        workdir=found["WORKDIR"][-1],
        env=env,
        runs=[json.loads(r) for r in found.get("RUN", []) if r.startswith("[")],
        healthcheck=found["HEALTHCHECK"][-1],
        expose=found["EXPOSE"][-1],
        entrypoint=json.loads(found["ENTRYPOINT"][-1]),
    )


def in_context(args: list[str], dockerfile: Dockerfile, context: Path, venv: Path) -> list[str]:
    """A container command as it runs here: its programs from the venv, WORKDIR -> context."""
    workdir = dockerfile.workdir.rstrip("/")
    mapped = [str(context) + a[len(workdir) :] if a.startswith(workdir + "/") else a for a in args]
    return [str(venv / "bin" / mapped[0]), *mapped[1:]]


def test_the_context_is_self_contained_and_pinned(exported: Exported) -> None:
    from mloop.project import Project
    from mloop.services.registry.bundle import open_bundle

    ctx = exported.context
    assert "docker build -t mloop-churn:2" in exported.output
    for name in ("Dockerfile", ".dockerignore", "README.md", "requirements.txt", "MODEL_DIGEST"):
        assert (ctx / name).is_file(), name
    dockerfile = parse_dockerfile(ctx / "Dockerfile")
    assert dockerfile.base == "python:3.11-slim"
    assert dockerfile.user == "app" and "useradd --uid 10001" in (ctx / "Dockerfile").read_text()
    assert "/healthz" in dockerfile.healthcheck and dockerfile.expose == "8080"
    assert dockerfile.entrypoint[:3] == ["mloop", "serve", "/app/model"]  # a bundle, no -C

    source = Project.open(exported.root)
    version = source.models.get("churn@champion")
    assert (ctx / "MODEL_DIGEST").read_text().split() == ["churn:2", version.digest]
    # Requirements: the flavor's libraries at the environment's versions, mloop as a wheel.
    assert version.environment is not None
    packages_digest = source.metadata.environments.get(version.environment).packages_digest
    pins = source.artifacts.read_bytes(packages_digest).decode().split()
    lines = [x for x in (ctx / "requirements.txt").read_text().splitlines() if x[:1] != "#"]
    sklearn_pin = next(p for p in pins if p.startswith("scikit-learn=="))
    assert sklearn_pin in lines and next(p for p in pins if p.startswith("skops==")) in lines
    wheel = next(x for x in lines if x.startswith("./wheels/mloop-"))
    assert wheel.endswith(".whl[serve]")  # the server's extra: uvicorn is no core dependency
    assert (ctx / wheel.removesuffix("[serve]")).is_file() and "-c constraints.txt" in lines
    assert sklearn_pin in (ctx / "constraints.txt").read_text().splitlines()

    # The model bundle: exactly churn:2's record and files, and no store or project beside it.
    bundle = open_bundle(ctx / "model")
    assert bundle.version == version
    assert bundle.load().predict(exported.rows).tolist() == exported.expected
    assert not list(ctx.rglob("mloop.yaml")) and not list(ctx.rglob("*.db"))
    source.close()


def test_the_entrypoint_serves_the_model_from_the_context_environment(
    exported: Exported, context_venv: Path
) -> None:
    ctx = exported.context
    dockerfile = parse_dockerfile(ctx / "Dockerfile")
    env = {**_clean_env(), **dockerfile.env}
    printed = ""
    for step in dockerfile.runs:  # the build's checks: the model loads, digests verified
        done = subprocess.run(
            in_context(step, dockerfile, ctx, context_venv),
            cwd=ctx,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        printed += done.stdout
    assert (
        f"verified churn:2: bundle {(ctx / 'MODEL_DIGEST').read_text().split()[1][:12]}" in printed
    )
    port = free_port()
    command = in_context(dockerfile.entrypoint, dockerfile, ctx, context_venv)
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    with serving(command, port, cwd=ctx, env=env) as url:
        assert predictions(url, exported.rows) == exported.expected
        assert httpx.get(f"{url}/readyz", timeout=5).json()["model"] == "churn:2"


@contextlib.contextmanager
def serving(command: list[str], port: int, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """`command`, a `mloop serve` on 127.0.0.1:`port`, until it is ready; stopped on leaving.
    Its output goes to serve.log beside `cwd`, shown if it never turns ready."""
    url = f"http://127.0.0.1:{port}"
    log = cwd.parent / f"serve-{port}.log"
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)
    try:
        try:
            wait_for(_answers(f"{url}/readyz", server), 90, "the server")
        except (TimeoutError, AssertionError) as exc:
            raise AssertionError(f"{exc}; its log:\n{log.read_text()}") from exc
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def predictions(url: str, rows: pd.DataFrame) -> list[object]:
    """What the server at `url` answers for `rows` on /invocations (MLflow's split frame)."""
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}
    answer = httpx.post(f"{url}/invocations", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["predictions"])


def _answers(url: str, server: subprocess.Popen[bytes]) -> Callable[[], bool]:
    def check() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.returncode}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    return check


def _validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", KUBERNETES_VERSION, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_k8s_manifests_pass_kubernetes_validate(exported: Exported, cli, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    done = cli("-C", str(exported.root), "export", "k8s", "churn@champion", str(out))
    assert done.code == 0, done.err
    files = sorted(out.glob("*.yaml"))
    assert [f.name for f in files] == ["deployment.yaml", "hpa.yaml", "pdb.yaml", "service.yaml"]
    checked = _validate(*files)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    docs = {f.stem: yaml.safe_load(f.read_text()) for f in files}
    deployment = docs["deployment"]
    pod = deployment["spec"]["template"]
    (server,) = pod["spec"]["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert server["image"] == "mloop-churn:2"
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["resources"]["requests"] and server["resources"]["limits"]
    security = server["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    assert pod["metadata"]["labels"]["mloop.io/version"] == "2"
    # SIGTERM drains requests for up to the server's time-out (+5 s): no SIGKILL before that
    assert pod["spec"]["terminationGracePeriodSeconds"] > ServeSettings().timeout + 5
    assert docs["service"]["spec"]["ports"][0]["port"] == 80
    assert docs["hpa"]["apiVersion"] == "autoscaling/v2"
    assert docs["pdb"]["apiVersion"] == "policy/v1" and docs["pdb"]["spec"]["minAvailable"] == 1


def test_k8s_with_a_token_secret_wires_the_token_and_drops_annotation_scraping(
    exported: Exported, cli, tmp_path: Path
) -> None:
    out = tmp_path / "k8s-token"
    args = ["-C", str(exported.root), "export", "k8s", "churn@champion", str(out)]
    done = cli(*args, "--token-secret", "churn-token")
    assert done.code == 0, done.err
    assert "kubectl create secret generic churn-token" in done.out
    assert _validate(*sorted(out.glob("*.yaml"))).returncode == 0
    pod = yaml.safe_load((out / "deployment.yaml").read_text())["spec"]["template"]
    (server,) = pod["spec"]["containers"]
    token = next(e for e in server["env"] if e["name"] == "MLOOP_SERVE_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "churn-token", "key": "token"}
    assert "prometheus.io/scrape" not in pod["metadata"]["annotations"]  # it would get 401s
    bad = cli(*args[:-1], str(tmp_path / "bad"), "--token-secret", "Not_A_Name")
    assert bad.code != 0 and "secret name" in bad.err


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  replicas: 2\n", "  replicas: two\n"),
        ("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"),
    ],
    ids=["wrong-type", "misspelt-field"],
)
def test_an_invalid_edit_fails_validation(
    exported: Exported, cli, tmp_path: Path, old: str, new: str
) -> None:
    out = tmp_path / "k8s"
    assert cli("-C", str(exported.root), "export", "k8s", "churn:2", str(out)).code == 0
    manifest = out / "deployment.yaml"
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new))
    assert _validate(manifest).returncode != 0


def test_an_unknown_model_is_a_clear_error(exported: Exported, cli, tmp_path: Path) -> None:
    done = cli("-C", str(exported.root), "export", "docker", "nope@x", str(tmp_path / "out"))
    assert done.code == 1
    assert done.err.startswith("error: ") and "nope" in done.err
    assert "hint: " in done.err and "Traceback" not in done.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["docker", "k8s"])
def test_a_non_empty_folder_is_refused_without_force(
    exported: Exported, cli, tmp_path: Path, target: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = cli("-C", str(exported.root), "export", target, "churn:1", str(out))
    assert done.code == 1
    assert "is not empty" in done.err and "--force" in done.err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_an_earlier_export_and_keeps_other_files(
    exported: Exported, cli, tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    assert cli("-C", str(exported.root), "export", "k8s", "churn:1", str(out)).code == 0
    (out / "keep.txt").write_text("mine")
    again = cli("-C", str(exported.root), "export", "k8s", "churn:2", str(out), "--force")
    assert again.code == 0, again.err
    assert "image: mloop-churn:2" in (out / "deployment.yaml").read_text()
    assert (out / "keep.txt").read_text() == "mine"


class Rule:
    """A model no safe flavor stores: registered as pickle, so serving it needs trust."""

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return (rows["x1"] > 0).to_numpy().astype(int)


def test_a_code_model_needs_trust_and_unknown_packages_need_a_version(
    exported: Exported, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mloop.project import Project

    project = Project.open(exported.root)
    assert project.models.register(Rule(), "rules", trust=True).flavor == "pickle"
    project.close()
    monkeypatch.chdir(exported.root)
    refused = cli("export", "docker", "rules:1", str(tmp_path / "a"))
    assert refused.code == 1 and "runs code" in refused.err and "--trust" in refused.err
    unpinned = ["export", "docker", "churn:1", str(tmp_path / "b"), "--package", "no-such-lib"]
    done = cli(*unpinned)
    assert done.code == 1 and "--package no-such-lib==VERSION" in done.err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def readme_request(readme: Path) -> dict[str, object]:
    """The body of the README's example `curl … /invocations -d BODY`, as the shell reads it."""
    text = readme.read_text().replace("\\\n", " ")
    (command,) = [line for line in text.splitlines() if "/invocations" in line]
    words = shlex.split(command)
    return dict(json.loads(words[words.index("-d") + 1]))


def test_the_readme_example_is_accepted_by_the_image_server(
    project: Path, cli, tmp_path: Path
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    import mloop

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(1, 72, 200),
            "charges": rng.normal(70, 20, 200),
            "contract": rng.choice(["month-to-month", "one-year", "two-year"], 200),
            "owner": rng.choice(["O'Brien", "Smith"], 200),  # a quote the shell must survive
        }
    )
    frame["label"] = (frame.contract == "month-to-month").astype(int)
    frame.to_csv(project / "churn.csv", index=False)
    mloop.data.add("churn", "churn.csv")
    features = ["tenure", "charges", "contract", "owner"]
    encode = ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="error"), ["contract", "owner"])],
        remainder="passthrough",
    )
    with mloop.start_run("fit"):
        data = mloop.data.get("churn").to_pandas()
        model = make_pipeline(encode, LogisticRegression()).fit(data[features], data["label"])
        mloop.register_model(model, "churn", input_example=data[features].head(5))
    done = cli("export", "docker", "churn:1", str(tmp_path / "context"))
    assert done.code == 0, done.err
    body = readme_request(tmp_path / "context/README.md")
    split = body["dataframe_split"]
    row = dict(zip(split["columns"], split["data"][0], strict=True))
    assert row["contract"] in {"month-to-month", "one-year", "two-year"}  # a real category
    assert isinstance(row["tenure"], int) and isinstance(row["charges"], float)

    port = free_port()
    command = [sys.executable, "-m", "mloop", "serve", str(tmp_path / "context/model")]
    # No project in the context or above it: the bundle is all the server needs.
    with serving([*command, "--port", str(port)], port, tmp_path / "context", _clean_env()) as url:
        answer = httpx.post(f"{url}/invocations", json=body, timeout=30)  # the README's request
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [int(row["contract"] == "month-to-month")]
