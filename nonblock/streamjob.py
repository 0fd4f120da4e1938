"""The job that writes data to a stream, one chunk per turn at the disk.

This is where python-nonblock's write loop is done right:

* The payload is never copied up front.  A bytes payload that is one chunk
  is written as it is; a bigger one is walked with memoryview slices; a str
  payload is sliced one chunk at a time, in ``prepare()``, off the disk token.
* Short writes and EAGAIN are followed to the last byte: what the stream took
  is counted, the rest is offered again, and a stream that cannot take more
  waits for writability (the queue polls its descriptor) instead of spinning.
* Each chunk is written then flushed.  With ``bandwidth_pct`` p below 100, the
  chunks are started on a schedule: one every ``100 / p`` average chunk times,
  so the job runs at p percent of its unthrottled rate.  The schedule is kept
  from plan to plan, not from wake-up to wake-up, so a rest that ran long
  shortens the next one instead of slowing the whole write.
* Any failure closes the stream if the job owns it, and propagates to the
  queue, which records it on the task.  The stream is then marked failed
  (:mod:`nonblock.streamfailures`): later writes to it fail without writing,
  so a file never has a hole where a failed write was.
* Small writes to one stream ride together.  When the queue takes a one-chunk
  write for its turn, the writes queued right behind it on the same stream
  that fit in the same chunk come along (:meth:`StreamWriteJob.take_along`):
  their data is joined into one chunk, written and flushed once, and each of
  their tasks completes with the op.  So ten thousand 4 KiB writes over a
  hundred files cost a few hundred system calls, not ten thousand, and the
  queue's per-op bookkeeping is paid per batch.  Every byte still lands in
  call order, and no task completes before its bytes are flushed.
"""

from __future__ import annotations

import collections
import fcntl
import io
import os
import select
import stat
import struct
import termios
import time
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

from nonblock import streamfailures
from nonblock.engine import PredecessorFailed, Step, Task

__all__ = [
    "MAX_EMPTY_WRITES", "Block", "BlockingPipe", "StreamWriteJob", "blocking_pipe", "fileno_or_none",
]

Block = Union[bytes, memoryview, str]
"""A piece of payload: bytes, a flat byte view (format 'B'), or a str."""

# A stream that accepts nothing this many times in a row, without saying EAGAIN,
# is broken; better an error than a spinning IO thread.
MAX_EMPTY_WRITES = 1000

# How far a throttled write may fall behind its schedule and still make it up.
_MAX_CATCH_UP = 0.005


_RAW_BY_CLASS: Dict[type, bool] = {}


def _is_raw(cls: type) -> bool:
    raw = _RAW_BY_CLASS.get(cls)
    if raw is None:
        raw = _RAW_BY_CLASS[cls] = issubclass(cls, io.RawIOBase)
    return raw


