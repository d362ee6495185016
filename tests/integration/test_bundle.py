"""Model bundles: `mloop export bundle` writes one version's record and files, and `mloop serve
DIR` serves them over real HTTP on 127.0.0.1 from a folder with no project above it; a bundle
changed after it was written is refused, naming what changed."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mloop.domain.digests import digest_bytes
from mloop.errors import CorruptArtifact, InvalidInput, InvalidPath, MloopError, NeedsTrust
from mloop.services.registry.bundle import names_a_bundle, open_bundle
from tests.integration.test_export import _clean_env, predictions, serving
from tests.servers import free_port


@dataclass
class Bundled:
    root: Path  # the project
    folder: Path  # `mloop export bundle churn@champion` wrote it
    rows: pd.DataFrame
    expected: list[int]  # churn:1's own predictions on `rows`


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundled]:
    """churn:1 (= champion) trained on a versioned dataset with a text column, bundled."""
    import mloop
    from mloop.cli.main import main
    from mloop.project import Project, init_project

    base = tmp_path_factory.mktemp("bundle")
    root, _ = init_project(base / "proj")
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {"tenure": rng.normal(size=200), "plan": rng.choice(["basic", "pro"], 200)}
    )
    frame["label"] = ((frame.tenure > 0) & (frame.plan == "pro")).astype(int)
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("MLOOP_")]:
            mp.delenv(name)
        mp.chdir(root)
        frame.to_csv(root / "churn.csv", index=False)
        mloop.data.add("churn", "churn.csv")
        onehot = OneHotEncoder(handle_unknown="ignore")
        encode = ColumnTransformer([("p", onehot, ["plan"])], remainder="passthrough")
        with mloop.start_run("fit"):
            data = mloop.data.get("churn").to_pandas()
            features = data[["tenure", "plan"]]
            model = make_pipeline(encode, LogisticRegression()).fit(features, data["label"])
            mloop.register_model(model, "churn", input_example=features.head())
        Project.open(root).models.set_alias("churn", 1, "champion")
        folder = base / "churn-bundle"
        assert main(["-C", str(root), "export", "bundle", "churn@champion", str(folder)]) == 0
        rows = frame[["tenure", "plan"]].head(10)
        expected = Project.open(root).models.load("churn:1").predict(rows).tolist()
        yield Bundled(root, folder, rows, expected)


def test_a_bundle_holds_the_version_record_and_files_and_loads_the_same_model(
    bundled: Bundled,
) -> None:
    from mloop.project import Project

    project = Project.open(bundled.root)
    version = project.models.get("churn:1")
    served = project.models.load_predictor("churn:1")
    assert version.environment is not None
    environment = project.metadata.environments.get(version.environment)
    packages = project.artifacts.read_bytes(environment.packages_digest)
    project.close()

    bundle = open_bundle(bundled.folder)
    assert bundle.version == version  # every field, the signature and aliases included
    assert sorted(p.name for p in bundled.folder.iterdir()) == [
        "bundle.json",
        "environment.txt",
        "files",
        "manifest.json",
    ]
    assert digest_bytes((bundled.folder / "manifest.json").read_bytes()) == version.digest
    # What to install to serve it: the environment the model was made in, pinned.
    assert bundle.environment == environment
    assert (bundled.folder / "environment.txt").read_bytes() == packages
    assert any(p.startswith("scikit-learn==") for p in bundle.packages)
    assert bundle.load().predict(bundled.rows).tolist() == bundled.expected
    predictor = bundle.predictor()
    # What the server checks requests against travels with the bundle: the training data's
    # categories come from the dataset's profile, which is in the store, not the bundle.
    assert predictor.categories == served.categories == {"plan": frozenset({"basic", "pro"})}
    assert (predictor.signature, predictor.wants_frame) == (served.signature, served.wants_frame)


def test_the_sdk_loads_a_bundle_with_no_project(
    bundled: Bundled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mloop

    monkeypatch.chdir(tmp_path)  # no mloop.yaml here or above
    loaded = mloop.load_model(str(bundled.folder))
    assert loaded.predict(bundled.rows).tolist() == bundled.expected


def _flip_a_byte(folder: Path) -> str:
    path = next(p for p in (folder / "files").rglob("*") if p.is_file())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path.name


def _edit_manifest(folder: Path) -> str:
    path = folder / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"format":1', b'"format": 1'))
    return "manifest.json does not match the digest"


def _edit_the_environment(folder: Path) -> str:
    path = folder / "environment.txt"
    path.write_text(path.read_text() + "evil==6.6.6\n")
    return "environment.txt does not match the digest"


def _link_a_file(folder: Path) -> str:
    path = next(p for p in (folder / "files").rglob("*") if p.is_file())
    outside = folder.parent / "outside"
    outside.write_bytes(path.read_bytes())  # the same bytes: only the link is wrong
    path.unlink()
    path.symlink_to(outside)
    return "is a link"


def _escape_the_folder(folder: Path) -> str:
    """A manifest naming `../x`, with the record's digest made to match it."""
    manifest = json.loads((folder / "manifest.json").read_bytes())
    manifest["files"] = {f"../{k}": v for k, v in manifest["files"].items()}
    raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    (folder / "manifest.json").write_bytes(raw)
    record = json.loads((folder / "bundle.json").read_text())
    record["model"]["digest"] = digest_bytes(raw)
    (folder / "bundle.json").write_text(json.dumps(record))
    return "leaves its folder"


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        (_flip_a_byte, CorruptArtifact),
        (_edit_manifest, CorruptArtifact),
        (_edit_the_environment, CorruptArtifact),
        (_link_a_file, InvalidPath),
        (_escape_the_folder, InvalidPath),
    ],
    ids=[
        "a-file-changed",
        "manifest-changed",
        "environment-changed",
        "a-file-is-a-link",
        "a-name-leaves-the-folder",
    ],
)
def test_a_changed_bundle_is_refused_naming_what_changed(
    bundled: Bundled,
    tmp_path: Path,
    tamper: Callable[[Path], str],
    error: type[MloopError],
    mloop_process,
) -> None:
    import shutil

    folder = tmp_path / "bundle"
    shutil.copytree(bundled.folder, folder)
    said = tamper(folder)
    with pytest.raises(error) as caught:
        open_bundle(folder).load()
    assert said in caught.value.message
    # The command says it in one line with the fix, and serves nothing.
    done = mloop_process("serve", str(folder), "--port", "0", cwd=tmp_path, env=_clean_env())
    assert done.code == 1 and "Traceback" not in done.err
    assert done.err.startswith("error: ") and said in done.err and "hint: " in done.err


