"""Sleeping until another process says something changed: futexes on the segment.

A waiter reads a 32-bit word in the shared segment (under the queue's lock),
checks its condition, lets go of the lock and sleeps in ``futex(FUTEX_WAIT)``
only while the word still holds the value it read; whoever changes the state
bumps the word and, if anyone waits, calls ``futex(FUTEX_WAKE)``.  A change
between the check and the sleep makes the sleep return at once, so no wake-up
is lost.  The futexes are the shared (not ``PRIVATE``) kind, keyed by the
memory page, so they work across processes that map the segment.

Where the futex syscall is not known (not Linux, or an unlisted machine),
waiting falls back to bounded back-off: sleeps from 50 us growing to 2 ms.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import time
from typing import Any, Optional

_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
_SYSCALL_NUMBERS = {"x86_64": 202, "aarch64": 98, "arm64": 98, "i686": 240, "i386": 240, "ppc64le": 221,
                    "s390x": 238, "riscv64": 98}


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load_syscall() -> Optional[Any]:
    number = _SYSCALL_NUMBERS.get(platform.machine())
    if not sys.platform.startswith("linux") or number is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    return syscall


_syscall = _load_syscall()
_NR_FUTEX = _SYSCALL_NUMBERS.get(platform.machine(), 0)
USES_FUTEX = _syscall is not None and os.environ.get("NONBLOCK_SYNCQ_BACKOFF") != "1"


def address_of(buffer: Any) -> int:
    """The address of the first byte of a writable *buffer* (held only for the call)."""
    probe = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(probe)
    finally:
        del probe


def wait(address: int, expected: int, timeout: float, round_: int) -> None:
    """Sleep while the word at *address* equals *expected*, for at most *timeout* s.

    Returns early on a wake-up, a change of the word or a signal; the caller
    checks its condition again.  *round_* counts the caller's previous waits
    (used by the back-off).
    """
    if timeout <= 0:
        return
    if not USES_FUTEX:
        time.sleep(min(timeout, 0.00005 * (2 ** min(round_, 6))))
        return
    seconds = int(timeout)
    spec = _Timespec(seconds, int((timeout - seconds) * 1e9))
    assert _syscall is not None
    _syscall(_NR_FUTEX, ctypes.c_void_p(address), _FUTEX_WAIT, ctypes.c_uint(expected),
             ctypes.byref(spec), None, 0)


def wake_all(address: int) -> None:
    """Wake every process sleeping on the word at *address*."""
    if USES_FUTEX:
        assert _syscall is not None
        _syscall(_NR_FUTEX, ctypes.c_void_p(address), _FUTEX_WAKE, 0x7FFFFFFF, None, None, 0)
