"""Reading what a stream has now, without waiting: python-nonblock's ``nonblock_read``.

``nonblock_read(stream)`` returns whatever the stream can give this instant:
data, an empty string or bytes when it has nothing yet, or None once it has
ended and everything was returned.  It works on pipes, sockets, ptys, regular
files and file objects of either kind, and reads everything available in a few
system calls, where python-nonblock made one ``select`` and one ``read(1)`` per
byte.

A stream is read through a *source* made for it on first use and kept as long
as the stream lives (a weak map): the decoder of a text stream must survive
between calls, or a character split across two writes would be broken.
"""

from __future__ import annotations

import codecs
import errno
import fcntl
import io
import os
import select
import socket
import sys
import weakref
from typing import Any, Callable, List, Optional, Tuple, Union

from nonblock import _checks

__all__ = ["nonblock_read", "stream_source", "Source"]

# One read asks for at most this much: a pipe's whole default capacity.
_READ_SIZE = 65536
# Any of these from poll() means a read will not wait: data, the end, or an error to meet.
_READ_WONT_WAIT = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL


class Source:
    """How to read one stream without blocking.

    ``read_bytes(size)`` returns up to *size* bytes that are available now, b''
    when none are but the stream may still give some, or None at its end.
    ``fileno`` is the descriptor to wait on for more (None: nothing to poll).
    ``text`` tells whether the stream itself gives str.
    """

    fileno: Optional[int] = None
    text = False
    encoding = "utf-8"
    errors = "strict"

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        # Text decoded from this source's bytes, kept between calls; made on first need.
        self._decoder: Optional[codecs.IncrementalDecoder] = None
        self._deferred_error: Optional[Exception] = None
        # Bytes a failed decode gave back: returned first by the next read.
        self._pushed_back = b""

    def read_bytes(self, size: int) -> Optional[bytes]:
        raise NotImplementedError

    def is_closed(self) -> bool:
        return getattr(self.stream, "closed", False) is True

    def read_pieces(self, budget: int, piece_size: int) -> Tuple[List[bytes], bool]:
        """What is available now, as pieces of at most *piece_size* bytes, *budget* in all.

        Also says whether the end was met (after the pieces returned).
        """
        error = self._deferred_error
        if error is not None:
            self._deferred_error = None
            raise error
        pieces: List[bytes] = []
        total = 0
        if self._pushed_back:
            first, self._pushed_back = self._pushed_back[:budget], self._pushed_back[budget:]
            pieces.append(first)
            total = len(first)
        while total < budget:
            try:
                piece = self.read_bytes(min(piece_size, budget - total))
            except Exception as failure:
                if not pieces:
                    raise
                self._deferred_error = failure  # what was read comes first; the error next time
                break
            if piece is None:
                return pieces, True
            if not piece:
                break
            pieces.append(piece)
            total += len(piece)
        return pieces, False

    def read_available(self, limit: Optional[int]) -> Optional[bytes]:
        """Everything available now, up to *limit* bytes (None: no cap); None at the end.

        Data read just before the end is returned; the end comes with the next call.
        """
        pieces, ended = self.read_pieces(sys.maxsize if limit is None else limit, _READ_SIZE)
        if not pieces:
            return None if ended else b""
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def read_as(self, want_text: bool, limit: Optional[int]) -> Union[bytes, str, None]:
        """What :func:`nonblock_read` returns: bytes or str, decoded across calls."""
        return self.convert(self.read_available(limit), want_text)

    def convert(self, data: Optional[bytes], want_text: bool) -> Union[bytes, str, None]:
        """*data* read from this source (None: its end) as bytes or str, decoded across calls."""
        if not want_text and not self.text:
            pending = self._take_undecoded()
            if pending:
                return pending + data if data is not None else pending
            return data
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = self._make_decoder()
        try:
            if data is None:
                text = decoder.decode(b"", True)  # the end: a cut character is an error, not lost
                if not text:
                    return None
            else:
                text = decoder.decode(data)
        except UnicodeDecodeError:
            # Not lost: the bytes are returned first by the next call (as bytes with forceMode='b').
            self._pushed_back = decoder.getstate()[0] + (data or b"") + self._pushed_back
            decoder.reset()
            raise
        return text if want_text else text.encode(self.encoding, self.errors)

    def _make_decoder(self) -> codecs.IncrementalDecoder:
        if self.text:
            # A text stream's own newline handling cannot be asked for; open()'s
            # default (universal newlines) is assumed.
            inner = codecs.getincrementaldecoder(self.encoding)(self.errors)
            return io.IncrementalNewlineDecoder(inner, translate=True)  # type: ignore[return-value]
        return codecs.getincrementaldecoder("utf-8")("strict")

    def _take_undecoded(self) -> bytes:
        # Bytes the UTF-8 decoder of an earlier forceMode='t' call still holds.
        decoder = self._decoder
        if decoder is None:
            return b""
        pending = decoder.getstate()[0]
        decoder.reset()
        return pending