def test_a_bundle_serves_over_http_with_no_project(bundled: Bundled, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "mloop", "serve", str(bundled.folder), "--port", str(port)]
    assert not any((d / "mloop.yaml").exists() for d in (tmp_path, *tmp_path.parents))
    with serving(command, port, tmp_path, _clean_env()) as url:
        assert predictions(url, bundled.rows) == bundled.expected
        assert httpx.get(f"{url}/readyz", timeout=5).json()["model"] == "churn:1"
        # The training categories came along: a plan training never saw is answered, and named.
        unseen = {"dataframe_split": {"columns": ["tenure", "plan"], "data": [[0.5, "gold"]]}}
        warned = httpx.post(f"{url}/invocations", json=unseen, timeout=30)
        assert warned.status_code == 200 and "'gold' (1 row)" in warned.headers["mloop-warning"]


class Rule:
    """A model no safe flavor stores: registered as pickle, so loading it needs trust."""

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return (rows["tenure"] > 0).to_numpy().astype(int)


def test_a_code_model_in_a_bundle_loads_only_with_trust(
    bundled: Bundled, tmp_path: Path, cli, mloop_process
) -> None:
    from mloop.project import Project

    project = Project.open(bundled.root)
    project.models.register(Rule(), "rules", trust=True)
    project.close()
    folder = tmp_path / "rules"
    done = cli("-C", str(bundled.root), "export", "bundle", "rules:1", str(folder))
    assert done.code == 0, done.err
    assert f"mloop serve {folder} --trust" in done.out and "needs trust" in done.err
    with pytest.raises(NeedsTrust):
        open_bundle(folder).load()
    assert open_bundle(folder).load(trust=True).predict(bundled.rows).tolist() == (
        (bundled.rows["tenure"] > 0).astype(int).tolist()
    )
    refused = mloop_process("serve", str(folder), cwd=tmp_path, env=_clean_env())
    assert refused.code == 1 and "--trust" in refused.err and "Traceback" not in refused.err


