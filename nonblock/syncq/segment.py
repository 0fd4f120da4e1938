"""One process's attachment to a named shared-memory segment, and the lock that guards it.

The lock is ``fcntl.flock`` on a lock file beside the segment (in /dev/shm when
there is one): the kernel lets go of it when its holder dies, so a process
killed inside the lock never makes the others hang.  flock belongs to an open
file description, which threads of one process (and a forked child) would
share, so each attachment also has a thread lock, and a forked child opens the
lock file afresh.

``multiprocessing.shared_memory`` registers every segment it opens with the
resource tracker, which warns about it, and unlinks it, when *any* process that
opened it exits.  The segment belongs to all its participants, so the
attachment takes it back from the tracker (``track=False`` on Python 3.13+).
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import sys
import threading
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Callable, Iterable, Optional

LOCK_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else os.environ.get("TMPDIR", "/tmp")
_TRACK_ARG = sys.version_info >= (3, 13)


def new_name() -> str:
    return "nbq_" + secrets.token_hex(8)


def lock_path(name: str) -> str:
    return os.path.join(LOCK_DIR, name.lstrip("/") + ".nbsyncq-lock")


def _open_shm(name: str, create: bool, size: int) -> SharedMemory:
    if _TRACK_ARG:
        shm = SharedMemory(name, create, size, track=False)  # type: ignore[call-arg]
    else:
        shm = SharedMemory(name, create, size)
        resource_tracker.unregister("/" + shm.name.lstrip("/"), "shared_memory")
    return shm


def _unlink_shm(shm: SharedMemory) -> None:
    if not _TRACK_ARG:
        # unlink() unregisters: register first so the tracker's books balance.
        resource_tracker.register("/" + shm.name.lstrip("/"), "shared_memory")
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


class Segment:
    """A mapped segment, its lock file, and the two locks (thread, then flock).

    ``initialize(buf)`` is called under the lock on a new segment; ``verify(buf)``
    on an existing one returns whether it is in use by live participants (and
    raises if it is not a segment of the right kind).  With *create* and an
    existing name whose participants are all dead, the segment is taken over
    and initialized afresh.
    """

    def __init__(self, name: Optional[str], create: bool, size: int,
                 initialize: Callable[[Any], None], verify: Callable[[Any, str], bool]) -> None:
        self.name = new_name() if name is None else name
        self.path = lock_path(self.name)
        self.thread_lock = threading.Lock()
        self.fd = -1
        created_lock_file = self._open_locked()
        try:
            self.shm = self._map(create, size, initialize, verify)
        except BaseException:
            if created_lock_file and not create:
                _remove(self.path)  # a failed join leaves no stray lock file
            self._unlock()
            os.close(self.fd)
            raise
        self._unlock()
        self.buf: Any = self.shm.buf

    # -- the lock --------------------------------------------------------------------

    def _open_locked(self) -> bool:
        """Open the lock file and lock it; retry if it was replaced meanwhile."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                created = True
            except FileExistsError:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                created = False
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                self.thread_lock.acquire()
                return created
            os.close(fd)  # the last participant removed it while we waited: use the new one

    def __enter__(self) -> None:
        self.thread_lock.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.thread_lock.release()
            raise

    def __exit__(self, *exc: Any) -> None:
        self._unlock()

    def _unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.thread_lock.release()

    # -- the segment -----------------------------------------------------------------

    def _map(self, create: bool, size: int, initialize: Callable[[Any], None],
             verify: Callable[[Any, str], bool]) -> SharedMemory:
        if create:
            try:
                shm = _open_shm(self.name, True, size)
            except FileExistsError:
                shm = _open_shm(self.name, False, 0)
                try:
                    if verify(shm.buf, self.name):
                        raise FileExistsError(errno.EEXIST, f"a syncq named {self.name!r} exists and "
                                              "has live participants (use create=False to join it)")
                    if shm.size != size:
                        raise FileExistsError(errno.EEXIST, f"a syncq named {self.name!r} exists, "
                                              f"of {shm.size} bytes, not {size}")
                except BaseException:
                    shm.close()
                    raise
                # Every participant died without closing: take the name over.
            initialize(shm.buf)
            return shm
        try:
            shm = _open_shm(self.name, False, 0)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, f"no syncq named {self.name!r} "
                                    "(create=False joins an existing one)") from None
        try:
            verify(shm.buf, self.name)
        except BaseException:
            shm.close()
            raise
        return shm

    def after_fork_in_child(self) -> None:
        """A forked child shares the parent's flock: it gets a lock file of its own."""
        self.thread_lock = threading.Lock()
        if self.fd >= 0:
            os.close(self.fd)  # closing a copy never unlocks the parent's lock
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                self.fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)

    def close(self, unlink: bool, extra_files: Iterable[str] = ()) -> None:
        """Unmap; with *unlink* (called under the lock), remove the segment, lock file and *extra_files*."""
        self.buf = None
        if unlink:
            _unlink_shm(self.shm)
            _remove(self.path)
            for path in extra_files:
                _remove(path)
        self.shm.close()

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
