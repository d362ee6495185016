"""Names, addresses and artifact paths: the one place where user-typed references are parsed.

Names end up in URLs, file names and Kubernetes manifests, so they follow DNS-label rules.
Addresses say which version of which object: `sales:3` (a version), `churn@champion` (an alias),
`sales` (the latest), with a kind prefix where the command cannot tell (`dataset/sales:3`,
`model/churn@champion`, `run/3f2a9c`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mloop.domain.records import textual
from mloop.errors import InvalidAddress, InvalidInput, InvalidName, InvalidPath

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
NAME_RULE = (
    "names use lowercase letters, digits and '-', start and end with a letter or digit, "
    "and are at most 63 characters long"
)
# Every store keeps a version in a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT).
MAX_VERSION = 2**63 - 1
VERSION_RULE = f"versions are whole numbers from 1 to {MAX_VERSION}"
KINDS = ("dataset", "model", "run", "artifact", "endpoint", "pipeline")
RUN_ID_RE = re.compile(r"[0-9a-f]{4,32}")


def check_name(name: str, what: str = "name") -> str:
    """Return `name` if it follows the naming rule, else raise InvalidName with a suggestion.

    Example:
        >>> check_name("sales-2024")
        'sales-2024'
    """
    if NAME_RE.fullmatch(name):
        return name
    suggestion = suggest_name(name)
    hint = f"try '{suggestion}'" if suggestion else None
    raise InvalidName(f"invalid {what} {name!r}: {NAME_RULE}", hint)


def suggest_name(text: str) -> str | None:
    """The name nearest to `text` that follows the rule (a folder's name, say), or None.

    Example:
        >>> suggest_name("My Project")
        'my-project'
    """
    suggestion = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return suggestion if NAME_RE.fullmatch(suggestion) else None


def parse_version(text: str, where: str | None = None) -> int:
    """The version number `text` names, or InvalidAddress with the rule; `where` is the address
    it came from, for the message.

    Only ASCII digits count ('²' is a digit to Python), and the digits are counted before
    converting, so a 5,000-digit number costs nothing and never reaches a store.

    Example:
        >>> parse_version("3")
        3
    """
    significant = text.lstrip("0")
    if (
        not (text.isascii() and text.isdigit())
        or not significant
        or len(significant) > len(str(MAX_VERSION))
        or int(significant) > MAX_VERSION
    ):
        shown = text if len(text) <= 40 else text[:40] + "…"
        place = f" in {where!r}" if where is not None and len(where) <= 80 else ""
        raise InvalidAddress(f"invalid version {shown!r}{place}", VERSION_RULE)
    return int(significant)


def check_line(text: str, what: str, max_length: int) -> str:
    """Return `text` if it is one line of printable characters, at most `max_length` long.

    For free text that is shown beside other fields and sent in headers (a user name): a newline
    or an escape code in it would forge a line of a table or a log, or break a header.

    Example:
        >>> check_line("ana", "user", 100)
        'ana'
    """
    hint = f"give one line of printable characters, at most {max_length} long"
    if not text.strip():
        raise InvalidInput(f"empty {what}", hint)
    if len(text) > max_length:
        raise InvalidInput(f"{what} is {len(text)} characters long: {text[:20]!r}…", hint)
    if not text.isprintable():
        raise InvalidInput(f"{what} {text!r} holds a line break or another control character", hint)
    return text


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed reference: kind (may be unknown), name, and at most one of version or alias."""

    kind: str | None
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.kind}/" if self.kind else ""
        if self.version is not None:
            return f"{prefix}{self.name}:{self.version}"
        if self.alias is not None:
            return f"{prefix}{self.name}@{self.alias}"
        return f"{prefix}{self.name}"


