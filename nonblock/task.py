"""The Task: a concurrent.futures.Future that also carries thread_manager's task model.

A task is made for every write, so what it costs to make and to complete is
most of what a small write costs.  A plain Future builds a
``threading.Condition`` up front (several allocations and a few microseconds)
that almost nobody waits on.  A Task builds nothing up front.  Its lock
(re-entrant, as Future's) is made the first time anything needs it: a waiter,
a done-callback, a watcher of its states, a cancel.  The Condition, around that
lock, is made the first time anything waits.  Completing a task nobody waits on
builds neither, and the engine ends a batch of such tasks under one lock
acquisition, not one per task (:func:`end_io_in_order`).

Why that is safe: every lock is made under one module-wide guard, and a task
that has none is completed under that same guard; so whoever wants to wait,
hook on or cancel either comes before (and the completion finds the lock and
goes the locked way) or after (and finds the task finished).  With a lock,
every change that completes the Future happens holding it, and a waiter builds
the Condition *before* it takes the lock to look at the state: a completion
that finds no Condition knows that any later waiter will see the finished
state, and one that finds a Condition notifies it as Future does.

The engine (:mod:`nonblock.engine`) keeps its own bookkeeping on the task; this
module knows nothing of queues except that a waiting thread must not be one of
the queue's own (it would wait for itself).
"""

from __future__ import annotations

