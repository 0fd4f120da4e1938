"""The Task: a concurrent.futures.Future that also carries thread_manager's task model.

A Task is a Future (a :class:`~nonblock.lazyfuture.LazyFuture`, which builds
its lock only when somebody needs it), so ``result()``, ``futures.wait``,
``as_completed`` and asyncio treat it as any Future.  On top it adds what
thread_manager's tasks have: execution states, a queue to watch them,
progress in ``status``, and the callbacks ``on_success``, ``on_fail`` and
``on_end``, which run on the queue's callback thread before the Future
completes.

The engine (:mod:`nonblock.engine`) and the stream writers use a few methods
meant for them: :meth:`Task.attach` when a task is submitted,
:meth:`Task.mark_running` as its work begins, :func:`end_io_in_order` when it
ends, :meth:`Task.deliver` on the callback thread.  A task nobody is to be told
about (no callback of either kind, no watcher of its states) is completed
where its work ended; any other goes to the callback thread, and so does every
task ending after it, to keep completions in order.  This module knows nothing
of queues except that a waiting thread must not be one of the queue's own (it
would wait for itself).
"""

from __future__ import annotations

import enum
import logging
import queue as queue_module  # a Task has a property named queue
import threading
from typing import Any, Callable, Generator, List, Optional, Sequence, Tuple, TypeVar

from nonblock.lazyfuture import LazyFuture

__all__ = ["ExecutionState", "Task", "end_io_in_order"]

logger = logging.getLogger("nonblock")

_T = TypeVar("_T")

Callback = Callable[[Any], object]
IoDoneHook = Callable[["Task[Any]"], None]


class ExecutionState(str, enum.Enum):
    """The life cycle of a :class:`Task`, as thread_manager names it.

    The members are strings, so ``task.execution_state == 'RUNNING'`` works.
    """

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    RETURNED = "RETURNED"
    EXCEPTION = "EXCEPTION"
    FINISHING = "FINISHING"
    CLOSED = "CLOSED"

    def __str__(self) -> str:
        return self.value


# The states a task passes through on every write, as plain module names: reading
# a member off an Enum class costs about 0.1 µs on CPython 3.11, per use.
_CREATED = ExecutionState.CREATED
_RUNNING = ExecutionState.RUNNING
_CLOSED = ExecutionState.CLOSED


class _EarlyOutcome:
    """The outcome of a task whose callbacks are running, visible to those callbacks.

    The Future is completed only after on_success/on_fail/on_end have run, so a
    callback that asks its own task for ``result()`` would wait for itself; this
    lets the callback thread answer it instead.
    """

    __slots__ = ("thread", "result", "exception")

    def __init__(self, result: Any, exception: Optional[BaseException]) -> None:
        self.thread = threading.current_thread()
        self.result = result
        self.exception = exception


