"""Named pipes as slow or stalled destinations for BackgroundHddFile's tests.

A FIFO is a path, so BackgroundHddFile opens it like any file, and the test
decides when (and how fast) the other end reads.  The write end is opened
non-blocking, so a full pipe makes the queue wait for writability instead of
parking an IO thread in write().
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, List, Optional


def nonblocking_opener(path: str, flags: int) -> int:
    """An opener= for open() that opens the descriptor non-blocking."""
    return os.open(path, flags | os.O_NONBLOCK, 0o644)


class FifoReader(threading.Thread):
    """The read end of a FIFO at *path*, reading *bite* bytes at a time.

    Opened at construction (before the writer, which needs a reader to exist);
    call :meth:`start` once the writer is open (a FIFO with no writer reads as
    EOF), then :meth:`finish` to collect what was read.
    A *paused* reader reads nothing until :meth:`finish`.  *on_bite* runs after
    every read, in the reader's thread (a check, say).
    """

    def __init__(self, path: Path, *, bite: int = 1 << 16, paused: bool = False,
                 on_bite: Optional[Any] = None) -> None:
        super().__init__(name="fifo-reader", daemon=True)
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(self.fd, True)
        self.bite = bite
        self.gate = threading.Event()
        if not paused:
            self.gate.set()
        self.on_bite = on_bite
        self.received: List[bytes] = []
        self.failure: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.gate.wait(120)
            while True:
                piece = os.read(self.fd, self.bite)
                if not piece:
                    break
                self.received.append(piece)
                if self.on_bite is not None:
                    self.on_bite()
        except BaseException as error:  # reported by finish()
            self.failure = error
        finally:
            os.close(self.fd)

    def finish(self, timeout: float = 120) -> bytes:
        """Let it read (if it was waiting), wait for EOF, return everything read."""
        self.gate.set()
        self.join(timeout)
        assert not self.is_alive(), "the FIFO never reached EOF"
        if self.failure is not None:
            raise self.failure
        return b"".join(self.received)
