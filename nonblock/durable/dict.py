"""DurableDict (iodict's IODict): an ordered dict kept in a sqlite database.

    from nonblock.durable import DurableDict

    settings = DurableDict("~/.myapp/settings")
    settings["theme"] = "dark"        # returns at once; committed in the background
    settings["theme"]                 # 'dark', at once, before the commit too
    settings.sync()                   # wait for the disk, when you need to

Assignments and deletions become ops of the store's pending batch (see
store.py) and are committed by the HDD queue, many per transaction.  Until
then an *overlay* holds this process's newest write per key, so reads see
them at once.  Whole-store reads (iteration, ``len``, ``popitem``, ``copy``,
``==``) first wait for this process's pending writes, then read the database.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import ItemsView, MutableMapping, ValuesView
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from nonblock.durable.codec import SerializerSpec, decode_key, encode_key, resolve_serializer
from nonblock.durable.store import Store
from nonblock.hddq import HddQueue, Task

__all__ = ["DurableDict", "IODict"]

_SCHEMA = "CREATE TABLE items (seq INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, value BLOB NOT NULL)"
_DELETED = None  # the overlay's value for a key deleted but not yet committed
_MISSING: Any = object()


def _apply(connection: sqlite3.Connection, ops: List[Tuple[Any, ...]]) -> None:
    for op in ops:
        if op[0] == "set":
            # An existing key keeps its place (its seq), as in a dict.
            connection.execute("INSERT INTO items (key, value) VALUES (?, ?) "
                               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (op[1], op[2]))
        elif op[0] == "del":
            connection.execute("DELETE FROM items WHERE key = ?", (op[1],))
        else:
            connection.execute("DELETE FROM items")


class _Items(ItemsView):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Tuple[Any, Any]]:
        return iter(self._mapping.snapshot())  # type: ignore[attr-defined]


class _Values(ValuesView):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Any]:
        return (value for _, value in self._mapping.snapshot())  # type: ignore[attr-defined]


class DurableDict(MutableMapping):  # type: ignore[type-arg]
    """A dict in the folder *path*, shared by every thread and process that opens it.

    *lock* is accepted for iodict compatibility and not needed: the store does
    its own locking.  *durability* is ``"group"`` (writes return at once and
    commit in groups, fsynced), ``"commit"`` (each write returns once committed
    and fsynced) or ``"os"`` (like group, never fsynced).  *serializer*:
    ``"pickle"``, ``"json"``, ``"raw"`` or an object with dumps/loads; a pickle
    store that other users can write is refused unless *trusted*.  *queue* is
    the HDD queue that commits (the default one unless given).

    Compound operations (``pop``, ``setdefault``, ``popitem``) are atomic
    among this object's threads, not across processes.
    """

    def __init__(self, path: Any, lock: Any = None, *, durability: str = "group",
                 serializer: SerializerSpec = "pickle", trusted: bool = False,
                 queue: Optional[HddQueue] = None) -> None:
        serializer_ = resolve_serializer(serializer)
        self._store = Store(path, "dict", _SCHEMA, durability=durability, serializer=serializer_,
                            trusted=trusted, queue=queue, apply=_apply)
        self._serializer = serializer_
        self._lock = lock  # iodict's; unused
        self._db_path = self._store.folder
        self._overlay: Dict[bytes, Tuple[Optional[bytes], int]] = {}
        self._clear_pending = 0  # the version of a clear() not yet committed, or 0
        self._version = 0
        self._compound = threading.RLock()
        self._store.committed = self._forget_committed
        self._store.after_fork = self._forget_parents_writes

    # -- keys and overlay ---------------------------------------------------------

    def _encoder(self, key: Any) -> bytes:
        """The canonical bytes of *key* (iodict's attribute name for its key encoder)."""
        return encode_key(key, self._serializer)

    def _forget_committed(self, ops: List[Tuple[Any, ...]]) -> None:
        versions = {op[1]: op[-1] for op in ops if op[0] != "clear"}
        with self._store.state_lock:
            for key, version in versions.items():
                entry = self._overlay.get(key)
                if entry is not None and entry[1] == version:  # no newer write waits
                    del self._overlay[key]
            if self._clear_pending and any(op[0] == "clear" and op[-1] == self._clear_pending for op in ops):
                self._clear_pending = 0

    def _forget_parents_writes(self) -> None:
        self._overlay = {}
        self._clear_pending = 0
        self._compound = threading.RLock()

    def _write(self, op: str, key: bytes, blob: Optional[bytes]) -> Task[Any]:
        store = self._store
        with store.state_lock:
            self._version += 1
            task = store.add((op, key, blob, self._version) if op == "set" else (op, key, self._version))
            self._overlay[key] = (blob, self._version)
        return task

    def _lookup(self, key: bytes) -> Any:
        """The stored bytes of *key*, or _MISSING: the overlay first, then the database."""
        # No lock: a dict lookup is atomic, and an entry leaves the overlay only once committed.
        entry = self._overlay.get(key)
        if entry is not None:
            return _MISSING if entry[0] is _DELETED else entry[0]
        if self._clear_pending:
            return _MISSING
        row = self._store.read_one("SELECT value FROM items WHERE key = ?", (key,))
        return _MISSING if row is None else row[0]

    # -- the mapping --------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        blob = self._lookup(self._encoder(key))
        if blob is _MISSING:
            raise KeyError(key)
        return self._serializer.loads(blob)

    def __contains__(self, key: object) -> bool:
        try:
            return self._lookup(self._encoder(key)) is not _MISSING
        except TypeError:
            return False  # unhashable or unencodable: never a key here

    def __setitem__(self, key: Any, value: Any) -> None:
        self.set_async(key, value)

    def set_async(self, key: Any, value: Any) -> Task[Any]:
        """``self[key] = value``, returning the Task that completes when it is committed."""
        encoded = self._encoder(key)
        blob = self._serializer.dumps(value)  # bad values fail here, before anything is stored
        with self._compound:
            task = self._write("set", encoded, blob)
        self._store.settle(task)
        return task

    def __delitem__(self, key: Any) -> None:
        encoded = self._encoder(key)
        with self._compound:
            if self._lookup(encoded) is _MISSING:
                raise KeyError(key)
            task = self._write("del", encoded, _DELETED)
        self._store.settle(task)

    def __iter__(self) -> Iterator[Any]:
        return iter([key for key, _ in self._rows(values=False)])

    def __len__(self) -> int:
        self._store.sync()
        return int(self._store.read("SELECT count(*) FROM items")[0][0])

    def _rows(self, values: bool) -> List[Tuple[Any, Any]]:
        self._store.sync()
        if values:
            rows = self._store.read("SELECT key, value FROM items ORDER BY seq")
            return [(decode_key(k, self._serializer), self._serializer.loads(v)) for k, v in rows]
        rows = self._store.read("SELECT key FROM items ORDER BY seq")
        return [(decode_key(k, self._serializer), None) for (k,) in rows]

    def snapshot(self) -> List[Tuple[Any, Any]]:
        """Every (key, value), oldest first, read in one query."""
        return self._rows(values=True)

    def items(self) -> ItemsView:  # type: ignore[type-arg]
        return _Items(self)

    def values(self) -> ValuesView:  # type: ignore[type-arg]
        return _Values(self)

    def copy(self) -> Dict[Any, Any]:
        """A plain dict with the same items (iodict returned the store itself)."""
        return dict(self.snapshot())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DurableDict):
            return self.snapshot() == other.snapshot()
        if isinstance(other, dict) or isinstance(other, MutableMapping):
            return self.copy() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self.copy())

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove *key* and return its value; *default* (even None) if absent, else KeyError."""
        encoded = self._encoder(key)
        with self._compound:
            blob = self._lookup(encoded)
            if blob is _MISSING:
                if default is _MISSING:
                    raise KeyError(key)
                return default
            task = self._write("del", encoded, _DELETED)
        self._store.settle(task)
        return self._serializer.loads(blob)

    def popitem(self) -> Tuple[Any, Any]:
        """Remove the oldest item and return it as (key, value) (iodict returned the value alone)."""
        with self._compound:
            self._store.sync()
            rows = self._store.read("SELECT key, value FROM items ORDER BY seq LIMIT 1")
            if not rows:
                raise KeyError("popitem(): dictionary is empty")
            encoded, blob = rows[0]
            task = self._write("del", encoded, _DELETED)
        self._store.settle(task)
        return decode_key(encoded, self._serializer), self._serializer.loads(blob)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """The value of *key*; if absent, store *default* first (iodict overwrote every time)."""
        encoded = self._encoder(key)
        with self._compound:
            blob = self._lookup(encoded)
            if blob is not _MISSING:
                return self._serializer.loads(blob)
            task = self._write("set", encoded, self._serializer.dumps(default))
        self._store.settle(task)
        return default

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set every item of *other* (a mapping or pairs) and *kwargs*, all checked before any is stored."""
        pairs: Iterable[Tuple[Any, Any]]
        if isinstance(other, MutableMapping) or isinstance(other, dict) or hasattr(other, "keys"):
            pairs = [(key, other[key]) for key in other.keys()]
        else:
            pairs = list(other)
        pairs = list(pairs) + list(kwargs.items())
        encoded = [(self._encoder(key), self._serializer.dumps(value)) for key, value in pairs]
        if not encoded:
            return
        with self._compound:
            for key, blob in encoded:
                task = self._write("set", key, blob)
        self._store.settle(task)

    def fromkeys(self, iterable: Iterable[Any], value: Any = None) -> None:
        """Set every key of *iterable* to *value* in this store (iodict's instance method, not dict's)."""
        self.update((key, value) for key in iterable)

    def clear(self) -> None:
        """Remove every item (one op, not one per key)."""
        store = self._store
        with self._compound:
            with store.state_lock:
                self._version += 1
                task = store.add(("clear", self._version))
                self._clear_pending = self._version  # first: lock-free readers look here after the overlay
                self._overlay.clear()
        store.settle(task)

    # -- durability and lifetime --------------------------------------------------------

    def sync(self, timeout: Optional[float] = None) -> None:
        """Wait until every write made so far in this process is committed."""
        self._store.sync(timeout)

    def close(self) -> None:
        """Commit what is pending and close the database (the items stay)."""
        self._store.close()

    def __enter__(self) -> DurableDict:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()  # iodict deleted every item here


IODict = DurableDict
