"""BackgroundHddFile: open() whose writes never wait for the disk.

Write ``BackgroundHddFile(path, "w")`` where you wrote ``open(path, "w")`` and
keep going::

    from nonblock import BackgroundHddFile

    with BackgroundHddFile("run.log", "a") as log:
        for record in records:
            log.write(f"{record}\\n")       # returns at once
    ...                                     # the with block closed it without waiting
    log.wait()                              # True once every byte is down (or raises the error)

How it works.  The object is the caller's half of a file; the builtin file
object that open() returns lives on the HDD queue (see filechannel.py) and only
the queue's IO threads touch it.  So:

* ``write()`` keeps a reference to the data (a copy of a mutable buffer) and
  returns.  Writes are gathered into batches of several MiB, each one request
  to the real file's stream writer (the one bgwrite uses), written a chunk of
  the ``ioPrio`` profile's size per turn at the disk: a million small writes
  are not a million queue ops.
* ``flush()`` hands what is gathered to the queue and returns.  ``close()`` does
  the same, queues the close, and returns; ``closed`` is True at once and
  ``finished`` once everything is written, flushed (fsynced with ``fsync=True``)
  and the descriptor closed.  ``wait()`` blocks until then, or, on an open file,
  until every write issued so far is down.  ``sync()`` queues an fsync and
  returns its task.
* Reads, ``seek``, ``tell`` and ``truncate`` run on the queue behind every write
  issued before them, and block the caller for the answer: you read your writes.
  Because the builtin object does the work, text mode (encodings, error
  handlers, newline translation, tell cookies) behaves exactly as open()'s.
* A background error (a full disk, EIO) is kept in ``.exception`` and raised,
  as its own type, by the next call on the object; from then on writes are
  refused with it, so the file never gets a hole.  An error no call ever
  raised is logged to the ``nonblock`` logger when the object is dropped or at
  exit.
* Memory is bounded: past ``max_pending_bytes`` of memory held by unwritten
  data (each write counted with its object's overhead, so a flood of tiny
  writes is bounded too), ``write()`` and ``flush()`` wait for the disk.
* A file left open at exit is written out and closed; a forked child never
  writes the data its parent had pending.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import sys
import threading
import weakref
from typing import Any, Callable, Iterable, List, Optional, Tuple, Union, cast

from nonblock import _checks, streamwriter
from nonblock.background import FunctionJob
from nonblock.engine import Engine, QueueShutdown, Task, prepare_before_stop
from nonblock.filechannel import FileCall, FileChannel, FileWrite, Piece
from nonblock.hddq import HddQueue, default_queue
from nonblock.priority import DEFAULT_IO_PRIORITY, BackgroundIOPriority, resolve_priority

__all__ = [
    "BackgroundBinaryFile",
    "BackgroundHddFile",
    "BackgroundTextFile",
    "DEFAULT_MAX_PENDING_BYTES",
]

DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024
_MIN_BATCH = 8 * 1024 * 1024

_CLOSED_MESSAGE = "I/O operation on closed file."

_live_files: weakref.WeakSet[BackgroundHddFile] = weakref.WeakSet()


# What a piece held for writing costs beyond its data: the object's header and its
# place in the list (a bytes object's header is 33 bytes, an ASCII str's 49).
_BYTES_OVERHEAD = 33 + 8
_STR_OVERHEAD = 49 + 8
_SLOT = 8


def memory_cost(parts: List[Piece]) -> int:
    """What *parts* weigh in memory: max_pending_bytes bounds this, not their length.

    Counting only the data let a million 1-byte writes hold 13 times the bound.
    """
    if not parts:
        return 0
    if isinstance(parts[0], str):  # non-ASCII text takes 1, 2 or 4 bytes a character
        return sum(map(sys.getsizeof, parts)) + _SLOT * len(parts)
    return sum(map(len, parts)) + _BYTES_OVERHEAD * len(parts)


class _Gathered:
    """What the caller's half holds for its next batch.

    Kept apart, in a plain slotted object, because ``write()`` reads it on
    every call: attribute access on instances of the io base classes is not
    specialised by CPython 3.11's interpreter, and costs several times more.

    ``write()`` takes no lock (a lock doubles the cost of a small write).  It
    relies on what the GIL makes atomic: it only appends to ``parts``, and
    ``parts`` is never replaced, only emptied from the front by :meth:`take`,
    so a piece can never land in a list already handed to the queue.
    ``size`` is a hint for when to hand over (concurrent writers may race
    on it); what is handed over is measured exactly.
    """

    __slots__ = ("parts", "size", "refused")

    def __init__(self, refused: bool) -> None:
        self.parts: List[Piece] = []
        self.size = 0  # what the parts weigh in memory (see memory_cost)
        # True when a write must take the slow path: closed, not writable, failed.
        self.refused = refused

    def take(self) -> Tuple[List[Piece], int, int]:
        """Remove and return what is gathered, its exact size, and what it weighs in memory.

        The weight is the running count ``write()`` kept (measuring a million
        pieces again would cost the caller as much as the writes did); a piece
        appended by a concurrent writer just now may be counted in the next batch.
        """
        weight = self.size
        parts = self.parts
        count = len(parts)
        taken = parts[:count]
        del parts[:count]
        leftover = self.size = memory_cost(parts)  # what arrived meanwhile, usually nothing
        return taken, sum(map(len, taken)), max(weight - leftover, 0)

    def drop(self) -> None:
        del self.parts[:]
        self.size = 0


class BackgroundHddFile(io.IOBase):
    """A file opened as open() opens it, whose writes happen on the HDD queue.

    Takes open()'s arguments with their meanings (and raises open()'s errors),
    plus, keyword-only:

    ``ioPrio``
        1..10 or a :class:`~nonblock.BackgroundIOPriority`: its chunk size is
        how much is written per turn at the disk, taking turns with the other
        work on the queue.  (Its ``bandwidthPct`` is not applied to files: a
        file alone on the queue writes at the disk's speed.)
    ``fsync``
        fsync before the descriptor is closed, so ``finished`` means durable.
    ``max_pending_bytes``
        How much memory unwritten data may hold (each write's data and its
        object's overhead); ``write()`` and ``flush()`` block past it.
        A single write bigger than that is held whole (with what was gathered
        just before it), once the writes before it are down.
    ``queue``
        The :class:`~nonblock.HddQueue` to use instead of the default one.

    Calling the class gives a :class:`BackgroundTextFile` (an
    :class:`io.TextIOBase`) for text modes, a :class:`BackgroundBinaryFile` (an
    :class:`io.BufferedIOBase`) for binary ones.
    """

    _closed = True  # until __init__ has opened the file, the object is as good as closed
    _gathered = _Gathered(refused=True)
    _is_text = False

    def __new__(cls, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> BackgroundHddFile:
        if cls is BackgroundHddFile:
            binary = isinstance(mode, str) and "b" in mode
            cls = BackgroundBinaryFile if binary else BackgroundTextFile
        return super().__new__(cls)

    def __init__(
        self,
        file: Any,
        mode: str = "r",
        buffering: int = -1,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
        closefd: bool = True,
        opener: Optional[Callable[[str, int], int]] = None,
        *,
        ioPrio: Union[int, BackgroundIOPriority] = DEFAULT_IO_PRIORITY,
        fsync: bool = False,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        queue: Optional[HddQueue] = None,
    ) -> None:
        profile = resolve_priority(ioPrio)
        if not isinstance(fsync, bool):
            raise TypeError(f"fsync must be True or False, not {_checks.show(fsync)}")
        self._max_pending = _checks.positive_int("max_pending_bytes", max_pending_bytes)
        if queue is not None and not isinstance(queue, HddQueue):
            raise TypeError(f"queue must be an HddQueue or None, not {_checks.show(queue)}")
        self._queue = queue if queue is not None else default_queue()
        opening = functools.partial(open, file, mode, buffering, encoding, errors, newline, closefd, opener)
        # Opening a FIFO waits for its other end: the caller waits, as with open(),
        # rather than the queue (every other write would wait with it).
        real: Any = opening() if _names_a_fifo(file) else self._run_now(opening)
        if isinstance(real, io.TextIOBase) != self._is_text:
            real.close()  # only a subclass that picked the wrong kind gets here
            raise ValueError(f"mode {mode!r} does not open a {type(self).__name__}")
        if self._is_text and not os.get_blocking(real.fileno()):
            real.close()
            raise ValueError(
                f"text mode needs a blocking descriptor, and {real.name!r} is non-blocking: "
                "a full pipe could lose text; open it in binary mode"
            )
        chunk_size = profile.defaultChunkSize
        # Where the real file's answers depend on its buffers (see FileWrite), it
        # gets the caller's own calls, one for one.
        exact = self._is_text or "a" in mode
        self._channel = FileChannel(real, chunk_size=chunk_size, text=self._is_text, exact=exact,
                                    fsync=fsync, name=getattr(real, "name", file))
        self._reopen_args = (mode, buffering, encoding, errors, newline, closefd)
        self._channel.owner = weakref.ref(self)
        # Gathered writes are handed over in batches of this size: big enough
        # that the cost of a request (a Future, a hand-over) is spread over
        # several chunks, small enough that a few are in flight within the bound.
        self._batch_size = max(1, min(max(chunk_size, _MIN_BATCH), self._max_pending // 4))
        self._lock = threading.Lock()
        self._gathered = _Gathered(refused=not real.writable())
        self._submitted = 0  # handed to the queue; the channel counts what settled
        self._last_task: Optional[Task[Any]] = None
        self._close_task: Optional[Task[Any]] = None
        self._name = self._channel.name
        self._mode = getattr(real, "mode", mode)
        self._readable = real.readable()
        self._writable = real.writable()
        self._seekable = real.seekable()
        self._fileno = real.fileno()
        self._isatty = real.isatty()
        self._closed = False
        self._install_fast_write()
        _live_files.add(self)

    # -- what the object is ------------------------------------------------------

    @property
    def name(self) -> Any:
        return self._name

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def closed(self) -> bool:
        """True as soon as close() is called (the close itself may still be under way)."""
        return self._closed

    @property
    def finished(self) -> bool:
        """True once the file is closed and nothing more will happen: written, or failed."""
        task = self._close_task
        return task is not None and task.done()

    @property
    def exception(self) -> Optional[BaseException]:
        """The background error that stopped this file, or None."""
        error = self._channel.error if "_channel" in self.__dict__ else None
        if error is not None:
            self._channel.error_retrieved = True
        return error

    @property
    def pending_bytes(self) -> int:
        """Memory held by data written to this object and not yet settled on disk, in bytes.

        Each write counts its data (bytes; for text, what the str object takes)
        and its object's overhead, about 40 to 60 bytes.
        """
        return self._gathered.size + self._submitted - self._channel.settled

    def readable(self) -> bool:
        self._check_not_closed()
        return self._readable  # type: ignore[no-any-return]

    def writable(self) -> bool:
        self._check_not_closed()
        return self._writable  # type: ignore[no-any-return]

    def seekable(self) -> bool:
        self._check_not_closed()
        return self._seekable  # type: ignore[no-any-return]

    def fileno(self) -> int:
        self._check_not_closed()
        return self._fileno  # type: ignore[no-any-return]

    def isatty(self) -> bool:
        self._check_not_closed()
        return self._isatty  # type: ignore[no-any-return]

    def detach(self) -> Any:
        raise io.UnsupportedOperation("a BackgroundHddFile cannot be detached from its queue")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        name, mode = self.__dict__.get("_name"), self.__dict__.get("_mode")
        return f"<{type(self).__name__} name={name!r} mode={mode!r} {state}>"

    # -- writing -------------------------------------------------------------------

    def writelines(self, lines: Iterable[Any]) -> None:
        """Write every item of *lines* (no separators added), as open()'s writelines does."""
        if self._gathered.refused:
            self._raise_refusal()
        write = self.write
        for line in lines:
            write(line)

    def flush(self) -> None:
        """Hand the gathered writes to the queue and return (the disk is not waited for).

        Like write(), it waits while more than ``max_pending_bytes`` is in flight:
        a caller that flushes after every write (as logging's StreamHandler does)
        is held back by the bound too.
        """
        self._check_open()
        self._wait_for_room(self._gathered.size)
        with self._lock:
            self._check_open()
            self._submit_parts(flush=True)

    def sync(self) -> Task[Any]:
        """Queue an fsync behind every write issued so far; return its task."""
        with self._lock:
            self._check_open()
            self._submit_parts()
            channel = self._channel
            return self._submit(FileCall(channel, channel.sync, records_errors=True))

    def call_after_writes(self, function: Callable[[int], Any]) -> Task[Any]:
        """Queue ``function(fd)`` behind every write issued so far and before any later one.

        Returns its task at once.  The real file is flushed first, so the
        descriptor *fd* holds every earlier write (the log handlers rotate the
        file under it here).  A failure, of the flush or of *function*, is the
        file's error like a failed write: *function* should return its own
        failures rather than raise them.
        """
        with self._lock:
            self._check_open()
            self._submit_parts()
            channel = self._channel

            def flushed_then_called() -> Any:
                channel.sync_buffers()
                return function(channel.real.fileno())

            return self._submit(FileCall(channel, flushed_then_called, records_errors=True))

    def close(self) -> None:
        """Queue the rest and the close, and return.  Raises an error already known."""
        with self._lock:
            if self._closed:
                return
            self._close_without_raising()
        if self._channel.error is not None:
            self._raise_error()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until every write issued so far is down (and, once closed, until finished).

        Returns False if *timeout* seconds pass first; raises the background
        error if there is one.
        """
        with self._lock:
            if not self._closed and self._channel.error is None:
                self._submit_parts(flush=True)
            task = self._last_task
        if task is not None and not task.wait(timeout):
            return False
        if self._channel.error is not None:
            self._raise_error()
        return True

    # -- reading and moving: on the queue, behind the writes ---------------------------

    def read(self, size: Optional[int] = -1) -> Any:
        return self._call("read", size)

    def readline(self, size: Optional[int] = -1) -> Any:
        return self._call("readline", size)

    def readlines(self, hint: Optional[int] = -1) -> List[Any]:
        return self._call("readlines", hint)  # type: ignore[no-any-return]

    def __next__(self) -> Any:
        return self._call("__next__")

    def __iter__(self) -> BackgroundHddFile:
        self._check_not_closed()
        return self

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._call("seek", offset, whence)  # type: ignore[no-any-return]

    def tell(self) -> int:
        return self._call("tell")  # type: ignore[no-any-return]

    def truncate(self, size: Optional[int] = None) -> int:
        return self._call("truncate", size)  # type: ignore[no-any-return]

    # -- the machinery -------------------------------------------------------------------

    def _run_now(self, function: Callable[[], Any]) -> Any:
        """Run *function* on the queue and wait for it (inline on the queue's own threads)."""
        if self._queue.owns_current_thread():
            return function()
        return self._queue.submit_job(FunctionJob(function, (), {})).result()

    def _call(self, method: str, *args: Any) -> Any:
        """Call the real file's *method* on the queue, behind every earlier write; wait for it."""
        with self._lock:
            self._check_open()
            self._submit_parts()
            channel = self._channel
            task = self._submit(FileCall(channel, getattr(channel.real, method), args))
        task.wait()
        if channel.error is not None:
            self._raise_error()
        return task.result()

    def _submit(self, request: streamwriter.WriteRequest, *, shutdown_is_an_error: bool = True) -> Task[Any]:
        """Hand *request* to the real file's stream writer.  Called with the lock held."""
        try:
            streamwriter.submit(request, self._queue)
        except QueueShutdown as error:
            if shutdown_is_an_error:
                self._channel.fail(error, 0)
            raise
        self._last_task = request
        return request

    def _submit_parts(self, flush: bool = False) -> None:
        """Hand the gathered writes to the queue as one job.  Called with the lock held; never waits.

        With *flush*, the real file is flushed after them (when it is not
        flushed after every chunk anyway), so that what was written is down.
        """
        flush = flush and self._channel.exact
        if not self._gathered.parts:
            if flush:
                try:
                    flushing = FileWrite(self._channel, [], 0, flush_after=True)
                    self._submit(flushing, shutdown_is_an_error=False)
                except QueueShutdown:
                    pass  # nothing to write; the close flushes the rest
            return
        parts, size, cost = self._gathered.take()
        self._submit(FileWrite(self._channel, parts, size, flush_after=flush, cost=cost))
        self._submitted += cost

    def _wait_for_room(self, size: int) -> None:
        """Block until *size* more in flight keeps the object within max_pending_bytes.

        Room is left for one more batch to gather meanwhile, so what the object
        holds never passes the bound.  The queue's own threads never wait here:
        the writes they would wait for may need them.  Called without the lock.
        """
        channel = self._channel
        limit = self._max_pending - self._batch_size
        if self._submitted - channel.settled + size <= limit:
            return
        if self._queue.owns_current_thread():
            return
        with channel.room:
            # The IO side wakes the waiters once this much has settled: the
            # least any of them needs.
            wanted = self._submitted + min(size - limit, 0)
            channel.room_wanted = min(channel.room_wanted, wanted) if channel.room_waiters else wanted
            channel.room_waiters += 1
            try:
                while channel.error is None:
                    in_flight = self._submitted - channel.settled
                    if in_flight == 0 or in_flight + size <= limit:
                        break
                    channel.room.wait()
            finally:
                channel.room_waiters -= 1
        if channel.error is not None:
            self._raise_error()

    def _close_without_raising(self) -> None:
        """Mark closed, queue the rest and the close.  Called with the lock held."""
        self._closed = True
        self._gathered.refused = True
        channel = self._channel
        if channel.error is None:
            try:
                self._submit_parts()
            except QueueShutdown:
                pass  # now the file's error, raised by close()
        if channel.error is not None:
            self._gathered.drop()  # refused with the error: nothing more is written
        closing = FileCall(channel, channel.close, records_errors=True)
        try:
            self._close_task = self._submit(closing, shutdown_is_an_error=False)
        except QueueShutdown:
            self._close_task = self._close_here()

    def _close_here(self) -> Task[Any]:
        """The queue is shut down: close the real file on this thread, as a finished task.

        Its last queued op may still be running (shutdown(wait=False)): let it end first.
        """
        last = self._last_task
        if last is not None and not self._queue.owns_current_thread():
            last.wait()
        task: Task[Any] = Task()
        try:
            self._channel.close()
        except Exception as error:
            task.set_exception(error)
        else:
            task.set_result(None)
        return task

    def _check_not_closed(self) -> None:
        if self._closed:
            raise ValueError(_CLOSED_MESSAGE)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(_CLOSED_MESSAGE)
        if self._channel.error is not None:
            self._raise_error()

    def _raise_refusal(self) -> None:
        """Why this object cannot take a write now (the fast path saw ``_refused``)."""
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("not writable")
        raise AssertionError("a write was refused for no reason")

    def _raise_error(self) -> None:
        channel = self._channel
        channel.error_retrieved = True
        error = channel.error
        assert error is not None
        raise error

    def _install_fast_write(self) -> None:
        """Give this object its own ``write``, a closure over what it touches on every call.

        A closure reads its cells far faster than a method reads attributes of
        an io object, and a million small writes are the case that matters.
        It holds the object only weakly (the slow paths), so dropping the
        object still closes it at once, as dropping a builtin file does.
        """
        self.__dict__["write"] = self._make_fast_write(self._gathered, self._batch_size, weakref.ref(self))

    @staticmethod
    def _make_fast_write(gathered: _Gathered, batch_size: int,
                         owner: weakref.ref[BackgroundHddFile]) -> Callable[[Any], int]:
        raise NotImplementedError

    def _hand_over_from_write(self) -> None:
        """A write filled a batch: wait for room, then hand it to the queue.

        The wait comes first and without the file's lock: a thread that holds
        the lock never waits for the disk, so a background function writing to
        the same file (holding the disk token) can always get it.  And what
        is gathered stays gathered until it is handed over: an interrupted
        wait loses nothing.
        """
        self._wait_for_room(self._gathered.size)
        with self._lock:
            if not self._gathered.refused:
                self._submit_parts()

    def _refuse_after_append(self, piece: Piece) -> None:
        """A write appended *piece* while the file was being refused (closed, failed) meanwhile.

        If the piece is still gathered, nobody will write it: take it back and
        refuse the write.  If a close already took it, it is written: accept,
        unless the file failed (then nothing after the failure is written).
        """
        with self._lock:
            parts = self._gathered.parts
            for index in range(len(parts) - 1, -1, -1):
                if parts[index] is piece:
                    del parts[index]
                    self._raise_refusal()
            if self._channel.error is not None:
                self._raise_refusal()

    def _reopen_in_child(self) -> None:
        """Swap the real file object for a fresh one on a duplicate descriptor (see fork)."""
        mode, buffering, encoding, errors, newline, closefd = self._reopen_args
        channel = self._channel
        if not closefd:
            # The descriptor is the caller's, so it stays where it is; instead the
            # inherited object's raw file is closed (which leaves the descriptor
            # open), so that whatever its buffer holds can never be flushed.
            inherited = channel.real  # kept alive until its raw file is closed, see below
            raw = _raw_of(inherited)
            if raw is None:
                return  # unbuffered: it holds nothing
            fresh = open(self._fileno, mode, buffering, encoding, errors, newline, closefd=False)
            # Closed before the inherited object can be freed: freeing it flushes
            # its buffer, which must then have nowhere to go.
            raw.close()
            channel.real = fresh
            channel.dirty = channel.mid_chunk = False
            return
        duplicate = os.dup(self._fileno)
        try:
            fresh = open(duplicate, mode, buffering, encoding, errors, newline, closefd=True)
        except BaseException:
            os.close(duplicate)
            raise
        _point_at_devnull(self._fileno)
        channel.real = fresh
        channel.dirty = channel.mid_chunk = False
        self._fileno = duplicate

    def prepare_for_stop(self, final: bool, queue: Optional[Engine]) -> None:
        """For the exit and shutdown (see ``hddq.prepare_before_stop``): hand the gathered writes over.

        Only if *queue* (None: any) is this file's.  With *final* (the exit's
        last moment), close the file too, and log an error no call raised.
        """
        if queue is not None and self._queue is not queue:
            return
        channel = self._channel
        if final:
            channel.exiting = True
        with self._lock:
            if final and not self._closed:
                self._close_without_raising()
            elif not self._closed and channel.error is None:
                try:
                    self._submit_parts(flush=True)
                except BaseException:
                    pass  # recorded on the channel, reported below or when it closes
        if final:
            channel.report_unretrieved()

    def forget_parent_writes(self) -> None:
        """In a forked child: what the parent had gathered or queued is the parent's to write.

        The child keeps a usable file.  But the real file object may hold some of
        the parent's bytes in its buffer (an append-mode file flushes only when
        told, and a stream that said EAGAIN keeps what it could not take): then
        the child gets a fresh real file object on a duplicate of the descriptor,
        and the inherited one's descriptor is pointed at /dev/null, so whatever
        it flushes goes nowhere.
        """
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._gathered.drop()
        self._submitted = 0
        self._last_task = None
        channel = self._channel
        channel.settled = 0
        channel.room = threading.Condition(threading.Lock())
        channel.room_waiters = 0
        may_hold_parent_bytes = channel.dirty or channel.mid_chunk
        if may_hold_parent_bytes and not self._closed and channel.error is None:
            try:
                self._reopen_in_child()
            except OSError as error:
                channel.error = error
                self._gathered.refused = True

    def __del__(self) -> None:
        channel: Optional[FileChannel] = self.__dict__.get("_channel")
        if channel is None:
            return
        if not self._closed:
            with self._lock:
                if not self._closed:
                    self._close_without_raising()
        channel.owner = None
        if channel.error is not None:
            channel.report_unretrieved()


class BackgroundTextFile(BackgroundHddFile, io.TextIOBase):
    """A :class:`BackgroundHddFile` in text mode: write() takes str and returns its length."""

    _is_text = True

    def write(self, s: str) -> int:
        """Keep *s* for the background writer and return ``len(s)`` at once.

        (Each object answers ``write`` with a faster closure that does the same;
        see :meth:`_make_fast_write`.)
        """
        return self.__dict__["write"](s)  # type: ignore[no-any-return]

    @staticmethod
    def _make_fast_write(gathered: _Gathered, batch_size: int,
                         owner: weakref.ref[BackgroundHddFile]) -> Callable[[Any], int]:
        parts = gathered.parts  # never replaced (see _Gathered)
        overhead, slot, sizeof = _STR_OVERHEAD, _SLOT, sys.getsizeof  # locals: a write is ~150 ns

        def write(s: str) -> int:
            if type(s) is not str:
                s = _as_str(s)
            # The slow paths are this object's own methods (the closure holds it weakly).
            if gathered.refused:
                self = _alive(owner)
                self._raise_refusal()
            size = len(s)
            if s.isascii():
                cost = size + overhead
            else:
                # What the encoding cannot take fails here, as open()'s write() does, not
                # later on an IO thread.  ASCII text encodes in every encoding open() uses.
                self = cast(BackgroundTextFile, _alive(owner))
                self._check_encodable(s)
                cost = sizeof(s) + slot
            parts.append(s)
            gathered.size += cost
            if gathered.refused:
                self = _alive(owner)
                self._refuse_after_append(s)
            elif gathered.size >= batch_size:
                self = _alive(owner)
                self._hand_over_from_write()
            return size

        return write

    def _check_encodable(self, text: str) -> None:
        text.encode(self.encoding, self.errors or "strict")  # UnicodeEncodeError, raised to the caller

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._channel.real.encoding  # type: ignore[no-any-return]

    @property
    def errors(self) -> Optional[str]:  # type: ignore[override]
        return self._channel.real.errors  # type: ignore[no-any-return]

    @property
    def newlines(self) -> Any:  # type: ignore[override]
        return self._channel.real.newlines

    @property
    def line_buffering(self) -> bool:
        return self._channel.real.line_buffering  # type: ignore[no-any-return]


class BackgroundBinaryFile(BackgroundHddFile, io.BufferedIOBase):
    """A :class:`BackgroundHddFile` in binary mode: write() takes any bytes-like object."""

    def write(self, data: Any) -> int:
        """Keep *data* for the background writer (a copy, if it is mutable); return its size.

        (Each object answers ``write`` with a faster closure that does the same;
        see :meth:`_make_fast_write`.)
        """
        return self.__dict__["write"](data)  # type: ignore[no-any-return]

    @staticmethod
    def _make_fast_write(gathered: _Gathered, batch_size: int,
                         owner: weakref.ref[BackgroundHddFile]) -> Callable[[Any], int]:
        parts = gathered.parts  # never replaced (see _Gathered)
        overhead = _BYTES_OVERHEAD

        def write(data: Any) -> int:
            piece = data if type(data) is bytes else _owned_bytes(data)
            # The slow paths are this object's own methods (the closure holds it weakly).
            if gathered.refused:
                self = _alive(owner)
                self._raise_refusal()
            parts.append(piece)
            size = len(piece)
            gathered.size += size + overhead
            if gathered.refused:
                self = _alive(owner)
                self._refuse_after_append(piece)
            elif gathered.size >= batch_size:
                self = _alive(owner)
                self._hand_over_from_write()
            return size

        return write

    def read1(self, size: int = -1) -> bytes:
        return self._call("read1", size)  # type: ignore[no-any-return]

    def readinto(self, buffer: Any) -> int:
        return self._call("readinto", buffer)  # type: ignore[no-any-return]

    def readinto1(self, buffer: Any) -> int:
        return self._call("readinto1", buffer)  # type: ignore[no-any-return]


def _names_a_fifo(file: Any) -> bool:
    if isinstance(file, int):
        return False
    try:
        return stat.S_ISFIFO(os.stat(file).st_mode)
    except (OSError, TypeError, ValueError):
        return False  # open() gives the error that fits


def _alive(owner: weakref.ref[BackgroundHddFile]) -> BackgroundHddFile:
    file = owner()
    if file is None:  # only a write racing the object's own finaliser gets here
        raise ValueError(_CLOSED_MESSAGE)
    return file


def _as_str(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"write() argument must be str, not {type(text).__name__}")
    return str.__str__(text)  # the characters themselves, whatever a subclass's __str__ says


def _owned_bytes(data: Any) -> bytes:
    """*data* as bytes that nobody else can change: bytes as they are, anything else copied."""
    if isinstance(data, bytes):
        return data  # a bytes subclass is immutable too
    if isinstance(data, str):
        raise TypeError(f"a bytes-like object is required, not {type(data).__name__!r}")
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not {type(data).__name__!r}") from None
    with view:
        return view.tobytes()


# -- exit and fork ----------------------------------------------------------------------


def _prepare_files_for_stop(final: bool, queue: Optional[Engine]) -> None:
    """Hand gathered writes to the queue that stops (None: all); at exit's last moment, close too."""
    for file in list(_live_files):
        file.prepare_for_stop(final, queue)


def _forget_parent_writes() -> None:
    """In a forked child: what the parent had gathered or queued is the parent's to write."""
    for file in list(_live_files):
        file.forget_parent_writes()


def _raw_of(real: Any) -> Any:
    """The raw file under a buffered or text file object; None if *real* is raw itself."""
    buffered = getattr(real, "buffer", real)
    return getattr(buffered, "raw", None)


def _point_at_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


prepare_before_stop(_prepare_files_for_stop)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_writes)
