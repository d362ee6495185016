"""Names, addresses and artifact paths: the one place where user-typed references are parsed.

Names end up in URLs, file names and Kubernetes manifests, so they follow DNS-label rules.
Addresses say which version of which object: `sales:3` (a version), `churn@champion` (an alias),
`sales` (the latest), with a kind prefix where the command cannot tell (`dataset/sales:3`,
`model/churn@champion`, `run/3f2a9c`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mloop.errors import InvalidAddress, InvalidName, InvalidPath

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
NAME_RULE = (
    "names use lowercase letters, digits and '-', start and end with a letter or digit, "
    "and are at most 63 characters long"
)
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
    suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    hint = f"try '{suggestion}'" if suggestion and NAME_RE.fullmatch(suggestion) else None
    raise InvalidName(f"invalid {what} {name!r}: {NAME_RULE}", hint)


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
        if not ver.isdigit() or int(ver) < 1:
            raise InvalidAddress(
                f"invalid version {ver!r} in {text!r}", "versions are whole numbers from 1"
            )
        version = int(ver)
    elif "@" in raw:
        raw, _, alias = raw.partition("@")
        check_name(alias, "alias")
    check_name(raw)
    return Address(resolved_kind, raw, version, alias)


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