class Task(LazyFuture[_T]):
    """One unit of background work: a Future with thread_manager's task model.

    Everything :class:`concurrent.futures.Future` offers works (``result()``,
    ``exception()``, ``done()``, ``add_done_callback()``, ``futures.wait`` and
    ``as_completed``), and a task can be awaited inside asyncio.

    On top of that:

    ``execution_state``
        CREATED -> RUNNING -> RETURNED or EXCEPTION -> FINISHING -> CLOSED.
    ``execution_state_queue``
        A :class:`queue.Queue`, made on first access, that receives every later
        change of ``execution_state``.
    ``status``
        Progress, set by the work itself (bytes written, for a write).
    ``on_success(result)``, ``on_fail(exception)``, ``on_end(task)``
        Run on the queue's callback thread, in that order, before the Future
        completes: when ``result()`` returns, every callback has run.  A callback
        that raises is logged to the ``nonblock`` logger and the others still run.
    """

    # What every task sets lives in slots: left to the instance dict, a field
    # first set late (by an IO thread, say) does not fit CPython 3.11's
    # shared-key layout, and each such task would build a dict of its own.
    __slots__ = ("_execution_state", "status", "_io_done", "_queue")
    _execution_state: ExecutionState
    status: Any
    _io_done: bool
    _queue: Any  # the queue it was submitted to (see attach)

    # What few tasks ever set: read from these class defaults until then.
    on_success: Optional[Callback] = None
    on_fail: Optional[Callback] = None
    on_end: Optional[Callback] = None
    _state_queue: Optional[queue_module.Queue[ExecutionState]] = None
    _early: Optional[_EarlyOutcome] = None
    _io_exception: Optional[BaseException] = None
    _io_hooks: Optional[List[IoDoneHook]] = None

    def __init__(
        self,
        *,
        on_success: Optional[Callback] = None,
        on_fail: Optional[Callback] = None,
        on_end: Optional[Callback] = None,
    ) -> None:
        super().__init__()
        self.status = self._queue = None
        self._execution_state = _CREATED
        self._io_done = False
        if on_success is not None:
            self.on_success = on_success
        if on_fail is not None:
            self.on_fail = on_fail
        if on_end is not None:
            self.on_end = on_end

    # -- whose task it is -----------------------------------------------------------

    @property
    def queue(self) -> Any:
        """The queue this task was submitted to, or None before it is."""
        return self._queue

    def attach(self, queue: Any) -> None:
        """Record that *queue* runs this task (done once, when it is submitted).

        RuntimeError if it was submitted already: a task is run once.
        """
        if self._queue is not None:
            raise RuntimeError(f"{self!r} has already been submitted")
        self._queue = queue

    @property
    def io_done(self) -> bool:
        """True once the task's work has ended (its callbacks may still be to run)."""
        return self._io_done

    @property
    def io_error(self) -> Optional[BaseException]:
        """Why the task's work failed, once it has ended; None while it runs or if it went well."""
        return self._io_exception

    def add_io_done_hook(self, hook: IoDoneHook) -> None:
        """Call *hook(self)* once this task's work has ended (at once if it has).

        For the engine: work chained after this task starts from here.  The hook
        runs on the thread that ends the task, so it must be quick and run no
        user code.
        """
        with self._state_lock:
            if not self._io_done:
                if self._io_hooks is None:
                    self._io_hooks = []
                self._io_hooks.append(hook)
                return
        hook(self)

    # -- thread_manager's model ------------------------------------------------

    @property
    def execution_state(self) -> ExecutionState:
        """Where the task is in its life cycle (see :class:`ExecutionState`)."""
        return self._execution_state

    @property
    def execution_state_queue(self) -> queue_module.Queue[ExecutionState]:
        """A queue that receives every change of ``execution_state`` from now on."""
        with self._state_lock:
            if self._state_queue is None:
                self._state_queue = queue_module.Queue()
            return self._state_queue

    def _set_execution_state(self, state: ExecutionState) -> None:
        with self._state_lock:
            self._execution_state = state
            if self._state_queue is not None:
                self._state_queue.put(state)

    # -- waiting ----------------------------------------------------------------

    def _refuse_waiting_on_own_thread(self) -> None:
        # An op holds the disk token and the callback thread delivers in order:
        # waiting there for an unfinished task of the same queue would wait forever.
        queue_ = self._queue
        if queue_ is not None and queue_.owns_current_thread() and not self.done():
            raise RuntimeError(
                f"waiting for {self!r} from {threading.current_thread().name}, a thread of its own "
                "queue, would deadlock; chain the work instead (after=, chainAfter=, a callback)"
            )

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the task is done or *timeout* seconds pass; return ``done()``."""
        if self.done():
            return True
        self._refuse_waiting_on_own_thread()
        return self._wait_until_done(timeout)

    def result(self, timeout: Optional[float] = None) -> _T:
        if not self.done():
            early = self._early
            if early is not None and early.thread is threading.current_thread():
                if early.exception is not None:
                    raise early.exception
                return early.result  # type: ignore[no-any-return]
            self._refuse_waiting_on_own_thread()
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if not self.done():
            early = self._early
            if early is not None and early.thread is threading.current_thread():
                return early.exception
            self._refuse_waiting_on_own_thread()
        return super().exception(timeout)

    def __await__(self) -> Generator[Any, None, _T]:
        import asyncio

        return asyncio.wrap_future(self).__await__()

    # -- the task's life (for the engine and the writers) -----------------------------

    def mark_running(self) -> bool:
        """Mark the task RUNNING (both models); False if it was cancelled before it ran.

        Called by whoever does the task's work, as it begins.  Future's
        RuntimeError if the task was completed by hand before it ran.
        """
        if self._start_unwatched():
            return True
        if not self.set_running_or_notify_cancel():
            return False
        self._set_execution_state(_RUNNING)
        return True

    def _started_unwatched(self) -> None:
        self._execution_state = _RUNNING  # no lock, so nobody watches the states yet

    def end_io(self, result: Any, error: Optional[BaseException],
               quietly: bool) -> Tuple[bool, Optional[List[IoDoneHook]]]:
        """Record that the task's work has ended; complete it here if *quietly* allows.

        With *quietly*, a task nobody is to be told about (no callback of either
        kind, no watcher of its states) is completed on the spot: CLOSED, then
        the Future done.  Returns whether it was, and the hooks now due (see
        :meth:`add_io_done_hook`); a task not completed here goes to
        :meth:`deliver` on the callback thread.
        """
        plain = self.on_success is None and self.on_fail is None and self.on_end is None
        if quietly and plain and self._finish_unwatched(result, error):
            return True, None  # no lock: nobody hooked on, so no hook is due
        with self._state_lock:
            self._io_done = True
            if error is not None:
                self._io_exception = error
            hooks = self._io_hooks
            if hooks is not None:
                self._io_hooks = None
            if (not quietly or not plain or self.has_done_callbacks or self._state_queue is not None
                    or self.done()):
                return False, hooks
            self._execution_state = _CLOSED
            # Still holding the lock, so no done-callback can be added before it
            # completes (one would run here, on an IO thread).
            if error is None:
                self.set_result(result)
            else:
                self.set_exception(error)
        return True, hooks

    def _finishing_unwatched(self, error: Optional[BaseException]) -> None:
        self._io_done = True
        if error is not None:
            self._io_exception = error
        self._execution_state = _CLOSED

    def deliver(self, result: Any, error: Optional[BaseException]) -> None:
        """On the callback thread: walk the states running the callbacks, then complete."""
        self._early = _EarlyOutcome(result, error)
        try:
            if error is None:
                self._set_execution_state(ExecutionState.RETURNED)
                _run_callback(self.on_success, result, "on_success", self)
            else:
                self._set_execution_state(ExecutionState.EXCEPTION)
                _run_callback(self.on_fail, error, "on_fail", self)
            self._set_execution_state(ExecutionState.FINISHING)
            _run_callback(self.on_end, self, "on_end", self)
            self._set_execution_state(ExecutionState.CLOSED)
        finally:
            self._early = None
        self._finish(result, error)  # nothing if cancelled while it waited, or completed by hand

    def abandon_after_fork(self, failure: BaseException) -> None:
        """In a forked child: this task is the parent's to run; fail it here with *failure*.

        Whatever the child chained after it is released and fails at once.
        """
        self._forget_lock_after_fork()
        if not self._io_done:
            self._io_done = True
            self._io_exception = failure
            self._io_hooks = None
        self._finish(None, failure)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {id(self):#x} {self._execution_state.value}>"


def end_io_in_order(
    tasks: Sequence[Task[Any]], results: Sequence[Any], error: Optional[BaseException], quietly: bool
) -> Tuple[List[Task[Any]], List[Tuple[Task[Any], Any, Optional[BaseException]]],
           List[Tuple[IoDoneHook, Task[Any]]]]:
    """For the engine: record the end of the work of *tasks* (each with its result, all with *error*).

    Returns the tasks completed here (:meth:`Task.end_io` with *quietly*), the
    (task, result, error) to hand to the callback thread (every one from the
    first that cannot be completed quietly on, to keep the order), and the
    (hook, task) pairs now due.  The leading tasks nobody is to be told about
    and nobody has hooked onto are completed under one hold of the guard
    (a write and the ones joined to it end together).
    """
    finished = 0
    if quietly:
        plain = 0
        for task in tasks:
            if task.on_success is not None or task.on_fail is not None or task.on_end is not None:
                break
            plain += 1
        if plain:
            finished = LazyFuture.finish_all_unwatched(tasks, results, error, plain)
    completed: List[Task[Any]] = list(tasks[:finished]) if finished else []
    handed_over: List[Tuple[Task[Any], Any, Optional[BaseException]]] = []
    hooks: List[Tuple[IoDoneHook, Task[Any]]] = []
    for index in range(finished, len(tasks)):
        task, result = tasks[index], results[index]
        quiet, task_hooks = task.end_io(result, error, quietly)
        if quiet:
            completed.append(task)
        else:
            quietly = False
            handed_over.append((task, result, error))
        if task_hooks:
            hooks.extend((hook, task) for hook in task_hooks)
    return completed, handed_over, hooks


def _run_callback(callback: Optional[Callback], argument: Any, role: str, task: Task[Any]) -> None:
    if callback is None:
        return
    try:
        callback(argument)
    except BaseException:  # even sys.exit() in a callback must not kill the callback thread
        logger.exception("%s callback %r of %r raised", role, callback, task)
