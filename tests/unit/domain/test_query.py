"""The run filter language and sort keys: expressions become trees; mistakes point at a column."""

from __future__ import annotations

from datetime import datetime

import pytest

from mloop.domain.query import (
    MAX_COMPARISONS,
    MAX_DEPTH,
    MAX_SORT_KEYS,
    And,
    Compare,
    Field,
    Not,
    Or,
    SortKey,
    parse_filter,
    parse_sort,
)
from mloop.errors import FilterSyntaxError, InvalidInput

ACC = Compare(Field("metrics", "acc"), ">", 0.9)
RF = Compare(Field("params", "model"), "=", "rf")
FAILED = Compare(Field("attr", "status"), "=", "failed")


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("metrics.acc > 0.9", ACC),
        ("metrics.acc>0.9", ACC),
        ("params.model = 'rf'", RF),
        ('params.model = "rf"', RF),
        ("params.model == rf", RF),
        ("params.lr = 0.1", Compare(Field("params", "lr"), "=", "0.1")),
        ("params.lr >= 0.1", Compare(Field("params", "lr"), ">=", 0.1)),
        ("params.opt > adam", Compare(Field("params", "opt"), ">", "adam")),
        ("metrics.loss <= -1e-3", Compare(Field("metrics", "loss"), "<=", -0.001)),
        ("tags.note != 'it\\'s'", Compare(Field("tags", "note"), "!=", "it's")),
        ("name ~ 'base*'", Compare(Field("attr", "name"), "~", "base*")),
        ("STATUS = failed", FAILED),
        ("params.`my key` = x", Compare(Field("params", "my key"), "=", "x")),
        ("metrics.val/acc.top-1 < 2", Compare(Field("metrics", "val/acc.top-1"), "<", 2.0)),
        (
            "started >= 2026-11-01",
            Compare(Field("attr", "started"), ">=", datetime(2026, 11, 1).timestamp()),
        ),
        ("metrics.acc > 0.9 and params.model = rf", And((ACC, RF))),
        (
            "metrics.acc > 0.9 AND params.model = rf Or status = failed",
            Or((And((ACC, RF)), FAILED)),
        ),
        (
            "metrics.acc > 0.9 or params.model = rf and status = failed",
            Or((ACC, And((RF, FAILED)))),
        ),
        (
            "(metrics.acc > 0.9 or params.model = rf) and status = failed",
            And((Or((ACC, RF)), FAILED)),
        ),
        ("not status = failed", Not(FAILED)),
        ("not not status = failed", Not(Not(FAILED))),
        ("not (metrics.acc > 0.9 or status = failed)", Not(Or((ACC, FAILED)))),
        ("((status = failed))", FAILED),
        ("kind = step", Compare(Field("attr", "kind"), "=", "step")),
        ("tags.mloop.kind = step", Compare(Field("attr", "kind"), "=", "step")),
        ("tags.`mloop.pipeline` = churn", Compare(Field("attr", "pipeline"), "=", "churn")),
    ],
    ids=[
        "compare",
        "no-spaces",
        "single-quotes",
        "double-quotes",
        "double-equals",
        "equality-keeps-text",
        "ordering-is-numeric",
        "ordering-on-text",
        "scientific-negative",
        "escaped-quote",
        "contains",
        "attribute-any-case",
        "backtick-key",
        "key-with-punctuation",
        "date",
        "and",
        "and-binds-tighter-than-or",
        "or-then-and",
        "parentheses",
        "not",
        "double-not",
        "not-parentheses",
        "nested-parentheses",
        "kind",
        "moved-tag-reads-the-field",
        "moved-tag-in-backticks",
    ],
)
def test_valid_filters_parse_to_trees(text: str, tree: object) -> None:
    assert parse_filter(text) == tree


@pytest.mark.parametrize(
    ("text", "position", "problem"),
    [
        ("metrics.acc >", 14, "expected a value after '>'"),
        ("metrics.acc 0.9", 13, "expected an operator"),
        ("foo = 1", 1, "unknown field 'foo'"),
        ("metrics.acc > 0.9 and", 22, "expected a field"),
        ("(metrics.acc > 0.9", 19, "expected ')'"),
        ("metrics.acc > 0.9)", 18, "expected 'and', 'or' or the end, found ')'"),
        ("metrics.acc > 0.9 status = failed", 19, "expected 'and', 'or' or the end"),
        ("metrics.acc > high", 15, "metrics compare with numbers, not 'high'"),
        ("started > yesterday", 11, "'yesterday' is not a date"),
        ("name = 'unterminated", 8, 'unexpected character "\'"'),
        ("metrics.acc ! 1", 13, "unexpected character '!'"),
        ("and metrics.acc > 1", 1, "unknown field 'and'"),
        ("metrics.acc > (1)", 15, "expected a value after '>'"),
        ("()", 2, "unknown field ')'"),
        ("   metrics.acc", 15, "expected an operator"),
    ],
    ids=[
        "missing-value",
        "missing-operator",
        "unknown-field",
        "dangling-and",
        "unclosed-parenthesis",
        "stray-parenthesis",
        "missing-connective",
        "metric-not-a-number",
        "not-a-date",
        "unterminated-string",
        "lone-bang",
        "leading-keyword",
        "parenthesised-value",
        "empty-parentheses",
        "leading-spaces-count",
    ],
)
def test_syntax_errors_name_the_position(text: str, position: int, problem: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)

    error = caught.value
    assert error.message.startswith(f"invalid filter at position {position}: ")
    assert problem in error.message
    assert error.hint is not None
    shown, caret = error.hint.splitlines()[:2]
    assert (shown, caret) == (text, " " * (position - 1) + "^")
    assert isinstance(error, InvalidInput)