def test_export_bundle_refuses_a_non_empty_folder_and_keeps_it(
    bundled: Bundled, tmp_path: Path, cli
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = cli("-C", str(bundled.root), "export", "bundle", "churn:1", str(out))
    assert done.code == 1 and "is not empty" in done.err and "--force" in done.err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    args = ("-C", str(bundled.root), "export", "bundle", "churn:1", str(out), "--force", "--json")
    again = cli(*args)
    assert again.code == 0, again.err
    assert open_bundle(out).version.ref == "churn:1" and (out / "keep.txt").exists()
    said = json.loads(again.out)
    assert (said["model"], said["digest"]) == ("churn:1", open_bundle(out).version.digest)
    assert said["files"] and said["needs_trust"] is None


@pytest.mark.parametrize(
    ("text", "is_path"),
    [
        ("churn", False),
        ("churn:3", False),
        ("churn@champion", False),
        ("model/churn:3", False),
        ("./churn", True),
        ("churn-bundle/", True),
        ("/app/model", True),
        ("build/churn", True),
        ("../churn", True),
        ("~/bundles/churn", True),
        ("model/churn/", True),
    ],
)
def test_serve_tells_a_bundle_path_from_a_ref(text: str, is_path: bool) -> None:
    assert names_a_bundle(text) is is_path


def test_a_folder_that_is_no_bundle_is_a_clear_error(tmp_path: Path, mloop_process) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "bundle.json").write_text('{"kind": "something else"}')
    for folder, said, error in (
        ("./empty", "is not a model bundle", "NotFound"),
        ("./missing", "no model bundle at", "NotFound"),
        ("./bad", "is not a model bundle's record", "InvalidInput"),
    ):
        done = mloop_process("serve", folder, cwd=tmp_path, env=_clean_env())
        assert done.code == 1 and said in done.err, (error, done.err)
        assert "mloop export bundle" in done.err and "Traceback" not in done.err
    with pytest.raises(InvalidInput):
        open_bundle(tmp_path / "bad")


def test_a_version_with_a_missing_object_leaves_no_half_bundle(
    project: Path, cli, tmp_path: Path
) -> None:
    import mloop
    from mloop.project import Project

    rows = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    version = mloop.register_model(LogisticRegression().fit(rows, [0, 0, 1, 1]), "small")
    opened = Project.open(project)
    manifest = json.loads(opened.artifacts.read_bytes(version.digest))
    opened.close()
    lost = next(iter(manifest["files"].values()))
    (project / ".mloop/objects" / lost[:2] / lost[2:]).unlink()
    done = cli("export", "bundle", "small:1", str(tmp_path / "out"))
    assert done.code == 1 and lost[:12] in done.err and "hint: " in done.err
    assert not (tmp_path / "out").exists()


def test_a_bundle_folder_given_as_a_bare_name_gets_a_hint(
    bundled: Bundled, tmp_path: Path, mloop_process
) -> None:
    import shutil

    shutil.copytree(bundled.folder, tmp_path / "churn-bundle")
    done = mloop_process("serve", "churn-bundle", cwd=tmp_path, env=_clean_env())
    assert done.code == 1 and "write ./churn-bundle" in done.err  # a ref by the rule, not a path
