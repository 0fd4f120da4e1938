"""A Task is a concurrent.futures.Future (a LazyFuture) with thread_manager's task model.

These tests hold a Task to Future's contract directly (no queue), across the
races that the on-demand Condition could get wrong: a waiter arriving while the
task completes, done-callbacks, futures.wait and as_completed, cancellation;
and to its model: quiet completion only when nobody is to be told.
"""

from __future__ import annotations

import concurrent.futures
import copy
import pickle
import sys
import threading
from typing import Any, List, Optional

import pytest

from nonblock.task import ExecutionState, Task, end_io_in_order


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
    assert task.mark_running()
    assert task.execution_state is ExecutionState.RUNNING
    assert not task.cancel()
    assert task.running()


def test_quiet_completion_declines_when_anybody_would_be_told():
    with_callback: Task[int] = Task(on_end=lambda t: None)
    assert with_callback.end_io(1, None, True) == (False, None)
    watched: Task[int] = Task()
    assert watched.execution_state_queue.empty()  # somebody watches the states
    assert watched.end_io(1, None, True) == (False, None)
    with_done_callback: Task[int] = Task()
    with_done_callback.add_done_callback(lambda t: None)
    assert with_done_callback.end_io(1, None, True) == (False, None)
    assert not (with_callback.done() or watched.done() or with_done_callback.done())
    plain: Task[int] = Task()
    assert plain.end_io(1, None, True) == (True, None)
    assert plain.execution_state is ExecutionState.CLOSED and plain.result() == 1
    not_now: Task[int] = Task()
    assert not_now.end_io(1, None, False) == (False, None)  # the engine said: not here
    assert not not_now.done()


def test_tasks_ending_together_are_completed_in_order_until_one_needs_the_callback_thread():
    plain = [Task() for _ in range(3)]
    waited_on: Task[int] = Task()
    waiter_saw: List[Any] = []
    waiter = _wait_in_a_thread(waited_on, "result", waiter_saw)
    with_callback: Task[int] = Task(on_success=lambda result: None)
    after_it: Task[int] = Task()
    tasks = [plain[0], waited_on, plain[1], with_callback, after_it, plain[2]]
    completed, handed_over, hooks = end_io_in_order(tasks, [0, 1, 2, 3, 4, 5], None, True)
    waiter.join()
    assert completed == [plain[0], waited_on, plain[1]] and waiter_saw == [1]
    # From the first task with a callback on, every one goes to the callback
    # thread, so that none completes before the one ahead of it.
    assert handed_over == [(with_callback, 3, None), (after_it, 4, None), (plain[2], 5, None)]
    assert hooks == []
    assert [task.result() for task in completed] == [0, 1, 2]
    assert all(task.execution_state is ExecutionState.CLOSED for task in completed)
    assert not any(task.done() for task, _, _ in handed_over)


def test_tasks_ending_together_with_an_error_all_carry_it_and_release_their_hooks():
    error = OSError(28, "No space left on device")
    tasks = [Task() for _ in range(3)]
    released: List[Task[Any]] = []
    tasks[1].add_io_done_hook(released.append)
    completed, handed_over, hooks = end_io_in_order(tasks, [None] * 3, error, True)
    assert completed == tasks and handed_over == []
    assert hooks == [(released.append, tasks[1])]
    for task in tasks:
        assert task.exception() is error and task.io_error is error


@pytest.mark.parametrize("how", ["result", "wait", "exception", "done_callback"])
def test_waiters_that_arrive_while_tasks_end_together_all_wake(how):
    # A task that has no lock is completed under the module's guard, which is
    # also where a waiter makes its task's lock: a waiter arriving at
    # any moment either finds the task done or is woken.  A lost wake-up hangs
    # here (the pytest timeout turns that into a failure).  Threads switch as
    # often as the interpreter allows, so that the waiter lands in every gap.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _race_waiters_against_ending_together(how)
    finally:
        sys.setswitchinterval(switch_interval)


def _race_waiters_against_ending_together(how: str) -> None:
    for _ in range(300):
        tasks = [Task() for _ in range(4)]
        seen: List[Any] = []
        if how == "done_callback":
            called = threading.Event()
            adder = threading.Thread(
                target=tasks[2].add_done_callback, args=(lambda t, called=called: called.set(),)
            )
            adder.start()
            _, handed_over, _ = end_io_in_order(tasks, [7] * 4, None, True)
            for task, result, error in handed_over:  # as the callback thread does
                task.deliver(result, error)
            adder.join()
            assert called.wait(30)
            continue
        thread = _wait_in_a_thread(tasks[2], how, seen)
        end_io_in_order(tasks, [7] * 4, None, True)
        thread.join()
        assert seen == [{"result": 7, "wait": True, "exception": None}[how]]


class _LetsAWaiterInWhileItEnds(Task[int]):
    """A task that starts a waiter at the worst moment: while the engine is ending it.

    Reading ``on_success`` is part of deciding to complete a task without a
    lock.  Here that read starts a thread that waits on the task, and gives it
    time to get as far as it can before the decision goes on.
    """

    waiter: Optional[threading.Thread] = None

    @property  # type: ignore[override]
    def on_success(self) -> None:
        if self.waiter is None:
            self.waiter = threading.Thread(target=self.wait)
            self.waiter.start()
            self.waiter.join(0.2)  # it should be held (at the guard), not gone to sleep
        return None


def test_a_waiter_that_arrives_while_its_task_ends_without_a_lock_is_not_forgotten():
    task = _LetsAWaiterInWhileItEnds()
    completed, _, _ = end_io_in_order([task], [3], None, True)
    assert task.waiter is not None
    task.waiter.join(30)
    assert not task.waiter.is_alive(), "the waiter missed the completion and sleeps on"
    assert completed == [task] and task.result() == 3


class _HooksItselfWhileItEnds(Task[int]):
    """A task that, while the engine is ending it, adds a done-callback from that same thread.

    Reading ``on_success`` happens under the module's guard, as a GC finalizer
    or a signal handler could run there: code that touches a task's lock
    re-enters the guard on the thread that holds it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.called_back: List[Task[int]] = []
        self.hooked = False

    @property  # type: ignore[override]
    def on_success(self) -> None:
        if not self.hooked:
            self.hooked = True
            self.add_done_callback(self.called_back.append)
        return None


def test_code_that_runs_on_the_ending_thread_may_touch_the_task_it_interrupts():
    task = _HooksItselfWhileItEnds()
    outcome: List[Any] = []
    ender = threading.Thread(target=lambda: outcome.append(end_io_in_order([task], [5], None, True)))
    ender.start()
    ender.join(30)
    assert not ender.is_alive(), "ending the task hung on its own thread's guard"
    completed, handed_over, _ = outcome[0]
    # The callback was added after the check for a lock: the task must not be
    # completed quietly past it, but handed to the callback thread.
    assert completed == [] and handed_over == [(task, 5, None)]
    task.deliver(5, None)  # as the callback thread does
    assert task.result() == 5 and task.called_back == [task]


def test_a_task_cannot_be_pickled_or_copied_as_a_future_cannot():
    for task in (Task(), Task[int]()):
        with pytest.raises(TypeError):
            pickle.dumps(task)
        with pytest.raises(TypeError):
            copy.copy(task)
        with pytest.raises(TypeError):
            copy.deepcopy(task)


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
