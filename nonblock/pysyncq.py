"""pysyncq's API on nonblock's shared-memory ring: change only the import.

::

    from nonblock.pysyncq import PySyncQ     # was: from pysyncq.pysyncq import PySyncQ

    q = PySyncQ("name_of_shared_memory")
    # children (forked or spawned) get q as a Process argument, then:
    q.open("sender_name")
    q.append("type_of_message", "The body of the message.")
    sender, mtype, body = q.pop(block=True, timer=None)
    for m in q(block=True, timer=0.123): ...
    q.close()

Every process that called ``open`` reads every message appended after it
opened; ``scrnsend`` / ``scrntype`` screen messages out by sender and type.
What it does better than pysyncq 0.0.1 is listed in the README's migration
table: any process can join by name (``create=False`` keeps the queue as it
is), a reader that dies frees its messages, ``timer=0`` never waits, a message
that can never fit raises at once, and no exit without ``close()`` prints
anything.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
import weakref
from typing import Any, Iterable, Iterator, Optional, Set, Tuple

import nonblock.syncq.codec as codec
import nonblock.syncq.errors as errors
from nonblock._checks import show
from nonblock.syncq.ring import Ring

__all__ = ["PySyncQ", "qset"]

_PAGE = resource.getpagesize()
_MAX_SIZE = 40 + (2**64 - 1) * 16  # pysyncq's limit: its header plus that many empty messages

Message = Tuple[Any, Any, Any]


class qset(Set[bytes]):  # noqa: N801 - pysyncq's name
    """A set that keeps every element as bytes (str is encoded, anything else goes through str()).

    Messages are screened as bytes, so ``q.scrntype.add("noise")`` and
    ``q.scrntype.add(b"noise")`` mean the same.
    """

    def __init__(self, iterable: Iterable[Any] = ()) -> None:
        super().__init__()
        for element in iterable:
            self.add(element)

    def add(self, element: Any) -> None:
        super().add(_as_bytes(element))

    def discard(self, element: Any) -> None:
        super().discard(_as_bytes(element))

    def remove(self, element: Any) -> None:
        super().remove(_as_bytes(element))

    def __contains__(self, element: object) -> bool:
        return super().__contains__(_as_bytes(element))


def _as_bytes(value: Any) -> bytes:
    return value if type(value) is bytes else str(value).encode()


class PySyncQ:
    """pysyncq's synchronisation queue: a broadcast queue in shared memory.

    ``PySyncQ(name=None, create=True, size=<page size>, start=None)``: *size*
    is the room for messages in bytes (each takes 8 bytes more than its sender,
    type and body, plus 8, rounded up to 8); *start* is the multiprocessing
    start method the children will use (checked, as pysyncq does; both work).
    With ``create=False`` the queue called *name* is joined as it is.
    """

    def __init__(self, name: Optional[str] = None, create: bool = True, size: int = _PAGE,
                 start: Optional[str] = None) -> None:
        name = errors.name(name)
        size = errors.byte_count("size", size, 1)
        if size > _MAX_SIZE:
            raise MemoryError(f"Queue size can't exceed {_MAX_SIZE}")
        if start is None:
            start = mp.get_start_method()
        if start not in mp.get_all_start_methods():
            raise ValueError(f"Not a valid start method, start={start!r}")
        self.create = bool(create)
        self.size = size
        self.start = start
        self.sender: Optional[bytes] = None
        self.scrnsend = qset()
        self.scrntype = qset()
        self._attach(name, create)

    def _attach(self, name: Optional[str], create: bool) -> None:
        capacity = max(64, self.size & ~7)
        self._ring = Ring(name, create, capacity, mode="broadcast", on_full="block", slots=64)
        self.name = self._ring.name
        try:
            self._ring.join(reader=False)
        except BaseException:
            self._ring.close()
            raise
        self._finalizer = weakref.finalize(self, self._ring.close)

    @property
    def scrns(self) -> Tuple[qset, qset]:
        """(scrnsend, scrntype), as pysyncq packs them."""
        return (self.scrnsend, self.scrntype)

    def __str__(self) -> str:
        sender = self.sender.decode() if self.sender is not None else None
        return f"PySyncQ(name={self.name},size={self.size},sender={sender})"

    # -- joining and leaving ------------------------------------------------------------

    def open(self, sender: Optional[str] = None, filtself: bool = True) -> None:
        """Register this process as a reader: it reads every message appended from now on.

        *sender* names it in the messages it appends (default: its pid); with
        *filtself* its own messages are screened out of its reads.
        """
        if sender is None:
            sender = str(os.getpid())
        if not isinstance(sender, str):
            raise TypeError(f"sender must be a str or None, not {show(sender)}")
        self.sender = sender.encode()
        if filtself:
            self.scrnsend.add(self.sender)
        self._ring.join(reader=True, start="latest")

    def close(self) -> None:
        """Leave the queue; the last process to leave removes the shared memory.  Idempotent."""
        self._finalizer()

    # -- messages -----------------------------------------------------------------------

    def append(self, msgtype: Any = "", msg: Any = "", block: bool = False,
               timer: Optional[float] = 0.5) -> None:
        """Append (sender, *msgtype*, *msg*) for every reader.

        Full queue: MemoryError at once, or with *block* after waiting *timer*
        seconds (None: until there is room).  A message that can never fit
        raises MessageTooLarge (a ValueError and a MemoryError) at once.
        """
        seconds = errors.timeout("timer", timer)
        sender = self.sender if self.sender is not None else str(os.getpid()).encode()
        blob = codec.record(codec.join_pysyncq(sender, _as_bytes(msgtype), _as_bytes(msg)), codec.PYSYNCQ)
        if len(blob) > self._ring.capacity:
            raise errors.MessageTooLarge(f"{len(blob)} byte message can never fit in the "
                                         f"{self._ring.capacity} bytes of queue {self.name!r}")
        if not self._ring.append(blob, 1, seconds if block else 0.0):
            raise MemoryError(f"{len(blob)} byte message: queue {self.name!r} stayed full")

    def pop(self, block: bool = False, timer: Optional[float] = 0.5,
            decode: bool = True) -> Optional[Message]:
        """The next unscreened message as (sender, type, body), or None.

        With *block*, waits up to *timer* seconds (None: as long as it takes;
        0: not at all) for one.  *decode* False gives bytes.
        """
        seconds = errors.timeout("timer", timer)
        deadline = None if seconds is None else time.monotonic() + seconds
        screens = (self.scrnsend, self.scrntype)
        while True:
            if not block:
                wait: Optional[float] = 0.0
            else:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            records = self._ring.read(1, wait)
            if not records:
                return None
            sender, mtype, body = codec.split_pysyncq(records[0][1])
            if set.__contains__(screens[0], sender) or set.__contains__(screens[1], mtype):
                continue
            if decode:
                return (sender.decode(), mtype.decode(), body.decode())
            return (sender, mtype, body)

    def __call__(self, block: bool = False, timer: Optional[float] = 0.5,
                 decode: bool = True) -> Iterator[Message]:
        """Iterate with these pop() arguments: ``for m in q(block=True, timer=0.1): ...``."""
        while (message := self.pop(block, timer, decode)) is not None:
            yield message

    def __iter__(self) -> Iterator[Message]:
        return self()

    # -- crossing into children -----------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # A spawned child joins by name; the mapping and locks do not travel.
        return {"name": self.name, "size": self.size, "start": self.start, "sender": self.sender,
                "scrnsend": set(self.scrnsend), "scrntype": set(self.scrntype)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.create = False
        self.size = state["size"]
        self.start = state["start"]
        self.sender = state["sender"]
        self.scrnsend = qset(state["scrnsend"])
        self.scrntype = qset(state["scrntype"])
        self._attach(state["name"], False)
