"""The file operations of :mod:`nonblock.fileops`, put on the HDD queue.

:class:`FileOperations` is the engine with a method per operation (each one
row of the table read by its class body), and the makers at the bottom give
:mod:`nonblock.hddq` its module functions (mhddq's API): each kind of call is
written once, here, for all operations.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from nonblock import fileops
from nonblock.engine import Engine, QueueShutdown, Step, Task
from nonblock.fileops import Operation, OpListEntry

logger = logging.getLogger("nonblock")

Report = Dict[str, Any]


class OplistStopped(RuntimeError):
    """An operation skipped because an earlier one in a stop_on_error oplist failed."""


class OperationJob:
    """One file operation, run as one op."""

    def __init__(self, entry: OpListEntry) -> None:
        self.entry = entry

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        return Step.done(self.entry.run())

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        return None


class OpListJob:
    """A whole oplist, depth first, as one op: the disk token is held throughout.

    Each operation's report is kept, with its callback, for the callback thread;
    the task's result is the list of reports, in the order the operations ran.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.reports: List[Tuple[Any, Report]] = []

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        self._run(self.snapshot, skipping=False)
        return Step.done([report for _callback, report in self.reports])

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        return None

    def _run(self, snapshot: Snapshot, skipping: bool) -> bool:
        """Run (or, when *skipping*, report as skipped) one list; return whether all went well."""
        stop_on_error, items = snapshot
        all_well = True
        for item in items:
            stop = skipping or (stop_on_error and not all_well)
            if isinstance(item, tuple):
                all_well = self._run(item, stop) and all_well
                continue
            if stop:
                skipped = OplistStopped("skipped: an earlier operation in a stop_on_error oplist failed")
                self._report(item, None, skipped)
                all_well = False
                continue
            try:
                output = item.run()
            except Exception as error:
                self._report(item, None, error)
                all_well = False
            else:
                self._report(item, output, None)
        return all_well

    def _report(self, entry: OpListEntry, output: Any, error: Optional[BaseException]) -> None:
        report = fileops.callback_report(entry.operation.name, entry.params, output, error)
        self.reports.append((entry.params["callback"], report))

    def deliver(self, _result: Any) -> None:
        """On the callback thread: every operation's callback, in order, each on its own."""
        for callback, report in self.reports:
            if callback is None:
                continue
            try:
                callback(report)
            except BaseException:  # even sys.exit() in a callback must not kill the callback thread
                logger.exception("callback %r of %s raised", callback, report["action"])


Snapshot = Tuple[bool, Tuple[Any, ...]]


def snapshot_oplist(oplist: List[Any]) -> Snapshot:
    """The oplist as it is now, frozen, so later changes to it do not reach the queue."""
    fileops.validate_oplist(oplist)
    items = tuple(snapshot_oplist(item) if isinstance(item, list) else item for item in oplist)
    return bool(getattr(oplist, "stop_on_error", False)), items


def _reporting_task(operation: Operation, params: Dict[str, Any]) -> Task[Any]:
    callback = params["callback"]
    if callback is None:
        return Task()
    name = operation.name
    return Task(
        on_success=lambda output: callback(fileops.callback_report(name, params, output, None)),
        on_fail=lambda error: callback(fileops.callback_report(name, params, None, error)),
    )


# -- batching the module functions ------------------------------------------------------------
# mhddq's module functions return True, not a task, so nothing asks for one
# Future per call.  Consecutive calls are gathered into one job while it waits
# to run: an operation then costs its own work and a callback, not a Future,
# a submission and two thread hand-overs.  A batch takes new operations only
# while it is still the last thing queued, so the queue's order is kept.

BATCH_LIMIT = 256
"""The most operations one batch (one turn at the disk) gathers."""


class _Batch:
    """Operations gathered for one job; sealed, under its batcher's lock, when the job starts."""

    __slots__ = ("lock", "entries", "sealed", "task")

    def __init__(self, lock: threading.Lock, first: OpListEntry) -> None:
        self.lock = lock
        self.entries: List[OpListEntry] = [first]
        self.sealed = False
        self.task: Optional[Task[Any]] = None


class BatchJob(OpListJob):
    """Runs a batch of independent operations, in order, as one op."""

    def __init__(self, batch: _Batch) -> None:
        super().__init__((False, ()))
        self.batch = batch

    def perform(self, task: Task[Any]) -> Step:
        with self.batch.lock:
            self.batch.sealed = True
            entries = tuple(self.batch.entries)
        # OpListJob._run, without what a batch never has (nesting, stop_on_error),
        # and without a report nobody would receive.
        keep = self.reports.append
        report = fileops.callback_report
        for entry in entries:
            callback = entry.params["callback"]
            try:
                output = entry.run()
            except Exception as error:
                if callback is not None:
                    keep((callback, report(entry.operation.name, entry.params, None, error)))
            else:
                if callback is not None:
                    keep((callback, report(entry.operation.name, entry.params, output, None)))
        return Step.done(None)


