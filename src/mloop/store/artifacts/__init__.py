"""The content-addressed artifact store (layer 1).

Backends (`local.py`, `fsspec.py`) store bytes under keys and know nothing of digests; `cas.py`
does the clever part once: BLAKE3 digests, storing identical content once, temp-then-rename
writes, and verifying every read.
"""