class _SocketSource(Source):
    def __init__(self, stream: socket.socket) -> None:
        super().__init__(stream)
        self.fileno = stream.fileno()

    def is_closed(self) -> bool:
        return bool(self.stream.fileno() == -1)

    def read_bytes(self, size: int) -> Optional[bytes]:
        try:
            data: bytes = self.stream.recv(size, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return b""
        return data or None


class _DescriptorSource(Source):
    """A raw stream (FileIO, or anything with a descriptor and no buffer of its own)."""

    def __init__(self, stream: Any, fileno: int) -> None:
        super().__init__(stream)
        self.fileno = self._fd = fileno
        self._poller = select.poll()
        self._poller.register(fileno, select.POLLIN | select.POLLPRI)

    def _readable(self) -> bool:
        return any(mask & _READ_WONT_WAIT for _fd, mask in self._poller.poll(0))

    def read_bytes(self, size: int) -> Optional[bytes]:
        if not self._readable():
            return b""
        try:
            data = os.read(self._fd, size)  # poll said it will not wait
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as error:
            if error.errno == errno.EIO and _is_terminal(self._fd):
                return None  # a pty whose other side closed: its end, not an error
            raise
        return data or None


class _BufferedSource(_DescriptorSource):
    """A BufferedReader (or another object with read1): its buffer is read before the descriptor."""

    def read_bytes(self, size: int) -> Optional[bytes]:
        stream = self.stream
        if self._readable():
            try:
                data: bytes = stream.read1(size)  # what is buffered, or one read that will not wait
            except OSError as error:
                if error.errno == errno.EIO and _is_terminal(self._fd):
                    return None
                raise
            return data or None
        # Nothing on the descriptor, but bytes may sit in the object's buffer (after
        # a readline, say).  read1 would wait for the descriptor if the buffer is
        # empty, so it is asked with the descriptor non-blocking for the moment.
        if not os.get_blocking(self._fd):
            return stream.read1(size) or b""
        os.set_blocking(self._fd, False)
        try:
            return stream.read1(size) or b""
        finally:
            os.set_blocking(self._fd, True)


class _PlainSource(Source):
    """An object with read() and no descriptor (BytesIO, StringIO): it never waits."""

    def read_bytes(self, size: int) -> Optional[bytes]:
        data = self.stream.read(size)
        if isinstance(data, str):
            data = data.encode(self.encoding, self.errors)
        return data or None


class _TextSource(Source):
    """A text stream: the bytes of its binary layer, decoded here with its encoding."""

    text = True

    def __init__(self, stream: Any, binary: Source) -> None:
        super().__init__(stream)
        self._binary = binary
        self.fileno = binary.fileno
        self.encoding = getattr(stream, "encoding", None) or "utf-8"
        self.errors = getattr(stream, "errors", None) or "strict"

    def read_bytes(self, size: int) -> Optional[bytes]:
        return self._binary.read_bytes(size)


_sources: weakref.WeakKeyDictionary[Any, Source] = weakref.WeakKeyDictionary()


def stream_source(stream: Any, name: str = "stream") -> Source:
    """The :class:`Source` for *stream*, made on first use; a clear error if it cannot be read.

    Raises TypeError for something that is not a stream (None, an int...), and
    ValueError for a stream that is closed or not open for reading.
    """
    try:
        source = _sources.get(stream)
    except TypeError:  # neither hashable nor weakly referable: made anew each time
        source = None
    if source is None:
        source = _make_source(stream, name)
        try:
            _sources[stream] = source
        except TypeError:
            pass
    if source.is_closed():
        raise ValueError(f"{name} is closed: {_checks.show(stream)}")
    return source


def _make_source(stream: Any, name: str) -> Source:
    if isinstance(stream, socket.socket):
        if stream.fileno() == -1:
            raise ValueError(f"{name} is closed: {_checks.show(stream)}")
        return _SocketSource(stream)
    if not callable(getattr(stream, "read", None)) or isinstance(stream, (str, bytes)):
        raise TypeError(
            f"{name} must be a readable stream (a file object or a socket), not {_checks.show(stream)}"
        )
    if getattr(stream, "closed", False) is True:
        raise ValueError(f"{name} is closed: {_checks.show(stream)}")
    readable: Optional[Callable[[], bool]] = getattr(stream, "readable", None)
    if callable(readable) and not readable():
        raise ValueError(f"{name} is not open for reading: {_checks.show(stream)}")
    if isinstance(stream, io.TextIOBase):
        binary = getattr(stream, "buffer", None)
        if binary is None:
            return _PlainSource(stream)  # StringIO: read directly, encoded if bytes are asked for
        return _TextSource(stream, _make_source(binary, name))
    fileno = _descriptor_of(stream)
    if fileno is None:
        return _PlainSource(stream)
    if fcntl.fcntl(fileno, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
        raise ValueError(f"{name} is not open for reading (a write-only descriptor): {_checks.show(stream)}")
    if callable(getattr(stream, "read1", None)):
        return _BufferedSource(stream, fileno)
    return _DescriptorSource(stream, fileno)


def _descriptor_of(stream: Any) -> Optional[int]:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError, TypeError):  # io.UnsupportedOperation is two of these
        return None


def _is_terminal(fileno: int) -> bool:
    try:
        return os.isatty(fileno)
    except OSError:
        return False


def wants_text(source: Source, forceMode: Any) -> bool:
    """Whether str is returned: *forceMode* ('b' or 't' in it), else the stream's own kind."""
    if forceMode is None:
        return source.text or _mode_says_text(source.stream)
    if isinstance(forceMode, str):
        if "b" in forceMode:
            return False
        if "t" in forceMode:
            return True
    raise ValueError(f"forceMode must be None or a str containing 'b' or 't', not {_checks.show(forceMode)}")


def _mode_says_text(stream: Any) -> bool:
    if isinstance(stream, io.TextIOBase):
        return True
    mode = getattr(stream, "mode", None)
    return isinstance(mode, str) and "t" in mode and "b" not in mode


def checked_limit(limit: Any, name: str = "limit") -> Optional[int]:
    """*limit* as an int cap, or None for no cap (None or 0, as in python-nonblock)."""
    if limit is None:
        return None
    count = _checks.truncated_count(name, limit, 0)
    return count or None


def nonblock_read(stream: Any, limit: Optional[int] = None, forceMode: Optional[str] = None) -> Any:
    """Return what *stream* has available now, without waiting.

    * data (bytes, or str for a text stream) when there is some;
    * ``b''`` or ``''`` when there is none yet but the stream is still open;
    * None once the stream has ended and everything before the end was
      returned (data that arrives just before the end is returned first; the
      next call returns None).  A pty whose other side closed has ended too.

    *limit* caps how much one call returns (bytes; None or 0: no cap).
    *forceMode* picks the type: a str containing ``'b'`` gives bytes, one
    containing ``'t'`` gives str; None follows the stream.  str from a binary
    stream is decoded as UTF-8, and bytes from a text stream are encoded with
    its encoding; either way a character split between two calls is kept whole.

    Works on pipes, sockets, ptys, regular files, and binary and text file
    objects; bytes already sitting in a binary file object's buffer (after a
    ``readline``, say) are returned first.  A text stream is read through its
    binary buffer and decoded here with its encoding and universal newlines, as
    ``open()`` does by default; characters the text wrapper itself already
    decoded for an earlier ``readline`` are not seen (it offers no way to take
    them without waiting), so do not mix the two on one text stream.

    Raises TypeError or ValueError, naming the argument, for something that
    cannot be read (None, an int, a closed or write-only stream), a negative
    *limit*, or a *forceMode* with neither 'b' nor 't'.
    """
    source = stream_source(stream)
    cap = checked_limit(limit)
    return source.read_as(wants_text(source, forceMode), cap)
