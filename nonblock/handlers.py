"""Logging handlers that never wait for the disk.

Change ``logging.FileHandler`` to :class:`BackgroundFileHandler` (and the
rotating handlers of ``logging.handlers`` to their ``Background`` twins) and a
``logger.info()`` call no longer writes, or waits for, the disk::

    import logging
    from nonblock.handlers import BackgroundRotatingFileHandler

    handler = BackgroundRotatingFileHandler("app.log", maxBytes=10_000_000, backupCount=5)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)

    logging.getLogger(__name__).info("started")    # formatted here, written on the HDD queue

How it works.  Each handler is the stdlib handler it names (same arguments,
same attributes, ``isinstance`` of it), whose stream is a
:class:`~nonblock.BackgroundHddFile`.  ``emit`` formats the record in the
caller, as the stdlib does, and hands the text to that file, which returns at
once; the queue's IO threads write it.  So:

* **Order.**  Records reach the file in the order they were emitted, each one
  whole.  A rollover is decided in the caller (from the bytes handed over, or
  the clock) and done on the queue *between* two records: the files are
  renamed and a fresh file is put under the stream's descriptor, after every
  earlier record is written and before any later one.  No record is lost,
  written twice, or split across files, and the caller does not wait.
* **Errors** (a full disk, a removed folder, text the encoding cannot take)
  go through :meth:`logging.Handler.handleError`, as the stdlib's do: reported
  on stderr, and the program carries on.  A write that fails in the background
  is reported by the next ``emit``, ``flush`` or ``close``; the handler then
  opens its file again, so later records are written if they can be.
* ``flush()`` waits until every record emitted so far is written; ``close()``
  until all are, and the file is closed.
* **Exit.**  Records still pending when the interpreter exits are written
  before it does, with no ``close()`` or ``logging.shutdown()`` call.
* **Fork.**  A forked child can log at once; the records its parent had
  pending are the parent's to write, and the child never writes them again.
"""

from __future__ import annotations

import codecs
import locale
import logging
import logging.handlers
import os
import stat
import sys
import time
from typing import Any, Callable, List, Optional, Tuple, cast

from nonblock import _checks
from nonblock.hddfile import DEFAULT_MAX_PENDING_BYTES, BackgroundHddFile
from nonblock.hddq import Task, default_queue, is_shutdown
from nonblock.syncq import SharedFileWriter

__all__ = [
    "BackgroundFileHandler",
    "BackgroundRotatingFileHandler",
    "BackgroundTimedRotatingFileHandler",
    "SharedFileHandler",
]

