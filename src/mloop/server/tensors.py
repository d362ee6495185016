"""Tensor datatypes of the Open Inference Protocol, and its binary tensor data extension.

The extension (Triton's `binary_tensor_data`, which KServe adopted) puts raw tensor bytes after
the JSON object of a request or response: the `Inference-Header-Content-Length` header gives
the JSON's length, and each tensor sent this way carries `"parameters": {"binary_data_size":
N}` instead of `data`; the bytes follow in the order of the tensors. Numbers are little-endian,
row-major, in the datatype's own size; BOOL is one byte, 0 or 1; a BYTES element is a 4-byte
little-endian length and then its bytes. tritonclient sends inputs this way, and asks for
outputs this way, unless told `binary_data=False`.

Every size comes from the client, so every size is checked against the body before a byte is
read: the header against the body's length, each `binary_data_size` against what is left,
against the tensor's shape (computed exactly, in Python integers) and against the datatype,
each BYTES length against what is left of its tensor, and nothing may be left over. A size
that does not add up is a 400; the body itself was already bounded by `--max-body-size`.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from mloop.errors import InvalidInput, ValidationFailed

NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = (*NUMERIC, "BYTES")
HEADER = "Inference-Header-Content-Length"
HINT = (
    "send the JSON object, then each tensor's bytes in the order of the inputs, with "
    f"{HEADER}: <bytes of JSON> (tritonclient does this by itself)"
)
_LENGTH = struct.Struct("<I")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def split_body(body: bytes, header: bytes | None) -> tuple[bytes, memoryview | None]:
    """The JSON object and the binary section after it (None when the request has no
    `Inference-Header-Content-Length`: then the body is all JSON).

    Example:
        >>> split_body(b'{"inputs": []}', None)
        (b'{"inputs": []}', None)
    """
    if header is None:
        return body, None
    text = header.strip()
    if not text.isdigit():
        shown = text[:40].decode("latin-1")
        raise InvalidInput(f"{HEADER} must be a whole number of bytes, got {shown!r}", HINT)
    length = int(text)
    if length > len(body):
        raise InvalidInput(
            f"{HEADER} says the JSON is {length} bytes, but the body is only {len(body)}", HINT
        )
    return body[:length], memoryview(body)[length:]


class Cursor:
    """Hands out the binary section tensor by tensor, never past its end."""

    def __init__(self, data: memoryview | None) -> None:
        self.data = data
        self.at = 0

    def take(self, where: str, size: Any) -> memoryview:
        if self.data is None:
            raise InvalidInput(
                f"{where} has a binary_data_size, but the request has no {HEADER} header "
                "saying where the JSON ends",
                HINT,
            )
        if type(size) is not int or size < 0:
            raise InvalidInput(
                f"{where}: binary_data_size must be a whole number of bytes, got {size!r}", HINT
            )
        left = len(self.data) - self.at
        if size > left:
            raise InvalidInput(
                f"{where}: binary_data_size {size} is past the end of the body "
                f"({_plural(left, 'byte')} left)",
                HINT,
            )
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def finish(self) -> None:
        left = len(self.data) - self.at if self.data is not None else 0
        if left:
            raise InvalidInput(
                f"{_plural(left, 'byte')} after the last tensor: the binary_data_size values "
                "do not add up to the body",
                HINT,
            )


def decode(where: str, datatype: str, shape: list[int], count: int, chunk: memoryview) -> Any:
    """A flat array of `count` values from one tensor's bytes (strings for BYTES).

    Example:
        >>> decode("input 'x'", "INT32", [2], 2, memoryview(bytes([1, 0, 0, 0, 2, 0, 0, 0])))
        array([1, 2], dtype=int32)
    """
    if datatype == "BYTES":
        return _strings(where, shape, count, chunk)
    dtype = np.dtype(NUMERIC[datatype]).newbyteorder("<")
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"{where}: {datatype} shape {shape} is {_plural(expected, 'byte')}, "
            f"binary_data_size says {len(chunk)}",
            HINT,
        )
    if datatype == "BOOL":
        raw = np.frombuffer(chunk, dtype=np.uint8)
        if (raw > 1).any():
            bad = int(raw[np.flatnonzero(raw > 1)[0]])
            raise ValidationFailed(f"{where}: BOOL bytes are 0 or 1, got {bad}")
        return raw.astype(bool)
    return np.frombuffer(chunk, dtype=dtype).astype(dtype.newbyteorder("="))


def _strings(where: str, shape: list[int], count: int, chunk: memoryview) -> Any:
    found: list[bytes] = []
    at, end = 0, len(chunk)
    while at < end and len(found) <= count:
        if end - at < _LENGTH.size:
            raise InvalidInput(
                f"{where}: BYTES element {len(found)}: the 4-byte length is cut short "
                f"({_plural(end - at, 'byte')} left)",
                HINT,
            )
        (length,) = _LENGTH.unpack_from(chunk, at)
        at += _LENGTH.size
        if length > end - at:
            raise InvalidInput(
                f"{where}: BYTES element {len(found)} claims {_plural(length, 'byte')}, "
                f"only {end - at} remain",
                HINT,
            )
        found.append(bytes(chunk[at : at + length]))
        at += length
    if len(found) != count:
        raise InvalidInput(
            f"{where}: BYTES shape {shape} has {_plural(count, 'element')}, "
            f"the bytes hold {len(found)}",
            HINT,
        )
    texts = np.empty(count, dtype=object)
    for i, value in enumerate(found):
        try:
            texts[i] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed(f"{where}: element {i} is not UTF-8 text") from None
    return texts


def encode(datatype: str, flat: Any) -> bytes:
    """One output tensor's bytes, as `decode` reads them back.

    Example:
        >>> encode("BYTES", np.array(["no"], dtype=object))
        b'\\x02\\x00\\x00\\x00no'
    """
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in flat.tolist():
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts += [_LENGTH.pack(len(raw)), raw]
        return b"".join(parts)
    array: Any = np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("<"))
    return bytes(array.tobytes())
