"""One writer per stream: everything about writing to a stream, in one place.

``bgwrite(stream, data)`` makes a :class:`WriteRequest` (the caller's task and
its payload) and hands it to the stream's :class:`StreamWriter`, which keeps
the requests in call order and is scheduled on the HDD queue while it has
any.  Each turn at the disk (one op) it writes one chunk:

* a small request and the small ones queued right behind it are **joined** into
  one chunk: one ``write()`` and one ``flush()`` for them all, each task ending
  when that flush is done.  Ten thousand 4 KiB writes over a hundred files
  cost a few hundred system calls, not ten thousand;
* a big request is cut into chunks of its ``ioPrio`` profile's size, without
  copying, one per turn, so other streams get their turn in between; with
  ``bandwidthPct`` p below 100 the chunks are started on a schedule that gives
  p percent of the unthrottled rate;
* short writes and EAGAIN are followed to the last byte: what the stream took
  is counted, the rest offered again, and a stream that takes nothing waits in
  the queue's ``poll()`` for writability.  A pipe or socket in blocking mode is
  offered only what it surely takes at once (:mod:`nonblock.streams`);
* ``chainAfter`` holds a request until its predecessor, on any stream, has
  ended: a failed one fails it without writing;
* nothing is written after a failure: the stream is marked failed
  (:mod:`nonblock.streamfailures`) and later requests fail with
  :class:`~nonblock.streamfailures.StreamFailed`, so a file never has a hole.

The writers are found through a map keyed by the stream (and the queue) that
holds a writer only while it has work: a writer keeps no stream alive and
needs nothing from it but ``write()``, so any stream works, weak-referenceable,
hashable or not.
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import logging
import os
import stat
import threading
import time
import traceback
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

from nonblock import streamfailures
from nonblock.engine import Engine, PredecessorFailed, Step, Task
from nonblock.lazyfuture import LazyFuture
from nonblock.streams import MAX_EMPTY_WRITES, BlockingPipe, blocking_pipe, fileno_or_none, writes_text

__all__ = ["Block", "StreamWriter", "WriteRequest", "submit"]

logger = logging.getLogger("nonblock")

Block = Union[bytes, memoryview, str]
"""A piece of payload: bytes, a flat byte view (format 'B'), or a str."""

# How far a throttled write may fall behind its schedule and still make it up.
_MAX_CATCH_UP = 0.005
_BUFFERED_FILES = (io.BufferedWriter, io.BufferedRandom)
# For smaller writes (which are usually joined) a system call per chunk is not
# worth it: after a failure their count may be off by the write itself.
_COUNT_POSITION_ABOVE = 64 * 1024
# The most requests one chunk joins.  The op that writes it also completes each
# of their tasks; bounded, other work waits behind it a fraction of a millisecond.
_JOIN_AT_MOST = 256


class WriteRequest(Task[int]):
    """One caller's write to a stream: a task, its payload, and how far it has got.

    *chunk_size* None writes each block as one chunk (a list payload keeps the
    caller's own chunking); otherwise blocks are cut into chunks of at most
    *chunk_size* items.  The result is the number of bytes (characters, for a
    text stream) written; ``status`` follows ``written`` as it grows.

    A subclass may give its chunks differently (:meth:`next_items`) and hear
    how the write goes through the hooks below (a BackgroundHddFile's batches
    and calls do: see :mod:`nonblock.filechannel`); bgwrite's requests use the
    defaults.
    """

    # Where the writer has got in the payload, read from these class defaults
    # until a write sets its own (most small writes never do).
    block_index = 0
    block_offset = 0  # where the next chunk starts in the current block
    recent_chunk_times: Optional[Deque[float]] = None  # kept only for throttling
    planned_start: Optional[float] = None  # when the current chunk was due (throttling)
    # How the writer treats the request.
    is_call = False  # a call on the stream (call()), not data to write
    flush_each_chunk = True  # flush after every chunk (else only as flush_at_end says)
    flush_at_end = False  # flush once the last chunk is written
    end_flushed = False

    def set_payload(
        self,
        stream: Any,
        blocks: Sequence[Block],
        chunk_size: Optional[int],
        bandwidth_pct: float = 100.0,
        smoothing: int = 5,
        close_when_finished: bool = False,
        fsync: bool = False,
        total: Optional[int] = None,
        after: Optional[Task[Any]] = None,
        weight: Optional[int] = None,
    ) -> None:
        self.stream = stream
        self.blocks = blocks
        self.chunk_size = chunk_size
        self.bandwidth_pct = bandwidth_pct
        self.smoothing = smoothing
        self.close_when_finished = close_when_finished
        self.fsync = fsync
        self.total = sum(map(len, blocks)) if total is None else total
        self.written = 0
        self.after = after
        # What it counts against the queue's max_pending_bytes until it ends.
        self.weight = self.total if weight is None else weight
        # A plain one-chunk write: it may share a chunk with its neighbours.
        self.joinable = (chunk_size is not None and self.total <= chunk_size and not close_when_finished
                         and not fsync)

    def next_items(self) -> Optional[Tuple[List[Block], int]]:
        """The next chunk, as the pieces to offer the stream one write() call each, and its size.

        None at the end.
        """
        chunk = self.next_chunk()
        return None if chunk is None else ([chunk], len(chunk))

    def next_chunk(self) -> Optional[Block]:
        """The next chunk to write, cut from the payload without copying; None at the end."""
        blocks = self.blocks
        while self.block_index < len(blocks):
            block = blocks[self.block_index]
            start = self.block_offset
            if start < len(block):
                end = len(block) if self.chunk_size is None else start + self.chunk_size
                self.block_offset = end
                return _piece(block, start, end)
            self.block_index += 1
            self.block_offset = 0
        return None

    def remaining(self) -> Deque[Block]:
        """The data not yet taken by the stream, as the chunks it will be written in.

        Worked out from ``written`` alone, since chunks are cut from each block
        at multiples of the chunk size; so it holds for a joined write too.
        """
        pieces: Deque[Block] = collections.deque()
        skip = self.written
        for block in self.blocks:
            size = len(block)
            if skip >= size:
                skip -= size
                continue
            step = self.chunk_size or max(size, 1)
            end = (skip // step + 1) * step  # the end of the chunk the rest starts in
            pieces.append(_piece(block, skip, min(end, size)))
            while end < size:
                pieces.append(_piece(block, end, end + step))
                end += step
            skip = 0
        return pieces

    # -- hooks: what a subclass hears of its write (called holding the disk) -------------

    def refusal(self) -> Optional[BaseException]:
        """Why this request must not begin (an earlier failure it knows of); None to go on."""
        return None

    def call(self) -> Any:
        """For a call request (``is_call``): the call on the stream; its return value is the result."""
        raise NotImplementedError

    def wrote(self) -> None:
        """The stream took a chunk; until it is flushed, it may hold some in its buffer."""

    def paused_unflushed(self) -> None:
        """The writer waits for room part-way into a chunk, or before its flush."""

    def flushed(self) -> None:
        """The stream was flushed: it holds nothing of this request."""

    def chunk_done(self, units: int) -> None:
        """A chunk of *units* bytes (characters) is written and flushed as the request asked."""

    def failed(self, error: BaseException) -> None:
        """The request ends with *error*, unwritten or part-way (called once, before its task ends)."""


class StreamWriter:
    """Writes a stream's requests, in order, one chunk per op (see the module's docstring).

    It is the job the queue runs while the stream has requests: made by
    :func:`submit` when the first one arrives, gone when the last one is done.
    """

    # The state of a chunk under way, and what the stream is like, start from
    # these class defaults: a writer is made each time a stream gets busy again,
    # on the caller's thread, so it sets only what it must.
    items: Optional[List[Block]] = None  # the chunk's pieces
    _item = 0  # the piece being offered
    _offset = 0  # how much of it the stream has taken
    _chunk_len = 0
    _chunk_done = 0
    # How much of the chunk has been credited to the batch's requests, and how
    # many of them are credited in full.  A joined chunk taken whole is
    # credited only as it finishes; a part, whenever a caller could look.
    _credited_units = 0
    _credited = 0
    _flush_pending = False
    _chunk_io_time = 0.0
    _empty_writes = 0
    # A buffered regular file's descriptor: after a failed write its position
    # tells how much of the chunk really reached the file.
    _position_fd: Optional[int] = None
    _chunk_start = -1
    _written_at_chunk = 0
    # What the stream is like, looked up on the first op.
    _looked = False
    _none_means_eagain = False
    _has_flush = False
    _buffered = False
    _text_whole = False  # a TextIOWrapper: it takes every piece whole
    _flush_may_wait = False  # a non-blocking descriptor: its flush may say EAGAIN
    _pipe: Optional[BlockingPipe] = None
    _pipe_text = False

    def __init__(self, stream: Any, engine: Engine, key: Tuple[int, int]) -> None:
        self.stream = stream
        self.engine = engine
        self.key = key
        self.pending: Deque[WriteRequest] = collections.deque()  # callers append, the op takes
        # The requests the chunk being written holds: the first one may span
        # many chunks; joined ones are whole in it.
        self.batch: List[WriteRequest] = []

    # -- the Job protocol ----------------------------------------------------------

    def prepare(self) -> None:
        # Chunks are formed holding the disk, in perform(): every request that
        # arrived while the disk was busy is then there to join them.
        pass

    def perform(self, task: Optional[Task[Any]]) -> Step:
        try:
            return self._perform()
        except BaseException as error:
            # The run must go on whatever happens: the requests behind are refused in turn.
            self._fail_batch(error)
            # The error keeps its traceback, and the frames under this one their
            # locals (a request among them): cleared, a failed write is freed by
            # reference counting alone, not by the garbage collector.
            if error.__traceback__ is not None:
                traceback.clear_frames(error.__traceback__.tb_next)
            return Step.more()

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        while self.pending:
            self.batch.append(self.pending.popleft())
        self._fail_batch(cause)
        return None

    # -- one op -----------------------------------------------------------------------

    def _perform(self) -> Step:
        while self.items is None:
            step = self._next_items()
            if step is not None:
                return step
        return self._write_items()

    def _next_items(self) -> Optional[Step]:
        """Form the next chunk; or a Step to return (wait, or the run's end); None to look again."""
        if self.batch:
            head = self.batch[0]  # a request part-way
            chunk = head.next_items()
            if chunk is not None:
                self._start_chunk(*chunk)
            elif head.flush_at_end and not head.end_flushed:
                head.end_flushed = True
                self._start_chunk([], 0)
                self._flush_pending = self._has_flush
            else:
                self._finish_batch()
            return None
        pending = self.pending
        if not pending:
            return self._end_of_run()
        request = pending[0]
        after = request.after
        if after is not None and not after.io_done:
            return Step.wait_for(after)
        pending.popleft()
        if not self._begin(request):
            return None
        if request.is_call:
            return self._run_call(request)
        self.batch.append(request)
        if not self._looked:
            self._look_at_stream()
        if self._buffered and request.total > _COUNT_POSITION_ABOVE:
            self._position_fd = _regular_file_descriptor(self.stream)
        else:
            self._position_fd = None
        if request.joinable and pending:
            self._join_followers(request)
        if len(self.batch) > 1:
            self._start_chunk(*self._joined_chunk())
        # else the head's first chunk is asked for on the next look
        return None

    def _start_chunk(self, items: List[Block], size: int) -> None:
        self.items = items
        self._chunk_len = size
        self._item = self._offset = self._chunk_done = self._credited_units = 0

    def _begin(self, request: WriteRequest) -> bool:
        """Start *request*, or end it at once (cancelled, predecessor failed, refused): False."""
        after = request.after
        if after is not None and after.io_error is not None:
            cause = after.io_error
            failure = PredecessorFailed(
                f"not written: the write this one was chained after failed ({type(cause).__name__}: {cause})"
            )
            failure.__cause__ = cause
            self._end_unwritten(request, failure)
            return False
        if not self._mark_running(request):
            return False
        refusal = request.refusal()
        if refusal is None and streamfailures.any_failed and not request.is_call:
            first = streamfailures.failure_of(self.stream)
            if first is not None:
                refusal = streamfailures.refusal(self.stream, first)  # no hole after a failure
        if refusal is not None:
            self._end_unwritten(request, refusal)
            return False
        return True

    def _mark_running(self, request: WriteRequest) -> bool:
        """Mark *request* RUNNING; if it was cancelled (or completed by hand), end it unwritten: False."""
        try:
            if request.mark_running():
                return True
            failure: BaseException = concurrent.futures.CancelledError()
        except RuntimeError as misuse:  # Future's "unexpected state": completed before it ran
            failure = misuse
        self._end_unwritten(request, failure)
        return False

    def _run_call(self, request: WriteRequest) -> Step:
        """A call on the stream, in its place among the writes (a BackgroundHddFile's read, seek, close)."""
        try:
            result = request.call()
        except BaseException as error:
            request.failed(error)
            self.engine.complete((request,), (None,), error, request.weight)
            if error.__traceback__ is not None:
                traceback.clear_frames(error.__traceback__.tb_next)
        else:
            self.engine.complete((request,), (result,), None, request.weight)
        return Step.more()  # a read may be long: the other streams get their turn

    def _join_followers(self, head: WriteRequest) -> None:
        """Take the small requests queued right behind *head* into its chunk, as many as fit."""
        assert head.chunk_size is not None
        room = head.chunk_size - head.total
        text = isinstance(head.blocks[0], str) if head.blocks else None
        pending = self.pending
        batch = self.batch
        while pending and len(batch) < _JOIN_AT_MOST:
            follower = pending[0]
            if not follower.joinable or follower.total > room:
                break
            after = follower.after
            if after is not None and (not after.io_done or after.io_error is not None):
                break  # it waits, or fails, as a head of its own
            blocks = follower.blocks
            if blocks:
                is_text = isinstance(blocks[0], str)
                # A stream of unknown kind may be given both text and bytes: no joining those.
                if text is None:
                    text = is_text
                elif is_text is not text:
                    break
            pending.popleft()
            batch.append(follower)
            room -= follower.total
        # Started together, under one hold of the futures' guard; one that cannot
        # be (cancelled, say) leaves the batch, ended unwritten.
        first = 1
        while first < len(batch):
            first += LazyFuture.start_all_unwatched(batch, first)
            if first < len(batch):
                follower = batch[first]
                if self._mark_running(follower):
                    first += 1
                else:
                    del batch[first]

    def _joined_chunk(self) -> Tuple[List[Block], int]:
        # All of every request's blocks, so no request is asked for a chunk of its own.
        pieces: List[Any] = []
        for request in self.batch:
            pieces.extend(request.blocks)
        if not pieces:
            return [], 0
        joined = "".join(pieces) if isinstance(pieces[0], str) else b"".join(pieces)
        return [joined], len(joined)

    def _write_items(self) -> Step:
        items = self.items
        assert items is not None
        head = self.batch[0]
        started = time.perf_counter()
        if not self._flush_pending:
            pipe = self._pipe
            if pipe is not None and not pipe.has_room():
                return Step.wait_writable(pipe.fileno)  # not inside write()
            if self._position_fd is not None and not self._chunk_done:
                self._chunk_start = os.lseek(self._position_fd, 0, os.SEEK_CUR)
                self._written_at_chunk = head.written
            if self._text_whole and pipe is None:
                # A text wrapper on a blocking descriptor takes every piece whole:
                # the plain loop, which a million small writes to a file need.
                write = self.stream.write
                for item in items:
                    write(item)
                self._item = len(items)
                self._took(self._chunk_len)
            else:
                step = self._offer_items(items, pipe)
                if step is not None:
                    self._chunk_io_time += time.perf_counter() - started
                    return step
            head.wrote()
            self._flush_pending = self._has_flush and head.flush_each_chunk
            if self._flush_pending and self._flush_may_wait:
                self._credit_what_was_taken()  # seen while the flush waits for room
        if self._flush_pending:
            try:
                self.stream.flush()
            except BlockingIOError:
                # The bytes sit in the stream's buffer; flush again when there is room.
                self._credit_what_was_taken()
                head.paused_unflushed()
                self._chunk_io_time += time.perf_counter() - started
                return Step.wait_writable(fileno_or_none(self.stream))
            self._flush_pending = False
            head.flushed()
        throttled = head.bandwidth_pct < 100.0
        if throttled:
            times = head.recent_chunk_times
            if times is None:
                times = head.recent_chunk_times = collections.deque(maxlen=head.smoothing)
            times.append(self._chunk_io_time + time.perf_counter() - started)
        head.chunk_done(self._chunk_len)
        self._chunk_io_time = 0.0
        self._chunk_start = -1
        self.items = None
        if len(self.batch) == 1 and (head.written < head.total or head.flush_at_end):
            return self._rest_until_next_start(head) if throttled else Step.more()
        self._finish_batch()
        return Step.more()

    def _offer_items(self, items: List[Block], pipe: Optional[BlockingPipe]) -> Optional[Step]:
        """Offer the chunk's pieces, each until taken; a Step if the stream has no more room now."""
        budget = pipe.room(self._pipe_text) if pipe is not None else -1
        while self._item < len(items):
            item = items[self._item]
            data = _piece(item, self._offset, len(item)) if self._offset else item
            if budget >= 0 and len(data) > budget:
                data = _piece(data, 0, budget)
            taken, blocked = self._write_some(data)
            if taken:
                self._empty_writes = 0
                self._offset += taken
                self._took(taken)
                if budget >= 0:
                    budget -= taken
            if self._offset >= len(item):
                self._item += 1
                self._offset = 0
                if budget != 0:
                    continue
            # Part-way into the chunk: the stream must not be offered more now.
            self._credit_what_was_taken()
            self.batch[0].paused_unflushed()
            if pipe is not None and taken and not blocked:
                # A piece is in: flushed now, so the stream's buffer never holds
                # more than the next poll() promises room for.
                if self._has_flush:
                    self.stream.flush()
                return Step.more()
            return self._wait_for_room(blocked, taken)
        return None

    def _took(self, taken: int) -> None:
        self._chunk_done += taken
        if len(self.batch) == 1:
            head = self.batch[0]
            head.written += taken
            head.status = head.written
            self._credited_units = self._chunk_done

    def _write_some(self, data: Block) -> Tuple[int, bool]:
        """Offer *data* once; return (how much the stream took, whether it blocked)."""
        try:
            taken = self.stream.write(data)
        except BlockingIOError as error:
            return error.characters_written, True
        if taken is None:
            if self._none_means_eagain:
                return 0, True
            return len(data), False
        if not isinstance(taken, int) or isinstance(taken, bool) or not 0 <= taken <= len(data):
            # Taken at its word, True or 1.5 would resend bytes and -1 loop forever.
            raise OSError(
                f"{self.stream!r}.write() returned {taken!r}: a count from 0 to {len(data)} "
                "(or None) was expected"
            )
        return int(taken), False

    def _credit_what_was_taken(self) -> None:
        """Credit what the stream has taken of the chunk so far to the batch's requests, in order."""
        taken = self._chunk_done - self._credited_units
        self._credited_units = self._chunk_done
        batch = self.batch
        index = self._credited
        while taken and index < len(batch):
            request = batch[index]
            credit = min(taken, request.total - request.written)
            request.written += credit
            request.status = request.written
            taken -= credit
            if request.written == request.total:
                index += 1
        self._credited = index

    def _wait_for_room(self, blocked: bool, taken: int) -> Step:
        if taken and not blocked:
            return Step.more()  # a short write: offer the rest straight away
        if not taken:
            self._empty_writes += 1
            if self._empty_writes >= MAX_EMPTY_WRITES:
                raise OSError(f"{self.stream!r} accepted no data {MAX_EMPTY_WRITES} times in a row")
        return Step.wait_writable(fileno_or_none(self.stream))

    def _rest_until_next_start(self, head: WriteRequest) -> Step:
        times = head.recent_chunk_times
        assert times  # the chunk just written is in it
        average = sum(times) / len(times)
        period = average * 100.0 / head.bandwidth_pct
        now = time.monotonic()
        if head.planned_start is None:
            head.planned_start = now - average
        # Behind schedule (late wake-ups, a slow chunk, a busy machine): catch up,
        # but by no more than a few milliseconds' worth, rather than bursting to
        # pay back a long stall at once.
        planned = max(head.planned_start + period, now - max(period, _MAX_CATCH_UP))
        head.planned_start = planned
        if planned <= now:
            return Step.more()
        return Step.sleep(planned - now)

    # -- ending requests ------------------------------------------------------------------

    def _finish_batch(self) -> None:
        """Everything in the batch is written: fsync and close if asked, and complete its tasks."""
        batch = self.batch
        head = batch[0]
        if head.fsync:
            os.fsync(self.stream.fileno())
        if head.close_when_finished:
            self.stream.close()
        results = []
        weight = 0
        for request in batch:
            request.status = request.written = request.total
            request.blocks = ()  # written: a finished write need not keep its payload
            results.append(request.total)
            weight += request.weight
        self.batch = []
        self._credited = 0
        self.engine.complete(batch, results, None, weight)

    def _fail_batch(self, error: BaseException) -> None:
        """The batch's write failed with *error*: its requests fail, and so will the stream's later ones."""
        if self.items is not None:
            self._credit_what_was_taken()
        batch = self.batch
        self.batch = []
        if batch:
            head = batch[0]
            if self._chunk_start >= 0 and self.items is not None and len(batch) == 1:
                self._count_what_reached_the_file(head)
            if head.close_when_finished:
                _close_quietly(self.stream)
        self.items = None
        self._chunk_done = self._credited = self._credited_units = 0
        self._chunk_start = -1
        self._flush_pending = False
        streamfailures.record_failure(self.stream, error)
        if not batch:
            logger.error("writing to %r failed outside any write", self.stream, exc_info=error)
            return
        weight = 0
        for request in batch:
            request.failed(error)
            request.status = request.written
            request.blocks = ()  # never to be written: let the payload go
            weight += request.weight
        self.engine.complete(batch, [None] * len(batch), error, weight)

    def _end_unwritten(self, request: WriteRequest, failure: BaseException) -> None:
        """End a request that never began: cancelled, or refused (its stream or predecessor failed)."""
        request.failed(failure)
        request.blocks = ()
        if request.close_when_finished:
            _close_quietly(self.stream)
        self.engine.complete((request,), (None,), failure, request.weight)

    def _count_what_reached_the_file(self, head: WriteRequest) -> None:
        """After a failure: ``written`` is what reached the file, not what the buffer took.

        A BufferedWriter that meets ENOSPC has taken bytes it will never write,
        and may have written part of a chunk whose write() raised.
        """
        assert self._position_fd is not None
        try:
            now = os.lseek(self._position_fd, 0, os.SEEK_CUR)
        except OSError:
            return
        reached = max(0, min(now - self._chunk_start, self._chunk_len))
        head.written = self._written_at_chunk + reached

    def _end_of_run(self) -> Optional[Step]:
        """No request left: leave the map, and end the run (None if one arrived meanwhile)."""
        with _registry_lock:
            if self.pending:
                return None
            if _writers.get(self.key) is self:
                del _writers[self.key]
        if self.pending:
            # A GC finalizer or signal handler on this thread wrote while we held the
            # map's lock: its request is ours, so the run goes on and leaves again.
            with _registry_lock:
                _writers.setdefault(self.key, self)
            return None
        return Step.done(None)

    def _look_at_stream(self) -> None:
        stream = self.stream
        cls = type(stream)
        # A raw stream's write() returns None for "would block"; anything else
        # returning None is an old-style file-like object that took everything.
        self._none_means_eagain = issubclass(cls, io.RawIOBase)
        self._has_flush = callable(getattr(stream, "flush", None))
        self._buffered = cls in _BUFFERED_FILES
        self._text_whole = cls is io.TextIOWrapper
        self._pipe = blocking_pipe(stream)
        self._pipe_text = self._pipe is not None and writes_text(stream)
        fileno = fileno_or_none(stream)
        try:
            self._flush_may_wait = fileno is None or not os.get_blocking(fileno)
        except OSError:
            self._flush_may_wait = True
        self._looked = True


# -- finding a stream's writer ---------------------------------------------------------------

# (id(stream), id(engine)) -> the writer, only while it has work; it holds the
# stream then, so the id cannot be reused meanwhile.  Re-entrant: a GC finalizer
# or signal handler may write on a thread that holds it.
_writers: Dict[Tuple[int, int], StreamWriter] = {}
_registry_lock = threading.RLock()


def submit(request: WriteRequest, engine: Engine, timeout: Optional[float] = None) -> None:
    """Hand *request* to its stream's writer on *engine*, scheduling the writer if it is idle.

    First counts the payload against the queue's ``max_pending_bytes``,
    waiting up to *timeout* for room (TimeoutError, nothing queued).  Raises
    :class:`~nonblock.engine.QueueShutdown` after the queue's shutdown, and
    RuntimeError for a request submitted before.
    """
    if request.queue is not None:
        raise RuntimeError(f"{request!r} has already been submitted")
    engine.reserve_room(request.weight, timeout)
    request.attach(engine)
    stream = request.stream
    key = (id(stream), id(engine))
    with _registry_lock:
        writer = _writers.get(key)
        idle = writer is None
        if writer is None:
            writer = _writers[key] = StreamWriter(stream, engine, key)
        writer.pending.append(request)
    if idle:
        try:
            engine.schedule(writer)
        except BaseException as error:
            with _registry_lock:
                if _writers.get(key) is writer:
                    del _writers[key]
            # Nobody runs the writer, so nobody else ends what it holds.
            stranded = list(writer.pending)
            writer.pending.clear()
            writer.engine.complete(stranded, [None] * len(stranded), error,
                                   sum(request.weight for request in stranded))
            raise


def _forget_writers_in_child() -> None:
    # What the parent's writers hold is the parent's to write.
    global _registry_lock
    _registry_lock = threading.RLock()
    for writer in list(_writers.values()):
        for request in (*writer.batch, *writer.pending):
            request.abandon_after_fork(RuntimeError("this write belongs to the parent process"))
    _writers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writers_in_child)


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception:
        pass  # the failure that brought us here is the one to report


def _regular_file_descriptor(stream: Any) -> Optional[int]:
    try:
        fileno = int(stream.fileno())
        return fileno if stat.S_ISREG(os.fstat(fileno).st_mode) else None
    except (OSError, ValueError):
        return None


def _piece(block: Block, start: int, end: int) -> Block:
    """``block[start:end]`` without copying bytes (a bytes slice would be a copy)."""
    if start == 0 and end >= len(block):
        return block
    if type(block) is bytes:
        return memoryview(block)[start:end]
    return block[start:end]