class BackgroundFileHandler(logging.FileHandler):
    """A :class:`logging.FileHandler` whose ``emit`` never waits for the disk.

    Takes FileHandler's arguments, plus, keyword-only:

    ``max_pending_bytes``
        How much memory the records not yet written may hold (their text and
        each string's overhead, about 60 bytes).  Past it, ``emit`` waits for
        the disk: a slow disk slows the logger down instead of eating memory.
    ``fsync``
        fsync the file before it is closed or rotated away, so that a closed
        handler's records are durable.
    """

    stream: Any  # a BackgroundHddFile, or None while closed or delayed

    def __init__(
        self,
        filename: Any,
        mode: str = "a",
        encoding: Optional[str] = None,
        delay: bool = False,
        errors: Optional[str] = None,
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        fsync: bool = False,
    ) -> None:
        self._set_background_options(max_pending_bytes, fsync)
        logging.FileHandler.__init__(self, filename, mode, encoding, delay, errors)

    # -- what the subclasses share ------------------------------------------------------

    def _set_background_options(self, max_pending_bytes: int, fsync: bool) -> None:
        """Check and keep the options; before the stdlib's __init__, which may open the file."""
        self.max_pending_bytes = _checks.positive_int("max_pending_bytes", max_pending_bytes)
        if not isinstance(fsync, bool):
            raise TypeError(f"fsync must be True or False, not {_checks.show(fsync)}")
        self.fsync = fsync
        self._written = 0  # bytes in the current file, as far as the caller has handed them over
        self._regular = True  # only a regular file is ever rotated (bpo-45401)
        # The rollovers queued and not yet seen done (they end in order: they share the file's writer).
        self._rotations: List[Task[Any]] = []
        self._rotation_pid = 0  # the process that queued them
        self._encode: Callable[[str], Any] = str  # set when the file is opened

    def _open(self) -> Any:  # a BackgroundHddFile, where the stdlib returns a TextIOWrapper
        """Open the base file as a binary :class:`~nonblock.BackgroundHddFile` (waiting for the open).

        Records are encoded here, in the caller, with the handler's encoding
        and errors (what the stdlib's text file would do on a POSIX system),
        so that the IO thread writes each batch as a few large appends that
        end between records (only a record over 64 KiB may be cut in two):
        records stay whole even when another process appends to the file.
        """
        mode, opener = _binary_mode(self.mode)
        if is_shutdown():
            return self._open_direct()
        stream = BackgroundHddFile(
            self.baseFilename, mode, opener=opener,
            max_pending_bytes=self.max_pending_bytes, fsync=self.fsync,
        )
        status = os.fstat(stream.fileno())
        self._regular = stat.S_ISREG(status.st_mode)
        self._written = status.st_size if self._regular else 0
        self._encode = _encoder(self.mode, self.encoding, self.errors, self._written == 0)
        return stream

    def _open_direct(self) -> _DirectFile:
        """The file, written in the caller: the queue has stopped (late in the exit), nobody else will."""
        stream = _DirectFile(self.baseFilename)
        self._written = os.fstat(stream.fileno()).st_size
        self._encode = _encoder(self.mode, self.encoding, self.errors, self._written == 0)
        return stream

    def _write_directly(self, record: logging.LogRecord) -> bool:
        """After a failed emit: if the queue has stopped under the stream, write *record* directly.

        Exit closes every BackgroundHddFile once its records are written; a
        record logged after that (by a later atexit hook) still gets written.
        """
        stream = self.stream
        if stream is None or not stream.closed or not is_shutdown():
            return False
        try:
            self.stream = self._open_direct()
            self.stream.write(self._encode(self.format(record) + self.terminator))
        except Exception:
            return False
        return True

    def _current_stream(self) -> Any:
        """The stream to write to, opened if need be (delay, or after close or a failure).

        As the stdlib does, a handler closed in mode 'w' stays closed.
        """
        stream = self.stream
        if stream is None:
            if self.mode == "w" and getattr(self, "_closed", False):  # Handler._closed: Python 3.10+
                return None
            stream = self.stream = self._open()
        return stream

    def _after_failure(self) -> None:
        """After a reported error: a stream a background write broke is replaced at the next emit."""
        stream = self.stream
        if stream is not None and stream.exception is not None:
            self.stream = None
            _close_quietly(stream)

    def _check_rotation(self) -> None:
        """Raise the first failure of the rollovers queued, once the last is done (the caller reports it)."""
        rotations = self._rotations
        if not rotations or not rotations[-1].done():
            return
        self._rotations = []
        if self._rotation_pid != os.getpid():
            return  # a forked child: the rollovers were its parent's, and fail here unrun
        failures = [failure for failure in map(_rotation_failure, rotations) if failure is not None]
        if failures:
            # As the stdlib leaves it: the next record opens the base file again.
            stream, self.stream = self.stream, None
            if stream is not None:
                _close_quietly(stream)
            raise failures[0]

    def _queued(self, rotation: Task[Any]) -> None:
        if self._rotation_pid != os.getpid():
            self._rotations = []  # a forked child: its parent's rollovers are not its own
        self._rotations.append(rotation)
        self._rotation_pid = os.getpid()

    # -- logging.Handler's methods ----------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Format *record* here and hand the text to the file; the disk is not waited for."""
        try:
            msg = self.format(record) + self.terminator
            stream = self.stream
            if stream is None:
                stream = self._current_stream()
                if stream is None:
                    return
            stream.write(self._encode(msg))
        except RecursionError:
            raise
        except Exception:
            if not self._write_directly(record):
                self.handleError(record)
                self._after_failure()

    def _emit_with_rollover(self, record: logging.LogRecord) -> None:
        """The rotating handlers' emit: format, see to queued rollovers, then :meth:`_write_record`."""
        try:
            msg = self.format(record) + self.terminator
            if self._rotations:
                self._check_rotation()
            stream = self._current_stream()
            if stream is None:
                return
            self._write_record(stream, msg)
        except RecursionError:
            raise
        except Exception:
            if not self._write_directly(record):
                self.handleError(record)
                self._after_failure()

    def _write_record(self, stream: Any, msg: str) -> None:
        """For the rotating handlers: queue a rollover if one is due, then hand *msg* over."""
        raise NotImplementedError

    def flush(self) -> None:
        """Wait until every record emitted so far is written (an error goes to handleError)."""
        with _held(self):
            stream = self.stream
        if stream is None or default_queue().owns_current_thread():
            return
        try:
            stream.wait()
            with _held(self):
                self._check_rotation()
        except Exception:
            self.handleError(_report_record(self, "flushing"))
            with _held(self):
                self._after_failure()

    def close(self) -> None:
        """Write every record, close the file, and wait until that is done."""
        with _held(self):
            try:
                stream, self.stream = self.stream, None
                if stream is not None:
                    try:
                        stream.close()
                        if not default_queue().owns_current_thread():
                            stream.wait()
                        self._check_rotation()
                    except Exception:
                        self.handleError(_report_record(self, "closing"))
                    self._rotations = []
            finally:
                logging.StreamHandler.close(self)

    def setStream(self, stream: Any) -> Any:
        raise NotImplementedError("a BackgroundFileHandler writes only to its own file")


