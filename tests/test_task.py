"""A Task is a concurrent.futures.Future that builds its Condition only when somebody waits.

These tests hold a Task to Future's contract directly (no queue), across the
races that the on-demand Condition could get wrong: a waiter arriving while the
task completes, done-callbacks, futures.wait and as_completed, cancellation.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, List

import pytest

from nonblock.task import ExecutionState, Task


def test_a_task_has_every_field_a_future_has():
    # Future.__init__ is skipped on purpose; a new field in a later Python must not be missed.
    future = concurrent.futures.Future()
    task = Task()
    for name, value in vars(future).items():
        if name not in ("_condition", "_waiters", "_done_callbacks"):  # those three come later
            assert getattr(task, name) == value, name
    condition = task._condition
    assert isinstance(condition, threading.Condition) and task._condition is condition
    assert task._waiters == [] and task._done_callbacks == []  # made with the Condition


def test_completing_a_task_nobody_waits_on_builds_no_condition():
    task: Task[int] = Task()
    assert task.set_running_or_notify_cancel()
    task.set_result(7)
    assert not {"_built_condition", "_waiters", "_done_callbacks"} & set(vars(task))
    assert task.done() and task.result() == 7 and task.exception() is None


def test_a_result_set_twice_is_refused_as_future_refuses_it():
    task: Task[int] = Task()
    task.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        task.set_result(2)
    with pytest.raises(concurrent.futures.InvalidStateError):
        task.set_exception(ValueError("late"))
    assert task.result() == 1


def test_an_exception_is_raised_by_result_and_returned_by_exception():
    task: Task[int] = Task()
    error = OSError(28, "No space left on device")
    task.set_exception(error)
    assert task.exception() is error
    with pytest.raises(OSError) as raised:
        task.result()
    assert raised.value is error


def _wait_in_a_thread(task: Task[int], how: str, seen: List[Any]) -> threading.Thread:
    started = threading.Event()

    def waiter() -> None:
        started.set()
        if how == "result":
            seen.append(task.result())
        elif how == "wait":
            seen.append(task.wait())
        else:
            seen.append(task.exception())

    thread = threading.Thread(target=waiter)
    thread.start()
    started.wait()
    return thread


@pytest.mark.parametrize("how", ["result", "wait", "exception"])
def test_waiters_that_arrive_while_the_task_completes_all_wake(how):
    # Many rounds of a waiter racing the completion: a lost wake-up hangs here
    # (the pytest timeout turns that into a failure).
    for _ in range(300):
        task: Task[int] = Task()
        seen: List[Any] = []
        thread = _wait_in_a_thread(task, how, seen)
        task.set_result(5)
        thread.join()
        assert seen == [{"result": 5, "wait": True, "exception": None}[how]]


def test_a_timed_wait_on_an_unfinished_task_times_out():
    task: Task[int] = Task()
    assert task.wait(0.01) is False
    with pytest.raises(concurrent.futures.TimeoutError):
        task.result(0.01)


def test_done_callbacks_run_once_whether_added_before_or_after_completion():
    task: Task[int] = Task()
    calls: List[str] = []
    task.add_done_callback(lambda t: calls.append(f"before {t.result()}"))
    task.set_result(3)
    task.add_done_callback(lambda t: calls.append(f"after {t.result()}"))
    assert calls == ["before 3", "after 3"]


def test_futures_wait_and_as_completed_see_tasks_completed_from_another_thread():
    tasks: List[Task[int]] = [Task() for _ in range(50)]
    go = threading.Event()

    def complete_all() -> None:
        go.wait()
        for index, task in enumerate(tasks):
            task.set_result(index)

    thread = threading.Thread(target=complete_all)
    thread.start()
    waiting = concurrent.futures.as_completed(tasks, timeout=30)
    go.set()
    assert sorted(task.result() for task in waiting) == list(range(50))
    done, not_done = concurrent.futures.wait(tasks, timeout=30)
    thread.join()
    assert len(done) == 50 and not not_done


def test_a_cancelled_task_does_not_start_and_wakes_its_waiters():
    task: Task[int] = Task()
    assert task.cancel()
    assert task.cancelled() and task.done()
    assert task.set_running_or_notify_cancel() is False
    assert task.set_running_or_notify_cancel() is False  # asking twice is harmless
    with pytest.raises(concurrent.futures.CancelledError):
        task.result()


def test_a_running_task_cannot_be_cancelled():
    task: Task[int] = Task()
    assert task._start()
    assert task.execution_state is ExecutionState.RUNNING
    assert not task.cancel()
    assert task.running()


def test_quiet_completion_declines_when_anybody_would_be_told():
    with_callback: Task[int] = Task(on_end=lambda t: None)
    assert with_callback._end_io(1, None, True) == (False, None)
    watched: Task[int] = Task()
    assert watched.execution_state_queue.empty()  # somebody watches the states
    assert watched._end_io(1, None, True) == (False, None)
    with_done_callback: Task[int] = Task()
    with_done_callback.add_done_callback(lambda t: None)
    assert with_done_callback._end_io(1, None, True) == (False, None)
    assert not (with_callback.done() or watched.done() or with_done_callback.done())
    plain: Task[int] = Task()
    assert plain._end_io(1, None, True) == (True, None)
    assert plain.execution_state is ExecutionState.CLOSED and plain.result() == 1
    not_now: Task[int] = Task()
    assert not_now._end_io(1, None, False) == (False, None)  # the engine said: not here
    assert not not_now.done()


def test_futures_wait_for_the_first_exception_returns_at_once_when_one_has_failed():
    # wait() holds every future's Condition while it asks them done() and
    # cancelled(): the lock under a task's Condition must let it ask.
    failed: Task[int] = Task()
    failed.set_exception(OSError("boom"))
    pending: Task[int] = Task()
    done, not_done = concurrent.futures.wait(
        [failed, pending], timeout=30, return_when=concurrent.futures.FIRST_EXCEPTION
    )
    assert done == {failed} and not_done == {pending}
    pending.set_result(1)  # and nothing was left holding its lock
    assert pending.result(timeout=30) == 1
