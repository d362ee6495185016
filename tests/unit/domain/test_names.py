"""Names, addresses and relative paths: the one place user-typed references are checked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mloop.domain.names import (
    MAX_VERSION,
    NAME_RULE,
    VERSION_RULE,
    Address,
    DatasetRef,
    ModelRef,
    check_line,
    check_name,
    check_relative_path,
    parse_address,
    parse_version,
    suggest_name,
)
from mloop.errors import InvalidAddress, InvalidInput, InvalidName, InvalidPath


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


@pytest.mark.parametrize(
    ("text", "version"),
    [("1", 1), ("0042", 42), (str(MAX_VERSION), MAX_VERSION), ("0" * 30 + "7", 7)],
    ids=["one", "leading-zeros", "largest", "many-leading-zeros"],
)
def test_versions_are_whole_numbers_up_to_the_largest_a_store_holds(
    text: str, version: int
) -> None:
    assert parse_version(text) == version
    assert parse_address(f"churn:{text}") == Address(None, "churn", version=version)


@pytest.mark.parametrize(
    "text",
    [
        str(MAX_VERSION + 1),
        "99999999999999999999",
        "9" * 5000,  # past Python's 4,300-digit int() limit: refused before converting
        "0",
        "000",
        "\u00b2",  # a digit to str.isdigit(), not to int()
        "\u0661\u0662",  # Arabic-Indic digits, which int() would take
        "+1",
        " 1",
        "1.0",
    ],
    ids=[
        "just-past-int64",
        "twenty-digits",
        "five-thousand-digits",
        "zero",
        "zeros",
        "superscript",
        "arabic-indic",
        "plus-sign",
        "leading-space",
        "decimal",
    ],
)
def test_a_version_out_of_range_is_one_clear_error_in_every_address(text: str) -> None:
    for parse in (
        parse_version,
        lambda t: parse_address(f"model/churn:{t}"),
        lambda t: DatasetRef.parse(f"sales:{t}"),
        lambda t: ModelRef.parse(f"churn:{t}"),
    ):
        with pytest.raises(InvalidAddress) as caught:
            parse(text)
        assert caught.value.message.startswith("invalid version ")
        assert len(caught.value.message) < 200
        assert caught.value.hint == VERSION_RULE


@pytest.mark.parametrize(
    ("text", "name"),
    [("My Project", "my-project"), ("churn_v2", "churn-v2"), ("  ", None), ("é", None)],
    ids=["spaces-and-capitals", "underscore", "blank", "nothing-left"],
)
def test_a_name_is_suggested_from_any_text(text: str, name: str | None) -> None:
    assert suggest_name(text) == name


@pytest.mark.parametrize("text", ["ana", "Ana María", "ci-bot@example.com", "x" * 100])
def test_one_printable_line_passes(text: str) -> None:
    assert check_line(text, "user", 100) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a\nb", "holds a line break"),
        ("a\rb", "holds a line break"),
        ("\x1b[31mred", "control character"),
        ("x" * 101, "is 101 characters long"),
        ("", "empty user"),
        ("  ", "empty user"),
    ],
    ids=["newline", "carriage-return", "escape-code", "too-long", "empty", "blank"],
)
def test_more_than_one_printable_line_is_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as caught:
        check_line(text, "user", 100)
    assert caught.value.hint == "give one line of printable characters, at most 100 long"


@pytest.mark.parametrize(
    ("cls", "text", "ref", "printed"),
    [
        (DatasetRef, "sales:3", DatasetRef("sales", 3), "sales:3"),
        (DatasetRef, "sales", DatasetRef("sales"), "sales"),
        (DatasetRef, "dataset/sales:3", DatasetRef("sales", 3), "sales:3"),
        (ModelRef, "churn:3", ModelRef("churn", 3), "churn:3"),
        (ModelRef, "churn@champion", ModelRef("churn", alias="champion"), "churn@champion"),
        (ModelRef, "model/churn", ModelRef("churn"), "churn"),
    ],
)
def test_a_ref_is_parsed_once_and_prints_as_written(
    cls: type[DatasetRef | ModelRef], text: str, ref: DatasetRef | ModelRef, printed: str
) -> None:
    assert cls.parse(text) == ref
    assert str(ref) == printed
    assert cls.parse(printed) == ref
    assert {ref, cls.parse(text)} == {ref}  # frozen and hashable: a key, a set member


@pytest.mark.parametrize(
    ("parse", "text", "match"),
    [
        (DatasetRef.parse, "sales@champion", "datasets have versions, not aliases"),
        (DatasetRef.parse, "model/churn:1", "is a model, but a dataset is expected"),
        (ModelRef.parse, "dataset/sales:1", "is a dataset, but a model is expected"),
        (ModelRef.parse, "churn:1@champion", "invalid version '1@champion'"),
    ],
    ids=["dataset-alias", "dataset-given-a-model", "model-given-a-dataset", "version-and-alias"],
)
def test_a_bad_ref_is_refused_with_the_address_rules(
    parse: Callable[[str], object], text: str, match: str
) -> None:
    with pytest.raises(InvalidAddress, match=match):
        parse(text)


def test_a_model_ref_names_a_version_or_an_alias_not_both() -> None:
    with pytest.raises(InvalidAddress, match="both a version and an alias"):
        ModelRef("churn", 3, "champion")