class _Batcher:
    """The open batch of one queue's module-function calls."""

    def __init__(self, queue: Engine) -> None:
        self.queue = queue
        self.lock = threading.Lock()
        self.open: Optional[_Batch] = None

    def add(self, entry: OpListEntry) -> bool:
        """Queue *entry*: True once queued, False after shutdown."""
        queue = self.queue
        with self.lock:
            if not queue.accepting:
                return False
            batch = self.open
            if (batch is not None and not batch.sealed and queue.last_submitted is batch.task
                    and len(batch.entries) < BATCH_LIMIT):
                batch.entries.append(entry)
                return True
            batch = _Batch(self.lock, entry)
            job = BatchJob(batch)
            try:
                batch.task = queue.submit_job(job, Task(on_success=job.deliver))
            except QueueShutdown:
                return False
            self.open = batch
            return True


_batchers: weakref.WeakKeyDictionary[Engine, _Batcher] = weakref.WeakKeyDictionary()
_batchers_lock = threading.Lock()
_last_batcher: Optional[_Batcher] = None


def _forget_batchers_after_fork() -> None:
    # The parent's batches belong to the parent; their locks may be held.
    global _batchers, _batchers_lock, _last_batcher
    _batchers = weakref.WeakKeyDictionary()
    _batchers_lock = threading.Lock()
    _last_batcher = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_batchers_after_fork)


def _batcher_of(queue: Engine) -> _Batcher:
    global _last_batcher
    last = _last_batcher  # nearly every call is for the same (default) queue
    if last is not None and last.queue is queue:
        return last
    batcher = _batchers.get(queue)
    if batcher is None:
        with _batchers_lock:
            batcher = _batchers.setdefault(queue, _Batcher(queue))
    _last_batcher = batcher
    return batcher


# -- the API, from the table ------------------------------------------------------------------


def _signature(operation: Operation) -> str:
    names = ["callback"] + [p.name for p in operation.positional] + sorted(operation.options)
    return "(" + ", ".join(names) + ")"


def _queue_method(name: str) -> Callable[..., Task[Any]]:
    operation = fileops.OPERATIONS[name]

    def method(self: Engine, callback: Any = None, *args: Any, **kwargs: Any) -> Task[Any]:
        params = operation.bind(callback, args, kwargs)
        job = OperationJob(OpListEntry(operation, params))
        return self.submit_job(job, _reporting_task(operation, params))

    method.__name__ = name
    method.__qualname__ = f"FileOperations.{name}"
    method.__doc__ = (f"Queue {name}{_signature(operation)}; return its task, whose result "
                      f"is the operation's output.  *callback* gets mhddq's report dict.")
    return method


class FileOperations(Engine):
    """The engine with mhddq's queue methods: one per file operation, plus :meth:`enqueue_oplist`.

    Each method checks its arguments at the call, queues the operation and
    returns its :class:`~nonblock.engine.Task`, whose result is the operation's
    output; *callback*, if given, gets mhddq's report dict on the callback thread.
    """

    directory_exists = _queue_method("directory_exists")
    directory_create = _queue_method("directory_create")
    directory_delete = _queue_method("directory_delete")
    directory_rename = _queue_method("directory_rename")
    directory_move = _queue_method("directory_move")
    directory_copy = _queue_method("directory_copy")
    directory_contents = _queue_method("directory_contents")
    file_exists = _queue_method("file_exists")
    file_create = _queue_method("file_create")
    file_delete = _queue_method("file_delete")
    file_rename = _queue_method("file_rename")
    file_move = _queue_method("file_move")
    file_copy = _queue_method("file_copy")
    file_read = _queue_method("file_read")
    file_write = _queue_method("file_write")
    file_append = _queue_method("file_append")
    file_stat = _queue_method("file_stat")

    def enqueue_oplist(self, oplist: List[Any]) -> Task[Any]:
        """Queue *oplist* as one turn at the disk; its task's result is the list of reports."""
        job = OpListJob(snapshot_oplist(oplist))
        return self.submit_job(job, Task(on_success=job.deliver))


def module_function(name: str, queue_of_process: Callable[[], Engine]) -> Callable[..., bool]:
    """mhddq's module function for the operation *name*, on the queue *queue_of_process()* gives."""
    operation = fileops.OPERATIONS[name]

    def function(callback: Any = None, *args: Any, **kwargs: Any) -> bool:
        return _batcher_of(queue_of_process()).add(operation.entry(callback, args, kwargs))

    function.__name__ = function.__qualname__ = name
    function.__doc__ = (f"Queue {name}{_signature(operation)} on the default queue: True "
                        f"once queued, False after shutdown (mhddq's contract).")
    return function


def oplist_function(name: str) -> Callable[..., None]:
    """mhddq's ``oplist_<name>``: add the operation to an oplist."""
    operation = fileops.OPERATIONS[name]

    def add(oplist: List[Any], callback: Any = None, *args: Any, **kwargs: Any) -> None:
        fileops.require_oplist("oplist", oplist)
        oplist.append(OpListEntry(operation, operation.bind(callback, args, kwargs)))

    add.__name__ = add.__qualname__ = "oplist_" + name
    add.__doc__ = f"Add {name}{_signature(operation)} to *oplist*."
    return add