class BackgroundRotatingFileHandler(BackgroundFileHandler, logging.handlers.RotatingFileHandler):
    """A :class:`logging.handlers.RotatingFileHandler` whose ``emit`` never waits for the disk.

    The same arguments and behaviour: once a record would take the file to
    ``maxBytes`` or more, ``app.log`` becomes ``app.log.1`` (``.1`` becomes
    ``.2``, and so on, up to ``backupCount``) and the record starts a fresh
    ``app.log``; ``namer`` and ``rotator`` are honoured (they run on the
    queue's IO thread).  The size is counted in the caller, from the bytes
    handed over, so deciding costs no system call.  Plus ``max_pending_bytes``
    and ``fsync`` (see :class:`BackgroundFileHandler`).

    One deliberate difference: a file that is still empty is never rotated
    (as CPython 3.13 does), so a single record longer than ``maxBytes`` does
    not push the backups out with empty files.
    """

    def __init__(
        self,
        filename: Any,
        mode: str = "a",
        maxBytes: int = 0,
        backupCount: int = 0,
        encoding: Optional[str] = None,
        delay: bool = False,
        errors: Optional[str] = None,
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        fsync: bool = False,
    ) -> None:
        self._set_background_options(max_pending_bytes, fsync)
        logging.handlers.RotatingFileHandler.__init__(
            self, filename, mode, maxBytes, backupCount, encoding, delay, errors)

    def emit(self, record: logging.LogRecord) -> None:
        """Format *record*, roll over first if it would fill the file, hand the text over."""
        self._emit_with_rollover(record)

    def _write_record(self, stream: Any, msg: str) -> None:
        data = self._encode(msg)
        written = self._written
        if (
            self.maxBytes > 0 and written > 0 and written + len(data) >= self.maxBytes
            and self.backupCount > 0 and self._regular
        ):
            self._queue_rollover(stream)
            data = self._encode(msg)  # a fresh file may start with a byte order mark
            written = 0
        stream.write(data)
        self._written = written + len(data)

    def shouldRollover(self, record: logging.LogRecord) -> int:
        """Whether *record* would fill the file (emit decides this itself, from its own count)."""
        if self.maxBytes <= 0 or not self._regular or self.stream is None or self._written == 0:
            return False
        return self._written + len(self._encode(self.format(record) + self.terminator)) >= self.maxBytes

    def doRollover(self) -> None:
        """Queue a rollover behind the records emitted so far, and return."""
        stream = self._current_stream()
        if stream is not None and self.backupCount > 0 and self._regular:
            self._queue_rollover(stream)

    def _queue_rollover(self, stream: BackgroundHddFile) -> None:
        self._queued(stream.call_after_writes(self._rotate_backups))
        self._written = 0
        self._encode = _encoder(self.mode, self.encoding, self.errors, True)

    def _rotate_backups(self, fd: int) -> Optional[BaseException]:
        """On the IO thread, between two records: shift the backups, start a fresh base file."""
        try:
            base = self.baseFilename
            for index in range(self.backupCount - 1, 0, -1):
                source = self.rotation_filename(f"{base}.{index}")
                target = self.rotation_filename(f"{base}.{index + 1}")
                if os.path.exists(source):
                    if os.path.exists(target):
                        os.remove(target)
                    os.rename(source, target)
            target = self.rotation_filename(base + ".1")
            if os.path.exists(target):
                os.remove(target)
            self.rotate(base, target)
            _put_fresh_file_under(fd, base, self.fsync)
        except Exception as error:
            return error
        return None


