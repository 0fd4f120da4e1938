"""Reading a stream in the background: python-nonblock's ``bgread``, on the HDD queue.

``bgread(stream)`` returns a :class:`BackgroundReadData` at once and the queue
collects what the stream gives until it ends.  python-nonblock started a thread
per call that slept ``pollTime`` after every block; here no thread is started:
a read waits for data in the queue's ``poll()``, beside the writes that wait
to write, so a hundred bgreads of a hundred pipes cost no thread at all and a
block is read the moment it arrives.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Union

from nonblock import _checks
from nonblock.hddq import HddQueue, Step, Task, default_queue
from nonblock.read import Source, stream_source, wants_text

__all__ = ["BackgroundReadData", "bgread"]

Data = Union[bytes, str]


class BackgroundReadData(Task[Any]):
    """What a :func:`bgread` has read so far, and a Task that completes at the stream's end.

    python-nonblock's fields are kept:

    ``blocks``
        The blocks read, in order (each what one read gave, never empty).
    ``data``
        Every block joined (bytes or str, as the stream gives).
    ``isFinished``
        True once the read is over: the stream ended, or reading it failed.
    ``error``
        The exception that stopped the read, or None.
    ``addBlock(block)``
        Append a block (the reader calls this).

    As a Task: ``result()`` is the whole data once the stream has ended,
    ``exception()`` the error; ``on_success(data)`` and ``on_fail(error)`` run
    on the queue's callback thread, as does ``on_data(block)`` for each block.
    """

    def __init__(self, dataType: type = bytes) -> None:
        super().__init__()
        self.dataType = dataType
        self.emptyStr: Data = dataType()
        self.blocks: List[Data] = []
        self._joined: Data = self.emptyStr
        self._joined_count = 0

    def addBlock(self, block: Data) -> None:
        """Append *block* to :attr:`blocks`."""
        self.blocks.append(block)

    @property
    def data(self) -> Data:
        """Every block so far, joined; only blocks new since the last look are joined again."""
        blocks = self.blocks
        if self._joined_count != len(blocks):
            if self._joined_count > len(blocks) or not self._joined_count:
                self._joined = self.emptyStr.join(blocks)  # type: ignore[arg-type]
            else:
                new = blocks[self._joined_count:]
                self._joined = self.emptyStr.join([self._joined, *new])  # type: ignore[list-item]
            self._joined_count = len(blocks)
        return self._joined

    def result(self, timeout: Optional[float] = None) -> Data:
        """Wait for the stream's end and return everything read (or raise the read's error)."""
        super().result(timeout)
        return self.data

    @property
    def isFinished(self) -> bool:
        """True once the stream has ended or the read failed."""
        return self.done()

    @property
    def error(self) -> Optional[BaseException]:
        """The exception that stopped the read (None while reading or after a clean end)."""
        if not self.done() or self.cancelled():
            return None
        return self.exception()


# How much one op reads at most: a turn at the disk, shared fairly with writes.
_OP_BYTES = 1 << 20
_PIECE_BYTES = 65536  # a pipe's default capacity


class _ReadJob:
    """The work behind a bgread: what is available per op, waiting in poll() when there is none."""

    def __init__(self, data: BackgroundReadData, source: Source, want_text: bool,
                 limit: Optional[int], pollTime: float, closeStream: bool,
                 on_data: Optional[Callable[[Any], object]], queue: HddQueue) -> None:
        self._data = data
        self._source = source
        self._want_text = want_text
        self._piece_bytes = _PIECE_BYTES if limit is None else min(limit, _PIECE_BYTES)
        self._poll_time = pollTime
        self._close_stream = closeStream
        self._on_data = on_data
        self._queue = queue

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        source = self._source
        try:
            pieces, ended = source.read_pieces(_OP_BYTES, self._piece_bytes)
            for piece in pieces:
                self._add(source.convert(piece, self._want_text))
            if ended:
                self._add(source.convert(None, self._want_text))  # what a decoder still held
        except BaseException:
            self._close()
            raise
        if ended:
            self._close()
            # result() joins the blocks when asked; on_success is handed them joined.
            return Step.done(self._data.data if self._data.on_success is not None else None)
        if sum(map(len, pieces)) >= _OP_BYTES:
            return Step.more()  # there may be more: another turn, after the others'
        if source.fileno is None:
            return Step.sleep(self._poll_time)  # nothing to poll: python-nonblock's pause
        return Step.wait_readable(source.fileno)

    def _add(self, block: Optional[Data]) -> None:
        if block:  # a piece may decode to nothing yet (a character cut in two)
            self._data.addBlock(block)
            if self._on_data is not None:
                self._queue.call_on_callback_thread(self._on_data, block)

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        self._close()
        return cause

    def _close(self) -> None:
        if self._close_stream:
            close = getattr(self._source.stream, "close", None)
            if close is not None:
                close()


def bgread(
    stream: Any,
    blockSizeLimit: Optional[int] = 65535,
    pollTime: float = 0.03,
    closeStream: bool = True,
    *,
    on_data: Optional[Callable[[Any], object]] = None,
    on_success: Optional[Callable[[Any], object]] = None,
    on_fail: Optional[Callable[[Any], object]] = None,
    on_end: Optional[Callable[[Any], object]] = None,
    queue: Optional[HddQueue] = None,
) -> BackgroundReadData:
    """Read *stream* in the background until it ends; return a :class:`BackgroundReadData` at once.

    Each block is what the stream had available, at most *blockSizeLimit*
    bytes (None: no cap).  *closeStream* closes the stream once it has ended
    or the read failed.  *pollTime* is accepted for python-nonblock's sake; it
    is used only for a stream with no descriptor to wait on (which never
    happens with files, pipes and sockets), because reads wait in ``poll()``.

    *on_data(block)*, *on_success(data)*, *on_fail(error)* and *on_end(task)*
    run on the queue's callback thread.  A pending bgread never holds up the
    interpreter's exit or a :func:`~nonblock.shutdown`: when the queue stops it
    fails with :class:`~nonblock.hddq.QueueShutdown` (and closes the stream if
    *closeStream*).  A forked child does not read on its parent's behalf.

    Raises TypeError or ValueError, naming the argument, for a stream that
    cannot be read, a *blockSizeLimit* below 1, or a negative *pollTime*.
    """
    source = stream_source(stream)
    limit = None if blockSizeLimit is None else _checks.truncated_count("blockSizeLimit", blockSizeLimit, 1)
    poll_time = _checks.real_number("pollTime", pollTime, minimum=0.0, maximum=float("inf"),
                                    minimum_allowed=True, what="a number of seconds >= 0")
    _checks.optional_callables(on_data=on_data, on_success=on_success, on_fail=on_fail, on_end=on_end)
    if queue is not None and not isinstance(queue, HddQueue):
        raise TypeError(f"queue must be an HddQueue or None, not {_checks.show(queue)}")
    want_text = wants_text(source, None)
    data = BackgroundReadData(str if want_text else bytes)
    data.on_success, data.on_fail, data.on_end = on_success, on_fail, on_end
    target = queue if queue is not None else default_queue()
    job = _ReadJob(data, source, want_text, limit, poll_time, bool(closeStream), on_data, target)
    target.submit_daemon_job(job, data)
    return data
