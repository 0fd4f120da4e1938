"""SharedFileWriter: many processes append records to one file, whole and in order.

Records travel through a work-mode ring in shared memory.  Exactly one process,
the one holding the drainer lock, takes them out and writes them through a
:class:`~nonblock.BackgroundHddFile`.  It moves the ring's cursor only after the
batch is in the file, and notes the batch (ring positions, file offsets) in the
segment first: a drainer that takes over from a dead one finishes or cuts that
batch, so a record is never lost and never written twice.

Threads: one per participant (the drainer candidate: it waits for the drainer
lock, then drains).  Locks: the ring's lock, the drainer lock (flock).
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from typing import Any, Optional

import nonblock.syncq.codec as codec
import nonblock.syncq.errors as errors
from nonblock._checks import show
from nonblock.engine import Engine, prepare_before_stop
from nonblock.hddfile import BackgroundHddFile
from nonblock.syncq.drainerlock import DrainerLock
from nonblock.syncq.ring import Ring

_BATCH_RECORDS = 2048
_BATCH_BYTES = 256 << 10
_RETRY_AFTER_ERROR = 0.5
_PENDING, _NOTHING_PENDING = 1, 0


class SharedFileWriter:
    """Append records to *path* from any number of processes that name the same *name*.

    ::

        log = SharedFileWriter("build-log", "/var/log/build.log")   # in every process
        log.write(b"one record\\n")            # returns once the record is in shared memory
        log.write("text is encoded\\n")
        log.flush()                           # everything this process wrote is in the file
        log.close()

    Each ``write`` is one record: it lands whole in the file, never interleaved
    with another, after every record appended before it.  The first process
    creates the shared ring (``size`` bytes) and the others join it.  One of
    them, the drainer, writes the file; if it dies (even by SIGKILL) another
    takes over and no record that ``write`` returned for is lost.  ``write``
    waits only when the ring is full.

    A failed file write (a full disk) is retried by the drainer; ``flush``
    raises it, as an OSError, in every process meanwhile.
    """

    def __init__(self, name: str, path: Any, *, size: int = 8 << 20, encoding: str = "utf-8") -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {show(name)}")
        errors.name(name)
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, not {show(path)}")
        self._path = os.path.abspath(os.fsdecode(path))
        capacity = (errors.byte_count("size", size, 64) + 7) & ~7
        "".encode(encoding)  # an unknown encoding fails here, with its name
        self._encoding = encoding
        self._ring = _join_or_create(name, capacity)
        try:
            self._ring.join(reader=True)
        except BaseException:
            self._ring.close()
            raise
        self._max_payload = self._ring.capacity - 8
        self._drain = _Drain(self._ring, self._path)
        self._ring.before_close = self._drain.finish
        self._ring.extra_files.append(self._drain.lock.path)
        self._finalizer = weakref.finalize(self, self._ring.close)
        self._drain.start()

    @property
    def name(self) -> str:
        return self._ring.name

    @property
    def path(self) -> str:
        return self._path

    @property
    def closed(self) -> bool:
        return self._ring.closed

    @property
    def is_drainer(self) -> bool:
        """Whether this process is the one writing the file now."""
        return self._drain.draining

    def write(self, data: Any) -> int:
        """Append *data* (bytes or str) as one record; return its length (in bytes or characters)."""
        if type(data) is bytes:
            payload = data
        elif isinstance(data, str):
            payload = str(data).encode(self._encoding)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
        else:
            raise TypeError(f"write() takes bytes or str, not {type(data).__name__}: {show(data)}")
        if self._ring.closed:
            raise ValueError(f"write to a closed SharedFileWriter ({self._path!r})")
        if not payload:
            return 0
        if len(payload) > self._max_payload:
            raise errors.MessageTooLarge(
                f"a record of {len(payload)} bytes can never fit in the ring of {self._ring.capacity} bytes "
                f"of SharedFileWriter {self.name!r} (size=)")
        if not self._drain.started:
            self._drain.start()
        self._ring.append_one(codec.BYTES, payload, None)
        return len(data)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until every record this process wrote is in the file (TimeoutError after *timeout* s).

        Raises OSError while the drainer fails to write the file.
        """
        seconds = errors.timeout("timeout", timeout)
        if self._ring.closed:
            return
        self._drain.start()
        target = self._ring.last_appended_seq
        step = None if seconds is None else seconds
        while not self._ring.wait_consumed(target, _RETRY_AFTER_ERROR if step is None else min(step, 0.5)):
            self._drain.raise_failure()
            if step is not None:
                step -= 0.5
                if step <= 0:
                    raise TimeoutError(f"records of SharedFileWriter {self.name!r} were not all in "
                                       f"{self._path!r} after {seconds} s")

    def close(self) -> None:
        """Flush, hand the drainer's role over (or, the last one, drain everything), and leave."""
        self._finalizer()

    def __enter__(self) -> SharedFileWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SharedFileWriter {self.name!r} -> {self._path!r}{' closed' if self.closed else ''}>"


def _join_or_create(name: str, capacity: int) -> Ring:
    while True:
        try:
            return Ring(name, False, capacity, mode="work", on_full="block", slots=64)
        except FileNotFoundError:
            pass
        try:
            return Ring(name, True, capacity, mode="work", on_full="block", slots=64)
        except FileExistsError:
            continue  # another process created it between the two tries


