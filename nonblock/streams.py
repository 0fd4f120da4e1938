"""What a stream is like, as the write loops need to know it: blocking pipes and descriptors.

A pipe or socket in blocking mode is the one stream a background writer must
never simply call write() on: it waits for its reader, perhaps forever, holding
the disk.  :class:`BlockingPipe` tells how much it surely takes at once.
"""

from __future__ import annotations

import fcntl
import io
import os
import select
import stat
import struct
import termios
from typing import Any, Optional

__all__ = ["MAX_EMPTY_WRITES", "BlockingPipe", "blocking_pipe", "fileno_or_none", "writes_text"]

# A stream that accepts nothing this many times in a row, without saying EAGAIN,
# is broken; better an error than a spinning IO thread.
MAX_EMPTY_WRITES = 1000


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


def writes_text(stream: Any) -> bool:
    """Whether *stream* takes str (a text stream, or a file-like object whose mode has no b)."""
    return isinstance(stream, io.TextIOBase) or "b" not in str(getattr(stream, "mode", "b"))


def fileno_or_none(stream: Any) -> Optional[int]:
    """The descriptor to poll for *stream*'s writability, or None if it has none."""
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
