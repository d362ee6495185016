"""Settings: defaults < mloop.yaml < environment, each value's source, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloop.config import SETTINGS, load_settings
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
        ("pool_size: 0\n", {}, "must be at least 1", "PostgreSQL connections"),
        ("project: [1\n", {}, "is not valid YAML at line", "fix the file"),
        ("- a\n- b\n", {}, "must be a mapping", "key: value"),
        ("project: x\n", {"MLOOP_STORE_UIR": "x"}, "unknown setting 'store_uir'", "store_uri"),
    ],
    ids=["typo-key", "not-a-number", "zero", "bad-yaml", "not-a-mapping", "env-typo"],
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


def test_config_show_prints_values_and_sources(project: Path, cli, monkeypatch) -> None:
    monkeypatch.setenv("MLOOP_POOL_SIZE", "7")
    monkeypatch.setenv("MLOOP_STORE_URI", "postgresql+psycopg://me:secret@db.example:5432/ml")
    result = cli("config", "show")
    assert result.code == 0
    assert "environment (MLOOP_POOL_SIZE)" in result.out
    assert "secret" not in result.out and "me:***@db.example" in result.out
    assert "mloop.yaml" in result.out
