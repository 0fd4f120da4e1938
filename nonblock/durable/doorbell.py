"""Waking a blocked ``get`` in another process, without polling.

A thread about to block binds a unix datagram socket in the store's
``waiters/`` folder and sleeps in ``poll()`` on it.  A process that commits
new items (or frees room) *rings*: it sends one byte to every socket there.
The waiter registers before it looks at the queue one last time, so a commit
that lands after that look always finds its socket: no wake-up is lost, and a
put in one process wakes a get in another in about the time of a syscall.

A socket left by a killed process refuses the byte; the ringer removes it.
A socket address holds about 100 bytes: for a longer folder path, sockets are
named through ``/proc/self/fd/<folder's descriptor>/``; without /proc the
waiter falls back to short sleeps (``FALLBACK_SLICE``), still within 50 ms.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import uuid
from typing import Iterator, Optional, Set

__all__ = ["Doorbell", "Ear"]

FALLBACK_SLICE = 0.02
_MAX_SOCKET_PATH = 100


class Ear:
    """One waiting thread's socket (or, for a long path, its fallback sleep)."""

    def __init__(self, sock: Optional[socket.socket]) -> None:
        self.sock = sock
        self._sleep = threading.Event()

    def wait(self, timeout: float) -> None:
        """Sleep until rung or *timeout* seconds pass; then forget any rings queued meanwhile."""
        if self.sock is None:
            self._sleep.wait(min(timeout, FALLBACK_SLICE))
            return
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        if poller.poll(max(0, int(timeout * 1000) + 1)):
            with contextlib.suppress(BlockingIOError):
                while self.sock.recv(64):
                    pass


class Doorbell:
    """The waiters of one store folder: ``listening()`` to wait, ``ring()`` to wake them all."""

    def __init__(self, folder: str) -> None:
        self.folder = os.path.join(folder, "waiters")
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        self._dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._prefix = self.folder
        if len(self.folder) + 30 >= _MAX_SOCKET_PATH:
            self._prefix = f"/proc/self/fd/{self._dir_fd}"
        self._usable = len(self._prefix) + 30 < _MAX_SOCKET_PATH and os.path.isdir(self._prefix)
        self._local: Set[str] = set()  # this process's waiting sockets
        self._lock = threading.Lock()
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    @property
    def local_waiters(self) -> bool:
        return bool(self._local)

    @contextlib.contextmanager
    def listening(self) -> Iterator[Ear]:
        """A registered :class:`Ear` for the duration of the block."""
        if not self._usable:
            yield Ear(None)
            return
        path = os.path.join(self._prefix, f"{os.getpid()}-{uuid.uuid4().hex[:16]}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind(path)
            with self._lock:
                self._local.add(path)
            yield Ear(sock)
        finally:
            with self._lock:
                self._local.discard(path)
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def ring(self) -> None:
        """Wake every waiter of the folder, in any process."""
        if not self._usable:
            return
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return
        for name in names:
            self._send(os.path.join(self._prefix, name))

    def ring_local(self) -> None:
        """Wake this process's waiters (for items only this process can see yet)."""
        with self._lock:
            paths = list(self._local)
        for path in paths:
            self._send(path)

    def _send(self, path: str) -> None:
        try:
            with self._lock:
                self._sender.sendto(b"!", path)
        except (BlockingIOError, FileNotFoundError):
            pass  # a full socket will wake anyway; a vanished one has stopped waiting
        except (ConnectionRefusedError, OSError):
            with contextlib.suppress(OSError):
                os.unlink(path)  # left by a killed process: nobody will ever read it

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's waiters are not ours, nor its locks."""
        self._local = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._sender.close()
        os.close(self._dir_fd)
