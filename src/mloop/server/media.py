"""Which body a predict route takes, from the request's headers alone (else a 415).

- `/invocations` (MLflow's scoring protocol): `application/json`, or `text/csv` with a header
  row, as MLflow's scoring server takes them; a missing Content-Type is refused, as MLflow
  refuses it.
- `/v1/models/NAME:predict` (KServe V1): JSON; its clients may send no Content-Type.
- `/v2/models/NAME/infer` (Open Inference Protocol): JSON, with or without a Content-Type, or
  JSON followed by binary tensors: `Inference-Header-Content-Length` says where the JSON
  ends (tritonclient sends that header and no Content-Type; Triton's own examples send
  `application/octet-stream`).

Only UTF-8 is taken, as MLflow does: a charset parameter other than utf-8 is a 415.
"""

from __future__ import annotations

from dataclasses import dataclass

INVOCATIONS, V1, INFER = "invocations", "v1", "infer"
JSON, CSV, BINARY = "json", "csv", "binary"
_UTF8 = (b"", b"charset=utf-8", b'charset="utf-8"')
HINTS = {
    INVOCATIONS: "send JSON with Content-Type: application/json, or CSV with a header row "
    "with Content-Type: text/csv",
    V1: "send JSON with Content-Type: application/json",
    INFER: "send JSON, or JSON then binary tensors with Inference-Header-Content-Length "
    "(the binary tensor data extension)",
}


@dataclass(frozen=True, slots=True)
class Media:
    """How to read a body: `kind` (json, csv or binary), the length of the JSON head when
    binary tensors follow it, or `problem`, the message of a 415."""

    kind: str = JSON
    header_length: bytes | None = None
    problem: str | None = None


PLAIN_JSON = Media()


def media_type(headers: list[tuple[bytes, bytes]], route: str) -> Media:
    """The body `route` is about to get, from its Content-Type and binary-tensor header.

    Example:
        >>> media_type([(b"content-type", b"text/csv")], INVOCATIONS).kind
        'csv'
    """
    content_type = b""
    header_length: bytes | None = None
    for name, value in headers:
        if name == b"content-type":
            content_type = value
        elif name == b"inference-header-content-length":
            header_length = value
    if content_type == b"application/json" and header_length is None:
        return PLAIN_JSON  # the common case, without parsing
    media, _, parameters = content_type.partition(b";")
    media = media.strip().lower()
    shown = content_type.decode("latin-1") or "none"
    if parameters.strip().lower() not in _UTF8:
        return Media(problem=f"only UTF-8 bodies are taken, got Content-Type {shown}")
    if route == INFER:
        if header_length is not None or media == b"application/octet-stream":
            return Media(BINARY, header_length)
        if media in (b"", b"application/json"):
            return PLAIN_JSON
        return Media(problem=f"expected Content-Type application/json, got {shown}")
    if header_length is not None:
        return Media(
            problem="binary tensor data (Inference-Header-Content-Length) is an extension of "
            "the Open Inference Protocol: send it to /v2/models/NAME/infer"
        )
    if media == b"application/json" or (route == V1 and not media):
        return PLAIN_JSON
    if media == b"text/csv" and route == INVOCATIONS:
        return Media(CSV)
    expected = "application/json or text/csv" if route == INVOCATIONS else "application/json"
    return Media(problem=f"expected Content-Type {expected}, got {shown}")
