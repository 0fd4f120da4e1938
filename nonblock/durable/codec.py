"""How values and keys become bytes in a durable store.

A *serializer* turns values into bytes and back: ``"pickle"`` (the default, as
in iodict), ``"json"``, ``"raw"`` (bytes stored as they are), or any object with
``dumps(value) -> bytes`` and ``loads(bytes) -> value``.  A value it cannot
encode is a ``TypeError`` at the call, before anything is stored.

Keys get a canonical encoding of their own, so that keys a dict holds equal
(``1``, ``1.0`` and ``True``) are one key on disk too, whatever the serializer.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol, Union

from nonblock._checks import show

__all__ = ["Serializer", "SerializerSpec", "resolve_serializer", "encode_key", "decode_key"]


class Serializer(Protocol):
    """Anything with ``dumps`` and ``loads``, like the pickle and json modules."""

    def dumps(self, value: Any) -> Any: ...

    def loads(self, data: Any) -> Any: ...


SerializerSpec = Union[str, Serializer]


class _Pickle:
    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError, RecursionError) as error:
            # Unpicklable is bad input, like any other value the store cannot take.
            raise TypeError(f"value cannot be pickled: {show(value)} ({error})") from error

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class _Json:
    name = "json"

    def dumps(self, value: Any) -> bytes:
        try:
            return json.dumps(value, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as error:
            raise TypeError(f"value cannot be encoded as JSON: {show(value)} ({error})") from error

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class _Raw:
    name = "raw"

    def dumps(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"a raw store takes bytes-like values, not {show(value)}")
        return bytes(value)

    def loads(self, data: bytes) -> bytes:
        return bytes(data)


class _Custom:
    """A user's serializer, with its output checked so that sqlite always gets bytes."""

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner
        self.name = f"custom {inner!r}"

    def dumps(self, value: Any) -> bytes:
        data = self.inner.dumps(value)
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"serializer.dumps must return bytes or str, not {show(data)}")
        return bytes(data)

    def loads(self, data: bytes) -> Any:
        return self.inner.loads(data)


_NAMED = {"pickle": _Pickle, "json": _Json, "raw": _Raw}


def resolve_serializer(spec: Any) -> Any:
    """The serializer named or given by *spec*; TypeError/ValueError naming it otherwise."""
    if isinstance(spec, str):
        try:
            return _NAMED[spec]()
        except KeyError:
            raise ValueError(f"serializer must be 'pickle', 'json', 'raw' or an object with dumps/loads, "
                             f"not {show(spec)}") from None
    if callable(getattr(spec, "dumps", None)) and callable(getattr(spec, "loads", None)):
        return _Custom(spec)
    raise TypeError(f"serializer must be 'pickle', 'json', 'raw' or an object with dumps/loads, "
                    f"not {show(spec)}")


def is_pickle(serializer: Any) -> bool:
    """Whether loading from this store could run code (pickle, or a serializer we cannot vouch for)."""
    return not isinstance(serializer, (_Json, _Raw))


def encode_key(key: Any, serializer: Any) -> bytes:
    """The canonical bytes of *key*: one tag byte, then the key's own bytes.

    Plain keys (None, bool, int, float, str, bytes, tuples of them) are encoded
    here, so they read back exactly whatever the serializer; others go through
    the serializer (tag ``o``).  Unhashable keys are a TypeError, as in a dict.
    """
    if type(key) is str:  # the common case first
        return b"s" + key.encode("utf-8", "surrogatepass")
    hash(key)
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    if _integral(key):
        return b"i" + str(int(key)).encode()
    if isinstance(key, float):
        return b"f" + key.hex().encode()
    if isinstance(key, bytes):
        return b"b" + key
    if key is None:
        return b"n"
    if isinstance(key, tuple):
        parts = [encode_key(part, serializer) for part in key]
        return b"t" + b"".join(len(part).to_bytes(4, "big") + part for part in parts)
    encoded: bytes = serializer.dumps(key)
    return b"o" + encoded


def _integral(key: Any) -> bool:
    """An int, a bool, or a float with an integral value: the keys a dict takes as one int."""
    if isinstance(key, int):
        return True
    return isinstance(key, float) and key.is_integer()


def decode_key(data: bytes, serializer: Any) -> Any:
    """The key that :func:`encode_key` encoded as *data*."""
    tag, body = data[:1], data[1:]
    if tag == b"s":
        return body.decode("utf-8", "surrogatepass")
    if tag == b"i":
        return int(body)
    if tag == b"f":
        return float.fromhex(body.decode())
    if tag == b"b":
        return bytes(body)
    if tag == b"n":
        return None
    if tag == b"t":
        parts = []
        at = 0
        while at < len(body):
            size = int.from_bytes(body[at:at + 4], "big")
            parts.append(decode_key(body[at + 4:at + 4 + size], serializer))
            at += 4 + size
        return tuple(parts)
    return serializer.loads(body)