class _Drain:
    """This process's drainer candidate: waits for the drainer lock, then drains."""

    def __init__(self, ring: Ring, path: str) -> None:
        self.ring = ring
        self.path = path
        self.lock = DrainerLock(ring.name)
        self.thread: Optional[threading.Thread] = None
        self.pid = 0
        self.draining = False
        self.started = False  # in this process (a forked child starts its own)
        self.stop_at: Optional[int] = None  # closing: drain up to this message, then hand over
        self.leaving = False
        self.failure: Optional[OSError] = None
        self.state_lock = threading.Lock()
        _drains.add(self)

    def start(self) -> None:
        if self.pid != os.getpid() and not self.leaving:
            self.started = True
            self.pid = os.getpid()
            self.thread = threading.Thread(target=self._run, name=f"nonblock-syncq-drainer-{self.ring.name}",
                                           daemon=True)
            self.thread.start()

    def _run(self) -> None:
        self.lock.acquire()
        with self.state_lock:
            if self.leaving:
                self.lock.release()
                return
            self.draining = True
        try:
            self._drain()
        finally:
            self.draining = False
            self.lock.release()

    def _drain(self) -> None:
        while not self._done():
            file = self._open()
            try:
                self._write_batches(file)
                file.close()
                file.wait()
                self.failure = None
            except Exception as error:  # noqa: BLE001 - a disk error, or the queue stopped at exit
                failure = error if isinstance(error, OSError) else OSError(errno.EIO, str(error))
                self.failure = failure
                self._note_failure(failure)
                try:
                    file.close()
                except Exception:  # noqa: BLE001 - it failed already; the ring keeps the batch
                    pass
                if self.stop_at is not None:
                    return  # leaving: the batch stays in the ring for the next drainer
                threading.Event().wait(_RETRY_AFTER_ERROR)

    def _done(self) -> bool:
        return self.stop_at is not None and self.ring.cursor()[1] >= self.stop_at

    def _open(self) -> Any:
        self._finish_pending_batch()
        return BackgroundHddFile(self.path, "ab")

    def _write_batches(self, file: Any) -> None:
        ring = self.ring
        offset = os.path.getsize(self.path)
        while not self._done():
            records = ring.read(_BATCH_RECORDS, 0.05 if self.stop_at is not None else 1.0,
                                commit=False, max_bytes=_BATCH_BYTES)
            if not records:
                continue
            before, pos, seq = ring.last_read
            data = b"".join([payload for _kind, payload in records])
            ring.set_aux(_PENDING, before, pos, seq, offset, offset + len(data), 0, 0)
            file.write(data)
            file.wait()
            ring.commit(pos, seq, before)
            ring.set_aux(_NOTHING_PENDING, 0, 0, 0, 0, 0, 0, 0)
            offset += len(data)

    def _finish_pending_batch(self) -> None:
        """After a drainer died mid-batch: count the batch as written, or cut it to rewrite it."""
        state, before, pos, seq, off_before, off_after = self.ring.aux()[:6]
        if state != _PENDING:
            return
        if self.ring.cursor()[1] == before:
            try:
                size = os.path.getsize(self.path)
            except FileNotFoundError:
                size = 0
            if size >= off_after:
                self.ring.commit(pos, seq, before)
            elif size > off_before:
                os.truncate(self.path, off_before)
        self.ring.set_aux(_NOTHING_PENDING, 0, 0, 0, 0, 0, 0, 0)

    def _note_failure(self, error: OSError) -> None:
        aux = list(self.ring.aux())
        aux[6] = error.errno or errno.EIO
        self.ring.set_aux(*aux)

    def raise_failure(self) -> None:
        """Raise the drainer's write failure, if the last batch failed (in any process)."""
        code = self.ring.aux()[6]
        if code:
            raise OSError(code, f"the drainer could not write {self.path!r}: {os.strerror(code)}")

    def finish(self) -> None:
        """Before the ring closes: flush; the drainer drains what is there, then lets go."""
        ring = self.ring
        if self.pid == os.getpid():
            # Wait for this process's records, unless the file cannot be written now.
            while not ring.wait_consumed(ring.last_appended_seq, 0.5):
                if ring.aux()[6]:
                    break
        with self.state_lock:
            self.leaving = True
            draining = self.draining and self.pid == os.getpid()
        if draining and self.thread is not None:
            self.stop_at = ring.tail()[1]
            ring.interrupt()
            self.thread.join()

    def after_fork_in_child(self) -> None:
        self.lock.forget_in_child()
        self.started = False
        self.draining = False
        self.thread = None
        self.state_lock = threading.Lock()


_drains: weakref.WeakSet[_Drain] = weakref.WeakSet()


def _finish_before_the_queues_stop(final: bool, queue: Optional[Engine]) -> None:
    """At interpreter exit, finish every SharedFileWriter while the HDD queue still writes.

    The queue's own exit hook may run before the atexit hook that closes rings:
    a drainer must not find its queue stopped with records still in the ring.
    """
    if final and queue is None:
        for drain in list(_drains):
            if not drain.ring.closed:
                drain.ring.close()


prepare_before_stop(_finish_before_the_queues_stop)


def _after_fork_in_child() -> None:
    for drain in list(_drains):
        drain.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
