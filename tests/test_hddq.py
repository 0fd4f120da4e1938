"""The engine: HddQueue and Task, as DESIGN.md specifies them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, List

import pytest
from _jobs import CallJob, FailingJob, LoggingJob

from nonblock.hddq import (
    ExecutionState,
    HddQueue,
    PredecessorFailed,
    QueueShutdown,
    Task,
)

REPO = Path(__file__).resolve().parents[1]


def queue_threads(queue_name: str) -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(queue_name + "-"))


# -- threads -------------------------------------------------------------------------------


def test_importing_nonblock_starts_no_thread():
    script = "import threading, nonblock; print(threading.active_count())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO, check=True, timeout=60)
    assert out.stdout.strip() == "1"


def test_a_queue_runs_exactly_two_named_io_threads_and_one_callback_thread(queue):
    assert queue_threads(queue.name) == []
    queue.submit_job(CallJob(lambda: 1)).result(timeout=30)
    assert queue_threads(queue.name) == [f"{queue.name}-{role}" for role in ("callbacks", "io-0", "io-1")]


def test_an_op_that_raises_is_recorded_and_the_threads_go_on(queue):
    failed = queue.submit_job(FailingJob(OSError(5, "simulated EIO")))
    assert isinstance(failed.exception(timeout=30), OSError)
    assert queue.submit_job(CallJob(lambda: "still alive")).result(timeout=30) == "still alive"
    assert len(queue_threads(queue.name)) == 3


# -- the task is a Future --------------------------------------------------------------------


def test_a_task_works_with_concurrent_futures(queue):
    tasks = [queue.submit_job(CallJob(lambda i=i: i * i)) for i in range(20)]
    done, not_done = concurrent.futures.wait(tasks, timeout=30)
    assert not not_done
    assert sorted(t.result() for t in concurrent.futures.as_completed(tasks)) == [i * i for i in range(20)]
    seen = []
    tasks[0].add_done_callback(seen.append)
    assert seen == [tasks[0]]  # already done: runs at once, as Future does


def test_a_task_can_be_awaited(queue):
    async def main() -> Any:
        return await queue.submit_job(CallJob(lambda: "awaited"))

    assert asyncio.run(main()) == "awaited"


def test_an_awaited_failure_raises_its_exception(queue):
    async def main() -> Any:
        return await queue.submit_job(FailingJob(ValueError("boom")))

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())


# -- states and callbacks --------------------------------------------------------------------


def test_success_walks_every_state_and_runs_on_success_then_on_end(queue):
    calls: List[Any] = []
    gate = threading.Event()
    task: Task[Any] = Task(on_success=lambda r: calls.append(("success", r, task.execution_state)),
                           on_fail=lambda e: calls.append(("fail", e)),
                           on_end=lambda t: calls.append(("end", t, t.execution_state)))
    states = task.execution_state_queue
    assert task.execution_state == "CREATED"
    queue.submit_job(LoggingJob("a", [], result=42, first_op_gate=gate), task)
    gate.set()
    assert task.result(timeout=30) == 42
    seen = [states.get(timeout=5) for _ in range(4)]
    assert seen == [ExecutionState.RUNNING, ExecutionState.RETURNED, ExecutionState.FINISHING,
                    ExecutionState.CLOSED]
    assert states.empty()
    assert calls == [("success", 42, "RETURNED"), ("end", task, "FINISHING")]
    assert task.execution_state == "CLOSED"


def test_failure_walks_the_exception_states_and_runs_on_fail_then_on_end(queue):
    calls: List[Any] = []
    error = OSError(28, "No space left on device")
    task: Task[Any] = Task(on_success=lambda r: calls.append("success"),
                           on_fail=lambda e: calls.append(("fail", e, task.execution_state)),
                           on_end=lambda t: calls.append(("end", t.execution_state)))
    states = task.execution_state_queue
    queue.submit_job(FailingJob(error), task)
    assert task.exception(timeout=30) is error
    assert [states.get(timeout=5) for _ in range(4)] == ["RUNNING", "EXCEPTION", "FINISHING", "CLOSED"]
    assert calls == [("fail", error, "EXCEPTION"), ("end", "FINISHING")]


def test_every_callback_has_run_when_result_returns(queue):
    ended = []
    task: Task[Any] = Task(on_end=lambda t: ended.append(t))
    queue.submit_job(CallJob(lambda: None), task)
    task.result(timeout=30)
    assert ended == [task]


def test_a_callback_may_ask_its_own_task_for_the_result(queue):
    answers: List[Any] = []
    task: Task[Any] = Task(on_end=lambda t: answers.append((t.result(), t.exception())))
    queue.submit_job(CallJob(lambda: "mine"), task)
    assert task.result(timeout=30) == "mine"
    assert answers == [("mine", None)]


def test_a_raising_callback_is_logged_and_the_next_callbacks_still_run(queue, caplog):
    ran: List[str] = []

    def bad_success(result: Any) -> None:
        raise RuntimeError("callback bug")

    task: Task[Any] = Task(on_success=bad_success, on_end=lambda t: ran.append("end"))
    with caplog.at_level(logging.ERROR, logger="nonblock"):
        queue.submit_job(CallJob(lambda: 1), task)
        assert task.result(timeout=30) == 1
    assert ran == ["end"]
    assert task.execution_state == "CLOSED"
    records = [r for r in caplog.records if r.name == "nonblock"]
    assert records and "callback bug" in records[0].exc_text


def test_a_callback_may_submit_more_work(queue):
    inner_results: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def chain(result: Any) -> None:
        inner = queue.submit_job(CallJob(lambda: result + 1))
        inner.add_done_callback(lambda t: inner_results.set_result(t.result()))

    queue.submit_job(CallJob(lambda: 1), Task(on_success=chain))
    assert inner_results.result(timeout=30) == 2


def test_a_callback_may_shut_the_queue_down(queue):
    log: List[Any] = []
    queue.submit_job(LoggingJob("late", log, ops=3))
    queue.submit_job(CallJob(lambda: None), Task(on_success=lambda r: queue.shutdown(wait=True)))
    assert queue.wait_idle(timeout=30)
    assert log == [("late", 0), ("late", 1), ("late", 2)]
    with pytest.raises(QueueShutdown):
        queue.submit_job(CallJob(lambda: None))


def test_a_slow_callback_does_not_delay_io(queue):
    release = threading.Event()
    queue.submit_job(CallJob(lambda: None), Task(on_end=lambda t: release.wait(60)))
    # The callback thread is stuck; IO must still happen.
    log: List[Any] = []
    io_done = threading.Event()
    queue.submit_job(CallJob(lambda: (log.append("io"), io_done.set())))
    assert io_done.wait(30)
    assert log == ["io"]
    release.set()


# -- order, fairness, throttling --------------------------------------------------------------


def test_a_small_job_waits_for_one_op_of_a_big_job_not_all_of_it(queue):
    log: List[Any] = []
    gate, started = threading.Event(), threading.Event()
    big = queue.submit_job(LoggingJob("big", log, ops=200, first_op_gate=gate, first_op_started=started))
    assert started.wait(30)
    small = queue.submit_job(LoggingJob("small", log))
    gate.set()
    small.result(timeout=30)
    big.result(timeout=30)
    assert log.index(("small", 0)) <= 2


def test_tasks_in_one_lane_run_in_submission_order_without_interleaving(queue):
    log: List[Any] = []
    tasks = [queue.submit_job(LoggingJob(f"w{i}", log, ops=5), lane="stream") for i in range(10)]
    for task in tasks:
        task.result(timeout=30)
    assert log == [(f"w{i}", op) for i in range(10) for op in range(5)]


def test_a_task_after_another_starts_only_when_that_one_is_done(queue):
    log: List[Any] = []
    gate = threading.Event()
    first = queue.submit_job(LoggingJob("first", log, ops=3, first_op_gate=gate))
    second = queue.submit_job(LoggingJob("second", log), after=[first])
    gate.set()
    second.result(timeout=30)
    assert log == [("first", 0), ("first", 1), ("first", 2), ("second", 0)]


def test_a_failed_predecessor_fails_its_successors_with_it_as_cause(queue):
    error = OSError(32, "Broken pipe")
    head = queue.submit_job(FailingJob(error))
    job = LoggingJob("never", [])
    successor = queue.submit_job(job, after=[head])
    grandchild = queue.submit_job(LoggingJob("never either", []), after=[successor])
    failure = successor.exception(timeout=30)
    assert isinstance(failure, PredecessorFailed)
    assert failure.__cause__ is error
    assert job.done_ops == 0 and job.abandoned_by is error
    assert isinstance(grandchild.exception(timeout=30), PredecessorFailed)


def test_a_dependency_on_another_queue_is_honoured(queue):
    other = HddQueue(name="otherq")
    try:
        log: List[Any] = []
        gate = threading.Event()
        first = other.submit_job(LoggingJob("other", log, first_op_gate=gate))
        second = queue.submit_job(LoggingJob("mine", log), after=[first])
        gate.set()
        second.result(timeout=30)
        assert log == [("other", 0), ("mine", 0)]
    finally:
        other.shutdown()


def test_a_cancelled_pending_task_never_runs_and_fails_its_successors(queue):
    log: List[Any] = []
    gate, started = threading.Event(), threading.Event()
    queue.submit_job(LoggingJob("blocker", log, first_op_gate=gate, first_op_started=started), lane="s")
    assert started.wait(30)
    victim = queue.submit_job(LoggingJob("victim", log), lane="s")
    successor = queue.submit_job(LoggingJob("successor", log), after=[victim])
    assert victim.cancel()
    gate.set()
    assert isinstance(successor.exception(timeout=30), PredecessorFailed)
    assert victim.cancelled()
    assert ("victim", 0) not in log and ("successor", 0) not in log


def test_a_throttled_task_does_not_hold_an_io_thread_while_it_rests(queue):
    # Two tasks resting for a long time between ops: if resting held an IO thread,
    # both threads would be taken and the quick task could not run until they woke.
    log: List[Any] = []
    resting = [queue.submit_job(LoggingJob(f"rest{i}", log, ops=2, pause_between_ops=5.0)) for i in range(2)]
    quick = queue.submit_job(LoggingJob("quick", log))
    quick.result(timeout=30)
    assert not any(task.done() for task in resting)
    for task in resting:
        task.result(timeout=60)


# -- shutdown ------------------------------------------------------------------------------


def test_is_shutdown_is_false_before_first_use_and_true_after_shutdown():
    queue = HddQueue(name="fresh")
    assert queue.is_shutdown() is False
    queue.shutdown()
    assert queue.is_shutdown() is True


def test_shutdown_drains_everything_accepted_including_resting_tasks():
    queue = HddQueue(name="drainq")
    log: List[Any] = []
    tasks = [queue.submit_job(LoggingJob(f"t{i}", log, ops=3, pause_between_ops=0.05), lane="l")
             for i in range(5)]
    queue.shutdown(wait=True)
    assert all(task.done() for task in tasks)
    assert log == [(f"t{i}", op) for i in range(5) for op in range(3)]
    assert queue_threads("drainq") == []
    assert queue.is_shutdown()


def test_shutdown_refuses_new_work_with_queue_shutdown_a_runtime_error():
    queue = HddQueue(name="closedq")
    queue.submit_job(CallJob(lambda: None)).result(timeout=30)
    queue.shutdown()
    queue.shutdown()  # idempotent
    with pytest.raises(QueueShutdown) as raised:
        queue.submit_job(CallJob(lambda: None))
    assert isinstance(raised.value, RuntimeError)


def test_a_task_completes_only_after_the_callbacks_of_tasks_that_finished_before_it(queue):
    # Tasks without callbacks may be completed straight from the IO thread; that
    # must never let one overtake an earlier task whose callbacks are still running.
    release = threading.Event()
    ran: List[str] = []

    def slow_success(result: Any) -> None:
        release.wait(60)
        ran.append("first's on_success")

    first = queue.submit_job(CallJob(lambda: 1), Task(on_success=slow_success), lane="s")
    second = queue.submit_job(CallJob(lambda: 2), lane="s")
    assert not second.wait(0.2)  # held behind first's callback, however long it takes
    release.set()
    assert second.result(timeout=30) == 2
    assert ran == ["first's on_success"] and first.done()


def test_a_done_callback_never_runs_on_an_io_thread(queue):
    threads: List[str] = []
    gate, started = threading.Event(), threading.Event()
    task = queue.submit_job(LoggingJob("t", [], first_op_gate=gate, first_op_started=started))
    assert started.wait(30)
    task.add_done_callback(lambda t: threads.append(threading.current_thread().name))
    gate.set()
    task.result(timeout=30)
    queue.wait_idle(timeout=30)
    assert threads == [f"{queue.name}-callbacks"]