import _thread
import concurrent.futures
import enum
import logging
import os
import queue as queue_module  # a Task has a property named queue
import threading
import time
from concurrent.futures._base import (  # the state names Future itself uses
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable, List, Optional, Sequence, Tuple, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future as _FutureBase
else:
    _FutureBase = concurrent.futures.Future

__all__ = ["PENDING", "ExecutionState", "Task", "end_io_in_order"]

logger = logging.getLogger("nonblock")

_T = TypeVar("_T")

Callback = Callable[[Any], object]

_DONE_STATES = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


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


class Task(_FutureBase[_T]):
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

    # What every task sets in its life lives in slots, set in __init__.  Left to
    # the instance dict, a field first set late (by an IO thread, say) does not
    # fit CPython 3.11's shared-key layout, which a class fixes after its first
    # few instances: each such task would build a dict of its own, about a
    # microsecond, as much as the rest of a small write's bookkeeping.
    __slots__ = (
        "_own_lock", "_state", "_result", "_execution_state", "status", "_io_done", "_queue",
    )
    _own_lock: Optional[threading.RLock]  # made on first need: see _state_lock
    _state: str
    _result: Any
    _execution_state: ExecutionState
    status: Any
    _io_done: bool
    _queue: Any  # the queue it was submitted to (see attach)

    # What few tasks ever set: read from these class defaults until then.
    # Future's lists of waiters and done-callbacks are only ever added to by code
    # holding the Condition, so they are made with it; until then these empty
    # tuples stand in for them.
    _exception: Optional[BaseException] = None
    _built_condition: Optional[threading.Condition] = None
    _waiters: Any = ()
    _done_callbacks: Any = ()
    on_success: Optional[Callback] = None
    on_fail: Optional[Callback] = None
    on_end: Optional[Callback] = None
    _state_queue: Optional[queue_module.Queue[ExecutionState]] = None
    _early: Optional[_EarlyOutcome] = None
    _io_exception: Optional[BaseException] = None
    _io_hooks: Optional[List[Callable[[Task[Any]], None]]] = None

    def __init__(
        self,
        *,
        on_success: Optional[Callback] = None,
        on_fail: Optional[Callback] = None,
        on_end: Optional[Callback] = None,
    ) -> None:
        # Future.__init__ is not called: it would build the Condition now.  The
        # fields it sets are slots set here or class defaults (tests/test_task.py
        # checks that none is missing).
        self._state = PENDING
        self._own_lock = self._result = self.status = self._queue = None
        self._execution_state = _CREATED
        self._io_done = False
        if on_success is not None:
            self.on_success = on_success
        if on_fail is not None:
            self.on_fail = on_fail
        if on_end is not None:
            self.on_end = on_end

    @property
    def _state_lock(self) -> threading.RLock:
        """The task's lock, made the first time it is needed.

        Made under the module's guard, which the engine also holds while it
        completes tasks that have no lock: so a completion either finds no lock
        and is done before anyone can make one, or finds one and takes it.
        Re-entrant, as Future's own: concurrent.futures.wait() holds every
        future's Condition while it asks them cancelled() and done().
        """
        lock = self._own_lock
        if lock is None:
            # Made before the guard is taken, so that nothing between taking it
            # and the store can run other code on this thread (no call, no
            # allocation: a signal handler or a GC finalizer could get in there).
            # threading.RLock() is a Python function around this.
            new_lock = _thread.RLock()
            with _lock_guard:
                lock = self._own_lock
                if lock is None:
                    lock = self._own_lock = new_lock
        return lock

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        """Future's Condition, built around the state lock the first time it is asked for."""
        condition = self._built_condition
        if condition is None:
            # Built under the state lock, so a completion (which holds it) either
            # sees the Condition and notifies it, or finishes first.  Nothing asks
            # for the Condition while holding that lock.
            with self._state_lock:
                condition = self._built_condition
                if condition is None:
                    if isinstance(self._done_callbacks, tuple):  # still the class's stand-ins
                        self._waiters = []
                        self._done_callbacks = []
                    condition = self._built_condition = threading.Condition(self._own_lock)
        return condition

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

    # -- Future, without building a Condition nobody waits on ---------------------

    def done(self) -> bool:
        # One read, no lock: a task never leaves a done state.
        return self._state in _DONE_STATES

    def running(self) -> bool:
        return self._state == RUNNING

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def cancel(self) -> bool:
        """Cancel the task if its work has not started; True if it is cancelled."""
        cancelled, now = self._cancel_if_pending()
        if now and self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]
        return cancelled

    def _cancel_if_pending(self) -> Tuple[bool, bool]:
        """Future.cancel's change of state: (whether cancelled, whether just now)."""
        with self._state_lock:
            if self._state in (RUNNING, FINISHED):
                return False, False
            if self._state != PENDING:
                return True, False
            self._state = CANCELLED
            if self._built_condition is not None:
                self._built_condition.notify_all()
        return True, True

    def set_running_or_notify_cancel(self) -> bool:
        with self._state_lock:
            if self._state == PENDING:
                self._state = RUNNING
                return True
            if self._state == CANCELLED_AND_NOTIFIED:
                return False  # asked again (the engine may ask twice): still cancelled
        return super().set_running_or_notify_cancel()  # cancelled, or a misuse: Future's way

    def set_result(self, result: _T) -> None:
        if not self._finish(result, None):
            super().set_result(result)  # raises InvalidStateError, as Future does

    def set_exception(self, exception: Optional[BaseException]) -> None:
        if not self._finish(None, exception):
            super().set_exception(exception)

    def _finish(self, result: Any, error: Optional[BaseException]) -> bool:
        """Complete the Future; False (and nothing done) if it is done already."""
        with self._state_lock:
            if self._state in _DONE_STATES:
                return False
            self._settle(result, error)
        if self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def _settle(self, result: Any, error: Optional[BaseException]) -> None:
        """Make the Future done and wake whoever waits; called holding the state lock."""
        self._result = result
        self._exception = error
        self._state = FINISHED
        condition = self._built_condition
        if condition is not None:  # else nobody waits, and a later waiter sees FINISHED
            for waiter in self._waiters:
                if error is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            condition.notify_all()

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
        if self._state in _DONE_STATES:
            return True
        self._refuse_waiting_on_own_thread()
        deadline = None if timeout is None else time.monotonic() + timeout
        condition = self._condition
        with condition:
            while self._state not in _DONE_STATES:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                condition.wait(remaining)
        return True

    def result(self, timeout: Optional[float] = None) -> _T:
        if self._state == FINISHED:
            error = self._exception
            if error is None:
                return self._result  # type: ignore[no-any-return]
            try:
                raise error
            finally:
                del error  # no reference cycle through this frame
        early = self._early
        if early is not None and early.thread is threading.current_thread():
            if early.exception is not None:
                raise early.exception
            return early.result  # type: ignore[no-any-return]
        self._refuse_waiting_on_own_thread()
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if self._state == FINISHED:
            return self._exception
        early = self._early
        if early is not None and early.thread is threading.current_thread():
            return early.exception
        self._refuse_waiting_on_own_thread()
        return super().exception(timeout)

    def __await__(self) -> Generator[Any, None, _T]:
        import asyncio

        return asyncio.wrap_future(self).__await__()

    # -- delivery (called by the engine) -------------------------------------------

    def mark_running(self) -> bool:
        """Mark the task RUNNING (both models); False if it was cancelled before it ran.

        Called by whoever does the task's work, as it begins.
        """
        if self._own_lock is None:
            with _lock_guard:
                if self._own_lock is None:
                    # Without a lock nobody has cancelled it or watches it.
                    self._state = RUNNING
                    self._execution_state = _RUNNING
                    return True
        with self._state_lock:
            if self._state == PENDING:
                self._state = RUNNING
                self._execution_state = _RUNNING
                if self._state_queue is not None:
                    self._state_queue.put(_RUNNING)
                return True
        if not self.set_running_or_notify_cancel():
            return False
        self._set_execution_state(_RUNNING)
        return True

    def _end_io(
        self, result: Any, error: Optional[BaseException], quietly: bool
    ) -> Tuple[bool, Optional[List[Callable[[Task[Any]], None]]]]:
        """Record that the task's IO has ended; complete it here if *quietly* allows.

        For the engine's IO threads, which must never run user code: with
        *quietly*, a task with no callbacks of either kind and no watcher of its
        states is completed on the spot (CLOSED, then the Future done).  Returns
        whether it was, and the hooks now due (see :meth:`add_io_done_hook`); a
        task not completed here goes to :meth:`deliver` on the callback thread.
        """
        # Class defaults stand for None until a task sets its own.
        with self._state_lock:
            self._io_done = True
            if error is not None:
                self._io_exception = error
            hooks = self._io_hooks
            if hooks is not None:
                self._io_hooks = None
            if (
                not quietly or self.on_success is not None or self.on_fail is not None
                or self.on_end is not None or self._done_callbacks or self._state_queue is not None
                or self._state in _DONE_STATES
            ):
                return False, hooks
            self._execution_state = _CLOSED
            if self._built_condition is None and error is None:
                self._result = result
                self._state = FINISHED
            else:
                self._settle(result, error)
        return True, hooks

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
        self._finish(result, error)  # cancelled while it waited: the Future is done already

    def add_io_done_hook(self, hook: Callable[[Task[Any]], None]) -> None:
        """Call *hook(self)* once this task's IO has ended (at once if it has)."""
        with self._state_lock:
            if not self._io_done:
                if self._io_hooks is None:
                    self._io_hooks = []
                self._io_hooks.append(hook)
                return
        hook(self)

    def abandon_after_fork(self, failure: BaseException) -> None:
        """In a forked child: this task is the parent's to run; fail it here with *failure*.

        Whatever the child chained after it is released and fails at once.
        """
        self._forget_threads_after_fork()
        if not self._io_done:
            self._io_done = True
            self._io_exception = failure
            self._io_hooks = None
        if not self.done():
            try:
                self.set_exception(failure)
            except concurrent.futures.InvalidStateError:
                pass

    def _forget_threads_after_fork(self) -> None:
        """In a forked child: fresh locks (the parent's may have been held mid-fork).

        Done-callbacks stay: they run in the child when the task fails there.
        Waiters (futures.wait() in the parent's other threads) have no thread here.
        """
        self._own_lock = None
        self._built_condition = None
        if not isinstance(self._waiters, tuple):
            self._waiters = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {id(self):#x} {self._execution_state.value}>"

    def __reduce__(self) -> Any:
        # As a Future (whose lock refuses pickling), and whether or not this task
        # has made its lock yet: a copy would be a task that never completes.
        raise TypeError(f"cannot pickle or copy a {type(self).__name__}: it belongs to its queue")


def end_io_in_order(
    tasks: Sequence[Task[Any]], results: Iterable[Any], error: Optional[BaseException], quietly: bool
) -> Tuple[List[Task[Any]], List[Tuple[Task[Any], Any, Optional[BaseException]]],
           List[Tuple[Callable[[Task[Any]], None], Task[Any]]]]:
    """For the engine: record the end of IO of *tasks* (each with its result, all with *error*).

    What :meth:`Task._end_io` does for one task, for tasks that end together
    (a write and the writes joined to it in one chunk), in order.  Returns the tasks
    completed here, the (task, result, error) to hand to the callback thread
    (every one after the first that cannot be completed quietly, to keep the
    order), and the (hook, task) pairs now due.
    """
    completed: List[Task[Any]] = []
    handed_over: List[Tuple[Task[Any], Any, Optional[BaseException]]] = []
    hooks: List[Tuple[Callable[[Task[Any]], None], Task[Any]]] = []
    guard = _lock_guard
    guard.acquire()
    try:
        for task, result in zip(tasks, results):
            if (
                quietly and task._own_lock is None and task.on_success is None
                and task.on_fail is None and task.on_end is None
            ):
                # No lock: nobody waits on it, watches it, cancelled it or hooked
                # on its end, since each of those makes the lock first, under the
                # guard held here.  So it is completed without one.  The outcome
                # is stored first (it is read only once the task is FINISHED):
                # those stores may allocate, and an allocation may run a GC
                # finalizer on this thread, which the re-entrant guard lets in.
                if error is None:
                    task._result = result
                else:
                    task._io_exception = task._exception = error
                # So the lock is looked for again, and from here to FINISHED
                # nothing runs but slot stores.  A finalizer (or a signal
                # handler) that made the lock meanwhile sends the task down the
                # locked path, where its waiter or callback is seen to.
                if task._own_lock is None:
                    task._io_done = True
                    task._execution_state = _CLOSED
                    task._state = FINISHED  # last: done() and result() read without a lock
                    completed.append(task)
                    continue
            guard.release()
            try:
                quietly, task_hooks = task._end_io(result, error, quietly)
            finally:
                guard.acquire()
            if quietly:
                completed.append(task)
            else:
                handed_over.append((task, result, error))
            if task_hooks:
                hooks.extend((hook, task) for hook in task_hooks)
    finally:
        guard.release()
    return completed, handed_over, hooks


def _make_new_lock_guard() -> None:
    # In a forked child: the guard may have been held by a thread that is gone.
    global _lock_guard
    _lock_guard = _thread.RLock()


# Held while a task makes its lock, and while the engine completes tasks that have none.
# Re-entrant: a signal handler or a GC finalizer may run on a thread that holds it
# and touch a task of its own (tests/test_task.py re-enters it that way).
_lock_guard = _thread.RLock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_make_new_lock_guard)


def _run_callback(callback: Optional[Callback], argument: Any, role: str, task: Task[Any]) -> None:
    if callback is None:
        return
    try:
        callback(argument)
    except BaseException:  # even sys.exit() in a callback must not kill the callback thread
        logger.exception("%s callback %r of %r raised", role, callback, task)
