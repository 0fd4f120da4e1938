"""The drainer lock: an flock'd file that says which process writes the shared file.

Every participant of a SharedFileWriter has a thread waiting in ``flock`` on it;
the kernel hands it to one of them when the holder dies or lets go, which is
the whole take-over mechanism.
"""

from __future__ import annotations

import fcntl
import os

from nonblock.syncq.segment import LOCK_DIR


def drainer_lock_path(name: str) -> str:
    return os.path.join(LOCK_DIR, name.lstrip("/") + ".nbsyncq-drainer")


class DrainerLock:
    """One process's claim on the drainer lock of *name*."""

    def __init__(self, name: str) -> None:
        self.path = drainer_lock_path(name)
        self.fd = -1

    def acquire(self) -> None:
        """Wait until this process holds the lock (retrying if the file was replaced)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            self.fd = fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    return
            except FileNotFoundError:
                pass
            self.fd = -1
            os.close(fd)

    def release(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def forget_in_child(self) -> None:
        """A forked child's copy shares the parent's claim: close it without unlocking."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
