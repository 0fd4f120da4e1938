"""The file operations of :mod:`nonblock.fileops`, put on the HDD queue.

:func:`install` makes, from the operation table, the ``HddQueue`` methods and
the module functions of :mod:`nonblock.hddq` (mhddq's API), so that each is
written once, here, for all operations.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from nonblock import fileops
from nonblock.fileops import Operation, OpListEntry
from nonblock.hddq import HddQueue, QueueShutdown, Step, Task, default_queue

logger = logging.getLogger("nonblock")

Report = Dict[str, Any]


class OplistStopped(RuntimeError):
    """An operation skipped because an earlier one in a stop_on_error oplist failed."""


class OperationJob:
    """One file operation, run as one op."""

    def __init__(self, operation: Operation, params: Dict[str, Any]) -> None:
        self.operation = operation
        self.params = params

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        return Step.done(self.operation.run(self.params))

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
                output = item.operation.run(item.params)
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
            _call_quietly(callback, report)


Snapshot = Tuple[bool, Tuple[Any, ...]]


def snapshot_oplist(oplist: List[Any]) -> Snapshot:
    """The oplist as it is now, frozen, so later changes to it do not reach the queue."""
    fileops.validate_oplist(oplist)
    items = tuple(snapshot_oplist(item) if isinstance(item, list) else item for item in oplist)
    return bool(getattr(oplist, "stop_on_error", False)), items


def _call_quietly(callback: Any, report: Report) -> None:
    if callback is None:
        return
    try:
        callback(report)
    except Exception:
        logger.exception("callback %r of %s raised", callback, report["action"])


def _reporting_task(operation: Operation, params: Dict[str, Any]) -> Task[Any]:
    callback = params["callback"]
    if callback is None:
        return Task()
    name = operation.name
    return Task(
        on_success=lambda output: callback(fileops.callback_report(name, params, output, None)),
        on_fail=lambda error: callback(fileops.callback_report(name, params, None, error)),
    )


# -- making the API from the table -------------------------------------------------------------


def _queue_method(operation: Operation) -> Callable[..., Task[Any]]:
    def method(self: HddQueue, callback: Any = None, *args: Any, **kwargs: Any) -> Task[Any]:
        params = operation.bind(callback, args, kwargs)
        return self.submit_job(OperationJob(operation, params), _reporting_task(operation, params))

    method.__name__ = method.__qualname__ = operation.name
    method.__doc__ = (f"Queue {operation.name}{_signature(operation)}; return its task, whose result "
                      f"is the operation's output.  *callback* gets mhddq's report dict.")
    return method


def _module_function(operation: Operation) -> Callable[..., bool]:
    def function(callback: Any = None, *args: Any, **kwargs: Any) -> bool:
        try:
            getattr(default_queue(), operation.name)(callback, *args, **kwargs)
        except QueueShutdown:
            return False
        return True

    function.__name__ = function.__qualname__ = operation.name
    function.__doc__ = (f"Queue {operation.name}{_signature(operation)} on the default queue: True "
                        f"once queued, False after shutdown (mhddq's contract).")
    return function


def _oplist_function(operation: Operation) -> Callable[..., None]:
    def add(oplist: List[Any], callback: Any = None, *args: Any, **kwargs: Any) -> None:
        fileops._require_oplist("oplist", oplist)
        oplist.append(OpListEntry(operation, operation.bind(callback, args, kwargs)))

    add.__name__ = add.__qualname__ = "oplist_" + operation.name
    add.__doc__ = f"Add {operation.name}{_signature(operation)} to *oplist*."
    return add


def _signature(operation: Operation) -> str:
    names = ["callback"] + [p.name for p in operation.positional] + sorted(operation.options)
    return "(" + ", ".join(names) + ")"


def enqueue_oplist_on(queue: HddQueue, oplist: List[Any]) -> Task[Any]:
    """Queue *oplist* as one turn at the disk; its task's result is the list of reports."""
    job = OpListJob(snapshot_oplist(oplist))
    return queue.submit_job(job, Task(on_success=job.deliver))


def _module_enqueue_oplist(oplist: List[Any]) -> bool:
    """Queue *oplist* on the default queue: True once queued, False after shutdown."""
    try:
        enqueue_oplist_on(default_queue(), oplist)
    except QueueShutdown:
        return False
    return True


def install(queue_class: type, namespace: Dict[str, Any]) -> List[str]:
    """Add the operation methods to *queue_class* and mhddq's functions to *namespace*.

    Returns the names added to *namespace*.
    """
    added = []
    for operation in fileops.OPERATIONS.values():
        setattr(queue_class, operation.name, _queue_method(operation))
        namespace[operation.name] = _module_function(operation)
        namespace["oplist_" + operation.name] = _oplist_function(operation)
        added += [operation.name, "oplist_" + operation.name]
    queue_class.enqueue_oplist = enqueue_oplist_on  # type: ignore[attr-defined]
    namespace["enqueue_oplist"] = _module_enqueue_oplist
    for name in ("create_empty_oplist", "clear_oplist", "embed_oplist"):
        namespace[name] = getattr(fileops, name)
    added += ["enqueue_oplist", "create_empty_oplist", "clear_oplist", "embed_oplist"]
    return added
