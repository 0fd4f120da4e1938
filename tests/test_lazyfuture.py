"""LazyFuture is pinned to the running CPython's concurrent.futures.Future.

LazyFuture replaces Future's constructor and the methods that touch its lock,
and leaves the rest (add_done_callback, _invoke_callbacks, __repr__, ...) to
Future's own code running on the fields LazyFuture provides.  That holds only
while Future keeps those fields.  These tests fail on a CPython whose Future
grew or renamed a field, or whose inherited methods reach for one LazyFuture
does not provide, before that could break a write.
"""

from __future__ import annotations

import concurrent.futures
import dis
import sys
import threading
from typing import Set

from nonblock.lazyfuture import FUTURE_FIELDS, LazyFuture
from nonblock.task import Task


def test_future_sets_exactly_the_fields_lazyfuture_provides():
    assert set(vars(concurrent.futures.Future())) == FUTURE_FIELDS, sys.version


def test_every_field_reads_as_a_fresh_future_has_it():
    future, lazy = concurrent.futures.Future(), LazyFuture()
    for name in FUTURE_FIELDS - {"_condition", "_waiters", "_done_callbacks"}:
        assert getattr(lazy, name) == getattr(future, name), name
    # These three are made with the lock, on first need, as Future's.
    condition = lazy._condition
    assert isinstance(condition, threading.Condition) and lazy._condition is condition
    assert lazy._waiters == [] and lazy._done_callbacks == []


def _private_attributes_used_by(function: object) -> Set[str]:
    code = getattr(function, "__code__", None)
    if code is None:
        return set()
    names = {instruction.argval for instruction in dis.get_instructions(code)
             if instruction.opname in ("LOAD_ATTR", "STORE_ATTR", "LOAD_METHOD", "DELETE_ATTR")}
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_the_future_methods_lazyfuture_runs_use_only_what_it_provides():
    # Inherited ones (add_done_callback, _invoke_callbacks...) and overridden ones
    # it calls through super() (result, set_result... on their rare paths) alike.
    provided = FUTURE_FIELDS | {name for name in vars(concurrent.futures.Future) if name.startswith("_")}
    checked = 0
    for name, method in vars(concurrent.futures.Future).items():
        if name == "__init__" or not callable(method):
            continue  # LazyFuture never runs Future's constructor
        used = _private_attributes_used_by(method)
        checked += bool(used)
        assert used <= provided, f"Future.{name} uses {sorted(used - provided)} on {sys.version}"
    assert checked >= 8  # the inspection sees Future's attribute use at all


def test_a_future_nobody_waits_on_is_completed_without_a_lock_or_condition():
    future: LazyFuture[int] = LazyFuture()
    assert future.set_running_or_notify_cancel()
    future.set_result(7)
    assert future.result() == 7 and future.done() and not future.running()
    task: Task[int] = Task()
    assert task.mark_running()
    assert task.end_io(7, None, True) == (True, None)
    assert task.result() == 7
    assert task._own_lock is None and task._built_condition is None  # neither start nor end made one


def test_a_lazyfuture_works_with_futures_wait_and_as_completed():
    futures = [LazyFuture() for _ in range(20)]

    def complete_all() -> None:
        for index, future in enumerate(futures):
            future.set_result(index)

    threading.Thread(target=complete_all).start()
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert len(done) == 20 and not not_done
    finished = concurrent.futures.as_completed(futures, 30)
    assert sorted(future.result() for future in finished) == list(range(20))
