"""The IO-thread half of a BackgroundHddFile: the real file object, and the requests that touch it.

A :class:`~nonblock.hddfile.BackgroundHddFile` is two halves.  The caller's half
(hddfile.py) gathers writes and turns calls into requests; this half, a
:class:`FileChannel`, owns the builtin file object that open() returned.  Its
requests (:class:`FileWrite` batches and :class:`FileCall` calls) go to the
real file's stream writer (:mod:`nonblock.streamwriter`), the same one that
bgwrite uses: only the queue's IO threads touch the real file, one op at a
time, holding the disk token, in the order the caller issued them.

Three rules hold here:

* **Nothing after a failure is written.**  The first error of a write, a flush,
  a sync or the close is kept in :attr:`FileChannel.error`; every write
  that comes up after it fails with :class:`~nonblock.engine.PredecessorFailed`
  instead of writing, so the file never gets a hole.
* **The channel knows when the real file may hold written bytes.**  Joined
  writes are flushed chunk by chunk; exact ones (text, append) are flushed
  only when the caller flushes, and a stream that said EAGAIN keeps what it
  could not take.  ``dirty`` and ``mid_chunk`` say so, and a forked child
  that inherits such a file gets a fresh real object (see hddfile.py).
* **Every byte is settled.**  :attr:`FileChannel.settled` counts what left the
  caller's hands and reached its end, written or failed, by what it weighed in
  the caller's memory (its size plus each piece's object overhead); the
  caller's bound on pending data waits on it.  Only the writer's hooks update
  it, holding the disk token, so the two IO threads never race on it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Callable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from nonblock.engine import PredecessorFailed
from nonblock.streamwriter import Block, WriteRequest

__all__ = ["FileCall", "FileChannel", "FileWrite"]

logger = logging.getLogger("nonblock")

Piece = Union[str, bytes]
Chunk = Union[str, bytes, memoryview]


class FileChannel:
    """The real file object of one BackgroundHddFile, and what the IO threads know of it.

    A channel whose real file is open is held by this module (see
    ``_open_channels``) until :meth:`close`.
    """

    def __init__(self, real: Any, *, chunk_size: int, text: bool, exact: bool, fsync: bool,
                 name: Any) -> None:
        self.real = real
        self.chunk_size = chunk_size
        self.text = text
        self.exact = exact
        self.fsync = fsync
        self.name = name
        self.error: Optional[BaseException] = None
        self.error_retrieved = False
        # True while a chunk is part-way into a stream that said EAGAIN: the
        # real object may hold some of it in its buffer between ops.
        self.mid_chunk = False
        # True when the real object may hold written data in its buffer (the
        # exact policy flushes only when the caller does).
        self.dirty = False
        self.settled = 0
        self.room = threading.Condition(threading.Lock())
        self.room_waiters = 0
        self.room_wanted = 0  # the waiter can go on once this much has settled
        # Who to tell at once about an error (the caller's half, weakly held so
        # that dropping the file object still closes it), and whether anyone
        # is left to tell it later.
        self.owner: Optional[weakref.ref[Any]] = None
        self.exiting = False
        self._report_lock = threading.Lock()
        self._reported = False
        _open_channels.add(self)

    # -- bookkeeping (jobs call these holding the disk token) ------------------------

    def settle(self, count: int) -> None:
        """*count* more bytes reached their end; wake a writer waiting for room."""
        self.settled += count
        if self.room_waiters and self.settled >= self.room_wanted:
            with self.room:
                self.room.notify_all()

    def fail(self, error: BaseException, unsettled: int) -> None:
        """Record the file's first error, settle what will now never be written."""
        if self.error is None and not isinstance(error, PredecessorFailed):
            self.error = error
            owner = self.owner() if self.owner is not None else None
            if owner is not None:
                owner._gathered.refused = True  # the caller's fast path looks at this one flag
            elif not self.exiting:
                self.report_unretrieved()
        self.settled += unsettled
        if self.room_waiters:
            with self.room:
                self.room.notify_all()
        if self.exiting:
            self.report_unretrieved()

    def report_unretrieved(self) -> None:
        """Log the error, once, if no call ever raised it: an error is never dropped silently."""
        with self._report_lock:
            if self.error is None or self.error_retrieved or self._reported:
                return
            self._reported = True
        logger.error(
            "a background write to %r failed and no call on the file ever raised it",
            self.name, exc_info=self.error,
        )

    def not_written(self) -> PredecessorFailed:
        failure = PredecessorFailed(f"not written: an earlier write to {self.name!r} failed")
        failure.__cause__ = self.error
        return failure

    # -- ops other than writes ---------------------------------------------------------

    def sync_buffers(self) -> None:
        """Flush the real object's buffers to its descriptor (an op behind the writes)."""
        if self.error is not None:
            raise self.not_written()
        self.real.flush()
        self.dirty = False

    def sync(self) -> None:
        self.sync_buffers()
        os.fsync(self.real.fileno())

    def close(self) -> None:
        """Flush (and fsync, if asked), then close; after an error, just close."""
        real = self.real
        if self.error is not None:
            try:
                real.close()  # its flush fails again on the same data; that error is known
            except Exception:
                pass
            finally:
                _open_channels.discard(self)
            return
        try:
            real.flush()
            if self.fsync:
                os.fsync(real.fileno())
        finally:
            try:
                real.close()
            finally:
                _open_channels.discard(self)


# Every channel whose real file is open.  Held here so that the real file object is
# always reachable: dropped in a reference cycle with its BackgroundHddFile, it would
# otherwise be finalized (closed, by IOBase's finalizer) in the same collection that
# runs the BackgroundHddFile's __del__, which queues the last writes and the close:
# they would then find the file closed and the data would be lost.
_open_channels: Set[FileChannel] = set()


