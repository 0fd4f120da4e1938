"""python-nonblock's background-write API, on the shared HDD queue.

``bgwrite(fileObj, data)`` returns at once with a :class:`BackgroundWriteProcess`
and the queue writes the data in the background.  The names, signatures,
defaults and attributes are python-nonblock 4.0.1's, so old code runs
unchanged; what happens underneath is different:

* no thread per write: every write is a task on the queue's two IO threads;
* the payload is not copied (a mutable bytearray is copied once, because the
  caller may change it after the call);
* ``chainAfter`` starts the write the moment its predecessor ends; a failed
  predecessor fails its successors (``PredecessorFailed``, with the original
  error as ``__cause__``) and they write nothing;
* writes to the same stream land in call order and never interleave, and
  small ones waiting one behind another are joined into one chunk: one
  write() and one flush for the lot, each task ending when that flush is done;
* short writes and EAGAIN deliver every byte exactly once;
* every error is recorded on the task, and ``finished`` becomes True anyway;
* ``bandwidthPct`` p gives p percent of the unthrottled rate.
"""

from __future__ import annotations

import collections
import io
import os
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

from nonblock import _checks, streamwriter
from nonblock.hddq import HddQueue, default_queue
from nonblock.priority import (
    BG_IO_PRIOS,
    DEFAULT_IO_PRIORITY,
    IO_PRIORITY_PROFILES,
    BackgroundIOPriority,
    resolve_priority,
)
from nonblock.streamwriter import Block, WriteRequest

__all__ = [
    "BG_IO_PRIOS",
    "BackgroundIOPriority",
    "BackgroundWriteProcess",
    "IO_PRIORITY_PROFILES",
    "bgwrite",
    "bgwrite_chunk",
    "chunk_data",
]

Payload = Union[str, bytes, bytearray, memoryview, Sequence[Any]]
Callback = Optional[Any]


