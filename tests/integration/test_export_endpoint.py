"""`mloop export k8s --endpoint ENDPOINT DIR`: manifests for N replicas of `mloop serve
--endpoint` on the project's shared store, which `kubernetes-validate` accepts and which never
hold the store's URL, and the build context of the generic image they run.

The project here is the one a cluster uses: PostgreSQL for metadata (its URL, password and
all, in MLOOP_STORE_URI) and S3 (moto) for artifacts. There is no Docker engine here, so the
image is checked as text: what it installs and runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

import mloop
from mloop.server.inference import ServeSettings
from tests.conftest import CliResult
from tests.integration.test_export import _validate, parse_dockerfile

MANIFESTS = ["configmap.yaml", "deployment.yaml", "pdb.yaml", "service.yaml"]


def _register(count: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] > 0).astype(int)
    for _ in range(count):
        mloop.register_model(LogisticRegression().fit(x, y), "churn", input_example=x[:2])


@pytest.fixture
def shared(make_project: Callable[..., Path], cli: Callable[..., CliResult]) -> Path:
    """A project on PostgreSQL and S3 whose endpoint `web` runs a canary of churn:2."""
    root = make_project(store="postgres", artifacts="s3")
    _register(2)
    assert cli("deploy", "web", "churn:1").code == 0
    assert cli("deploy", "web", "churn:2", "--strategy", "canary").code == 0
    return root


def _docs(folder: Path) -> dict[str, Any]:
    return {f.stem: yaml.safe_load(f.read_text()) for f in sorted(folder.glob("*.yaml"))}


def _server(docs: dict[str, Any]) -> dict[str, Any]:
    (server,) = docs["deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(server)


@pytest.mark.postgres
@pytest.mark.s3
def test_manifests_run_replicas_of_the_endpoint_server_and_pass_validation(
    shared: Path, cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    store_uri = os.environ["MLOOP_STORE_URI"]
    artifacts = os.environ["MLOOP_ARTIFACTS_URI"]
    out = tmp_path / "k8s"
    done = cli("export", "k8s", "--endpoint", "web", str(out), "--replicas", "3", "--json")
    assert done.code == 0, done.err
    said = json.loads(done.out)
    assert (said["endpoint"], said["replicas"]) == ("web", 3)
    assert said["versions"] == ["churn:1", "churn:2"]
    assert sorted(f.name for f in out.glob("*.yaml")) == MANIFESTS
    checked = _validate(*sorted(out.glob("*.yaml")))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # the Secret's template is a valid Secret too, once given a name kubectl applies
    template = tmp_path / "secret.yaml"
    template.write_text((out / "store-secret.yaml.example").read_text())
    assert _validate(template).returncode == 0

    docs = _docs(out)
    spec = docs["deployment"]["spec"]
    pod = spec["template"]
    server = _server(docs)
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # never all down
    assert server["args"] == [
        "-C",
        "/etc/mloop",
        "serve",
        "--endpoint",
        "web",
        "--host",
        "0.0.0.0",  # noqa: S104 (inside the pod)
        "--port",
        "8080",
    ]
    env = {e["name"]: e for e in server["env"]}
    assert env["MLOOP_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "mloop-store",
        "key": "uri",
    }
    assert "value" not in env["MLOOP_STORE_URI"]
    assert env["MLOOP_ARTIFACTS_URI"]["value"] == artifacts == said["artifacts_uri"]
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    # SIGTERM drains requests for up to the server's time-out (+5 s): no SIGKILL before that
    assert pod["spec"]["terminationGracePeriodSeconds"] > ServeSettings().timeout + 5
    security = server["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/etc/mloop"}  # model files are copied to /tmp to verify
    assert mounts["/etc/mloop"]["readOnly"] is True
    assert server["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["labels"]["mloop.io/endpoint"] == "web"
    assert docs["service"]["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert docs["pdb"]["spec"]["minAvailable"] == 1
    # `mloop -C /etc/mloop` finds the project there, named as this one
    project_file = docs["configmap"]["data"]["mloop.yaml"]
    assert yaml.safe_load(project_file) == {"project": "proj"}

    # The store's URL (with its password) is in no file, not even the image's context.
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        assert store_uri.encode() not in path.read_bytes(), path
    assert "--from-literal=uri=" in (out / "README.md").read_text()


def _as_in_the_pod(server: dict[str, Any], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: values, Secret keys, the pod name."""
    env: dict[str, str] = {}
    for item in server["env"]:
        source = item.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"], ref["key"]]
        elif "fieldRef" in source:
            env[item["name"]] = "endpoint-web-7d9f-abcde"
        else:
            env[item["name"]] = item["value"]
    return env


