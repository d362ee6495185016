"""`mloop export k8s --controller DIR`: one replica of `mloop controller` (or, with --once, a
CronJob of one evaluation) on the project's shared store, which `kubernetes-validate` accepts,
never holding the store's URL, and the build context of an image carrying the project.

The command line the manifests give is run for real (a subprocess, from the copy of the
project the image carries): its metrics answer where the liveness probe asks, and with an
alertmanager trigger its receiver answers on the Service's port.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mloop.project import Project
from tests.conftest import MLOOP, CliResult
from tests.integration.controller_project import forget, write_loop_project
from tests.integration.test_alert_receiver import ENV, alert, payload, post
from tests.integration.test_export import _validate
from tests.servers import free_port, wait_for

STORE = "postgresql+psycopg://mloop:s3cret-pw@db.internal:5432/mloop"
S3 = ["--artifacts-uri", "s3://models/prod"]
ALERTS = """triggers:
  train:
    - alertmanager: {alertname: MloopFeatureDrift, token_env: TEAM_ALERT_TOKEN}
"""


@pytest.fixture
def loop(make_project: Callable[..., Path]) -> Iterator[Path]:
    """The controller's test project: a pipeline, a new_data trigger on `landing/`."""
    root = make_project("loop")
    write_loop_project(root)
    yield root
    forget(root)


def _alerted(root: Path, triggers: str = ALERTS) -> None:
    text = (root / "mloop.yaml").read_text()
    head, _, rest = text.partition("triggers:\n")
    (root / "mloop.yaml").write_text(head + triggers + rest[rest.index("models:") :])


def _export(cli: Callable[..., CliResult], out: Path, *more: str) -> CliResult:
    return cli("export", "k8s", "--controller", str(out), *S3, *more)


def _docs(folder: Path) -> dict[str, Any]:
    return {f.stem: yaml.safe_load(f.read_text()) for f in sorted(folder.glob("*.yaml"))}


def _pod(body: dict[str, Any]) -> dict[str, Any]:
    template = body["spec"]["template"] if body["kind"] == "Deployment" else None
    if template is None:
        template = body["spec"]["jobTemplate"]["spec"]["template"]
    return dict(template)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container["env"]}


def _valid(out: Path, tmp_path: Path) -> None:
    checked = _validate(*sorted(out.glob("*.yaml")))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    template = tmp_path / "secret.yaml"  # the Secret's template, once given a .yaml name
    template.write_text((out / "store-secret.yaml.example").read_text())
    assert _validate(template).returncode == 0


