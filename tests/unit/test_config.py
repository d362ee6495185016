"""Settings: defaults < mloop.yaml < environment, each value's source, and clear errors."""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import fields
from pathlib import Path

import pytest

from mloop.config import BY_KEY, MAX_USER_LENGTH, SETTINGS, Settings, load_settings
from mloop.domain.controller import FeedbackPolicy, LoopPolicy
from mloop.domain.drift import DriftRule, Method
from mloop.domain.gate import Gate
from mloop.domain.names import NAME_RULE
from mloop.domain.trigger import Schedule, Trigger, TriggerKind
from mloop.errors import ConfigError


def project_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "mloop.yaml").write_text(text)
    return tmp_path


def test_defaults_live_in_the_state_folder(tmp_path: Path) -> None:
    settings = load_settings(project_file(tmp_path, "project: demo\n"), environ={})
    assert settings.store_uri == f"sqlite:///{tmp_path}/.mloop/mloop.db"
    assert settings.artifacts_uri == str(tmp_path / ".mloop/objects")
    assert settings.remote_uri is None
    assert settings.pool_size == 5
    assert settings.sources["project"] == "mloop.yaml"
    assert settings.sources["store_uri"] == "default"


def test_environment_wins_over_the_file_and_says_so(tmp_path: Path) -> None:
    root = project_file(tmp_path, "pool_size: 3\nremote_uri: backups\n")
    settings = load_settings(root, environ={"MLOOP_POOL_SIZE": "9"})
    assert settings.pool_size == 9
    assert settings.sources["pool_size"] == "environment (MLOOP_POOL_SIZE)"
    assert settings.remote_uri == str(tmp_path / "backups")  # relative folders: from the root
    assert settings.sources["remote_uri"] == "mloop.yaml"


def test_relative_sqlite_paths_are_relative_to_the_project(tmp_path: Path) -> None:
    settings = load_settings(project_file(tmp_path, "store_uri: sqlite:///meta/x.db\n"), {})
    assert settings.store_uri == f"sqlite:///{tmp_path}/meta/x.db"


