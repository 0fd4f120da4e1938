"""SyncQueue: a message queue between any processes, in shared memory, joined by name."""

from __future__ import annotations

import queue as std_queue
import time
import weakref
from itertools import chain, repeat
from typing import Any, Iterable, List, NoReturn, Optional, Tuple

import nonblock.syncq.codec as codec
import nonblock.syncq.errors as errors
import nonblock.syncq.layout as L
from nonblock._checks import show
from nonblock.syncq.ring import Ring

Empty = std_queue.Empty
Full = std_queue.Full
DEFAULT_SIZE = 1 << 20
_header = L.RECORD.pack
_PADS = tuple(b"\0" * n for n in range(8))


class SyncQueue:
    """A queue in shared memory that processes join by name.

    ::

        q = SyncQueue("jobs", size=1 << 20, mode="work")      # one process creates it
        q = SyncQueue("jobs", create=False, mode="work")      # any other joins it by name
        q.put(b"bytes"); q.put("or text")
        q.get(timeout=1.0)                                    # -> b"bytes"

    ``mode="broadcast"`` (the default) gives every reader every message, in
    order; ``mode="work"`` gives each message to exactly one reader.  A process
    becomes a reader at its first ``get`` (or at once with ``reader=True``); a
    process that only writes never holds messages back.  A broadcast reader that
    joins late starts at the newest message (``start="latest"``) or at the
    oldest one still in the ring (``start="earliest"``).

    When the ring is full, ``on_full="block"`` makes ``put`` wait (within its
    timeout, then :class:`queue.Full`) for the slowest live reader;
    ``"drop_oldest"`` (broadcast only) drops the oldest messages instead, and
    the reader that missed them finds the count in :attr:`lost`.  A reader
    whose process died is dropped at once, whatever the policy.

    Messages are bytes or str and come back as they went in; with
    ``serializer="pickle"`` anything picklable goes.  ``size`` is the ring's
    capacity in bytes (1 MiB when creating, by default; when joining, given
    only to check it); a message takes 8 bytes more than its payload, rounded
    up to 8.  The segment and its lock file go away when the last participant
    closes (or exits, or is found dead by the others).
    """

    def __init__(self, name: Optional[str] = None, create: bool = True, size: Optional[int] = None, *,
                 mode: str = "broadcast", on_full: str = "block", start: str = "latest",
                 serializer: Optional[str] = None, reader: Optional[bool] = None, slots: int = 64) -> None:
        name = errors.name(name)
        if not isinstance(create, bool):
            raise TypeError(f"create must be True or False, not {show(create)}")
        capacity = DEFAULT_SIZE if size is None else (errors.byte_count("size", size, 64) + 7) & ~7
        mode = errors.choice("mode", mode, L.MODES)
        on_full = errors.choice("on_full", on_full, L.ON_FULL)
        if on_full == "drop_oldest" and mode != "broadcast":
            raise ValueError("on_full='drop_oldest' needs mode='broadcast' (a work queue never drops)")
        self._start = errors.choice("start", start, ("latest", "earliest"))
        if serializer not in (None, "pickle"):
            raise ValueError(f"serializer must be None or 'pickle', not {show(serializer)}")
        if reader not in (None, True, False):
            raise TypeError(f"reader must be None, True or False, not {show(reader)}")
        slots = errors.byte_count("slots", slots, 1)
        self._serializer = serializer
        self._reader = reader
        self._ring = Ring(name, create, capacity, mode=mode, on_full=on_full, slots=slots,
                          check_capacity=create or size is not None)
        try:
            self._ring.join(reader=bool(reader), start=self._start)
        except BaseException:
            self._ring.close()
            raise
        self._max_payload = self._ring.capacity - L.RECORD_HEADER
        self._finalizer = weakref.finalize(self, self._ring.close)

    # -- what it is -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The segment's name: pass it to ``SyncQueue(name, create=False)`` in another process."""
        return self._ring.name

    @property
    def capacity(self) -> int:
        """The ring's size in bytes."""
        return int(self._ring.capacity)

    @property
    def mode(self) -> str:
        return self._ring.mode

    @property
    def lost(self) -> int:
        """How many messages this reader missed because ``on_full="drop_oldest"`` dropped them."""
        return int(self._ring.lost())

    @property
    def closed(self) -> bool:
        return self._ring.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.capacity} bytes"
        return f"<SyncQueue {self.name!r} {self.mode} {state}>"

    # -- writing -----------------------------------------------------------------------

    def put(self, data: Any, timeout: Optional[float] = None) -> None:
        """Append *data* (bytes or str); wait up to *timeout* s for room, then raise queue.Full.

        ``timeout=0`` never waits; ``None`` waits until there is room.  A
        message that could never fit raises MessageTooLarge (a ValueError) at once.
        """
        seconds = None if timeout is None else errors.timeout("timeout", timeout)
        if type(data) is bytes:
            payload, kind = data, codec.BYTES
        elif type(data) is str:
            payload, kind = data.encode("utf-8", "surrogatepass"), codec.TEXT
        else:
            payload, kind = codec.payload(data, self._serializer)
        if len(payload) > self._max_payload:
            self._too_large(len(payload))
        if not self._ring.append_one(kind, payload, seconds):
            raise Full(f"syncq {self.name!r} stayed full for {seconds} s")

    def put_many(self, items: Iterable[Any], timeout: Optional[float] = None) -> None:
        """Append every item in order, in as few locked copies as the ring allows.

        Every item is checked first (nothing is appended if one is refused).  On
        queue.Full, the items before the first one that found no room were put.
        """
        seconds = errors.timeout("timeout", timeout)
        serializer, most = self._serializer, self._max_payload
        limit = max(self.capacity // 4, 1)  # a batch need not wait for the whole ring to be free
        items = items if isinstance(items, (list, tuple)) else list(items)
        if items and all(type(item) is bytes for item in items):
            # All bytes (the common case): the records are built by C loops.
            lengths = list(map(len, items))
            pads = [_PADS[-n & 7] for n in lengths]
            size = 8 * len(items) + sum(lengths) + sum(map(len, pads))
            if max(lengths) > most:
                self._too_large(max(lengths))
            if size <= limit:
                headers = map(_header, lengths, repeat(codec.BYTES))
                blob = b"".join(chain.from_iterable(zip(headers, items, pads)))
                if not self._ring.append(blob, len(items), seconds):
                    raise Full(f"syncq {self.name!r} stayed full for {seconds} s; "
                               f"0 of {len(items)} items were put")
                return
        batches: List[Tuple[List[bytes], int]] = []
        parts: List[bytes] = []
        count = size = total = 0
        for item in items:
            if type(item) is bytes:
                payload, kind = item, codec.BYTES
            elif type(item) is str:
                payload, kind = item.encode("utf-8", "surrogatepass"), codec.TEXT
            else:
                payload, kind = codec.payload(item, serializer)
            length = len(payload)
            if length > most:
                self._too_large(length)
            record_size = L.RECORD_HEADER + ((length + 7) & ~7)
            if count and size + record_size > limit:
                batches.append((parts, count))
                parts, count, size = [], 0, 0
            parts += (_header(length, kind), payload, _PADS[-length & 7])
            count += 1
            size += record_size
            total += 1
        if count:
            batches.append((parts, count))
        deadline = None if seconds is None else time.monotonic() + seconds
        done = 0
        for parts, count in batches:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._ring.append(b"".join(parts), count, left):
                raise Full(f"syncq {self.name!r} stayed full for {seconds} s; "
                           f"{done} of {total} items were put")
            done += count

    def _too_large(self, length: int) -> NoReturn:
        raise errors.MessageTooLarge(
            f"a message of {length} bytes can never fit in syncq {self.name!r} "
            f"({self.capacity} bytes; each message takes 8 bytes more, rounded up to 8)")

    # -- reading -----------------------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> Any:
        """The next message; wait up to *timeout* s for one, then raise queue.Empty."""
        if self._reader is not True:
            return self.get_many(1, timeout)[0]
        record = self._ring.read_one(None if timeout is None else errors.timeout("timeout", timeout))
        if record is None:
            raise Empty(f"syncq {self.name!r} had no message for {timeout} s")
        kind, payload = record
        return payload if kind == codec.BYTES else codec.decode(kind, payload)

    def get_many(self, max_items: int = 100, timeout: Optional[float] = None) -> List[Any]:
        """Up to *max_items* messages (at least one: waits up to *timeout* s, then queue.Empty)."""
        count = errors.byte_count("max_items", max_items, 1)
        seconds = errors.timeout("timeout", timeout)
        ring = self._ring
        if self._reader is False:
            raise ValueError(f"this handle on syncq {self.name!r} was made with reader=False")
        if self._reader is None:
            self._reader = True
            if ring.joined:
                ring.join(reader=True, start=self._start)
        records = ring.read(count, seconds)
        if not records:
            raise Empty(f"syncq {self.name!r} had no message for {seconds} s")
        decode = codec.decode
        return [payload if kind == codec.BYTES else decode(kind, payload) for kind, payload in records]

    # -- the end -----------------------------------------------------------------------

    def close(self) -> None:
        """Leave the queue; the last participant to leave removes it.  Idempotent."""
        self._finalizer()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __reduce__(self) -> Any:
        # A spawned child joins by name (the mapping and locks do not travel).
        return (_join, (self.name, self.capacity, self.mode, self._ring.on_full, self._start,
                        self._serializer, self._reader))


def _join(name: str, size: int, mode: str, on_full: str, start: str, serializer: Optional[str],
          reader: Optional[bool]) -> SyncQueue:
    return SyncQueue(name, create=False, size=size, mode=mode, on_full=on_full, start=start,
                     serializer=serializer, reader=reader)