def test_one_replica_of_the_controller_on_the_shared_store(
    loop: Path, cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOOP_STORE_URI", STORE)  # the cluster's store, password and all
    out = tmp_path / "k8s"
    done = _export(cli, out, "--interval", "1m")
    assert done.code == 0, done.err
    assert sorted(f.name for f in out.glob("*.yaml")) == ["deployment.yaml"]  # no receiver
    _valid(out, tmp_path)

    body = _docs(out)["deployment"]
    spec = body["spec"]
    pod = _pod(body)
    (controller,) = pod["spec"]["containers"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert controller["args"] == [
        "-C",
        "/srv/project",
        "controller",
        "--interval",
        "1m",
        "--metrics-port",
        "9108",
        "--metrics-host",
        "0.0.0.0",  # noqa: S104 (inside the pod: Prometheus and the kubelet reach it)
    ]
    assert controller["ports"] == [{"name": "metrics", "containerPort": 9108, "protocol": "TCP"}]
    assert controller["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9108"
    assert annotations["prometheus.io/scrape"] == "true"
    # SIGTERM stops the controller between steps: an hour for a training step to end
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 3600
    env = _env(controller)
    assert env["MLOOP_STORE_URI"] == {
        "name": "MLOOP_STORE_URI",
        "valueFrom": {"secretKeyRef": {"name": "mloop-store", "key": "uri"}},
    }
    assert env["MLOOP_ARTIFACTS_URI"]["value"] == "s3://models/prod"
    assert "TEAM_ALERT_TOKEN" not in env and "MLOOP_ALERTMANAGER_TOKEN" not in env
    security = controller["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    # the project is copied from the image to a writable emptyDir, where the pipeline runs
    (copy,) = pod["spec"]["initContainers"]
    assert copy["image"] == controller["image"]
    assert copy["command"] == ["cp", "-R", "/app/project/.", "/srv/project/"]
    assert copy["securityContext"]["readOnlyRootFilesystem"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["project"] == {"name": "project", "emptyDir": {}}

    # The image carries the project's code and mloop.yaml, not its store nor its caches.
    image = out / "image"
    carried = sorted(str(p.relative_to(image / "project")) for p in image.rglob("project/**/*"))
    assert {"mloop.yaml", "pipeline.py", "data/sales.csv"} <= set(carried)
    assert not any(part.startswith(".") for p in carried for part in Path(p).parts)
    assert "!project/" in (image / ".dockerignore").read_text()  # sent to the builder
    dockerfile = (image / "Dockerfile").read_text()
    assert "COPY project/ /app/project/" in dockerfile and "USER app" in dockerfile
    wheel = [r for r in (image / "requirements.txt").read_text().splitlines() if "wheels/" in r]
    assert wheel[0].endswith("[data,serve,postgres,s3]")
    # The store's URL (with its password) is in no file.
    for path in (p for p in out.rglob("*") if p.is_file()):
        assert b"s3cret-pw" not in path.read_bytes(), path
    readme = (out / "README.md").read_text()
    assert "--from-literal=uri=" in readme and "carries the project" in readme
    assert "mloop-alertmanager" not in readme  # no receiver, no token to create

    # A change of the project's code names a new image, so applying it rolls it out.
    tag = controller["image"]
    (loop / "pipeline.py").write_text((loop / "pipeline.py").read_text() + "\n# changed\n")
    assert _export(cli, out, "--force").code == 0
    (again,) = _pod(_docs(out)["deployment"])["spec"]["containers"]
    assert again["image"] != tag and again["image"].startswith("mloop-controller-loop:")


def test_an_alertmanager_trigger_adds_the_receiver_its_service_and_token(
    loop: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    _alerted(loop)
    out = tmp_path / "k8s"
    done = _export(cli, out, "--namespace", "ml", "--json")
    assert done.code == 0, done.err
    assert sorted(f.name for f in out.glob("*.yaml")) == ["alerts-service.yaml", "deployment.yaml"]
    _valid(out, tmp_path)
    docs = _docs(out)
    pod = _pod(docs["deployment"])
    (controller,) = pod["spec"]["containers"]
    args = controller["args"]
    assert args[args.index("--alerts-port") + 1] == "9095"
    assert args[args.index("--alerts-host") + 1] == "0.0.0.0"  # noqa: S104 (a Service reaches it)
    assert {p["name"]: p["containerPort"] for p in controller["ports"]} == {
        "metrics": 9108,
        "alerts": 9095,
    }
    # the token of the trigger's token_env, from the Secret, under that variable's name
    assert _env(controller)["TEAM_ALERT_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "mloop-alertmanager",
        "key": "TEAM_ALERT_TOKEN",
    }
    receiver = docs["alerts-service"]
    assert receiver["metadata"] == {**receiver["metadata"], "namespace": "ml"}
    assert receiver["spec"]["ports"] == [
        {"name": "alerts", "port": 9095, "targetPort": "alerts", "protocol": "TCP"}
    ]
    assert receiver["spec"]["selector"] == docs["deployment"]["spec"]["selector"]["matchLabels"]
    readme = (out / "README.md").read_text()
    assert "create secret generic mloop-alertmanager --from-literal=TEAM_ALERT_TOKEN=" in readme


def test_once_is_a_cronjob_of_one_evaluation_never_two_at_a_time(
    loop: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    done = _export(cli, out, "--once", "--schedule", "*/5 * * * *")
    assert done.code == 0, done.err
    assert sorted(f.name for f in out.glob("*.yaml")) == ["cronjob.yaml"]
    _valid(out, tmp_path)
    body = _docs(out)["cronjob"]
    assert body["kind"] == "CronJob"
    assert body["spec"]["schedule"] == "*/5 * * * *"
    assert body["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _pod(body)["spec"]
    (controller,) = pod["containers"]
    assert controller["args"] == ["-C", "/srv/project", "controller", "--once"]
    assert pod["restartPolicy"] == "Never"
    assert _env(controller)["MLOOP_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "mloop-store"


@pytest.mark.parametrize(
    ("more", "triggers", "said"),
    [
        (["--once"], None, "--once writes a CronJob, which needs a --schedule"),
        (["--schedule", "0 3 * * *"], None, "--schedule applies to the CronJob of --once only"),
        (["--once", "--schedule", "0 3 * *"], None, "is not five cron fields"),
        (["--once", "--schedule", "99 3 * * *"], None, "is not a cron expression"),
        ([], "", "no triggers in mloop.yaml"),
        (["--once", "--schedule", "0 3 * * *"], ALERTS, "needs a receiver running"),
        (["--replicas", "3"], None, "--replicas does not apply to the controller"),
        (["--trust"], None, "--trust does not apply to the controller"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    loop: Path,
    cli: Callable[..., CliResult],
    tmp_path: Path,
    more: list[str],
    triggers: str | None,
    said: str,
) -> None:
    if triggers is not None:
        _alerted(loop, triggers)
    out = tmp_path / "k8s"
    done = _export(cli, out, *more)
    assert done.code != 0
    assert said in done.err
    assert "Traceback" not in done.err and len(done.err.strip().splitlines()) <= 2  # error, hint
    assert not out.exists()


def test_once_and_schedule_belong_to_the_controller(
    loop: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    done = cli("export", "k8s", "--endpoint", "web", str(tmp_path / "k8s"), "--once")
    assert done.code != 0 and "--once applies to the controller's manifests only" in done.err


def test_the_manifests_command_line_runs_the_controller_from_the_image_project(
    loop: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """What the pod runs, run here: the init container's copy of image/project, the
    container's arguments (ports swapped for free ones), its Secret-given variables. The
    liveness probe's /metrics and the receiver's Service port answer; SIGTERM ends it."""
    _alerted(loop)
    out = tmp_path / "k8s"
    assert _export(cli, out).code == 0
    (controller,) = _pod(_docs(out)["deployment"])["spec"]["containers"]
    srv = tmp_path / "srv" / "project"
    shutil.copytree(out / "image" / "project", srv)  # the init container's `cp -R`
    settings = Project.open(loop).settings
    metrics, alerts = free_port(), free_port()
    ports = {"9108": str(metrics), "9095": str(alerts), "/srv/project": str(srv)}
    args = [ports.get(a, a) for a in controller["args"]]
    env = {
        **os.environ,
        "MLOOP_STORE_URI": settings.store_uri,  # what the Secret holds in the cluster
        "MLOOP_ARTIFACTS_URI": settings.artifacts_uri,
        "TEAM_ALERT_TOKEN": ENV["MLOOP_ALERTMANAGER_TOKEN"],
    }
    env.pop("MLOOP_ALERTMANAGER_TOKEN", None)
    proc = subprocess.Popen(
        [*MLOOP, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:

        def answers(url: str) -> bool:
            try:
                return httpx.get(url, timeout=2).status_code in (200, 405)
            except httpx.TransportError:
                return False

        url = f"http://127.0.0.1:{alerts}/alerts"
        for what in (f"http://127.0.0.1:{metrics}/metrics", url):  # the probe's, the Service's

            def up(what: str = what) -> bool:
                return answers(what) or proc.poll() is not None

            wait_for(up, 60, what)
            assert proc.poll() is None, proc.communicate()
        assert post(url, payload(alert()), token=None).status_code == 401
        assert post(url, payload(alert()), token=ENV["MLOOP_ALERTMANAGER_TOKEN"]).is_success
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, proc.communicate()