class BackgroundTimedRotatingFileHandler(BackgroundFileHandler, logging.handlers.TimedRotatingFileHandler):
    """A :class:`logging.handlers.TimedRotatingFileHandler` whose ``emit`` never waits for the disk.

    The same arguments (``when``, ``interval``, ``backupCount``, ``utc``,
    ``atTime``...), the same rollover times, names (``app.log.2024-05-01``)
    and deletion of the oldest backups; ``namer`` and ``rotator`` are honoured
    (they run on the queue's IO thread).  The clock is read in the caller; the
    renaming and deleting are done on the queue, between two records.  Plus
    ``max_pending_bytes`` and ``fsync`` (see :class:`BackgroundFileHandler`).
    """

    def __init__(
        self,
        filename: Any,
        when: str = "h",
        interval: int = 1,
        backupCount: int = 0,
        encoding: Optional[str] = None,
        delay: bool = False,
        utc: bool = False,
        atTime: Any = None,
        errors: Optional[str] = None,
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        fsync: bool = False,
    ) -> None:
        self._set_background_options(max_pending_bytes, fsync)
        logging.handlers.TimedRotatingFileHandler.__init__(
            self, filename, when, interval, backupCount, encoding, delay, utc, atTime, errors)

    def emit(self, record: logging.LogRecord) -> None:
        """Format *record*, roll over first if its time has come, hand the text over."""
        self._emit_with_rollover(record)

    def _write_record(self, stream: Any, msg: str) -> None:
        if int(time.time()) >= self.rolloverAt:
            self._queue_rollover(stream)
        stream.write(self._encode(msg))

    def shouldRollover(self, record: logging.LogRecord) -> int:
        """Whether the rollover time has come (what the file is, is checked when rotating)."""
        return int(time.time()) >= self.rolloverAt

    def doRollover(self) -> None:
        """Queue a rollover behind the records emitted so far, and return."""
        stream = self._current_stream()
        if stream is not None:
            self._queue_rollover(stream)

    def _queue_rollover(self, stream: BackgroundHddFile) -> None:
        """Name the file being closed and the next rollover time (the stdlib's rules), queue the rest."""
        now = int(time.time())
        dst_now = time.localtime(now)[-1]
        start = self.rolloverAt - self.interval
        if self.utc:
            time_tuple = time.gmtime(start)
        else:
            time_tuple = time.localtime(start)
            if dst_now != time_tuple[-1]:
                time_tuple = time.localtime(start + (3600 if dst_now else -3600))
        target = self.rotation_filename(self.baseFilename + "." + time.strftime(self.suffix, time_tuple))
        self._queued(stream.call_after_writes(lambda fd: self._rotate_dated(fd, target)))
        self._encode = _encoder(self.mode, self.encoding, self.errors, True)
        self.rolloverAt = self._rollover_after(now, dst_now)

    def _rollover_after(self, now: int, dst_now: int) -> int:
        """The first rollover time after *now* (as the running stdlib's doRollover computes it)."""
        at = self.computeRollover(now)
        if sys.version_info >= (3, 13):
            return at  # computeRollover itself steps past *now* and allows for DST there
        while at <= now:
            at += self.interval
        if (self.when == "MIDNIGHT" or self.when.startswith("W")) and not self.utc:
            dst_then = time.localtime(at)[-1]
            if dst_now != dst_then:
                at += -3600 if not dst_now else 3600
        return at

    def _rotate_dated(self, fd: int, target: str) -> Optional[BaseException]:
        """On the IO thread, between two records: rename to *target*, delete the oldest, start afresh."""
        try:
            base = self.baseFilename
            if os.path.exists(base) and not os.path.isfile(base):
                return None  # bpo-45401: never rotate anything but a regular file
            if os.path.exists(target):
                return None  # rolled over already (another process?): keep that file, go on in this one
            self.rotate(base, target)
            if self.backupCount > 0:
                for name in self.getFilesToDelete():
                    os.remove(name)
            _put_fresh_file_under(fd, base, self.fsync)
        except Exception as error:
            return error
        return None


