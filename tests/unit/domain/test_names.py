"""Names, addresses and relative paths: the one place user-typed references are checked."""

from __future__ import annotations

import pytest

from mloop.domain.names import (
    NAME_RULE,
    Address,
    check_name,
    check_relative_path,
    parse_address,
)
from mloop.errors import InvalidAddress, InvalidName, InvalidPath


@pytest.mark.parametrize(
    "name",
    ["a", "7", "sales-2024", "0abc", "a" * 63, "a-b-c"],
    ids=["letter", "digit", "dash-and-digits", "leading-digit", "63-characters", "dashes"],
)
def test_valid_names_pass_unchanged(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("", None),
        ("Sales Data", "try 'sales-data'"),
        ("-sales", "try 'sales'"),
        ("sales-", "try 'sales'"),
        ("sales_eu", "try 'sales-eu'"),
        ("sales.v2", "try 'sales-v2'"),
        ("a" * 64, "try '" + "a" * 63 + "'"),
        ("___", None),
        ("ü", None),
    ],
    ids=[
        "empty",
        "upper-case-and-space",
        "leading-dash",
        "trailing-dash",
        "underscore",
        "dot",
        "too-long",
        "nothing-to-suggest",
        "non-ascii",
    ],
)
def test_invalid_names_are_refused_with_a_suggestion(name: str, hint: str | None) -> None:
    with pytest.raises(InvalidName) as caught:
        check_name(name, "dataset name")

    assert caught.value.message == f"invalid dataset name {name!r}: {NAME_RULE}"
    assert caught.value.hint == hint


@pytest.mark.parametrize(
    ("text", "kind", "address"),
    [
        ("sales", None, Address(None, "sales")),
        ("sales:3", None, Address(None, "sales", version=3)),
        ("churn@champion", None, Address(None, "churn", alias="champion")),
        ("dataset/sales:12", None, Address("dataset", "sales", version=12)),
        ("model/churn@challenger", "model", Address("model", "churn", alias="challenger")),
        ("sales", "dataset", Address("dataset", "sales")),
        ("  sales:2 ", None, Address(None, "sales", version=2)),
        ("run/3F2A9C", None, Address("run", "3f2a9c")),
        ("3f2a9c", "run", Address("run", "3f2a9c")),
        ("run/" + "ab" * 16, None, Address("run", "ab" * 16)),
        ("artifact/abcdef012345", None, Address("artifact", "abcdef012345")),
        ("pipeline/train", None, Address("pipeline", "train")),
        ("endpoint/churn-api", None, Address("endpoint", "churn-api")),
    ],
    ids=[
        "latest",
        "version",
        "alias",
        "kind-and-version",
        "kind-and-alias",
        "expected-kind",
        "surrounding-spaces",
        "run-id-lowercased",
        "bare-run-id",
        "full-run-id",
        "artifact-digest",
        "pipeline",
        "endpoint",
    ],
)
def test_addresses_parse(text: str, kind: str | None, address: Address) -> None:
    assert parse_address(text, kind) == address


@pytest.mark.parametrize(
    "text", ["sales", "sales:3", "churn@champion", "dataset/sales:3", "model/churn@champion"]
)
def test_an_address_prints_as_it_is_written(text: str) -> None:
    assert str(parse_address(text)) == text


@pytest.mark.parametrize(
    ("text", "kind", "error", "match"),
    [
        ("widget/sales", None, InvalidAddress, "unknown kind 'widget'"),
        ("model/churn", "dataset", InvalidAddress, "is a model, but a dataset is expected"),
        ("sales:0", None, InvalidAddress, "invalid version '0'"),
        ("sales:x", None, InvalidAddress, "invalid version 'x'"),
        ("sales:", None, InvalidAddress, "invalid version ''"),
        ("sales:-1", None, InvalidAddress, "invalid version '-1'"),
        ("sales:1@champion", None, InvalidAddress, "invalid version '1@champion'"),
        ("sales@", None, InvalidName, "invalid alias ''"),
        ("sales@Champion", None, InvalidName, "invalid alias 'Champion'"),
        ("Sales:1", None, InvalidName, "invalid name 'Sales'"),
        (":1", None, InvalidName, "invalid name ''"),
        ("run/xyz123", None, InvalidAddress, "invalid run id 'xyz123'"),
        ("run/abc", None, InvalidAddress, "invalid run id 'abc'"),
        ("run/" + "a" * 33, None, InvalidAddress, "invalid run id"),
        ("artifact/abc12", None, InvalidAddress, "invalid artifact digest"),
        ("artifact/" + "0" * 65, None, InvalidAddress, "invalid artifact digest"),
    ],
    ids=[
        "unknown-kind",
        "wrong-kind",
        "version-zero",
        "version-not-a-number",
        "version-empty",
        "version-negative",
        "version-and-alias",
        "alias-empty",
        "alias-upper-case",
        "name-upper-case",
        "name-empty",
        "run-id-not-hex",
        "run-id-too-short",
        "run-id-too-long",
        "digest-too-short",
        "digest-too-long",
    ],
)
def test_bad_addresses_are_refused(
    text: str, kind: str | None, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        parse_address(text, kind)


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("plots/roc.png", "plots/roc.png"),
        ("model.pkl", "model.pkl"),
        ("./a//b/./c", "a/b/c"),
        ("a/", "a"),
        ("a..b/.hidden", "a..b/.hidden"),
        ("dir with space/é.txt", "dir with space/é.txt"),
    ],
    ids=[
        "nested",
        "plain",
        "dots-and-doubled-slashes",
        "trailing-slash",
        "dots-in-names",
        "unicode",
    ],
)
def test_safe_relative_paths_are_normalised(path: str, clean: str) -> None:
    assert check_relative_path(path) == clean


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("", "empty artifact name"),
        ("..", "leaves its folder"),
        ("../secret", "leaves its folder"),
        ("a/../../etc/passwd", "leaves its folder"),
        ("a/..", "leaves its folder"),
        ("/etc/passwd", "is an absolute path"),
        ("C:/Windows", "is an absolute path"),
        ("c:relative", "is an absolute path"),
        ("a\\b", "contains a backslash"),
        ("..\\evil", "contains a backslash"),
        ("a\x00b", "contains a NUL byte"),
        (".", "names no file"),
        ("./", "names no file"),
    ],
    ids=[
        "empty",
        "parent",
        "parent-prefix",
        "escape-through-parents",
        "parent-suffix",
        "absolute",
        "drive-letter",
        "drive-relative",
        "backslash",
        "windows-parent",
        "nul",
        "dot",
        "dot-slash",
    ],
)
def test_unsafe_relative_paths_are_refused(path: str, problem: str) -> None:
    with pytest.raises(InvalidPath, match=problem) as caught:
        check_relative_path(path)

    assert caught.value.hint is not None