def parse_address(text: str, kind: str | None = None) -> Address:
    """Parse `[KIND/]NAME[:VERSION|@ALIAS]`; `kind` is what the command expects, if it knows.

    Example:
        >>> parse_address("dataset/sales:3")
        Address(kind='dataset', name='sales', version=3, alias=None)
    """
    raw = text.strip()
    found_kind: str | None = None
    if "/" in raw:
        found_kind, _, raw = raw.partition("/")
        if found_kind not in KINDS:
            raise InvalidAddress(
                f"unknown kind {found_kind!r} in {text!r}",
                f"use one of {', '.join(k + '/' for k in KINDS)}",
            )
        if kind is not None and found_kind != kind:
            raise InvalidAddress(f"{text!r} is a {found_kind}, but a {kind} is expected")
    resolved_kind = found_kind or kind
    if resolved_kind == "run":
        run_id = raw.lower()
        if not RUN_ID_RE.fullmatch(run_id):
            raise InvalidAddress(
                f"invalid run id {raw!r}", "a run id is hexadecimal; see `mloop runs list`"
            )
        return Address("run", run_id)
    if resolved_kind == "artifact":
        if not re.fullmatch(r"[0-9a-f]{6,64}", raw):
            raise InvalidAddress(f"invalid artifact digest {raw!r}", "give 6 to 64 hex digits")
        return Address("artifact", raw)
    version: int | None = None
    alias: str | None = None
    if ":" in raw:
        raw, _, ver = raw.partition(":")
        version = parse_version(ver, text)
    elif "@" in raw:
        raw, _, alias = raw.partition("@")
        check_name(alias, "alias")
    check_name(raw)
    return Address(resolved_kind, raw, version, alias)


@textual
@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A dataset version, `sales:3`, or the latest one, `sales`: what records hold and print.

    Stored and shown as text (`str(ref)`); `parse` is the one place that text is taken apart.
    """

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        """`sales`, `sales:3` or `dataset/sales:3`; aliases are for models.

        Example:
            >>> DatasetRef.parse("dataset/sales:3")
            DatasetRef(name='sales', version=3)
        """
        address = parse_address(text, kind="dataset")
        if address.alias is not None:
            raise InvalidAddress(
                f"{text!r}: datasets have versions, not aliases", "use NAME:VERSION, e.g. sales:3"
            )
        return cls(address.name, address.version)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


@textual
@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model version, `churn:3`, an alias, `churn@champion`, or the latest, `churn`."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.alias is not None:
            raise InvalidAddress(
                f"{self.name}:{self.version}@{self.alias} names both a version and an alias",
                "use NAME:VERSION or NAME@ALIAS",
            )

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """`churn`, `churn:3`, `churn@champion` or `model/churn:3`.

        Example:
            >>> ModelRef.parse("churn@champion")
            ModelRef(name='churn', version=None, alias='champion')
        """
        address = parse_address(text, kind="model")
        return cls(address.name, address.version, address.alias)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return self.name if self.alias is None else f"{self.name}@{self.alias}"


def check_relative_path(path: str, what: str = "artifact name") -> str:
    """Return a safe, normalised relative POSIX path, or raise InvalidPath.

    Names come from users and from manifests written by others; one that escaped the store or a
    checkout folder would let a shared store overwrite any file, so `..`, absolute paths,
    backslashes, drive letters and NUL bytes are refused rather than cleaned.

    Example:
        >>> check_relative_path("plots/roc.png")
        'plots/roc.png'
    """
    hint = "use a relative path with '/' separators inside the project, such as 'plots/roc.png'"
    if not path:
        raise InvalidPath(f"empty {what}", hint)
    if "\x00" in path:
        raise InvalidPath(f"{what} {path!r} contains a NUL byte", hint)
    if "\\" in path:
        raise InvalidPath(f"{what} {path!r} contains a backslash", hint)
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise InvalidPath(f"{what} {path!r} is an absolute path", hint)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidPath(f"{what} {path!r} leaves its folder with '..'", hint)
    if not parts:
        raise InvalidPath(f"{what} {path!r} names no file", hint)
    return "/".join(parts)