@pytest.mark.parametrize(
    ("text", "environ", "message", "hint"),
    [
        ("stor_uri: x\n", {}, "unknown setting 'stor_uri'", "did you mean 'store_uri'?"),
        ("pool_size: many\n", {}, "invalid value 'many'", "PostgreSQL connections"),
        ("pool_size: 0\n", {}, "must be from 1 to 1000", "PostgreSQL connections"),
        ("pool_size: 1001\n", {}, "must be from 1 to 1000", "PostgreSQL connections"),
        ("max_workers: 100000\n", {}, "must be from 1 to 1024", "on the process executor"),
        ("project: [1\n", {}, "is not valid YAML at line", "fix the file"),
        ("- a\n- b\n", {}, "must be a mapping", "key: value"),
        ("project: x\n", {"MLOOP_STORE_UIR": "x"}, "unknown setting 'store_uir'", "store_uri"),
        ("monitoring_interval: 60\n", {}, "interval '60' is not a duration", "60s, 10m"),
        ("monitoring_interval: 100ms\n", {}, "must be at least 1s", "how often a model server"),
        ("predictions_scores: maybe\n", {}, "must be true or false", "class scores"),
        ("project: x\n", {"MLOOP_PREDICTIONS_SCORES": "2"}, "must be true or false", "scores"),
        ("project: x\n", {"MLOOP_MONITORING_WINDOW": "1x"}, "window '1x' is not an age", "2h"),
        ("controller: [web]\n", {}, "controller must map pipeline names", "endpoint: churn"),
        ("controller: {train: {endpont: web}}\n", {}, "unknown option 'endpont'", "endpoint,"),
        ("controller: {train: {strategy: ab}}\n", {}, "controller.train: strategy 'ab'", "canary"),
        (
            "controller: {train: {endpoint: Web_1}}\n",
            {},
            "controller.train: invalid endpoint name",
            "try 'web-1'",
        ),
    ],
    ids=[
        "typo-key",
        "not-a-number",
        "zero",
        "too-many-connections",
        "too-many-workers",
        "bad-yaml",
        "not-a-mapping",
        "env-typo",
        "interval-without-unit",
        "interval-too-short",
        "scores-not-a-switch",
        "scores-env-not-a-switch",
        "window-not-an-age",
        "controller-not-a-mapping",
        "controller-unknown-option",
        "controller-ab-strategy",
        "controller-bad-endpoint-name",
    ],
)
def test_bad_settings_name_the_key_and_the_fix(
    tmp_path: Path, text: str, environ: dict[str, str], message: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(project_file(tmp_path, text), environ=environ)
    assert message in caught.value.message
    assert hint in (caught.value.hint or "")


def test_every_setting_is_documented_once() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    assert all(s.help and s.env == "MLOOP_" + s.key.upper() for s in SETTINGS)
    declared = [f.name for f in fields(Settings) if f.name not in ("root", "sources")]
    assert keys == declared  # each field of Settings is a setting, declared there only


# A value for every setting, as mloop.yaml and the environment write it, and as it is then used.
EXAMPLES: dict[str, tuple[str, str, object]] = {
    "project": ("churn", "churn", "churn"),
    "store_uri": ("sqlite:///m.db", "sqlite:///m.db", "sqlite:///{root}/m.db"),
    "artifacts_uri": ("s3://b/p", "s3://b/p", "s3://b/p"),
    "remote_uri": ("backups", "backups", "{root}/backups"),
    "pool_size": ("3", "3", 3),
    "user": ("ana", "ana", "ana"),
    "pipelines": ("{train: 'p:t'}", "train=p:t", {"train": "p:t"}),
    "models": ("{churn: {gates: [f1 > 0.5]}}", "", None),  # the environment cannot map models
    "executor": ("process", "process", "process"),
    "gates": ("{train: [f1 > 0.5]}", "train=f1 > 0.5", {"train": (Gate("f1", ">", 0.5),)}),
    "max_workers": ("2", "2", 2),
    "ray_address": ("ray://h:1", "ray://h:1", "ray://h:1"),
    "monitoring_reference": ("dataset/train:3", "train:3", "train:3"),
    "drift_thresholds": (
        "{age: 0.2, prediction: 0.15}",
        "age=0.2,prediction=0.15",
        {"age": DriftRule(0.2), "prediction": DriftRule(0.15)},
    ),
    "predictions_sample_rate": ("0.25", "0.25", 0.25),
    "predictions_retention": ("7d", "7d", 7 * 86_400.0),
    "predictions_scores": ("false", "off", False),
    "bias_columns": ("[gender, region, gender]", "gender, region", ("gender", "region")),
    "triggers": (
        "{train: [{schedule: '0 3 * * *', max_per_day: 1}]}",
        '{"train": [{"schedule": "0 3 * * *", "max_per_day": 1}]}',
        {"train": (Trigger("train", 0, TriggerKind.SCHEDULE, Schedule("0 3 * * *"), 0.0, 1),)},
    ),
    "controller": (
        "{train: {endpoint: web, options: {steps: '10,50'}, feedback: {dataset: d, label: y}}}",
        '{"train": {"endpoint": "web", "options": {"steps": "10,50"}, '
        '"feedback": {"dataset": "d", "label": "y"}}}',
        {
            "train": LoopPolicy(
                "web", "canary", {"steps": "10,50"}, "champion", FeedbackPolicy("d", "y", "web")
            )
        },
    ),
    "monitoring_interval": ("90s", "90s", 90.0),
    "monitoring_window": ("30m", "30m", 1800.0),
    "monitoring_max_requests": ("5000", "5000", 5000),
}


@pytest.mark.parametrize("key", [s.key for s in SETTINGS])
def test_every_setting_loads_from_the_file_and_the_environment(tmp_path: Path, key: str) -> None:
    assert set(EXAMPLES) == set(BY_KEY)  # a new setting needs its example here
    written, env_text, used = EXAMPLES[key]
    root = project_file(tmp_path, f"{key}: {written}\n")
    expected = used.format(root=tmp_path) if isinstance(used, str) else used
    from_file = load_settings(root, environ={})
    assert from_file.sources[key] == "mloop.yaml"
    if expected is not None:
        assert getattr(from_file, key) == expected
    if env_text:
        env = BY_KEY[key].env
        from_env = load_settings(project_file(tmp_path, ""), environ={env: env_text})
        assert from_env.sources[key] == f"environment ({env})"
        assert getattr(from_env, key) == getattr(from_file, key)
    assert from_file.values[key] == BY_KEY[key].plain(getattr(from_file, key))
    json.dumps(from_file.values[key])  # plain: what `config show --json` prints


def test_settings_pickle_whole_for_a_worker_process(tmp_path: Path) -> None:
    text = "gates: {train: [f1 > 0.5]}\nmodels: {churn: {gates: [data_validation]}}\n"
    settings = load_settings(project_file(tmp_path, text), environ={"MLOOP_POOL_SIZE": "4"})
    again = pickle.loads(pickle.dumps(settings))  # noqa: S301 (bytes this test made)
    assert again == settings and again.sources == settings.sources
    assert again.models["churn"].gates == settings.models["churn"].gates


def test_config_show_prints_values_and_sources(project: Path, cli, monkeypatch) -> None:
    monkeypatch.setenv("MLOOP_POOL_SIZE", "7")
    monkeypatch.setenv("MLOOP_STORE_URI", "postgresql+psycopg://me:secret@db.example:5432/ml")
    monkeypatch.setenv("MLOOP_REMOTE_URI", "https://me:hidden@files.example/ml")
    result = cli("config", "show")
    assert result.code == 0
    assert "environment (MLOOP_POOL_SIZE)" in result.out
    assert "secret" not in result.out and "me:***@db.example" in result.out
    assert "hidden" not in result.out and "me:***@files.example" in result.out
    assert "mloop.yaml" in result.out
    shown = json.loads(cli("config", "show", "--json").out)["settings"]
    assert [row["key"] for row in shown] == [s.key for s in SETTINGS]
    by_key = {row["key"]: row for row in shown}
    assert by_key["store_uri"]["value"] == "postgresql+psycopg://me:***@db.example:5432/ml"
    assert by_key["pool_size"] == {
        "key": "pool_size",
        "value": 7,
        "source": "environment (MLOOP_POOL_SIZE)",
        "env": "MLOOP_POOL_SIZE",
        "help": BY_KEY["pool_size"].help,
    }


def test_a_binary_project_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "mloop.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})  # not a UnicodeDecodeError
    assert caught.value.message == f"{tmp_path / 'mloop.yaml'} is not UTF-8 text (byte 0 is 0xff)"
    assert "project: churn" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("text", "environ", "where"),
    [
        ("project: 'Bad Name!'\n", {}, "mloop.yaml: project"),
        ("project: churn\n", {"MLOOP_PROJECT": "Bad Name!"}, "MLOOP_PROJECT"),
    ],
    ids=["file", "environment"],
)
def test_the_project_name_follows_the_name_rule(
    tmp_path: Path, text: str, environ: dict[str, str], where: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(project_file(tmp_path, text), environ=environ)
    assert caught.value.message.endswith(f"{where}: invalid project name 'Bad Name!': {NAME_RULE}")
    assert caught.value.hint == "try 'bad-name'"


def test_without_a_project_key_the_name_comes_from_the_folder_by_the_rule(
    tmp_path: Path,
) -> None:
    root = tmp_path / "My Churn_Model"
    root.mkdir()
    assert load_settings(project_file(root, ""), environ={}).project == "my-churn-model"


@pytest.mark.parametrize(
    ("user", "problem"),
    [
        ("a\nb", "holds a line break"),
        ("x" * (MAX_USER_LENGTH + 1), f"is {MAX_USER_LENGTH + 1} characters long"),
        ("\x1b[2Jroot", "control character"),
    ],
    ids=["newline", "too-long", "escape-code"],
)
def test_the_user_is_one_printable_line_of_bounded_length(
    tmp_path: Path, user: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        load_settings(project_file(tmp_path, ""), environ={"MLOOP_USER": user})
    assert caught.value.message.startswith("MLOOP_USER: user ")
    assert str(MAX_USER_LENGTH) in (caught.value.hint or "")
    assert len(caught.value.message) < 200


def test_a_user_of_one_line_is_kept(tmp_path: Path) -> None:
    settings = load_settings(project_file(tmp_path, "user: Ana María\n"), environ={})
    assert settings.user == "Ana María"


@pytest.mark.parametrize(
    ("name", "uri", "listed"),
    [
        ("MLOOP_STORE_URI", "garbage://x", "postgresql+psycopg://"),
        ("MLOOP_STORE_URI", "/just/a/path.db", "sqlite://"),
        ("MLOOP_ARTIFACTS_URI", "nosuchproto://bucket", "s3"),
        ("MLOOP_REMOTE_URI", "garbage://", "gs"),
    ],
    ids=["store", "store-without-scheme", "artifacts", "remote"],
)
def test_uris_with_unknown_schemes_are_refused_listing_the_known(
    tmp_path: Path, name: str, uri: str, listed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(project_file(tmp_path, ""), environ={name: uri})
    assert caught.value.message.startswith(f"{name}: ")
    assert repr(uri) in caught.value.message
    assert listed in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("name", "uri"),
    [
        ("MLOOP_STORE_URI", "sqlite:///meta.db"),
        ("MLOOP_STORE_URI", "postgresql+psycopg://u:p@db:5432/ml"),
        ("MLOOP_ARTIFACTS_URI", "objects"),
        ("MLOOP_ARTIFACTS_URI", "s3://bucket/prefix"),
        ("MLOOP_ARTIFACTS_URI", "file:///srv/objects"),
        ("MLOOP_REMOTE_URI", "sftp://host/backups"),  # one fsspec knows beyond the common ones
    ],
    ids=["sqlite", "postgresql", "folder", "s3", "file", "sftp"],
)
def test_uris_with_known_schemes_are_accepted(tmp_path: Path, name: str, uri: str) -> None:
    settings = load_settings(project_file(tmp_path, ""), environ={name: uri})
    assert settings.sources[name.removeprefix("MLOOP_").lower()] == f"environment ({name})"


def test_monitoring_settings_take_their_longer_forms_and_refuse_nonsense(tmp_path: Path) -> None:
    text = (
        "monitoring_reference: {web: train:3, api: other:1}\n"
        "drift_thresholds: {city: {method: psi, threshold: 0.25}}\n"
    )
    settings = load_settings(project_file(tmp_path, text), environ={})
    assert settings.monitoring_reference == {"web": "train:3", "api": "other:1"}
    assert settings.drift_thresholds == {"city": DriftRule(0.25, Method.PSI)}
    assert settings.values["drift_thresholds"] == {"city": {"method": "psi", "threshold": 0.25}}
    bad = {
        "monitoring_reference: train": "name the version, e.g. train:1",
        "drift_thresholds: {age: -1}": "age: a threshold is a number of 0 or more",
        "drift_thresholds: {age: {method: nope, threshold: 1}}": "unknown method 'nope'",
        "drift_thresholds: {age: {threshold: 1, bins: 3}}": "{method: psi, threshold: 0.2}",
    }
    for line, message in bad.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_settings(project_file(tmp_path, line + "\n"), environ={})
