"""Who a process is, and whether it still lives.

A pid alone is not an identity: the kernel reuses pids.  A process is its pid
and its start time (clock ticks since boot, from /proc); a slot whose pid now
belongs to a process that started at another time belongs to a dead process.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> int:
    """The start time of *pid*, or -1 if there is no such live process.

    A zombie (killed, not yet reaped by its parent) counts as gone: it holds
    nothing and will never read again.  Without /proc the start time is 0 and
    only the pid is checked.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except FileNotFoundError:
        return -1
    except OSError:
        return _without_proc(pid)
    # The command name (field 2) may hold spaces and parentheses: fields start
    # after its last ')'.  Field 3 is the state, field 22 the start time.
    fields = text[text.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return -1
    return int(fields[19])


def _without_proc(pid: int) -> int:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return -1
    except PermissionError:
        pass
    return 0


def is_alive(pid: int, started: int) -> bool:
    """Whether the process that registered as (*pid*, *started*) is still running."""
    now = start_time(pid)
    return now != -1 and (started == 0 or now == 0 or now == started)
