"""The model registry with real stores: lineage, signatures, versions under concurrency,
aliases, promotion gates, safe loading and clear errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import mloop
from mloop.domain.gate import GateRecord
from mloop.domain.model import ModelVersion
from mloop.domain.names import DatasetRef
from mloop.errors import CorruptArtifact, GateFailed, InvalidInput, NotFound
from mloop.project import Project

GATES = """
models:
  churn:
    holdout: holdout
    label: label
    gates:
      - accuracy >= 0.8
      - accuracy >= champion + 0.01
      - demographic_parity(group) <= 0.3
      - data_validation
"""


def write_data(root: Path, seed: int = 0, n: int = 400) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "group": rng.choice(["a", "b"], n)}
    )
    frame["label"] = (frame.x1 + 0.5 * frame.x2 > 0).astype(int)
    (root / "data").mkdir(exist_ok=True)
    frame.iloc[: n * 3 // 4].to_csv(root / "data/train.csv", index=False)
    frame.iloc[n * 3 // 4 :].to_csv(root / "data/holdout.csv", index=False)


@pytest.fixture
def reg(project: Path) -> Path:
    write_data(project)
    mloop.data.add("train", "data/train.csv")
    mloop.data.add("holdout", "data/holdout.csv")
    (project / "mloop.yaml").write_text("project: reg\n" + GATES)
    return project


def fit_and_register(c: float, name: str = "churn") -> ModelVersion:
    with mloop.start_run("fit", params={"C": c}):
        frame = mloop.data.get("train").to_pandas()
        model = LogisticRegression(C=c).fit(frame[["x1", "x2"]], frame["label"])
        mloop.log_metric("accuracy", model.score(frame[["x1", "x2"]], frame["label"]))
        return mloop.register_model(model, name)


def test_a_version_records_its_lineage_and_signature(reg: Path) -> None:
    version = fit_and_register(1.0)
    assert version.ref == "churn:1"
    assert version.datasets == (DatasetRef("train", 1),)
    assert version.metrics["accuracy"] > 0.9
    assert version.params == {"C": "1.0"}
    assert version.flavor == "sklearn"
    assert version.signature is not None
    assert [(c.name, c.dtype) for c in version.signature.inputs] == [
        ("x1", "float64"),
        ("x2", "float64"),
    ]
    run = Project.open().runs.get(version.run_id or "")
    assert version.environment == run.environment
    assert run.code is not None and version.code.describe() == run.code.describe()
    shown = Project.open().models.get("model/churn:1")
    assert shown.digest == version.digest
    loaded = mloop.load_model("churn")
    frame = pd.read_csv(reg / "data/holdout.csv")
    assert (loaded.predict(frame[["x1", "x2"]]) == frame["label"]).mean() > 0.9


def test_lineage_follows_a_model_to_its_run_and_data_and_back(reg: Path, cli) -> None:
    version = fit_and_register(1.0)
    assert cli("models", "alias", "churn:1", "champion").code == 0
    up = json.loads(cli("lineage", "model/churn@champion", "--upstream", "--json").out)
    assert up["root"]["ref"] == "model/churn:1" and "@champion" in up["root"]["label"]
    (made_by,) = up["upstream"]
    assert made_by["ref"] == f"run/{version.run_id}" and made_by["relation"] == "registered by"
    assert [c["ref"].split("/")[0] for c in made_by["children"]] == [
        "code",
        "environment",
        "dataset",
    ]
    assert made_by["children"][2]["ref"] == "dataset/train:1"
    down = json.loads(cli("lineage", "dataset/train:1", "--downstream", "--json").out)
    (used_by,) = down["downstream"]
    assert [(c["ref"], c["relation"]) for c in used_by["children"]] == [
        ("model/churn:1", "registered")
    ]
    missing = cli("lineage", "model/churn:9")
    assert missing.code == 1 and "has no version 9" in missing.err


def test_an_input_example_gives_the_signature(reg: Path) -> None:
    model = LogisticRegression().fit(np.eye(3), [0, 1, 1])
    version = mloop.register_model(model, "plain", input_example=np.eye(3))
    assert version.signature is not None
    assert version.signature.names == ("f0", "f1", "f2")
    assert version.run_id is None  # registered outside any run


def test_versions_are_unique_and_gap_free_across_processes(reg: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        import mloop
        sys.stdin.readline()  # start together
        model = LogisticRegression().fit(np.eye(2), [0, 1])
        print(mloop.register_model(model, "many").version)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=reg,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    numbers = sorted(int(proc.communicate(timeout=120)[0].strip()) for proc in procs)
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert [v.version for v in Project.open().models.versions("many")] == numbers


def test_promotion_passes_gates_then_refuses_a_weaker_model(reg: Path, cli) -> None:
    fit_and_register(1.0)
    fit_and_register(0.0005)
    first = cli("models", "promote", "churn:1")
    assert first.code == 0, first.err
    assert "churn@champion -> churn:1" in first.out
    assert "no champion yet" in first.out
    weak = cli("models", "promote", "churn:2")
    assert weak.code == 1
    assert "did not pass" in weak.err and "accuracy >= champion + 0.01" in weak.err
    assert "needs >=" in weak.err
    champion = Project.open().models.get("churn@champion")
    assert champion.version == 1  # nothing moved
    stored = Project.open().models.get("churn:2").gates
    assert {g.gate: g.passed for g in stored}["accuracy >= champion + 0.01"] is False


def test_a_forced_promotion_needs_a_reason_and_records_it(reg: Path, cli) -> None:
    fit_and_register(1.0)
    fit_and_register(0.0005)
    cli("models", "promote", "churn:1")
    refused = cli("models", "promote", "churn:2", "--force")
    assert refused.code == 1 and "--force needs a reason" in refused.err
    forced = cli("models", "promote", "churn:2", "--force", "--reason", "hotfix for a bug")
    assert forced.code == 0, forced.err
    assert "forced" in forced.out
    events = Project.open().metadata.events.find()
    promoted = next(e for e in events if e.action == "model.alias_set")
    assert promoted.reason == "hotfix for a bug"
    assert promoted.ref == "model/churn:2"


def test_bias_and_validation_gates_are_measured(reg: Path) -> None:
    version = fit_and_register(1.0)
    records = {g.gate: g for g in Project.open().promoter.evaluate("churn", version.version)}
    bias = records["demographic_parity(group) <= 0.3"]
    assert bias.passed and bias.observed is not None and 0 <= bias.observed <= 0.3
    assert records["data_validation"].passed
    write_data(reg, seed=0, n=400)
    frame = pd.read_csv(reg / "data/train.csv")
    frame["x1"] = frame["x1"] * 10 + 50  # a new version whose distribution moved far away
    frame.to_csv(reg / "data/train.csv", index=False)
    mloop.data.add("train", "data/train.csv")
    shifted = fit_and_register(1.0)
    assert shifted.datasets == (DatasetRef("train", 2),)
    checks = {g.gate: g for g in Project.open().promoter.evaluate("churn", shifted.version)}
    assert checks["data_validation"].passed is False
    assert "train:2" in checks["data_validation"].reason


def test_validation_gate_checks_rows_that_joined_the_table_against_it(reg: Path) -> None:
    # New rows landed as a file beside the table (what the controller's new_data trigger
    # does): the model read both as one table, so the new file is held to the old table's
    # profile rather than failed for having no file of its name in the version before.
    folder = reg / "data/weeks"
    folder.mkdir()
    rows = pd.read_csv(reg / "data/train.csv")
    rows.to_csv(folder / "train.csv", index=False)
    mloop.data.add("weeks", folder)
    rows.sample(frac=0.4, random_state=1).to_csv(folder / "week-2.csv", index=False)
    mloop.data.add("weeks", folder)

    def gates_of_a_fit() -> dict[str, GateRecord]:
        with mloop.start_run("fit"):
            frame = mloop.data.get("weeks").to_pandas()
            model = LogisticRegression().fit(frame[["x1", "x2"]], frame["label"])
            made = mloop.register_model(model, "churn")
        return {g.gate: g for g in Project.open().promoter.evaluate("churn", made.version)}

    checks = gates_of_a_fit()
    assert checks["data_validation"].passed, checks["data_validation"].reason
    moved = rows.sample(frac=0.4, random_state=2)
    moved["x1"] = moved["x1"] * 10 + 50  # landed rows that are not like the table they joined
    moved.to_csv(folder / "week-3.csv", index=False)
    mloop.data.add("weeks", folder)
    checks = gates_of_a_fit()
    assert checks["data_validation"].passed is False
    assert "weeks:3 data/weeks/week-3.csv: " in checks["data_validation"].reason


def test_aliases_and_archive(reg: Path, cli) -> None:
    fit_and_register(1.0)
    fit_and_register(2.0)
    assert cli("models", "alias", "churn:2", "challenger").code == 0
    shown = json.loads(cli("models", "show", "churn@challenger", "--json").out)
    assert shown["version"] == 2 and shown["aliases"] == ["challenger"]
    # the code is one record now; the keys scripts read before stay beside it
    assert (shown["code_commit"], shown["code_diff"]) == (
        shown["code"]["commit"],
        shown["code"]["diff_digest"],
    )
    assert cli("models", "archive", "churn:2").code == 0
    gone = cli("models", "show", "churn@challenger")
    assert gone.code == 1 and "has no alias 'challenger'" in gone.err
    refused = cli("models", "alias", "churn:2", "x")
    assert refused.code == 1 and "archived" in refused.err
    listing = json.loads(cli("models", "list", "--json").out)
    assert listing[0]["name"] == "churn" and listing[0]["latest"] == 2


def test_a_tampered_model_file_is_refused_before_it_is_parsed(reg: Path) -> None:
    version = fit_and_register(1.0)
    project = Project.open()
    files = [
        o
        for o in project.metadata.housekeeping.referenced_objects()
        if o[2].startswith("model/churn:1 ")
    ]
    assert files
    digest = files[0][0]
    path = reg / ".mloop/objects" / digest[:2] / digest[2:]
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(CorruptArtifact):
        mloop.load_model(version.ref)


def test_pickles_need_trust_and_trust_is_recorded(reg: Path, cli) -> None:
    model = LogisticRegression().fit(np.eye(2), [0, 1])
    with open(reg / "model.pkl", "wb") as fh:
        pickle.dump(model, fh)
    refused = cli("models", "register", "pickled", "--path", "model.pkl")
    assert refused.code == 1 and "--trust" in refused.err
    assert cli("models", "list", "--json").out.strip() == "[]"
    trusted = cli("models", "register", "pickled", "--path", "model.pkl", "--trust")
    assert trusted.code == 0, trusted.err
    actions = [e.action for e in Project.open().metadata.events.find()]
    assert "model.loaded_with_trust" in actions


def test_unknown_names_versions_and_aliases(reg: Path, cli) -> None:
    fit_and_register(1.0)
    for args, message in (
        (("models", "show", "nope"), "no model 'nope'"),
        (("models", "show", "churn:9"), "has no version 9"),
        (("models", "show", "churn@gold"), "has no alias 'gold'"),
        (("models", "show", "Bad_Name"), "invalid name"),
        (("models", "promote", "churn:7"), "has no version 7"),
    ):
        result = cli(*args)
        assert result.code == 1, args
        assert message in result.err, (args, result.err)
    with pytest.raises(NotFound):
        mloop.load_model("churn@gold")
    with pytest.raises(InvalidInput, match="not a model"):
        mloop.register_model({"weights": [1, 2]}, "notmodel")


def test_gate_failed_is_a_conflict_with_a_stable_code() -> None:
    assert GateFailed.code == "gate_failed"
    assert GateFailed.http_status == 409


def test_every_models_command_takes_one_address(reg: Path, cli) -> None:
    fit_and_register(1.0)
    fit_and_register(2.0)
    aliased = cli("models", "alias", "churn:2", "challenger", "--json")
    assert aliased.code == 0, aliased.err
    assert json.loads(aliased.out) == {"model": "churn", "alias": "challenger", "version": 2}
    promoted = cli("models", "promote", "churn@challenger")  # an alias stands for its version
    assert promoted.code == 0, promoted.err
    assert "churn@champion -> churn:2" in promoted.out
    removed = cli("models", "unalias", "churn@challenger", "--json")
    assert removed.code == 0, removed.err
    assert json.loads(removed.out)["removed"] is True and json.loads(removed.out)["version"] == 2
    assert cli("models", "archive", "churn:1").code == 0
    assert Project.open().models.get("churn:1").status == "archived"
    for args, fix in (
        (("promote", "churn", "2"), "hint: mloop models promote churn:2\n"),
        (("promote", "churn", "2", "--to", "gold"), "hint: mloop models promote churn:2 --to gold"),
        (("alias", "churn", "2", "gold"), "hint: mloop models alias churn:2 gold\n"),
        (("unalias", "churn", "champion"), "hint: mloop models unalias churn@champion\n"),
        (("archive", "churn", "1", "--undo"), "hint: mloop models archive churn:1\n"),
        (("promote", "churn"), "mloop models show churn --versions --sort=-metrics.accuracy\n"),
        (("unalias", "churn"), "takes NAME@ALIAS"),
    ):
        refused = cli("models", *args)
        assert refused.code == 1, args
        assert fix in refused.err, (args, refused.err)


def test_versions_list_their_metrics_and_sort_best_first(reg: Path, cli) -> None:
    for c in (0.0005, 1.0, 0.01):
        fit_and_register(c)
    mloop.register_model(LogisticRegression().fit(np.eye(2), [0, 1]), "churn")  # no metrics
    listed = cli("models", "show", "churn", "--versions", "--sort=-metrics.accuracy")
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[0].split()[:2] == ["VERSION", "ACCURACY"]
    order = [int(line.split()[0]) for line in lines[1:]]
    scores = [v.metrics.get("accuracy") for v in Project.open().models.versions("churn")]
    best = sorted(range(3), key=lambda i: -(scores[i] or 0))
    assert order == [i + 1 for i in best] + [4]  # the unmeasured version last
    as_json = json.loads(
        cli("models", "show", "churn", "--versions", "--json", "--sort=params.C").out
    )
    assert [v["params"].get("C") for v in as_json] == ["0.0005", "0.01", "1.0", None]
    bad = cli("models", "show", "churn", "--versions", "--sort=status")
    assert bad.code == 1 and "sort by metrics.KEY or params.KEY" in bad.err


@pytest.mark.parametrize(
    ("suffix", "kind"), [(".skops", "a pickle"), (".onnx", "a pickle")], ids=["skops", "onnx"]
)
def test_a_renamed_pickle_is_named_for_what_it_is(reg: Path, cli, suffix: str, kind: str) -> None:
    path = reg / f"model{suffix}"
    path.write_bytes(pickle.dumps(LogisticRegression().fit(np.eye(2), [0, 1])))
    done = cli("models", "register", "renamed", "--path", str(path))
    assert done.code == 1
    assert f"model{suffix} is not " in done.err and f"it looks like {kind}" in done.err
    assert "skops.io.dump" in done.err and "internal error" not in done.err
    assert cli("models", "list", "--json").out.strip() == "[]"


def test_a_small_input_example_does_not_make_columns_non_nullable(reg: Path) -> None:
    frame = pd.read_csv(reg / "data/train.csv")
    frame.loc[::5, "x1"] = np.nan  # the training data has holes in x1, none in x2
    frame.to_csv(reg / "data/train.csv", index=False)
    mloop.data.add("train", "data/train.csv")
    model = make_pipeline(SimpleImputer(), LogisticRegression())
    model.fit(frame[["x1", "x2"]], frame["label"])
    example = frame[["x1", "x2"]].dropna().head(5)  # five rows without a missing value
    with mloop.start_run("fit"):
        mloop.data.get("train")
        profiled = mloop.register_model(model, "churn", input_example=example)
    assert profiled.signature is not None
    assert [(c.name, c.nullable) for c in profiled.signature.inputs] == [
        ("x1", True),  # the training data's profile says it can be missing
        ("x2", False),  # ... and that this one never was
    ]
    alone = mloop.register_model(model, "churn", input_example=example)  # no run, no profile
    assert alone.signature is not None
    assert [(c.name, c.nullable) for c in alone.signature.inputs] == [("x1", True), ("x2", True)]