class BackgroundWriteProcess(WriteRequest):
    """A background write: a :class:`~nonblock.hddq.Task` whose result is the count written.

    Made and started by :func:`bgwrite` and :func:`bgwrite_chunk`; build one
    directly only to start it later with :meth:`start`.

    python-nonblock's attributes are kept:

    ``remainingData``
        A deque of the chunks not yet written (computed when read).
    ``startedWriting``
        True once the write has begun (its predecessor, if any, is done).
    ``finished``
        True once nothing more will happen: the data is written (and the stream
        closed, with ``closeWhenFinished``), or the write failed.  After a
        failure ``exception()`` tells why.

    and so are ``join(timeout=None)`` and ``is_alive()``, for code that treated
    it as a thread.  New: ``bytes_written`` and ``total_bytes`` (characters, for
    a text stream), ``wait(timeout=None) -> bool``, and everything a
    :class:`concurrent.futures.Future` offers.

    It is also the request its stream's writer works through (a
    :class:`~nonblock.streamwriter.WriteRequest`): the task the caller holds and
    the payload behind it are one object, because a program may make thousands
    of these a second, and each object more per write is allocated, tracked by
    the garbage collector and freed.
    """

    # Slots, for the reason Task gives: a field that only some writes set would
    # otherwise cost those writes a dict of their own.
    __slots__ = ("chainAfter", "ioPrio", "_target_queue")
    chainAfter: Optional[BackgroundWriteProcess]
    ioPrio: BackgroundIOPriority
    _target_queue: Optional[HddQueue]

    def __init__(
        self,
        fileObj: Any,
        dataBlocks: Payload,
        closeWhenFinished: bool = False,
        chainAfter: Optional[BackgroundWriteProcess] = None,
        ioPrio: Union[int, BackgroundIOPriority] = DEFAULT_IO_PRIORITY,
        *,
        chunkSize: Optional[int] = None,
        fsync: bool = False,
        queue: Optional[HddQueue] = None,
        on_success: Callback = None,
        on_fail: Callback = None,
        on_end: Callback = None,
    ) -> None:
        self._set_up(fileObj, dataBlocks, closeWhenFinished, chainAfter, ioPrio, chunkSize, fsync,
                     queue, on_success, on_fail, on_end)

    def _set_up(
        self,
        fileObj: Any,
        dataBlocks: Payload,
        closeWhenFinished: bool,
        chainAfter: Optional[BackgroundWriteProcess],
        ioPrio: Union[int, BackgroundIOPriority],
        chunkSize: Optional[int],
        fsync: bool,
        queue: Optional[HddQueue],
        on_success: Callback,
        on_fail: Callback,
        on_end: Callback,
    ) -> None:
        # The constructor's work, with every argument positional: bgwrite() calls
        # this directly, because calling a class with keywords costs more than a
        # small write can spare.
        profile = resolve_priority(ioPrio)
        if chainAfter is not None and not isinstance(chainAfter, BackgroundWriteProcess):
            raise _checks.WrongTypeError(
                f"chainAfter must be a BackgroundWriteProcess or None, not {_checks.show(chainAfter)}"
            )
        if chunkSize is not None:
            chunkSize = _checks.truncated_count("chunkSize", chunkSize, 1)
        if queue is not None and not isinstance(queue, HddQueue):
            raise TypeError(f"queue must be an HddQueue or None, not {_checks.show(queue)}")
        kind = _checked_stream_kind(fileObj, fsync)
        if kind is _TEXT:
            _refuse_nonblocking_text(fileObj)
        blocks, is_list = _payload_blocks(dataBlocks, kind)
        WriteRequest.__init__(self)
        if on_success is not None or on_fail is not None or on_end is not None:
            _checks.optional_callables(on_success=on_success, on_fail=on_fail, on_end=on_end)
            self.on_success, self.on_fail, self.on_end = on_success, on_fail, on_end
        self.chainAfter = chainAfter
        self.ioPrio = profile
        self._target_queue = queue
        if chunkSize is None and not is_list:
            chunkSize = profile.defaultChunkSize
        self.set_payload(
            fileObj, blocks, chunkSize, profile.bandwidthPct, profile.numChunksRateSmoothing,
            bool(closeWhenFinished), bool(fsync), len(dataBlocks) if type(dataBlocks) is bytes else None,
            chainAfter,
        )

    def start(self, timeout: Optional[float] = None) -> None:
        """Queue the write.  bgwrite() does this; calling it twice is a RuntimeError.

        Waits first while the queue's pending payloads are at its
        ``max_pending_bytes``, up to *timeout* seconds (None: as long as it
        takes); then raises TimeoutError, having queued nothing.
        """
        if self.queue is not None:
            raise RuntimeError("a BackgroundWriteProcess can be started only once")
        target = self._target_queue if self._target_queue is not None else default_queue()
        if self.chainAfter is not None and self.chainAfter.queue is None:
            raise ValueError(
                f"chainAfter has not been started, so this write would wait forever: {self.chainAfter!r}"
            )
        streamwriter.submit(self, target, timeout)

    @property
    def backgroundIOPriority(self) -> BackgroundIOPriority:
        """The profile this write uses (python-nonblock's name for the resolved ``ioPrio``)."""
        return self.ioPrio

    @property
    def fileObj(self) -> Any:
        """The stream written to."""
        return self.stream

    @property
    def closeWhenFinished(self) -> bool:
        """Whether the stream is closed once the write has finished (or failed)."""
        return self.close_when_finished

    @closeWhenFinished.setter
    def closeWhenFinished(self, value: bool) -> None:
        if self.queue is not None:
            raise RuntimeError("closeWhenFinished cannot change once the write has started")
        self.close_when_finished = bool(value)

    @property
    def remainingData(self) -> Deque[Block]:
        """The chunks not yet written, oldest first (a snapshot)."""
        if self.done():
            return collections.deque()
        return self.remaining()

    @property
    def startedWriting(self) -> bool:
        """True once the write has begun."""
        return self.execution_state != "CREATED"

    @property
    def finished(self) -> bool:
        """True once nothing more will happen to this write, success or failure."""
        return self.done()

    @property
    def bytes_written(self) -> int:
        """How much the stream has taken so far (characters, for a text stream)."""
        return self.written

    @property
    def total_bytes(self) -> int:
        """How much there is to write in all (characters, for a text stream)."""
        return self.total

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait until finished or *timeout* passes, like ``Thread.join``."""
        self.wait(timeout)

    def is_alive(self) -> bool:
        """True from start() until finished, like ``Thread.is_alive``."""
        return self.queue is not None and not self.done()


def bgwrite(
    fileObj: Any,
    data: Payload,
    closeWhenFinished: bool = False,
    chainAfter: Optional[BackgroundWriteProcess] = None,
    ioPrio: Union[int, BackgroundIOPriority] = DEFAULT_IO_PRIORITY,
    *,
    fsync: bool = False,
    queue: Optional[HddQueue] = None,
    timeout: Optional[float] = None,
    on_success: Callback = None,
    on_fail: Callback = None,
    on_end: Callback = None,
) -> BackgroundWriteProcess:
    """Write *data* to *fileObj* in the background and return at once.

    *data* is a str, a bytes-like object, or a list or tuple of them.  A single
    str or bytes payload is cut into chunks of the profile's
    ``defaultChunkSize``; each list item is written as one chunk.  Every chunk
    is flushed after it is written.  One-chunk writes to the same stream that
    are waiting one behind another share a chunk (and its fate, should the
    write or flush fail); see the README's "Small writes ride together".

    *closeWhenFinished* closes *fileObj* after the last chunk (also after a
    failure).  *chainAfter* holds this write until that one has finished; if
    it failed, this one fails too and writes nothing.  *ioPrio* is 1 (fastest)
    to 10 (gentlest), or a :class:`BackgroundIOPriority`.

    Keyword-only extras: *fsync* (fsync the descriptor after the last chunk),
    *queue* (an :class:`~nonblock.hddq.HddQueue` other than the default), and
    the task callbacks *on_success(count)*, *on_fail(exception)*, *on_end(task)*.

    Memory is bounded: while the payloads of the queue's pending writes add up
    to its ``max_pending_bytes`` (a quarter of the memory, at least 1 GiB,
    unless set), the call waits for the
    disk, up to *timeout* seconds (None: as long as it takes), then raises
    TimeoutError having queued nothing.  (A payload larger than the bound goes
    alone.)  On one of the queue's own threads it never waits.

    Bad arguments raise TypeError or ValueError here, naming the argument,
    before anything is queued.  After the queue is shut down this raises
    :class:`~nonblock.hddq.QueueShutdown`.
    """
    process = BackgroundWriteProcess.__new__(BackgroundWriteProcess)
    process._set_up(fileObj, data, closeWhenFinished, chainAfter, ioPrio, None, fsync,
                    queue, on_success, on_fail, on_end)
    process.start(timeout if timeout is None else _checked_timeout(timeout))
    return process


def bgwrite_chunk(
    fileObj: Any,
    data: Payload,
    chunkSize: int,
    closeWhenFinished: bool = False,
    chainAfter: Optional[BackgroundWriteProcess] = None,
    ioPrio: Union[int, BackgroundIOPriority] = DEFAULT_IO_PRIORITY,
    *,
    fsync: bool = False,
    queue: Optional[HddQueue] = None,
    timeout: Optional[float] = None,
    on_success: Callback = None,
    on_fail: Callback = None,
    on_end: Callback = None,
) -> BackgroundWriteProcess:
    """Like :func:`bgwrite`, but cut the data into chunks of *chunkSize*.

    *chunkSize* is any number whose ``int()`` is at least 1 (``len(data) / 4``
    works; it is truncated, as python-nonblock does).  Smaller chunks reach the
    other side sooner and share the disk more finely, at some cost in
    throughput.  A list payload has each item cut this way.
    """
    chunkSize = _checks.truncated_count("chunkSize", chunkSize, 1)
    process = BackgroundWriteProcess.__new__(BackgroundWriteProcess)
    process._set_up(fileObj, data, closeWhenFinished, chainAfter, ioPrio, chunkSize, fsync,
                    queue, on_success, on_fail, on_end)
    process.start(timeout if timeout is None else _checked_timeout(timeout))
    return process


def _checked_timeout(timeout: Any) -> float:
    return _checks.real_number("timeout", timeout, minimum=0.0, maximum=float("inf"),
                               minimum_allowed=True, what="None or a number of seconds >= 0")


def chunk_data(data: Union[str, bytes, bytearray, memoryview], chunkSize: int) -> List[Any]:
    """Cut *data* into a list of slices of at most *chunkSize* items each.

    ``chunk_data("123456789", 2) == ["12", "34", "56", "78", "9"]``; *chunkSize*
    is truncated to an int, as in :func:`bgwrite_chunk`.
    """
    chunkSize = _checks.truncated_count("chunkSize", chunkSize, 1)
    if not isinstance(data, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"data must be str or a bytes-like object, not {_checks.show(data)}")
    return [data[start: start + chunkSize] for start in range(0, len(data), chunkSize)]


# -- checking what the caller gave us -------------------------------------------------------

_TEXT, _BINARY, _UNKNOWN = "text", "binary", "unknown"


# The kind of each io class seen so far (text, binary or unknown).  Only io
# classes are kept: their write() is the class's, so every instance has one.
# Asking the ABCs, or looking write() up on the instance, costs more than the
# rest of a small bgwrite call, so each class is asked once.
_KIND_OF_IO_CLASS: Dict[type, str] = {}


def _checked_stream_kind(stream: Any, fsync: Any) -> str:
    """Whether *stream* takes str or bytes (when that can be known without writing).

    Raises if it cannot be written to: no write() method, closed, or no
    descriptor to fsync.
    """
    cls = type(stream)
    kind = _KIND_OF_IO_CLASS.get(cls)
    if kind is None:
        if not callable(getattr(stream, "write", None)):
            raise TypeError(f"fileObj must be a stream with a write() method, not {_checks.show(stream)}")
        kind = _kind_of_class(cls)
        if isinstance(stream, io.IOBase):
            _KIND_OF_IO_CLASS[cls] = kind
    if getattr(stream, "closed", False) is True:
        raise ValueError(f"fileObj is closed: {_checks.show(stream)}")
    if fsync and not callable(getattr(stream, "fileno", None)):
        raise ValueError(f"fsync=True needs a stream with a fileno(), not {_checks.show(stream)}")
    if kind is _UNKNOWN:
        mode = getattr(stream, "mode", None)
        if isinstance(mode, str) and mode:
            return _BINARY if "b" in mode else _TEXT
    return kind


def _kind_of_class(cls: type) -> str:
    if issubclass(cls, io.TextIOBase):
        return _TEXT
    if issubclass(cls, (io.RawIOBase, io.BufferedIOBase)):
        return _BINARY
    return _UNKNOWN


def _refuse_nonblocking_text(stream: Any) -> None:
    # A text wrapper that meets EAGAIN drops what it had encoded: no byte count
    # can make that good, so such a stream is refused rather than corrupted.
    try:
        blocking = os.get_blocking(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return  # no descriptor (StringIO, ...): nothing can say EAGAIN
    if not blocking:
        raise ValueError(
            f"fileObj is a text stream on a non-blocking descriptor, which loses data on EAGAIN; "
            f"write bytes to its .buffer instead: {_checks.show(stream)}"
        )


def _payload_blocks(data: Any, kind: str) -> Tuple[Sequence[Block], bool]:
    """The payload as a sequence of blocks, and whether the caller gave a list."""
    if type(data) is bytes and kind is not _TEXT:
        # Immutable, so kept as it is: no view to make (and none for the GC to track).
        return ((data,) if data else ()), False
    if isinstance(data, (list, tuple)):
        blocks = [_as_block(item, f"data[{index}]") for index, item in enumerate(data)]
        is_list = True
    else:
        blocks = [_as_block(data, "data")]
        is_list = False
    has_text = any(isinstance(block, str) for block in blocks)
    has_bytes = any(not isinstance(block, str) for block in blocks)
    if has_text and has_bytes:
        raise TypeError("data mixes str and bytes; a stream takes one or the other")
    if has_text and kind == _BINARY:
        raise TypeError(f"data is str but fileObj is a binary stream: {_checks.show(data)}")
    if has_bytes and kind == _TEXT:
        raise TypeError(f"data is bytes but fileObj is a text stream: {_checks.show(data)}")
    return [block for block in blocks if len(block)], is_list


def _as_block(item: Any, name: str) -> Block:
    if isinstance(item, str):
        return item
    try:
        view = memoryview(item)
    except TypeError:
        raise TypeError(
            f"{name} must be str, a bytes-like object, or a list or tuple of them, "
            f"not {_checks.show(item)}"
        ) from None
    if not view.readonly:
        # The caller may change a mutable buffer after we return: keep our own copy.
        return memoryview(view.tobytes())
    if not view.c_contiguous:
        return memoryview(view.tobytes())  # a stream's write() refuses a strided view
    if view.format != "B" or view.ndim != 1:
        try:
            view = view.cast("B")
        except TypeError:  # a format cast() refuses
            view = memoryview(view.tobytes())
    return view
