"""Digests: BLAKE3 over bytes, written as 64 lowercase hex digits.

BLAKE3 is cryptographic (a digest names content nobody can forge a collision for) and hashes at
several GB/s, so verifying every read costs little.
"""

from __future__ import annotations

import re

import blake3

DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def digest_bytes(data: bytes) -> str:
    """The digest of `data`.

    Example:
        >>> digest_bytes(b"")[:12]
        'af1349b9f5f9'
    """
    return blake3.blake3(data).hexdigest()


def is_digest(text: str) -> bool:
    return DIGEST_RE.fullmatch(text) is not None


def short(digest: str) -> str:
    """The first 12 hex digits, as shown in listings."""
    return digest[:12]
