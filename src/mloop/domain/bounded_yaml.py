"""YAML from files mloop did not write (mloop.yaml, an MLflow `MLmodel`), parsed with bounds.

PyYAML's safe loader builds no objects from tags, but an alias (`*a`) is the very object its
anchor made, so a few hundred bytes of nested aliases ("billion laughs") load in microseconds
and only blow up later, when something walks the value: a JSON copy, an error message that
prints it, an Event row. So after loading, the value is walked as the tree the document
describes (every alias expanded, as a JSON dump would), and refused once it uses more than
`MAX_ALIASES` aliases, `MAX_NODES` values or `MAX_TEXT` characters; the walk stops at the first
limit it passes, so refusing a bomb costs no more than reading a file of that size. Counting on
the loaded value, not inside the loader, keeps libyaml's C loader (mloop.yaml is read on every
command whose cached copy is stale). Aliases stay allowed below the limit: a shared list of
gates under several models is an honest use of them.

Both readers of such files use `load_yaml`; only the error class they raise differs.
"""

from __future__ import annotations

from typing import Any

from mloop.errors import InvalidInput, MloopError

MAX_ALIASES = 100
MAX_NODES = 100_000
MAX_TEXT = 4 * 1024 * 1024  # characters of keys and scalars in the expanded document


def _problem(value: Any) -> str | None:
    """What makes `value` too big once its aliases are expanded, or None."""
    seen: set[int] = set()
    aliases = nodes = text = 0
    stack = [value]
    while stack:
        item = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return f"it holds more than {MAX_NODES:,} values once its aliases are expanded"
        if isinstance(item, dict | list):
            if id(item) in seen:
                aliases += 1
                if aliases > MAX_ALIASES:
                    return f"it uses more than {MAX_ALIASES} aliases (*name)"
            seen.add(id(item))
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)
        elif isinstance(item, str | bytes):
            text += len(item)
            if text > MAX_TEXT:
                return f"it holds more than {MAX_TEXT:,} characters once its aliases are expanded"
    return None


def load_yaml(
    text: str, where: str, error: type[MloopError] = InvalidInput, hint: str | None = None
) -> Any:
    """The value of the YAML document `text` (from `where`, for messages), safely and bounded.

    Raises `error` (with `hint`) for malformed YAML, naming the line and column, and for a
    document too big once its aliases are expanded (see the module docstring).

    Example:
        >>> load_yaml("gates: &g [accuracy >= 0.8]\\nother: *g\\n", "mloop.yaml")
        {'gates': ['accuracy >= 0.8'], 'other': ['accuracy >= 0.8']}
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        value = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise error(f"{where} is not valid YAML{at}: {problem}", hint) from None
    except RecursionError:
        raise error(f"{where} nests too deeply to be read", hint) from None
    too_big = _problem(value)
    if too_big is not None:
        raise error(f"{where} is refused: {too_big}", hint)
    return value
