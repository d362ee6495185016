"""`mloop lineage`, `events`, `fsck` and `gc` as a user's shell runs them: separate processes
over a project where a training script ran as its own process too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mloop.project import Project
from tests.conftest import run_mloop
from tests.integration.records import add_dataset_version, object_path

TRAIN = """\
import mloop

with mloop.start_run("train-rf", params={"trees": 100}) as run:
    run.log_input("dataset", "sales:1")
    with open("model.pkl", "wb") as fh:
        fh.write(b"a forest")
    run.log_artifact("model.pkl")
    mloop.log_metric("rmse", 3.2)
print(run.id)
"""


def train(project: Path) -> str:
    """Run a training script as its own process; return its run id."""
    (project / "train.py").write_text(TRAIN)
    done = subprocess.run(
        [sys.executable, "train.py"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip()


def test_lineage_and_events_from_the_shell(project: Path) -> None:
    version = add_dataset_version(project, "sales", {"data/a.csv": b"id,amount\n1,10\n"})
    run_id = train(project)

    used = run_mloop("lineage", "dataset/sales:1", "--downstream", cwd=project)
    assert used.code == 0, used.err
    assert used.out.splitlines()[:2] == [
        "dataset/sales:1  (1 file, 15 B)",
        f"└── used by run {run_id[:12]}  train-rf  finished",
    ]
    assert used.out.splitlines()[2].startswith("    └── output artifact ")

    upstream = run_mloop("lineage", run_id[:8], "--upstream", "--json", cwd=project)
    assert upstream.code == 0, upstream.err
    body = json.loads(upstream.out)
    refs = [n["ref"] for n in body["upstream"]]
    assert [r.split("/")[0] for r in refs[:2]] == ["code", "environment"]  # what else made it
    assert refs[2:] == [f"dataset/{version.ref}"]

    events = run_mloop("events", f"run/{run_id}", cwd=project)
    assert events.code == 0, events.err
    rows = events.out.splitlines()
    assert rows[0].split() == ["TIME", "ACTOR", "ACTION", "REF", "REASON"]
    assert [r.split()[3] for r in rows[1:]] == ["run.finished", "run.started"]

    missing = run_mloop("lineage", "dataset/sales:7", cwd=project)
    assert missing.code == 1
    assert missing.err.splitlines() == [
        "error: dataset 'sales' has no version 7 (latest is 1)",
        "hint: see `mloop data show sales`",
    ]


def test_fsck_and_gc_from_the_shell(project: Path) -> None:
    version = add_dataset_version(project, "sales", {"data/a.csv": b"id,amount\n1,10\n"})
    train(project)

    clean = run_mloop("fsck", "--full", cwd=project)
    assert clean.code == 0, clean.err
    assert clean.out.startswith("3 objects checked, all present and intact")

    digest = version.files[0].digest
    object_path(project, digest).unlink()
    broken = run_mloop("fsck", cwd=project)
    assert broken.code == 1
    assert broken.out.splitlines()[0].startswith(
        f"{digest[:12]}  missing  referenced by dataset/sales:1"
    )

    stray = project / "stray.bin"
    stray.write_bytes(b"nothing refers to this")
    opened = Project.open(project)
    stray_digest, _, _ = opened.artifacts.put_path(stray)
    opened.close()

    dry = run_mloop("gc", "--grace", "0", "--dry-run", cwd=project)
    assert dry.code == 0, dry.err
    assert f"would remove {stray_digest[:12]}  22 B" in dry.out
    assert object_path(project, stray_digest).exists()

    kept = run_mloop("gc", cwd=project)  # the default grace keeps the fresh object
    assert kept.code == 0, kept.err
    assert object_path(project, stray_digest).exists()

    removed = run_mloop("gc", "--grace", "0", cwd=project)
    assert removed.code == 0, removed.err
    assert removed.out.startswith("removed 1 unreferenced objects (22 B)")
    assert not object_path(project, stray_digest).exists()
