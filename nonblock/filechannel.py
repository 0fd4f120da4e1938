"""The IO-thread half of a BackgroundHddFile: the real file object and the jobs that touch it.

A :class:`~nonblock.hddfile.BackgroundHddFile` is two halves.  The caller's half
(hddfile.py) gathers writes and turns calls into jobs; this half, a
:class:`FileChannel`, owns the builtin file object that open() returned and is
only ever touched by the queue's IO threads, one op at a time, holding the disk
token.  The channel is also the jobs' *lane*, so they run in the order the
caller issued them and never interleave.

Three rules hold here:

* **Nothing after a failure is written.**  The first error of a write, a flush,
  a sync or the close is kept in :attr:`FileChannel.error`; every write job
  that starts after it fails with :class:`~nonblock.hddq.PredecessorFailed`
  instead of writing, so the file never gets a hole.
* **The channel knows when the real file may hold written bytes.**  Joined
  writes are flushed chunk by chunk; exact ones (text, append) are flushed
  only when the caller flushes, and a stream that said EAGAIN keeps what it
  could not take.  ``dirty`` and ``mid_chunk`` say so, and a forked child
  that inherits such a file gets a fresh real object (see hddfile.py).
* **Every byte is settled.**  :attr:`FileChannel.settled` counts what left the
  caller's hands and reached its end, written or failed, by what it weighed in
  the caller's memory (its size plus each piece's object overhead); the
  caller's bound on pending data waits on it.  Only jobs update it, holding the disk token, so
  the two IO threads never race on it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Callable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from nonblock.background import FunctionJob
from nonblock.hddq import PredecessorFailed, Step, Task
from nonblock.streamjob import MAX_EMPTY_WRITES, blocking_pipe, fileno_or_none

__all__ = ["ChannelCall", "FileChannel", "WriteJob"]

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


class ChannelCall(FunctionJob):
    """One call on the channel as a single op: a read, a seek, a sync, the close.

    With *records_errors* (sync and close), a failure is the file's error like
    a failed write; otherwise (reads, seeks) it is only the caller's answer.
    """

    def __init__(self, channel: FileChannel, function: Callable[..., Any],
                 args: Sequence[Any] = (), *, records_errors: bool = False) -> None:
        super().__init__(function, args, {})
        self.channel = channel
        self.records_errors = records_errors

    def perform(self, task: Task[Any]) -> Step:
        try:
            return super().perform(task)
        except BaseException as error:
            if self.records_errors:
                self.channel.fail(error, 0)
            raise


class WriteJob:
    """Write the caller's gathered *pieces* through the channel, a chunk's worth per op.

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

    Short writes and EAGAIN are followed to the last byte.  With *flush_after*
    the job ends with a flush (the caller's flush(), or a wait()).  The result
    is the number of bytes (characters, in text mode) written.
    """

    def __init__(self, channel: FileChannel, pieces: List[Piece], size: int, *,
                 flush_after: bool = False, cost: Optional[int] = None) -> None:
        self.channel = channel
        self.size = size
        self.settled = 0
        # What the pieces weigh in the caller's memory (see hddfile's max_pending_bytes):
        # given back to the channel in step with what is written.
        self.cost = size if cost is None else cost
        self._cost_settled = 0
        self.flush_after = flush_after
        self._chunks: Iterator[_Chunk] = (
            _exact_chunks(pieces, channel.chunk_size) if channel.exact
            else _joined_chunks(pieces, channel.chunk_size)  # type: ignore[arg-type]
        )
        self._chunk: Optional[_Chunk] = None
        self._item = 0  # which item of the current chunk is being written
        self._offset = 0  # how much of that item the stream has taken
        self._pipe: Any = None  # a BlockingPipe (see _write_to_pipe); False: not a blocking pipe
        self._flush_pending = False
        self._empty_writes = 0

    def prepare(self) -> None:
        if self._chunk is None:
            self._chunk = next(self._chunks, None)

    def perform(self, task: Task[Any]) -> Step:
        channel = self.channel
        try:
            if channel.error is not None:
                raise channel.not_written()
            return self._perform(task)
        except BaseException as error:
            self.settled = self.size
            channel.fail(error, self._settle_cost())
            raise

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        self.settled = self.size
        self.channel.settle(self._settle_cost())
        return None

    def _perform(self, task: Task[Any]) -> Step:
        channel = self.channel
        real = channel.real
        chunk = self._chunk
        if chunk is None:
            if self.flush_after and not self._flush(real):
                return Step.wait_writable(fileno_or_none(real))
            return Step.done(self.settled)
        items, size = chunk
        if not self._flush_pending:
            if self._pipe is None:
                self._pipe = blocking_pipe(real) or False
            if self._pipe:
                step = self._write_to_pipe(real, items)
                if step is not None:
                    return step
            elif channel.text:
                # Text takes every piece whole (a non-blocking descriptor was
                # refused at open), so this is the plain loop, a million times.
                write = real.write
                for item in items:
                    write(item)
            else:
                while self._item < len(items):
                    step = self._write_bytes(real, items[self._item])  # type: ignore[arg-type]
                    if step is not None:
                        return step
                    self._item += 1
                    self._offset = 0
            channel.dirty = True
        if not channel.exact and not self._flush(real):
            return Step.wait_writable(fileno_or_none(real))
        self._chunk = None
        self._item = 0
        self.settled += size
        channel.settle(self._settle_cost())
        task.status = self.settled
        if self.settled >= self.size and not self.flush_after:
            return Step.done(self.settled)
        return Step.more()

    def _settle_cost(self) -> int:
        """The share of the pieces' cost that what has been settled so far frees, not yet given back."""
        if self.settled >= self.size:
            share = self.cost - self._cost_settled
        else:
            share = self.cost * self.settled // self.size - self._cost_settled
        self._cost_settled += share
        return share

    def _write_to_pipe(self, real: Any, items: List[Chunk]) -> Optional[Step]:
        """As much of the items as a blocking pipe surely takes now, flushed; a Step until all are in.

        No more than the pipe takes without waiting once poll() says it has
        room, so the IO thread never waits inside write() for a reader, holding
        the disk (see streamjob.BlockingPipe).
        """
        pipe = self._pipe
        if not pipe.has_room():
            return Step.wait_writable(pipe.fileno)
        budget = pipe.room(self.channel.text)
        while budget > 0 and self._item < len(items):
            item = items[self._item]
            if self._offset >= len(item):
                self._item += 1
                self._offset = 0
                continue
            end = min(len(item), self._offset + budget)
            if self._offset == 0 and end == len(item):
                real.write(item)
            elif isinstance(item, str):
                real.write(item[self._offset:end])
            else:
                real.write(memoryview(item)[self._offset:end])  # a blocking stream takes it whole
            budget -= end - self._offset
            self._offset = end
        real.flush()
        while self._item < len(items) and self._offset >= len(items[self._item]):
            self._item += 1
            self._offset = 0
        return None if self._item >= len(items) else Step.more()

    def _flush(self, real: Any) -> bool:
        """Flush the real file; False if the stream has no room (flush again when it has)."""
        try:
            real.flush()
        except BlockingIOError:
            self._flush_pending = True  # the bytes sit in the buffer until there is room
            self.channel.mid_chunk = True
            return False
        self._flush_pending = False
        self.channel.mid_chunk = False
        self.channel.dirty = False
        return True

    def _write_bytes(self, real: Any, data: Union[bytes, memoryview]) -> Optional[Step]:
        """Offer the rest of *data* until it is all taken; a Step if we must wait."""
        while self._offset < len(data):
            rest = memoryview(data)[self._offset:] if self._offset else data
            try:
                taken = real.write(rest)
            except BlockingIOError as error:
                self._offset += error.characters_written
                self.channel.mid_chunk = True
                return Step.wait_writable(fileno_or_none(real))
            if taken is None:  # a non-blocking raw stream with no room
                self.channel.mid_chunk = True
                return Step.wait_writable(fileno_or_none(real))
            if taken == 0:
                self._empty_writes += 1
                if self._empty_writes >= MAX_EMPTY_WRITES:
                    raise OSError(f"{real!r} accepted no data {MAX_EMPTY_WRITES} times in a row")
                continue
            self._empty_writes = 0
            self._offset += taken
        return None


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