# -- helpers ------------------------------------------------------------------------------


def _put_fresh_file_under(fd: int, path: str, fsync: bool) -> None:
    """Open *path* afresh (appending, creating) and make *fd* refer to it.

    The BackgroundHddFile keeps its file object and descriptor number, and
    every later write lands in the new file; the old file is closed by the
    swap.  (A rotator may have left *path* in place: then it is appended to.)
    """
    if fsync:
        os.fsync(fd)
    fresh = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        os.dup2(fresh, fd, inheritable=False)
    finally:
        os.close(fresh)


# Codecs whose encode() of a piece does not depend on what came before (no byte order mark).
_STATELESS_CODECS = frozenset({"utf-8", "ascii", "latin-1", "iso8859-1", "iso8859-15", "cp1252"})


def _encoder(mode: str, encoding: Optional[str], errors: Optional[str],
             fresh_file: bool) -> Callable[[str], Any]:
    """How to turn a formatted record into the bytes the file gets.

    Stateful codecs (utf-16, utf-8-sig) go through an incremental encoder, so
    a byte order mark starts a fresh file only, as a text file writes it.  In
    a binary mode (no encoding) the record is handed over as it is, and the
    file refuses a str as the stdlib's does.
    """
    if "b" in mode:
        return lambda msg: msg
    errors = errors or "strict"
    if encoding is None or encoding == "locale":  # open()'s default (io.text_encoding's name for it)
        encoding = locale.getpreferredencoding(False)
    codec = codecs.lookup(encoding)
    if codec.name == "utf-8" and errors == "strict":
        return str.encode  # str.encode's defaults, without a Python call around it
    if codec.name in _STATELESS_CODECS:
        name = codec.name

        def encode(msg: str) -> bytes:
            return msg.encode(name, errors)

        return encode
    incremental = codec.incrementalencoder(errors)
    if not fresh_file:
        incremental.setstate(0)  # appending to a file that has its mark already
    return incremental.encode


def _binary_mode(mode: str) -> Tuple[str, Any]:
    """The binary mode and opener that open the file as FileHandler's *mode* would, appends unsplit.

    Append becomes a write mode whose opener drops O_TRUNC and adds O_APPEND:
    the same file, but the BackgroundHddFile joins small writes into large
    ones (it writes an append-mode file piece by piece, to keep its tell()).
    """
    if "b" in mode:
        return mode, None
    plain = mode.replace("t", "")
    if plain.startswith("a"):
        return "w" + plain[1:] + "b", _append_opener
    return plain + "b", None


def _append_opener(path: str, flags: int) -> int:
    return os.open(path, (flags & ~os.O_TRUNC) | os.O_APPEND, 0o666)


class _DirectFile:
    """The handler's file once the queue has stopped: each record written at once, in the caller.

    It answers the few calls the handlers make on a BackgroundHddFile.
    """

    exception: Optional[BaseException] = None

    def __init__(self, path: str) -> None:
        self._file = open(path, "wb", buffering=0, opener=_append_opener)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def fileno(self) -> int:
        return self._file.fileno()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) or 0:]

    def wait(self, timeout: Optional[float] = None) -> bool:
        return True

    def close(self) -> None:
        self._file.close()

    def call_after_writes(self, function: Callable[[int], Any]) -> Task[Any]:
        task: Task[Any] = Task()
        task.set_result(function(self.fileno()))
        return task


def _rotation_failure(rotation: Task[Any]) -> Optional[BaseException]:
    """What a done rollover's task says went wrong: its returned failure, or its own error."""
    error = rotation.exception()
    return error if error is not None else cast(Optional[BaseException], rotation.result())


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception:
        pass  # the error was reported already, by the call that found it


