"""The run filter language and sort keys, parsed into a small tree the stores translate.

    metrics.acc > 0.9 and (params.model = 'rf' or tags.team = "vision") and not status = failed

Fields: `params.KEY`, `metrics.KEY`, `tags.KEY` (a key with unusual characters goes in
backticks), and the attributes `status`, `name`, `user`, `started`, `ended`, `id`, `parent`,
`kind` and `pipeline` (`tags.mloop.kind` and `tags.mloop.pipeline`, tags before schema 0005,
read those two).
Operators: `=`, `!=`, `<`, `<=`, `>`, `>=`, and `~` (contains, with `*` as wildcard). Values are
numbers, quoted strings or bare words; times take ISO dates (`started >= 2026-11-01`). Unlike
MLflow's search syntax, `or`, `not` and parentheses are allowed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from mloop.errors import FilterSyntaxError

ATTRIBUTES = ("status", "name", "user", "started", "ended", "id", "parent", "kind", "pipeline")
# System tags that became attributes (schema 0005): filters written for them keep working.
MOVED_TAGS = {"mloop.kind": "kind", "mloop.pipeline": "pipeline"}
TIME_ATTRIBUTES = ("started", "ended")
GROUPS = ("params", "metrics", "tags")
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~")
# Bounds no filter a person writes comes near, well inside what the stores' SQL can take
# (SQLite refuses expressions deeper than 1,000 and, in older builds, more than 999 values):
# parentheses and `not`s inside one another (each level is also a few frames of this parser),
# comparisons in one filter (each is a level of an AND or OR chain and up to 3 values), and keys
# to sort by.
MAX_DEPTH = 50
MAX_COMPARISONS = 100
MAX_SORT_KEYS = 20


@dataclass(frozen=True, slots=True)
class Field:
    group: str  # "params" | "metrics" | "tags" | "attr"
    key: str

    def __str__(self) -> str:
        return self.key if self.group == "attr" else f"{self.group}.{self.key}"


@dataclass(frozen=True, slots=True)
class Compare:
    field: Field
    op: str
    value: str | float


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr = Compare | And | Or | Not


@dataclass(frozen=True, slots=True)
class SortKey:
    field: Field
    descending: bool = False


_LEXER = r"""\s*(?:
      (?P<lp>\() | (?P<rp>\)) |
      (?P<op>!=|<=|>=|==|=|<|>|~) |
      (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*") |
      (?P<field>(?:params|metrics|tags)\.(?:`[^`]+`|[A-Za-z0-9_.\-/]+)) |
      (?P<word>[^\s()=!<>~'"]+)
    )"""


@functools.cache
def _token_re() -> re.Pattern[str]:
    # Compiled on first use: a CLI command that never filters should not pay for it.
    return re.compile(_LEXER, re.VERBOSE)


class _Token(NamedTuple):
    kind: str
    text: str
    pos: int


def _fail(text: str, pos: int, problem: str) -> FilterSyntaxError:
    # The hint shows the filter with a caret under the position: at most 30 characters either
    # side of it, with one line per line (a newline in the filter would break the caret).
    start, end = max(0, pos - 30), pos + 30
    excerpt = "".join(c if c.isprintable() else " " for c in text[start:end])
    before = "…" if start > 0 else ""
    after = "…" if end < len(text) else ""
    caret = " " * (len(before) + pos - start) + "^"
    return FilterSyntaxError(
        f"invalid filter at position {pos + 1}: {problem}",
        f"{before}{excerpt}{after}\n{caret}\n"
        "example: metrics.acc > 0.9 and (params.model = 'rf' or not status = failed)",
    )


@functools.cache
def _rest_is_blank() -> re.Pattern[str]:
    return re.compile(r"\s*\Z")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if _rest_is_blank().match(text, pos):  # not text[pos:]: a copy per token is quadratic
            break
        m = _token_re().match(text, pos)
        if m is None or m.lastgroup is None:
            start = len(text) - len(text[pos:].lstrip())
            raise _fail(text, start, f"unexpected character {text[start]!r}")
        tokens.append(_Token(m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.comparisons = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text.lower() == word

    def parse(self) -> Expr:
        expr = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise _fail(self.text, tok.pos, f"expected 'and', 'or' or the end, found {tok.text!r}")
        return expr

    def or_(self) -> Expr:
        items = [self.and_()]
        while self.is_word("or"):
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Expr:
        items = [self.not_()]
        while self.is_word("and"):
            self.take()
            items.append(self.not_())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_(self) -> Expr:
        tok = self.peek()
        if not (self.is_word("not") or tok.kind == "lp"):
            return self.comparison()
        self.take()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            problem = f"parentheses and 'not' nest more than {MAX_DEPTH} deep"
            raise _fail(self.text, tok.pos, problem)
        if tok.kind == "lp":
            expr = self.or_()
            close = self.take()
            if close.kind != "rp":
                raise _fail(self.text, close.pos, "expected ')'")
        else:
            expr = Not(self.not_())
        self.depth -= 1
        return expr

    def comparison(self) -> Compare:
        tok = self.take()
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise _fail(self.text, tok.pos, f"more than {MAX_COMPARISONS} comparisons")
        field = _field(self.text, tok)
        op_tok = self.take()
        if op_tok.kind != "op":
            raise _fail(self.text, op_tok.pos, f"expected an operator ({' '.join(OPERATORS)})")
        op = "=" if op_tok.text == "==" else op_tok.text
        val_tok = self.take()
        if val_tok.kind not in ("str", "word") or (
            val_tok.kind == "word" and val_tok.text.lower() in ("and", "or", "not")
        ):
            raise _fail(self.text, val_tok.pos, f"expected a value after {op_tok.text!r}")
        return Compare(field, op, _value(self.text, field, op, val_tok))


def _field(text: str, tok: _Token) -> Field:
    if tok.kind == "field":
        group, _, key = tok.text.partition(".")
        key = key[1:-1] if key.startswith("`") else key
        if group == "tags" and key in MOVED_TAGS:
            return Field("attr", MOVED_TAGS[key])
        return Field(group, key)
    if tok.kind == "word" and tok.text.lower() in ATTRIBUTES:
        return Field("attr", tok.text.lower())
    if tok.kind == "end":
        raise _fail(text, tok.pos, "expected a field such as metrics.acc")
    allowed = ", ".join([*(g + ".KEY" for g in GROUPS), *ATTRIBUTES])
    raise _fail(text, tok.pos, f"unknown field {tok.text!r} (fields: {allowed})")


def _value(text: str, field: Field, op: str, tok: _Token) -> str | float:
    raw = tok.text
    if tok.kind == "str":
        raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
    if field.group == "attr" and field.key in TIME_ATTRIBUTES:
        try:
            return datetime.fromisoformat(raw).timestamp()
        except ValueError:
            raise _fail(text, tok.pos, f"{raw!r} is not a date such as 2026-11-26") from None
    if field.group == "metrics":
        try:
            return float(raw)
        except ValueError:
            raise _fail(text, tok.pos, f"metrics compare with numbers, not {raw!r}") from None
    if op == "~" or tok.kind == "str":
        return raw
    if op in ("<", "<=", ">", ">="):
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


def parse_filter(text: str) -> Expr:
    """Parse a filter expression, or raise FilterSyntaxError pointing at the position.

    Example:
        >>> parse_filter("metrics.acc > 0.9 or not status = failed")  # doctest: +ELLIPSIS
        Or(items=(Compare(field=Field(group='metrics', key='acc'), op='>', value=0.9), ...))
    """
    if not text.strip():
        raise FilterSyntaxError("empty filter", "example: metrics.acc > 0.9")
    return _Parser(text).parse()


def parse_sort(text: str) -> tuple[SortKey, ...]:
    """Parse `-metrics.acc,name` or `metrics.acc desc`: comma-separated keys, `-` means descending.

    Example:
        >>> parse_sort("-metrics.acc")
        (SortKey(field=Field(group='metrics', key='acc'), descending=True),)
    """
    keys: list[SortKey] = []
    if text.count(",") >= MAX_SORT_KEYS:
        raise FilterSyntaxError(
            f"more than {MAX_SORT_KEYS} sort keys", "example: --sort -metrics.acc,name"
        )
    for part in text.split(","):
        item = part.strip()
        descending = False
        if item.startswith("-"):
            descending, item = True, item[1:]
        words = item.split()
        if len(words) == 2 and words[1].lower() in ("asc", "desc"):
            descending = words[1].lower() == "desc"
            item = words[0]
        tokens = _tokenize(item)
        if len(tokens) != 2:
            raise FilterSyntaxError(
                f"invalid sort key {part.strip()!r}", "example: --sort -metrics.acc,name"
            )
        keys.append(SortKey(_field(item, tokens[0]), descending))
    return tuple(keys)
