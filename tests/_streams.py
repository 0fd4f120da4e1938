"""Real streams with awkward behaviour, for the write path's tests."""

from __future__ import annotations

import io
import os
import threading
from typing import Any, List, Optional, Tuple


class RealFile(io.RawIOBase):
    """A raw stream on a real file, created empty; subclasses decide how write() behaves."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.calls = 0

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class ShortWriteFile(RealFile):
    """A real file that takes at most *limit* bytes per write(), as a pipe or socket may."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(path)
        self.limit = limit

    def write(self, data: Any) -> int:
        self.calls += 1
        return os.write(self._fd, memoryview(data)[: self.limit])


class FlakyFile(RealFile):
    """A real file whose write() fails once, on call number *fail_on* (a transient EIO)."""

    def __init__(self, path: str, fail_on: int) -> None:
        super().__init__(path)
        self.fail_on = fail_on

    def write(self, data: Any) -> int:
        self.calls += 1
        if self.calls == self.fail_on:
            raise OSError(5, "Input/output error (transient)")
        return os.write(self._fd, data)


def nonblocking_pipe(buffering: int = 0) -> Tuple[int, Any]:
    """A pipe whose write end is non-blocking; returns (read fd, write stream)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    return read_fd, open(write_fd, "wb", buffering=buffering)


class SlowReader(threading.Thread):
    """Reads a pipe in small bites, pausing on an event between them, until EOF."""

    def __init__(self, read_fd: int, bite: int = 4096, start_gate: Optional[threading.Event] = None) -> None:
        super().__init__(daemon=True)
        self.read_fd = read_fd
        self.bite = bite
        self.start_gate = start_gate
        self.received: List[bytes] = []

    def run(self) -> None:
        if self.start_gate is not None:
            self.start_gate.wait(60)
        while True:
            piece = os.read(self.read_fd, self.bite)
            if not piece:
                break
            self.received.append(piece)
        os.close(self.read_fd)

    def data(self) -> bytes:
        return b"".join(self.received)


def held_pipe() -> Tuple[Any, SlowReader, threading.Event]:
    """A non-blocking pipe whose reader reads nothing until the returned gate is set.

    Returns (write stream, started reader, gate): writes past the pipe's buffer
    stay pending, deterministically, until the test opens the gate.
    """
    read_fd, pipe = nonblocking_pipe()
    gate = threading.Event()
    reader = SlowReader(read_fd, bite=1 << 16, start_gate=gate)
    reader.start()
    return pipe, reader, gate
