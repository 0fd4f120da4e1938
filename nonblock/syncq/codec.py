"""Messages to records and back: the kind byte says what the payload was.

A record is (length, kind) then the payload, padded to 8 bytes.  bytes come back
as bytes and str as str; pickled objects only when the queue was made with
``serializer="pickle"``.
"""

from __future__ import annotations

import pickle
from typing import Any, Optional, Tuple

import nonblock.syncq.layout as L
from nonblock._checks import show

BYTES, TEXT, PICKLED, PYSYNCQ = 0, 1, 2, 3
_PADS = tuple(b"\0" * n for n in range(8))
_pack = L.RECORD.pack


def record(payload: bytes, kind: int) -> bytes:
    """The record for *payload* as it goes in the ring."""
    n = len(payload)
    return _pack(n, kind) + payload + _PADS[-n & 7]


def encode(data: Any, serializer: Optional[str]) -> bytes:
    """The record for *data* (bytes-like, str, or anything with the pickle serializer)."""
    if type(data) is bytes:
        return record(data, BYTES)
    return record(*payload(data, serializer))


def payload(data: Any, serializer: Optional[str]) -> Tuple[bytes, int]:
    """(payload, kind) for *data*: bytes-like, str, or anything with the pickle serializer."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), BYTES
    if isinstance(data, str):
        return str(data).encode("utf-8", "surrogatepass"), TEXT
    if serializer == "pickle":
        return pickle.dumps(data, pickle.HIGHEST_PROTOCOL), PICKLED
    raise TypeError(f"a message must be bytes or str (or anything, with serializer='pickle'), "
                    f"not {type(data).__name__}: {show(data)}")


def decode(kind: int, payload: bytes) -> Any:
    if kind == BYTES:
        return payload
    if kind == TEXT:
        return payload.decode("utf-8", "surrogatepass")
    if kind == PICKLED:
        return pickle.loads(payload)
    if kind == PYSYNCQ:
        return split_pysyncq(payload)
    raise ValueError(f"a record of unknown kind {kind} in the ring")


_SIZES = L.RECORD  # two u32: sender length, type length


def join_pysyncq(sender: bytes, mtype: bytes, body: bytes) -> bytes:
    """pysyncq's message (sender, type, body) as one payload."""
    return _SIZES.pack(len(sender), len(mtype)) + sender + mtype + body


def split_pysyncq(payload: bytes) -> Tuple[bytes, bytes, bytes]:
    sender_len, type_len = _SIZES.unpack_from(payload, 0)
    at = _SIZES.size
    return (payload[at : at + sender_len], payload[at + sender_len : at + sender_len + type_len],
            payload[at + sender_len + type_len :])