class FileCall(WriteRequest):
    """One call on the channel's real file, in its place among the writes: a read, a seek, a sync, the close.

    With *records_errors* (sync and close), a failure is the file's error like
    a failed write; otherwise (reads, seeks) it is only the caller's answer.
    """

    is_call = True

    def __init__(self, channel: FileChannel, function: Callable[..., Any],
                 args: Sequence[Any] = (), *, records_errors: bool = False) -> None:
        super().__init__()
        self.set_payload(channel.real, (), None, total=0, weight=0)
        self.channel = channel
        self.function = function
        self.args = args
        self.records_errors = records_errors

    def call(self) -> Any:
        return self.function(*self.args)

    def failed(self, error: BaseException) -> None:
        if self.records_errors:
            self.channel.fail(error, 0)


class FileWrite(WriteRequest):
    """The caller's gathered *pieces*, written through the channel's real file by its stream's writer.

    How the pieces reach the real file depends on the channel:

    * **joined** (binary files not in append mode): small pieces are joined
      into chunks of about the channel's chunk size, a piece that big on its
      own is cut into chunks without copying, and each chunk is flushed once
      written.  Nothing the caller can observe depends on it.
    * **exact** (text files, append modes): each piece is one ``write()`` call,
      as the caller made it, and nothing is flushed that the caller did not
      flush.  There, what the real file answers depends on what its buffers
      hold: after a seek in append mode, its position does; and TextIOWrapper's
      readline() reads past a write it has not flushed yet.  Only the caller's
      own sequence of calls gives the answers open() gives.

    With *flush_after* the request ends with a flush (the caller's flush(), or
    a wait()).  The result is the number of bytes (characters, in text mode)
    written.  As chunks are written, their share of the pieces' memory *cost*
    is given back to the channel (see hddfile's max_pending_bytes).
    """

    def __init__(self, channel: FileChannel, pieces: List[Piece], size: int, *,
                 flush_after: bool = False, cost: Optional[int] = None) -> None:
        super().__init__()
        self.set_payload(channel.real, (), channel.chunk_size, total=size, weight=0)
        self.joinable = False  # gathered into a batch already
        self.channel = channel
        self.cost = size if cost is None else cost
        self.settled = 0
        self._cost_settled = 0
        self.flush_each_chunk = not channel.exact
        self.flush_at_end = flush_after and channel.exact
        self._chunks: Iterator[_Chunk] = (
            _exact_chunks(pieces, channel.chunk_size) if channel.exact
            else _joined_chunks(pieces, channel.chunk_size)  # type: ignore[arg-type]
        )

    def next_items(self) -> Optional[Tuple[List[Block], int]]:
        return next(self._chunks, None)

    def refusal(self) -> Optional[BaseException]:
        return self.channel.not_written() if self.channel.error is not None else None

    def wrote(self) -> None:
        self.channel.dirty = True

    def paused_unflushed(self) -> None:
        self.channel.mid_chunk = True

    def flushed(self) -> None:
        self.channel.mid_chunk = self.channel.dirty = False

    def chunk_done(self, units: int) -> None:
        self.settled += units
        self.channel.settle(self._settle_cost())

    def failed(self, error: BaseException) -> None:
        self.settled = self.total
        self.channel.fail(error, self._settle_cost())

    def _settle_cost(self) -> int:
        """The share of the pieces' cost that what has been settled so far frees, not yet given back."""
        if self.settled >= self.total:
            share = self.cost - self._cost_settled
        else:
            share = self.cost * self.settled // self.total - self._cost_settled
        self._cost_settled += share
        return share


# A chunk: the items to write in order, and its size.
_Chunk = Tuple[List[Chunk], int]


# Pieces at least this big are written as they are: joining them would copy
# more than the write calls it saves.
_JOIN_BELOW = 64 * 1024


def _joined_chunks(pieces: List[bytes], chunk_size: int) -> Iterator[_Chunk]:
    """Chunks of about *chunk_size*: runs of small pieces joined, big pieces whole or cut.

    A piece bigger than a chunk is cut into chunk-sized views (no copy), so
    that it takes turns at the disk with other work.
    """
    items: List[Chunk] = []
    items_size = 0
    small: List[bytes] = []
    small_size = 0
    for piece in pieces:
        length = len(piece)
        if length < _JOIN_BELOW:
            small.append(piece)
            small_size += length
            if items_size + small_size < chunk_size:
                continue
        if small:
            items.append(small[0] if len(small) == 1 else b"".join(small))
            items_size += small_size
            small, small_size = [], 0
        if length >= _JOIN_BELOW:
            whole = memoryview(piece)
            for start in range(0, length, chunk_size):
                part = whole[start:start + chunk_size]
                items.append(part)
                items_size += len(part)
                if items_size >= chunk_size:
                    yield items, items_size
                    items, items_size = [], 0
        elif items_size >= chunk_size:
            yield items, items_size
            items, items_size = [], 0
    if small:
        items.append(small[0] if len(small) == 1 else b"".join(small))
        items_size += small_size
    if items:
        yield items, items_size


def _exact_chunks(pieces: List[Piece], chunk_size: int) -> Iterator[_Chunk]:
    """Chunks of about *chunk_size*, each piece its own item, untouched."""
    group: List[Chunk] = []
    group_size = 0
    for piece in pieces:
        group.append(piece)
        group_size += len(piece)
        if group_size >= chunk_size:
            yield group, group_size
            group, group_size = [], 0
    if group:
        yield group, group_size
