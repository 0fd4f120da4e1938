"""mhddq's module, on nonblock's engine: the HDD queue, its file operations and the default queue.

Code written for mhddq runs after changing only its import::

    from nonblock import hddq as mhddq

    mhddq.file_write(on_written, "state.json", text)      # True once queued
    oplist = mhddq.create_empty_oplist()
    mhddq.oplist_file_copy(oplist, None, "a.db", "b.db")
    mhddq.enqueue_oplist(oplist)

Each module function queues its operation on the process's default queue and
returns True (False once the queue is shut down); the callback receives
mhddq's report dict on the callback thread.  An :class:`HddQueue` has the same
operations as methods that return a :class:`Task` instead.  The work itself is
done by :mod:`nonblock.engine` (the scheduler) and :mod:`nonblock.fileops`
(the operations); this module only names them, as ``BackgroundWrite.py``
names python-nonblock's API.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

from nonblock.engine import (
    ExecutionState,
    Job,
    PredecessorFailed,
    QueueShutdown,
    Step,
    Task,
    checked_predecessors,
    prepare_before_stop,
)
from nonblock.fileops import clear_oplist, create_empty_oplist, embed_oplist
from nonblock.filequeue import FileOperations, module_function, oplist_function

__all__ = [
    "ExecutionState",
    "HddQueue",
    "Job",
    "PredecessorFailed",
    "QueueShutdown",
    "Step",
    "Task",
    "checked_predecessors",
    "clear_oplist",
    "create_empty_oplist",
    "default_queue",
    "embed_oplist",
    "enqueue_oplist",
    "is_shutdown",
    "prepare_before_stop",
    "shutdown",
    # the operations, and their oplist twins
    "directory_exists", "directory_create", "directory_delete", "directory_rename", "directory_move",
    "directory_copy", "directory_contents", "file_exists", "file_create", "file_delete", "file_rename",
    "file_move", "file_copy", "file_read", "file_write", "file_append", "file_stat",
    "oplist_directory_exists", "oplist_directory_create", "oplist_directory_delete",
    "oplist_directory_rename", "oplist_directory_move", "oplist_directory_copy",
    "oplist_directory_contents", "oplist_file_exists", "oplist_file_create", "oplist_file_delete",
    "oplist_file_rename", "oplist_file_move", "oplist_file_copy", "oplist_file_read",
    "oplist_file_write", "oplist_file_append", "oplist_file_stat",
]


class HddQueue(FileOperations):
    """A disk queue: two IO threads sharing one disk token, one callback thread.

    Threads start on the first submission, never at construction.  Use
    :func:`default_queue` for the queue shared by the whole process; make your
    own only to isolate work (a test, a separate device).  Besides the engine's
    ``submit_job``, ``wait_idle`` and ``shutdown``, it has a method per mhddq
    file operation (``queue.file_write(callback, path, data)``), each returning
    the operation's :class:`Task`.
    """


# -- the default queue ----------------------------------------------------------------------------

_default_queue: Optional[HddQueue] = None
_default_queue_lock = threading.RLock()  # re-entrant: a signal handler may ask for the default queue


def default_queue() -> HddQueue:
    """The process-wide queue that bgwrite, BackgroundHddFile and the module functions use."""
    global _default_queue
    queue_ = _default_queue
    if queue_ is None:
        with _default_queue_lock:
            if _default_queue is None:
                _default_queue = HddQueue()
            queue_ = _default_queue
    return queue_


def shutdown(wait: bool = True) -> None:
    """Shut the default queue down (see :meth:`HddQueue.shutdown`)."""
    default_queue().shutdown(wait)


def is_shutdown() -> bool:
    """True once the default queue has been shut down and has drained."""
    return _default_queue is not None and _default_queue.is_shutdown()


def _new_default_queue_in_child() -> None:
    # The engine has emptied the parent's queues; the child starts a default of its own.
    global _default_queue, _default_queue_lock
    _default_queue_lock = threading.RLock()
    _default_queue = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_default_queue_in_child)


def enqueue_oplist(oplist: list) -> bool:  # type: ignore[type-arg]
    """Queue *oplist* on the default queue: True once queued, False after shutdown."""
    try:
        default_queue().enqueue_oplist(oplist)
    except QueueShutdown:
        return False
    return True


# -- mhddq's module functions, one per operation, on the default queue -------------------------------

directory_exists = module_function("directory_exists", default_queue)
directory_create = module_function("directory_create", default_queue)
directory_delete = module_function("directory_delete", default_queue)
directory_rename = module_function("directory_rename", default_queue)
directory_move = module_function("directory_move", default_queue)
directory_copy = module_function("directory_copy", default_queue)
directory_contents = module_function("directory_contents", default_queue)
file_exists = module_function("file_exists", default_queue)
file_create = module_function("file_create", default_queue)
file_delete = module_function("file_delete", default_queue)
file_rename = module_function("file_rename", default_queue)
file_move = module_function("file_move", default_queue)
file_copy = module_function("file_copy", default_queue)
file_read = module_function("file_read", default_queue)
file_write = module_function("file_write", default_queue)
file_append = module_function("file_append", default_queue)
file_stat = module_function("file_stat", default_queue)

oplist_directory_exists = oplist_function("directory_exists")
oplist_directory_create = oplist_function("directory_create")
oplist_directory_delete = oplist_function("directory_delete")
oplist_directory_rename = oplist_function("directory_rename")
oplist_directory_move = oplist_function("directory_move")
oplist_directory_copy = oplist_function("directory_copy")
oplist_directory_contents = oplist_function("directory_contents")
oplist_file_exists = oplist_function("file_exists")
oplist_file_create = oplist_function("file_create")
oplist_file_delete = oplist_function("file_delete")
oplist_file_rename = oplist_function("file_rename")
oplist_file_move = oplist_function("file_move")
oplist_file_copy = oplist_function("file_copy")
oplist_file_read = oplist_function("file_read")
oplist_file_write = oplist_function("file_write")
oplist_file_append = oplist_function("file_append")
oplist_file_stat = oplist_function("file_stat")
