"""Store URIs as shown to people: the one rule that keeps a password out of messages and output.

It sits in the domain because both sides need it: the SQL adapter names the database it cannot
reach, and the CLI prints the settings; neither may import the other.
"""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*@")


def redact(uri: str) -> str:
    """The URI with any password replaced, for messages and `mloop config show`.

    Example:
        >>> redact("postgresql+psycopg://me:secret@db.example:5432/ml")
        'postgresql+psycopg://me:***@db.example:5432/ml'
    """
    return _PASSWORD.sub(r"\1***@", uri)