@pytest.mark.postgres
@pytest.mark.s3
def test_the_pods_settings_reach_the_shared_store_and_its_endpoint(
    shared: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """The project folder the ConfigMap mounts, the Deployment's environment (the Secret's
    value filled in as the kubelet does) and its arguments up to `serve`: the mloop they start
    finds the project, opens the shared store and reads the endpoint the servers will serve."""
    import os
    import subprocess

    from tests.conftest import MLOOP

    out = tmp_path / "k8s"
    assert cli("export", "k8s", "--endpoint", "web", str(out)).code == 0
    docs = _docs(out)
    server = _server(docs)
    mounted = tmp_path / "etc-mloop"  # the ConfigMap's volume
    mounted.mkdir()
    for key, text in docs["configmap"]["data"].items():
        (mounted / key).write_text(text)
    secrets = {("mloop-store", "uri"): os.environ["MLOOP_STORE_URI"]}
    pod_env = _as_in_the_pod(server, secrets)
    pod_env["HOME"] = str(tmp_path / "home")  # the /tmp emptyDir
    # The machine's other variables stay (S3's endpoint, PATH), the test's MLOOP_* do not.
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLOOP_")}
    args = [mounted if a == "/etc/mloop" else a for a in server["args"][:2]]
    done = subprocess.run(
        [*MLOOP, *map(str, args), "endpoints", "status", "web", "--json"],
        env={**base, **pod_env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["endpoint"], status["strategy"]) == ("web", "canary")
    assert {v["model"] for v in status["versions"]} == {"churn:1", "churn:2"}
    assert [p.name for p in mounted.iterdir()] == ["mloop.yaml"]  # nothing written beside it


@pytest.mark.postgres
@pytest.mark.s3
def test_options_name_the_secret_port_image_and_one_replica_can_be_drained(
    shared: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    args = ["export", "k8s", "--endpoint", "web", str(out), "--replicas", "1", "--port", "9000"]
    args += ["--store-secret", "ml-db", "--store-secret-key", "url", "--namespace", "ml"]
    args += ["--image", "reg.example/mloop-serve:1", "--artifacts-uri", "s3://models/prod"]
    done = cli(*args, "--token-secret", "web-token", "--trust")
    assert done.code == 0, done.err
    assert "kubectl create secret generic ml-db --from-literal=url=" in done.out
    assert _validate(*sorted(out.glob("*.yaml"))).returncode == 0
    docs = _docs(out)
    server = _server(docs)
    env = {e["name"]: e for e in server["env"]}
    assert env["MLOOP_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "ml-db", "key": "url"}
    assert env["MLOOP_ARTIFACTS_URI"]["value"] == "s3://models/prod"
    assert env["MLOOP_SERVE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "web-token",
        "key": "token",
    }
    annotations = docs["deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations  # it cannot send the token
    assert server["image"] == "reg.example/mloop-serve:1"
    assert server["args"][-3:] == ["--port", "9000", "--trust"]  # python models load
    assert server["ports"][0]["containerPort"] == 9000
    assert all(d["metadata"]["namespace"] == "ml" for d in docs.values())
    assert docs["deployment"]["spec"]["replicas"] == 1
    assert docs["pdb"]["spec"]["minAvailable"] == 0  # 1 would block every node drain
    secret = yaml.safe_load((out / "store-secret.yaml.example").read_text())
    assert secret["metadata"] == {"name": "ml-db", "namespace": "ml"}
    assert list(secret["stringData"]) == ["url"]
    assert "EXPOSE 9000" in (out / "image" / "Dockerfile").read_text()


def test_the_image_is_generic_and_installs_the_cluster_extras(
    make_project: Callable[..., Path], cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    make_project()
    _register(1)
    assert cli("deploy", "web", "churn:1").code == 0
    out = tmp_path / "k8s"
    done = cli("export", "k8s", "--endpoint", "web", str(out), "--artifacts-uri", "s3://b/p")
    assert done.code == 0, done.err
    assert "SQLite" in done.err  # the cluster needs the shared store holding the endpoint
    context = out / "image"
    dockerfile = parse_dockerfile(context / "Dockerfile")
    assert dockerfile.entrypoint == ["mloop"]
    assert dockerfile.user == "app" and dockerfile.expose == "8080"
    assert dockerfile.base.startswith("python:3.") and dockerfile.base.endswith("-slim")
    text = (context / "Dockerfile").read_text()
    assert "COPY wheels/ ./wheels/" in text and "pip install --no-cache-dir -r requirements" in text
    assert "model" not in (context / ".dockerignore").read_text()  # no model in the image
    requirements = (context / "requirements.txt").read_text().splitlines()
    (wheel,) = [r for r in requirements if r.startswith("./wheels/")]
    assert wheel.endswith("[serve,postgres,s3]")
    assert (context / wheel.removeprefix("./").split("[")[0]).is_file()
    assert any(r.startswith("scikit-learn==") for r in requirements)  # churn's flavor
    assert "-c constraints.txt" in requirements
    # the image runs the Deployment's arguments: mloop, then serve --endpoint
    server = _server(_docs(out))
    assert server["image"] == f"mloop-serve:{mloop.__version__}"
    assert server["args"][2:5] == ["serve", "--endpoint", "web"]


@pytest.fixture
def local(make_project: Callable[..., Path], cli: Callable[..., CliResult]) -> Path:
    root = make_project()
    _register(1)
    assert cli("deploy", "web", "churn:1").code == 0
    return root


S3 = ["--artifacts-uri", "s3://b/p"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "nope", "OUT", *S3], "no endpoint 'nope'"),
        (["--endpoint", "web", "OUT", "--replicas", "1001", *S3], "out of range"),
        (["--endpoint", "web", "OUT", "--replicas", "0", *S3], "--replicas"),
        (["churn:1", "OUT", "--endpoint", "web", *S3], "not both"),
        (["OUT", *S3], "neither"),
        (["--endpoint", "web", "OUT", "--max-replicas", "4", *S3], "--max-replicas does not"),
        (["churn:1", "OUT", "--store-secret", "db"], "--store-secret does not apply"),
        (["churn:1", "OUT", "--trust"], "--trust does not apply"),
        (["--endpoint", "web", "OUT", "--store-secret", "Not_A", *S3], "invalid secret name"),
        (["--endpoint", "web", "OUT", "--store-secret-key", "a/b", *S3], "invalid secret key"),
        (["--endpoint", "web", "OUT", "--artifacts-uri", "s3://me:pw@h/b"], "holds a password"),
        # refused while the image's context is made, after the manifests: nothing is kept
        (["--endpoint", "web", "OUT", "--package", "no-such-dist", *S3], "no-such-dist==VERSION"),
    ],
    ids=[
        "unknown-endpoint",
        "too-many-replicas",
        "no-replicas",
        "ref-and-endpoint",
        "neither",
        "autoscaler-option",
        "endpoint-option-with-ref",
        "trust-with-ref",
        "secret-name",
        "secret-key",
        "artifacts-password",
        "unpinned-package",
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    local: Path, cli: Callable[..., CliResult], tmp_path: Path, args: list[str], message: str
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    out = exports / "out"
    done = cli("export", "k8s", *[str(out) if a == "OUT" else a for a in args])
    assert done.code in (1, 2), done.out  # 2: argparse's usage error
    assert message in done.err and "hint: " in done.err
    assert "Traceback" not in done.err and "pw" not in done.err
    assert list(exports.iterdir()) == []  # neither DIR nor a staging folder beside it


def test_a_project_with_local_artifacts_needs_an_artifact_store_url(
    local: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    done = cli("export", "k8s", "--endpoint", "web", str(tmp_path / "out"))
    assert done.code == 1
    assert "a folder on this machine" in done.err and "--artifacts-uri s3://" in done.err
    assert not (tmp_path / "out").exists()


def test_a_file_or_a_full_folder_is_refused_and_left_as_it_was(
    local: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    args = ["export", "k8s", "--endpoint", "web", "--artifacts-uri", "s3://b/p"]
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    done = cli(*args, str(a_file))
    assert done.code == 1 and "is a file" in done.err
    assert a_file.read_text() == "mine"

    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    done = cli(*args, str(full))
    assert done.code == 1 and "is not empty" in done.err
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full", "proj"]  # no staging

    again = cli(*args, str(full), "--force", "--replicas", "4")
    assert again.code == 0, again.err
    assert (full / "keep.txt").read_text() == "mine"
    assert _docs(full)["deployment"]["spec"]["replicas"] == 4
    assert (full / "image" / "Dockerfile").is_file()
