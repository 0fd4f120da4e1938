"""LazyFuture: a concurrent.futures.Future that builds its lock and Condition only when needed.

Every write makes a Task, so what a Future costs to make and to complete is
most of what a small write costs.  A plain Future builds a ``threading.Condition``
(an RLock and a Condition object) in its constructor, and takes it to change
state, to notify and to run done-callbacks, although almost nobody waits on a
write.  Measured with the one-writer-per-stream core on 2 cores, a Task that
is a plain Future made 10,000 x 4 KiB writes over 100 files take 3.0-4.2x the
plain loop's time, against 1.4-1.7x for this class, and a 1,000-link chain
26-30 µs per link against 14-21 µs (the README's performance section).

So this class, and only this class, re-implements Future's internals:

* Nothing is built up front.  The lock (re-entrant, as Future's) is made the
  first time anything needs it: a waiter, a done-callback, a cancel, a watcher
  in a subclass.  The Condition, around that lock, is made when somebody waits.
* :meth:`_finish_unwatched` completes a future that has no lock without
  making one.  Every lock is made under one module-wide guard, and that
  completion runs under the same guard; so whoever wants to wait, hook on or
  cancel either comes first (the completion finds the lock and goes Future's
  locked way) or after (and finds the future finished).
* With a lock, every change that completes the future happens holding it, and
  a waiter builds the Condition *before* it takes the lock to look at the
  state: a completion that finds no Condition knows that any later waiter will
  see the finished state, and one that finds a Condition notifies it.

Everything else is Future's own code, running on the fields this class
provides under Future's names.  ``tests/test_lazyfuture.py`` pins that to the
running CPython: Future's fields must be exactly these, and the Future methods
not overridden here must touch no other; a CPython that changes them fails
that test before it can break a write.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import itertools
import os
import threading
import time
from concurrent.futures._base import (  # the state names Future itself uses
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future as _FutureBase
else:
    _FutureBase = concurrent.futures.Future

__all__ = ["FUTURE_FIELDS", "LazyFuture"]

_T = TypeVar("_T")

_DONE_STATES = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)

FUTURE_FIELDS = frozenset({"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"})
"""The fields Future.__init__ sets, which this class provides (see tests/test_lazyfuture.py)."""


class LazyFuture(_FutureBase[_T]):
    """A :class:`concurrent.futures.Future` whose lock and Condition are made on first need.

    It behaves as a Future in every way a caller can see; what differs is only
    when the lock and the Condition come into being (see the module's docstring).
    """

    # Slots for what every future sets; class defaults for what few do (read from
    # these until then).  Future's lists of waiters and done-callbacks are only
    # ever added to by code holding the Condition, so they are made with it;
    # until then these empty tuples stand in for them.
    __slots__ = ("_own_lock", "_state", "_result")
    _own_lock: Optional[Any]  # an RLock, made on first need: see _state_lock
    _state: str
    _result: Any
    _exception: Optional[BaseException] = None
    _built_condition: Optional[threading.Condition] = None
    _waiters: Any = ()
    _done_callbacks: Any = ()

    def __init__(self) -> None:
        # Future.__init__ is not called: it would build the Condition now.
        self._state = PENDING
        self._own_lock = self._result = None

    @property
    def _state_lock(self) -> Any:
        """The future's lock, made the first time it is needed.

        Made under the module's guard, which :meth:`_finish_unwatched` also
        holds: so a completion either finds no lock and is done before anyone
        can make one, or finds one and takes it.  Re-entrant, as Future's own:
        concurrent.futures.wait() holds every future's Condition while it asks
        them cancelled() and done().
        """
        lock = self._own_lock
        if lock is None:
            # Made before the guard is taken, so that nothing between taking it
            # and the store can run other code on this thread (no call, no
            # allocation: a signal handler or a GC finalizer could get in there).
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

    # -- Future's state, without a Condition nobody waits on ---------------------------

    def done(self) -> bool:
        # One read, no lock: a future never leaves a done state.
        return self._state in _DONE_STATES

    def running(self) -> bool:
        return self._state == RUNNING

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def cancel(self) -> bool:
        """Cancel the future if it has not started running; True if it is cancelled."""
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
                return False  # asked again: still cancelled
        return super().set_running_or_notify_cancel()  # cancelled, or a misuse: Future's way

    def set_result(self, result: _T) -> None:
        if not self._finish(result, None):
            super().set_result(result)  # raises InvalidStateError, as Future does

    def set_exception(self, exception: Optional[BaseException]) -> None:
        if not self._finish(None, exception):
            super().set_exception(exception)

    def _finish(self, result: Any, error: Optional[BaseException]) -> bool:
        """Complete the future; False (and nothing done) if it is done already."""
        with self._state_lock:
            if self._state in _DONE_STATES:
                return False
            self._settle(result, error)
        if self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def _settle(self, result: Any, error: Optional[BaseException]) -> None:
        """Make the future done and wake whoever waits; called holding the state lock."""
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

    def _start_unwatched(self) -> bool:
        """Mark RUNNING without making a lock, if none exists: then nobody has cancelled it or watches.

        Returns False, having done nothing, when there is a lock: the caller
        goes the locked way.  :meth:`_started_unwatched` runs under the guard.
        """
        if self._own_lock is not None:
            return False
        with _lock_guard:
            if self._own_lock is not None:
                return False
            self._state = RUNNING
            self._started_unwatched()
        return True

    def _finish_unwatched(self, result: Any, error: Optional[BaseException]) -> bool:
        """Complete the future without making a lock, if none exists: then nobody waits or hooks on.

        Returns False, having completed nothing, when there is a lock.
        :meth:`_finishing_unwatched` runs under the guard, just before the
        future becomes done.
        """
        if self._own_lock is not None:
            return False
        with _lock_guard:
            if self._own_lock is not None:
                return False
            # The outcome is stored first (it is read only once the state is
            # FINISHED): those stores may allocate, and an allocation may run a
            # GC finalizer on this thread, which the re-entrant guard lets in.
            if error is None:
                self._result = result
            else:
                self._exception = error
            # So the lock is looked for again, and from here to FINISHED nothing
            # runs but stores.  A finalizer (or a signal handler) that made the
            # lock meanwhile sends the future down the locked way, where its
            # waiter or callback is seen to.
            if self._own_lock is not None:
                return False
            self._finishing_unwatched(error)
            self._state = FINISHED  # last: done() and result() read without a lock
        return True

    @property
    def has_done_callbacks(self) -> bool:
        """Whether a done-callback waits to be called (one added by add_done_callback)."""
        return bool(self._done_callbacks)

    @staticmethod
    def start_all_unwatched(futures: Sequence[LazyFuture[Any]], first: int) -> int:
        """:meth:`_start_unwatched` for *futures* from index *first* on, in order.

        Under one hold of the guard.  Returns how many were started: it stops at the first that has a lock
        (the caller starts that one, and the rest, its own way).
        """
        started = 0
        with _lock_guard:
            for future in itertools.islice(futures, first, None):
                if future._own_lock is not None:
                    break
                future._state = RUNNING
                future._started_unwatched()
                started += 1
        return started

    @staticmethod
    def finish_all_unwatched(futures: Sequence[LazyFuture[Any]], results: Sequence[Any],
                             error: Optional[BaseException], limit: int) -> int:
        """:meth:`_finish_unwatched` for the first *limit* futures, in order.

        Each with its result, or all with *error*; under one hold of the guard.
        Returns how many were completed, from the first: it stops at the first
        that has a lock.
        """
        finished = 0
        with _lock_guard:
            while finished < limit:
                future, result = futures[finished], results[finished]
                if future._own_lock is not None:
                    break
                if error is None:
                    future._result = result
                else:
                    future._exception = error
                if future._own_lock is not None:  # made meanwhile by a finalizer: see _finish_unwatched
                    break
                future._finishing_unwatched(error)
                future._state = FINISHED
                finished += 1
        return finished

    def _started_unwatched(self) -> None:
        """For subclasses: what else changes as the future starts with no lock (under the guard)."""

    def _finishing_unwatched(self, error: Optional[BaseException]) -> None:
        """For subclasses: what else changes as the future completes with no lock (under the guard)."""

    # -- waiting ----------------------------------------------------------------

    def _wait_until_done(self, timeout: Optional[float]) -> bool:
        if self._state in _DONE_STATES:
            return True
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
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    def _forget_lock_after_fork(self) -> None:
        """In a forked child: a fresh lock when next needed (the parent's may have been held mid-fork).

        Done-callbacks stay; waiters (futures.wait() in the parent's other
        threads) have no thread here.
        """
        self._own_lock = None
        self._built_condition = None
        if not isinstance(self._waiters, tuple):
            self._waiters = []

    def __reduce__(self) -> Any:
        # As a Future (whose lock refuses pickling), and whether or not this one
        # has made its lock yet: a copy would be a future that never completes.
        raise TypeError(f"cannot pickle or copy a {type(self).__name__}: it belongs to its queue")


def _make_new_lock_guard() -> None:
    # In a forked child: the guard may have been held by a thread that is gone.
    global _lock_guard
    _lock_guard = _thread.RLock()


# Held while a future makes its lock, and while one is started or completed without one.
# Re-entrant: a signal handler or a GC finalizer may run on a thread that holds it
# and touch a future of its own.
_lock_guard = _thread.RLock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_make_new_lock_guard)
