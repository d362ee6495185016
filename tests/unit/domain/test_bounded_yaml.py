"""YAML from files mloop did not write: aliases bounded once expanded, errors one line; the
same guard for mloop.yaml as for an MLflow MLmodel."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloop.config import load_settings
from mloop.domain.bounded_yaml import MAX_ALIASES, load_yaml
from mloop.errors import ConfigError, InvalidInput


def laughs(levels: int, width: int = 10) -> str:
    text = f"a0: &a0 [{', '.join(['lol'] * width)}]\n"
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]\n"
    return text


def test_a_few_aliases_are_fine() -> None:
    text = "gates: &g [accuracy >= 0.8]\nchurn: {gates: *g}\nfraud: {gates: *g}\n"
    assert load_yaml(text, "x.yaml") == {
        "gates": ["accuracy >= 0.8"],
        "churn": {"gates": ["accuracy >= 0.8"]},
        "fraud": {"gates": ["accuracy >= 0.8"]},
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (laughs(6), f"more than {MAX_ALIASES} aliases"),
        (laughs(9), f"more than {MAX_ALIASES} aliases"),  # 10**9 strings: refused as quickly
        ("s: &s '" + "x" * 50_000 + "'\nl: [" + ", ".join(["*s"] * 99) + "]\n", "characters"),
        ("l: [" + ", ".join(["1"] * 150_000) + "]\n", "more than 100,000 values"),
    ],
    ids=["billion-laughs", "deeper", "long-scalar-aliased", "wide"],
)
def test_documents_too_big_once_expanded_are_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=r"x\.yaml is refused") as err:
        load_yaml(text, "x.yaml")
    assert problem in err.value.message


def test_malformed_yaml_names_the_line() -> None:
    with pytest.raises(InvalidInput, match=r"x\.yaml is not valid YAML at line 2, column 2"):
        load_yaml("a: [1\nb: 2\n", "x.yaml")


def test_mloop_yaml_refuses_an_alias_bomb_without_echoing_it(tmp_path: Path) -> None:
    (tmp_path / "mloop.yaml").write_text(
        "project: p\nmodels:\n  churn:\n    gates: []\n"
        + "".join("    " + line + "\n" for line in laughs(6).splitlines())
    )
    with pytest.raises(ConfigError, match="is refused: it uses more than 100 aliases") as err:
        load_settings(tmp_path, environ={})
    assert len(err.value.message) < 300  # not the 8 MB the aliases expand to