@pytest.mark.parametrize("text", ["", "   "], ids=["empty", "blank"])
def test_an_empty_filter_is_an_error(text: str) -> None:
    with pytest.raises(FilterSyntaxError, match="empty filter"):
        parse_filter(text)


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("-metrics.acc", (SortKey(Field("metrics", "acc"), True),)),
        ("metrics.acc", (SortKey(Field("metrics", "acc"), False),)),
        ("metrics.acc desc", (SortKey(Field("metrics", "acc"), True),)),
        ("NAME DESC", (SortKey(Field("attr", "name"), True),)),
        ("started asc", (SortKey(Field("attr", "started"), False),)),
        (
            "-metrics.acc, params.lr",
            (SortKey(Field("metrics", "acc"), True), SortKey(Field("params", "lr"), False)),
        ),
        ("tags.`team name`", (SortKey(Field("tags", "team name"), False),)),
    ],
    ids=["minus", "plain", "desc", "attribute-any-case", "asc", "several", "backtick-key"],
)
def test_sort_keys_parse(text: str, keys: tuple[SortKey, ...]) -> None:
    assert parse_sort(text) == keys


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "invalid sort key ''"),
        ("-", "invalid sort key '-'"),
        ("metrics.acc,", "invalid sort key ''"),
        ("metrics.acc name", "invalid sort key 'metrics.acc name'"),
        ("metrics.acc sideways", "invalid sort key"),
        ("bogus", "unknown field 'bogus'"),
    ],
    ids=["empty", "bare-minus", "trailing-comma", "two-fields", "bad-direction", "unknown-field"],
)
def test_bad_sort_keys_are_refused(text: str, match: str) -> None:
    with pytest.raises(FilterSyntaxError, match=match):
        parse_sort(text)


def test_nesting_up_to_the_limit_parses() -> None:
    half = MAX_DEPTH // 2
    text = "not (" * half + "status = failed" + ")" * half
    tree = parse_filter(text)
    for _ in range(half):
        assert isinstance(tree, Not)
        tree = tree.item
    assert tree == FAILED


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("(" * 1000, MAX_DEPTH + 1),
        ("not " * 5000 + "status = finished", 4 * MAX_DEPTH + 1),
        ("not (" * MAX_DEPTH + "status = x" + ")" * MAX_DEPTH, 5 * (MAX_DEPTH // 2) + 1),
    ],
    ids=["parentheses", "nots", "both"],
)
def test_nesting_past_the_limit_is_an_error_at_its_position(text: str, position: int) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)  # not a RecursionError

    assert caught.value.message == (
        f"invalid filter at position {position}: "
        f"parentheses and 'not' nest more than {MAX_DEPTH} deep"
    )


def test_more_comparisons_than_the_limit_are_an_error() -> None:
    many = " or ".join(["status = x"] * MAX_COMPARISONS)
    assert len(parse_filter(many).items) == MAX_COMPARISONS  # type: ignore[union-attr]

    with pytest.raises(FilterSyntaxError, match=f"more than {MAX_COMPARISONS} comparisons"):
        parse_filter(many + " and status = y")


def test_a_long_filter_shows_the_text_around_the_error_only() -> None:
    text = "status = x and " * 60 + "status = = y"
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)

    assert caught.value.hint is not None
    shown, caret = caught.value.hint.splitlines()[:2]
    assert len(shown) <= 62 and shown.startswith("…")
    assert shown[len(caret) - 1] == "="  # the caret is under the second '='


def test_a_line_break_in_a_filter_keeps_the_caret_under_its_place() -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter("status =\n\n)")

    assert caught.value.hint is not None
    shown, caret = caught.value.hint.splitlines()[:2]
    assert (shown, caret) == ("status =  )", "          ^")


def test_more_sort_keys_than_the_limit_are_an_error() -> None:
    assert len(parse_sort(",".join(["name"] * MAX_SORT_KEYS))) == MAX_SORT_KEYS
    with pytest.raises(FilterSyntaxError, match=f"more than {MAX_SORT_KEYS} sort keys"):
        parse_sort(",".join(["name"] * (MAX_SORT_KEYS + 1)))