class StreamWriteJob:
    """Write *blocks* to *stream*, in order, cutting each into chunks.

    *chunk_size* None writes each block as one chunk (a list payload keeps the
    caller's own chunking); otherwise blocks are cut into chunks of at most
    *chunk_size* items.  The job's result is the number of bytes (characters,
    for a text stream) written; ``task.status`` follows it as it grows.
    """

    # One is made per write, so a new job stores only what its caller gave and
    # ``written``, which every job sets later (set late, it would not fit the
    # instance layout CPython 3.11 fixes after a class's first few instances,
    # and each job would build a dict).  The state of a write under way starts
    # from these class defaults, and what the stream is like is looked up on
    # the first op (a carried job never has one).
    _none_means_eagain: Optional[bool] = None
    # A buffered regular file's descriptor: its position tells, after a failed write,
    # how much of the chunk really reached the file (the buffer may have taken more).
    _position_fd: Optional[int] = None
    _chunk_start = -1  # that position when the current chunk began (-1: none began)
    # A pipe or socket in blocking mode: write() would wait for its reader, holding the
    # disk token and stalling every other write.  So the job polls it first and offers
    # at most what poll()'s "writable" guarantees it takes without waiting.
    _pipe: Optional[BlockingPipe] = None
    _pipe_text = False
    _written_at_chunk = 0  # ``written`` when the current chunk began
    _has_flush = False
    _block_index = 0
    _block_offset = 0  # where the next chunk starts in the current block
    _chunk: Optional[Block] = None
    _chunk_done = 0  # how much of the current chunk the stream has taken
    _chunk_io_time = 0.0
    _flush_pending = False
    _empty_writes = 0
    # Chunk times are kept only for throttling, which needs their average.
    _recent_chunk_times: Optional[Deque[float]] = None
    _planned_start: Optional[float] = None  # when the current chunk was due
    _carried_tasks: Optional[List[Task[Any]]] = None  # later writes riding in this job's op
    _riders_total = 0  # how much data they bring
    _riders_taken = 0  # how much of it the stream has taken
    _riders_credited = 0  # how many of them the stream has taken in full
    _batch_is_text: Optional[bool] = None  # whether the joined chunk is str (None: not known yet)

    def __init__(
        self,
        stream: Any,
        blocks: Sequence[Block],
        chunk_size: Optional[int],
        bandwidth_pct: float = 100.0,
        smoothing: int = 5,
        close_when_finished: bool = False,
        fsync: bool = False,
        total: Optional[int] = None,
    ) -> None:
        self.stream = stream
        self.blocks = blocks
        self.chunk_size = chunk_size
        self.bandwidth_pct = bandwidth_pct
        self._smoothing = smoothing
        self.close_when_finished = close_when_finished
        self.fsync = fsync
        self.total = sum(map(len, blocks)) if total is None else total
        self.written = 0

    # -- what is left -------------------------------------------------------------

    def remaining(self) -> Deque[Block]:
        """The data not yet taken by the stream, as the chunks it will be written in.

        Worked out from ``written`` alone, since chunks are cut from each block
        at multiples of the chunk size: this holds for a job carried in another
        job's op too.
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

    # -- the Job protocol -----------------------------------------------------------

    def prepare(self) -> None:
        if self._none_means_eagain is None:
            # A raw stream's write() returns None for "would block"; anything else
            # returning None is an old-style file-like object that took everything.
            self._none_means_eagain = _is_raw(type(self.stream))
            self._has_flush = callable(getattr(self.stream, "flush", None))
            if type(self.stream) in _BUFFERED_FILES and self.total > _COUNT_POSITION_ABOVE:
                self._position_fd = _regular_file_descriptor(self.stream)
            self._pipe = blocking_pipe(self.stream)
            self._pipe_text = self._pipe is not None and _writes_text(self.stream)
        if self._chunk is None:
            if self._carried_tasks:
                self._chunk = self._joined_with_riders()
            else:
                self._chunk = self._next_chunk()

    def perform(self, task: Task[Any]) -> Step:
        try:
            if streamfailures.any_failed:
                first = streamfailures.failure_of(self.stream)
                if first is not None:
                    raise streamfailures.refusal(self.stream, first)  # no hole after a failure
            return self._perform(task)
        except BaseException as error:
            self.blocks = ()  # never to be written: let the payload go
            if self._chunk_start >= 0 and self._chunk is not None and not self._carried_tasks:
                self._count_what_reached_the_file()
                task.status = self.written
            if self.close_when_finished:
                self._close_quietly()
            streamfailures.record_failure(self.stream, error)
            raise

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        self.blocks = ()  # never to be written
        if self.close_when_finished:
            self._close_quietly()
        error = PredecessorFailed(
            f"not written: the write this one was chained after failed ({type(cause).__name__}: {cause})"
        )
        error.__cause__ = cause
        return error

    # -- small writes riding together -------------------------------------------------

    def take_along(self, tasks: Sequence[Task[Any]]) -> int:
        """Carry the first of *tasks* (the writes queued next on this stream) in this job's op.

        Takes them while both are plain one-chunk writes (no closing, no fsync,
        the caller's chunking not a list's) that fit in one chunk together, and
        only if this job has not started: then their data goes in the same
        chunk, behind this job's, and they share the op's fate (see
        :meth:`rider_results`).  Returns how many it took.
        """
        if not self._may_carry():
            return 0
        room = self.chunk_size - self.total - self._riders_total  # type: ignore[operator]
        text = self._batch_is_text
        if text is None and self.blocks:
            text = isinstance(self.blocks[0], str)
        stream = self.stream
        count = 0
        for task in tasks:
            job = task._job
            if not isinstance(job, StreamWriteJob):
                break
            size = job.total
            if (
                size > room or job.stream is not stream or job.chunk_size is None
                or size > job.chunk_size or job.close_when_finished or job.fsync
            ):
                break
            blocks = job.blocks
            if blocks:
                # A stream of unknown kind may be given both text and bytes: no joining those.
                is_text = isinstance(blocks[0], str)
                if text is None:
                    text = is_text
                elif is_text is not text:
                    break
            room -= size
            count += 1
        if count:
            carried = list(tasks[:count])
            if self._carried_tasks is None:
                self._carried_tasks = carried
            else:
                self._carried_tasks.extend(carried)
            self._riders_total = self.chunk_size - self.total - room  # type: ignore[operator]
            self._batch_is_text = text
        return count

    def _may_carry(self) -> bool:
        return (
            self.chunk_size is not None and not self.close_when_finished and not self.fsync
            and self._chunk is None and not self.written and not self._block_index  # not started
        )

    def rider_results(self, error: Optional[BaseException]) -> List[int]:
        """The riders' results (what each wrote), in order, once the op that carried them ended.

        The op wrote and flushed one chunk for all of them, so they share its
        fate: all written, or (with *error*) all failed with that error, their
        ``written`` telling how much of each the stream took.
        """
        riders = self._carried_tasks or ()
        self._carried_tasks = None  # they end now: a finished write holds on to none of them
        results = []
        for rider in riders:
            job = rider._job
            if error is None:  # mostly credited by _count already; not so a write of nothing
                rider.status = job.written = job.total
            results.append(job.total)
            job.blocks = ()  # written, or never to be: the payload can go
        return results

    def _joined_with_riders(self) -> Optional[Block]:
        pieces = list(self.blocks)
        for rider in self._carried_tasks or ():
            pieces.extend(rider._job.blocks)
        self._block_index = len(self.blocks)  # this job's own blocks are all in the chunk
        if not pieces:
            return None  # nothing but empty writes
        if isinstance(pieces[0], str):
            return "".join(pieces)  # type: ignore[arg-type]
        return memoryview(b"".join(pieces))  # type: ignore[arg-type]

    def _count(self, taken: int) -> None:
        """Credit *taken* units to this job, then to its riders in order."""
        own = min(taken, self.total - self.written)
        self.written += own
        taken -= own
        riders = self._carried_tasks
        if not taken or not riders:
            return
        self._riders_taken += taken
        if self._riders_taken == self._riders_total:
            # Everything is in (the common case: one write took the whole chunk):
            # each rider not yet credited is credited in full, in one pass.
            for rider in riders[self._riders_credited:]:
                job = rider._job
                rider.status = job.written = job.total
            self._riders_credited = len(riders)
            return
        index = self._riders_credited
        while taken and index < len(riders):
            rider = riders[index]
            job = rider._job
            credit = min(taken, job.total - job.written)
            job.written += credit
            rider.status = job.written
            taken -= credit
            if job.written == job.total:
                index += 1
        self._riders_credited = index

    # -- one op ---------------------------------------------------------------------

    def _next_chunk(self) -> Optional[Block]:
        while self._block_index < len(self.blocks):
            block = self.blocks[self._block_index]
            start = self._block_offset
            if start < len(block):
                end = len(block) if self.chunk_size is None else start + self.chunk_size
                self._block_offset = end
                return _piece(block, start, end)
            self._block_index += 1
            self._block_offset = 0
        return None

    def _perform(self, task: Task[Any]) -> Step:
        chunk = self._chunk
        if chunk is None:
            return self._last_step()
        started = time.perf_counter()
        if not self._flush_pending:
            pipe = self._pipe
            if pipe is not None and not pipe.has_room():
                return Step.wait_writable(pipe.fileno)  # not inside write()
            if self._position_fd is not None and not self._chunk_done:
                self._chunk_start = os.lseek(self._position_fd, 0, os.SEEK_CUR)
                self._written_at_chunk = self.written
            taken, blocked = self._write_some(chunk)
            if taken:
                self._empty_writes = 0
            self._chunk_done += taken
            self._count(taken)
            task.status = self.written
            if self._chunk_done < len(chunk):
                self._chunk_io_time += time.perf_counter() - started
                if pipe is not None and taken and not blocked:
                    # A piece of the chunk is in: flushed now, the stream's buffer never
                    # holds more than the next poll() promises room for.
                    if self._has_flush:
                        self.stream.flush()
                    return Step.more()
                return self._wait_for_room(blocked, taken)
            self._flush_pending = self._has_flush
        if self._flush_pending:
            try:
                self.stream.flush()
            except BlockingIOError:
                # The bytes sit in the stream's buffer; flush again when there is room.
                self._chunk_io_time += time.perf_counter() - started
                return Step.wait_writable(fileno_or_none(self.stream))
            self._flush_pending = False
        if self.bandwidth_pct < 100.0:
            times = self._recent_chunk_times
            if times is None:
                times = self._recent_chunk_times = collections.deque(maxlen=self._smoothing)
            times.append(self._chunk_io_time + time.perf_counter() - started)
        self._chunk_done = 0
        self._chunk_io_time = 0.0
        self._chunk = self._next_chunk()
        if self._chunk is None:
            return self._last_step()
        if self.bandwidth_pct < 100.0:
            return self._rest_until_next_start()
        return Step.more()

    def _count_what_reached_the_file(self) -> None:
        """After a failure: ``written`` is what reached the file, not what the buffer took.

        A BufferedWriter that meets ENOSPC has taken bytes it will never write,
        and may have written part of a chunk whose write() raised.
        """
        assert self._position_fd is not None
        try:
            now = os.lseek(self._position_fd, 0, os.SEEK_CUR)
        except OSError:
            return
        assert self._chunk is not None
        reached = max(0, min(now - self._chunk_start, len(self._chunk)))
        self.written = self._written_at_chunk + reached

    def _rest_until_next_start(self) -> Step:
        times = self._recent_chunk_times
        assert times  # the chunk just written is in it
        average = sum(times) / len(times)
        period = average * 100.0 / self.bandwidth_pct
        now = time.monotonic()
        if self._planned_start is None:
            self._planned_start = now - average
        # Behind schedule (late wake-ups, a slow chunk, a busy machine): catch up,
        # but by no more than a few milliseconds' worth, rather than bursting to
        # pay back a long stall at once.
        planned = max(self._planned_start + period, now - max(period, _MAX_CATCH_UP))
        self._planned_start = planned
        if planned <= now:
            return Step.more()
        return Step.sleep(planned - now)

    def _write_some(self, chunk: Block) -> Tuple[int, bool]:
        """Offer the rest of *chunk*; return (how much the stream took, whether it blocked)."""
        data = _piece(chunk, self._chunk_done, len(chunk)) if self._chunk_done else chunk
        if self._pipe is not None:
            room = self._pipe.room(self._pipe_text)
            if len(data) > room:
                data = _piece(data, 0, room)
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

    def _wait_for_room(self, blocked: bool, taken: int) -> Step:
        if taken and not blocked:
            return Step.more()  # a short write: offer the rest straight away
        if not taken:
            self._empty_writes += 1
            if self._empty_writes >= MAX_EMPTY_WRITES:
                raise OSError(
                    f"{self.stream!r} accepted no data {MAX_EMPTY_WRITES} times in a row"
                )
        return Step.wait_writable(fileno_or_none(self.stream))

    def _last_step(self) -> Step:
        if self.fsync:
            os.fsync(self.stream.fileno())
        if self.close_when_finished:
            self.stream.close()
        self.blocks = ()  # all written: a finished write need not keep its payload
        return Step.done(self.written)

    def _close_quietly(self) -> None:
        try:
            self.stream.close()
        except Exception:
            pass  # the failure that brought us here is the one to report


_BUFFERED_FILES = (io.BufferedWriter, io.BufferedRandom)
# For smaller writes (which often ride together in one chunk) a system call per
# chunk is not worth it: after a failure their count may be off by the write itself.
_COUNT_POSITION_ABOVE = 64 * 1024


class BlockingPipe:
    """A pipe or socket in blocking mode, written without ever waiting inside write().

    write() on such a stream waits for its reader, perhaps forever, and a job
    waiting there holds the disk token: every other write would wait too.  So a
    job asks :meth:`has_room` first (and waits in the queue's poll() if not),
    then offers at most :meth:`room`: what the stream surely takes at once.
    """

    def __init__(self, fileno: int, is_fifo: bool) -> None:
        self.fileno = fileno
        self._poller = select.poll()
        self._poller.register(fileno, select.POLLOUT)
        self._capacity = 0
        if is_fifo:
            try:
                self._capacity = fcntl.fcntl(fileno, _F_GETPIPE_SZ)
            except OSError:
                pass

    def has_room(self) -> bool:
        return bool(self._poller.poll(0))

    def room(self, text: bool) -> int:
        """Bytes (or, through a text wrapper, characters) it takes now without waiting.

        An empty pipe takes its whole capacity; otherwise poll()'s "writable"
        promises PIPE_BUF bytes.  A text wrapper may encode a character in 4 bytes.
        """
        room = select.PIPE_BUF
        if self._capacity:
            try:
                unread = struct.unpack("i", fcntl.ioctl(self.fileno, termios.FIONREAD, b"\0\0\0\0"))[0]
            except OSError:
                unread = -1
            if unread == 0:
                room = self._capacity
        return room // 4 if text else room


def blocking_pipe(stream: Any) -> Optional[BlockingPipe]:
    """A :class:`BlockingPipe` for *stream* if it is a pipe or socket in blocking mode, else None."""
    try:
        fileno = int(stream.fileno())
        mode = os.fstat(fileno).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) or not os.get_blocking(fileno):
            return None
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return BlockingPipe(fileno, stat.S_ISFIFO(mode))


_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)  # Python 3.9 lacks the name; Linux's number


def _writes_text(stream: Any) -> bool:
    return isinstance(stream, io.TextIOBase) or "b" not in str(getattr(stream, "mode", "b"))


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


def fileno_or_none(stream: Any) -> Optional[int]:
    """The descriptor to poll for *stream*'s writability, or None if it has none."""
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
