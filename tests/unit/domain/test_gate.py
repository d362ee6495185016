"""Gates: parsing what people write in mloop.yaml, and checking it against given numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mloop.config import load_settings
from mloop.domain.gate import (
    BiasGate,
    ChampionGate,
    Gate,
    GateRecord,
    ValidationGate,
    evaluate,
    parse_gate,
    parse_gates,
    value_text,
)
from mloop.domain.policy import ModelPolicy
from mloop.errors import ConfigError, InvalidInput


@pytest.mark.parametrize(
    ("text", "gate", "written"),
    [
        ("accuracy >= 0.7", Gate("accuracy", ">=", 0.7), "accuracy >= 0.7"),
        ("rmse<3.5", Gate("rmse", "<", 3.5), "rmse < 3.5"),
        ("  f1   >   .5  ", Gate("f1", ">", 0.5), "f1 > 0.5"),
        ("val.accuracy <= 1", Gate("val.accuracy", "<=", 1.0), "val.accuracy <= 1"),
        ("loss/val-set < 1e-3", Gate("loss/val-set", "<", 0.001), "loss/val-set < 0.001"),
        ("delta > -0.25", Gate("delta", ">", -0.25), "delta > -0.25"),
    ],
    ids=["spaced", "unspaced", "padded", "dotted-name", "slash-and-dash", "negative"],
)
def test_gates_parse_and_are_written_back_plainly(text: str, gate: Gate, written: str) -> None:
    assert parse_gate(text) == gate
    assert str(parse_gate(text)) == written
    assert parse_gate(written) == gate


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("accuracy == 0.7", "use >=, >, <= or <"),
        ("accuracy => 0.7", "use >=, >, <= or <"),
        ("accuracy >= high", "'high' is not a number"),
        ("accuracy >= nan", "finite number"),
        ("accuracy >= inf", "finite number"),
        (">= 0.7", "not METRIC OP NUMBER"),
        ("accuracy 0.7", "not METRIC OP NUMBER"),
        ("accuracy >= 0.7 or f1 > 0.5", "not METRIC OP NUMBER"),
        ("", "not METRIC OP NUMBER"),
    ],
    ids=["equals", "arrow", "word", "nan", "inf", "no-metric", "no-operator", "two", "empty"],
)
def test_a_malformed_gate_says_what_is_wrong_and_how_to_write_one(text: str, why: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_gate(text)
    assert why in caught.value.message
    assert repr(text) in caught.value.message
    assert "accuracy >= 0.7" in (caught.value.hint or "")


def test_a_gate_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidInput, match="must be text"):
        parse_gate(0.7)  # type: ignore[arg-type]


def test_evaluate_gives_one_result_per_gate_with_the_numbers() -> None:
    gates = parse_gates(["accuracy >= 0.7", "f1 >= 0.9", "rmse < 3.5"])
    passed, failed, missing = evaluate(gates, {"accuracy": 0.853333, "f1": 0.8, "auc": 0.9})
    # the record a promotion keeps too: the gate as written and the bound it held
    assert passed == GateRecord(
        "accuracy >= 0.7", True, 0.853333, 0.7, "accuracy = 0.8533 (>= 0.7)"
    )
    assert (failed.passed, failed.observed, failed.reason) == (False, 0.8, "f1 = 0.8, needs >= 0.9")
    assert (missing.gate, missing.passed, missing.observed, missing.required) == (
        "rmse < 3.5",
        False,
        None,
        3.5,
    )
    assert missing.reason == "metric 'rmse' was not logged; the run has: accuracy, auc, f1"


@pytest.mark.parametrize(
    ("gate", "value", "passed"),
    [
        ("a >= 0.7", 0.7, True),
        ("a > 0.7", 0.7, False),
        ("a <= 0.7", 0.7, True),
        ("a < 0.7", 0.7, False),
        ("a < 0.7", 0.69, True),
        ("a > 0.7", 0.71, True),
    ],
    ids=["ge-equal", "gt-equal", "le-equal", "lt-equal", "lt-below", "gt-above"],
)
def test_boundaries_follow_the_operator(gate: str, value: float, passed: bool) -> None:
    assert evaluate([parse_gate(gate)], {"a": value})[0].passed is passed


def test_nan_and_no_metrics_at_all_fail_with_a_reason() -> None:
    (nan,) = evaluate([parse_gate("loss < 1")], {"loss": math.nan})
    assert not nan.passed
    assert nan.reason == "loss = nan, not a number"
    (none,) = evaluate([parse_gate("loss < 1")], {})
    assert none.reason == "metric 'loss' was not logged; the run logged no metrics"


def test_a_value_is_never_rounded_onto_its_threshold() -> None:
    assert value_text(0.853333, 0.99) == "0.8533"
    assert value_text(0.69999, 0.7) == "0.69999"
    (result,) = evaluate([parse_gate("accuracy >= 0.7")], {"accuracy": 0.69999})
    assert result.reason == "accuracy = 0.69999, needs >= 0.7"


def project_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "mloop.yaml").write_text("project: demo\n" + text)
    return tmp_path


def test_gates_come_from_mloop_yaml_per_pipeline(tmp_path: Path) -> None:
    text = "gates:\n  train:\n    - accuracy>=0.70\n    - f1 > .5\n  nightly: rmse < 3\n"
    settings = load_settings(project_file(tmp_path, text), environ={})
    assert settings.gates == {
        "train": (Gate("accuracy", ">=", 0.7), Gate("f1", ">", 0.5)),
        "nightly": (Gate("rmse", "<", 3.0),),
    }
    assert settings.values["gates"]["train"] == ["accuracy >= 0.7", "f1 > 0.5"]  # as shown
    assert settings.sources["gates"] == "mloop.yaml"
    assert load_settings(project_file(tmp_path, ""), environ={}).gates == {}


def test_the_environment_can_set_gates(tmp_path: Path) -> None:
    environ = {"MLOOP_GATES": "train=accuracy >= 0.8;f1 > 0.6,train-eu=rmse < 2"}
    settings = load_settings(project_file(tmp_path, "gates: {train: [accuracy >= 0.7]}\n"), environ)
    assert {name: [str(g) for g in gates] for name, gates in settings.gates.items()} == {
        "train": ["accuracy >= 0.8", "f1 > 0.6"],
        "train-eu": ["rmse < 2"],
    }
    assert settings.sources["gates"] == "environment (MLOOP_GATES)"


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("gates:\n  train:\n    - accuracy >> 0.7\n", {}, "train: invalid gate 'accuracy >> 0.7'"),
        ("gates:\n  train: {accuracy: 0.7}\n", {}, "train: give a list of gates"),
        ("gates: [accuracy >= 0.7]\n", {}, "must map pipeline names to lists of gates"),
        ("", {"MLOOP_GATES": "accuracy >= 0.7"}, "write NAME=GATE;GATE"),
    ],
    ids=["bad-operator", "mapping", "list", "env-without-name"],
)
def test_a_malformed_gate_in_the_settings_names_the_key_and_the_fix(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(project_file(tmp_path, text), environ=environ)
    assert "gates" in caught.value.message or "MLOOP_GATES" in caught.value.message
    assert message in caught.value.message
    assert "train: [accuracy >= 0.7, rmse < 3.5]" in (caught.value.hint or "")


# One gate format: `gates:` (per pipeline) and `models:` (per model) take the same spellings.
SPELLINGS = [
    ("accuracy >= 0.7", ["accuracy >= 0.7"]),
    ("[accuracy>=0.70, 'f1 > .5']", ["accuracy >= 0.7", "f1 > 0.5"]),
    ("\n      - accuracy >= 0.7\n      - ''\n", ["accuracy >= 0.7"]),
    ("[]", []),
    ("", []),
]
SPELLING_IDS = ["one-string", "flow-list", "block-list-with-blank", "empty-list", "nothing"]


@pytest.mark.parametrize(("written", "gates"), SPELLINGS, ids=SPELLING_IDS)
def test_pipelines_and_models_take_the_same_gate_spellings(
    tmp_path: Path, written: str, gates: list[str]
) -> None:
    text = f"gates:\n  train: {written}\nmodels:\n  churn:\n    gates: {written}\n"
    settings = load_settings(project_file(tmp_path, text), environ={})
    assert [str(g) for g in settings.gates["train"]] == gates
    assert [str(g) for g in settings.models["churn"].gates] == gates
    assert settings.values["gates"]["train"] == settings.values["models"]["churn"]["gates"]


@pytest.mark.parametrize(
    "gate",
    ["accuracy >= champion", "demographic_parity(group) <= 0.1", "data_validation"],
    ids=["champion", "bias", "data-validation"],
)
def test_a_promotion_gate_under_a_pipeline_says_where_it_belongs(tmp_path: Path, gate: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(project_file(tmp_path, f"gates:\n  train: ['{gate}']\n"), environ={})
    assert caught.value.message.endswith(
        f"gates: invalid value {{'train': ['{gate}']}}: train: {gate!r} is a promotion gate, "
        "not one a run can pass"
    )


def test_models_are_read_once_into_typed_policies(tmp_path: Path) -> None:
    text = (
        "models:\n  churn:\n    holdout: churn-holdout:2\n    label: churned\n    table: t\n"
        "    gates: [accuracy >= 0.8, accuracy >= champion + 0.01, "
        "'equal_opportunity(group) < 0.2', data_validation]\n"
        "  plain:\n    gates: champion_rate >= 0.5\n"  # a metric's name, not the champion
    )
    settings = load_settings(project_file(tmp_path, text), environ={})
    assert settings.models == {
        "churn": ModelPolicy(
            (
                Gate("accuracy", ">=", 0.8),
                ChampionGate("accuracy", ">=", 0.01),
                BiasGate("equal_opportunity", "group", "<", 0.2),
                ValidationGate(),
            ),
            holdout="churn-holdout:2",
            label="churned",
            table="t",
        ),
        "plain": ModelPolicy((Gate("champion_rate", ">=", 0.5),)),
    }
    assert settings.values["models"]["plain"] == {"gates": ["champion_rate >= 0.5"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  churn:\n    gates: [accuracy >= champion]\n", "churn: the gate 'accuracy >= champion'"),
        ("  churn:\n    gates: {accuracy: 0.7}\n", "churn: give a list of gates"),
        (
            "  churn:\n    gate: [accuracy >= 0.7]\n",
            "churn: unknown key 'gate' (did you mean 'gates'?)",
        ),
        ("  churn:\n    owner: ana\n", "unknown key 'owner' (known: gates, holdout, label, table)"),
        ("  churn: [accuracy >= 0.7]\n", "churn: give a mapping with gates"),
        ("  Bad Name:\n    gates: []\n", "invalid model name 'Bad Name'"),
    ],
    ids=["needs-holdout", "gates-mapping", "key-typo", "unknown-key", "not-a-mapping", "bad-name"],
)
def test_a_malformed_model_policy_names_the_model(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(project_file(tmp_path, "models:\n" + text), environ={})
    assert "mloop.yaml: models" in caught.value.message
    assert message in caught.value.message