class _held:
    """``with _held(handler):`` holds the handler's lock (as ``acquire``/``release``)."""

    __slots__ = ("_handler",)

    def __init__(self, handler: logging.Handler) -> None:
        self._handler = handler

    def __enter__(self) -> None:
        self._handler.acquire()

    def __exit__(self, *exc: object) -> None:
        self._handler.release()


class SharedFileHandler(logging.Handler):
    """Many processes logging into one file: records whole, in order, never waiting for the disk.

    Every process that logs makes a handler with the same *name* and
    *filename* (directly, from ``dictConfig``, or inherited by fork)::

        handler = SharedFileHandler("build-log", "/var/log/build.log")
        logging.getLogger().addHandler(handler)

    ``emit`` formats and encodes the record in the caller and appends it, as
    one record, to a :class:`~nonblock.syncq.SharedFileWriter`: a ring in
    shared memory that one of the processes (the drainer) writes into the file
    through the HDD queue.  Each record lands whole, never interleaved with
    another, in the order it was appended; if the drainer dies, even by
    SIGKILL, another process takes over and no record that ``emit`` handed
    over is lost.  ``emit`` waits only while the ring (*size* bytes) is full.

    The file is always appended to (*mode* must be ``"a"``: one process
    truncating it would cut the others' records).  Errors go through
    :meth:`logging.Handler.handleError`.  ``flush()`` waits until this
    process's records are in the file; ``close()`` too, then leaves the ring
    (the last process out drains it and removes it).
    """

    terminator = "\n"

    def __init__(
        self,
        name: str,
        filename: Any,
        mode: str = "a",
        encoding: Optional[str] = None,
        delay: bool = False,
        errors: Optional[str] = None,
        *,
        size: int = 8 << 20,
    ) -> None:
        if mode != "a":
            raise ValueError(f"mode must be 'a' (every process appends), not {_checks.show(mode)}")
        if not isinstance(filename, (str, bytes, os.PathLike)):
            raise TypeError(f"filename must be a path, not {_checks.show(filename)}")
        super().__init__()
        self.shared_name = name
        self.baseFilename = os.path.abspath(os.fsdecode(filename))
        self.mode = mode
        self.encoding = encoding
        self.errors = errors
        self.size = size
        self._encode = _encoder(mode, encoding, errors, fresh_file=False)
        self._writer: Optional[SharedFileWriter] = None
        if not delay:
            self._writer = self._open()

    def _open(self) -> SharedFileWriter:
        return SharedFileWriter(self.shared_name, self.baseFilename, size=self.size)

    def emit(self, record: logging.LogRecord) -> None:
        """Format and encode *record* here, and append it to the shared ring as one record."""
        try:
            data = self._encode(self.format(record) + self.terminator)
            writer = self._writer
            if writer is None:
                with self.lock:  # type: ignore[union-attr]
                    writer = self._writer
                    if writer is None:
                        writer = self._writer = self._open()
            writer.write(data)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Wait until every record this process emitted so far is in the file."""
        writer = self._writer
        if writer is None or writer.closed:
            return
        try:
            writer.flush()
        except Exception:
            self.handleError(_report_record(self, "flushing"))

    def close(self) -> None:
        """Wait until this process's records are in the file, then leave the shared ring."""
        with self.lock:  # type: ignore[union-attr]
            writer, self._writer = self._writer, None
            try:
                if writer is not None and not writer.closed:
                    try:
                        writer.flush()
                    finally:
                        writer.close()
            except Exception:
                self.handleError(_report_record(self, "closing"))
            finally:
                super().close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.shared_name!r} -> {self.baseFilename} ({self.level})>"


def _report_record(handler: Any, doing: str) -> logging.LogRecord:
    """The record handleError shows for an error found while flushing or closing.

    The record whose write failed is not known (records are written in
    batches); this one names the file and what the handler was doing.
    """
    return logging.makeLogRecord({
        "name": "nonblock.handlers", "levelno": logging.ERROR, "levelname": "ERROR",
        "msg": "records written to %r in the background were lost (found while %s)",
        "args": (handler.baseFilename, doing),
    })
