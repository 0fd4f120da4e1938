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


@pytest.fixture
def hq():
    queue = HddQueue(name="testq")
    yield queue
    queue.shutdown(wait=True)


def queue_threads(queue_name: str) -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(queue_name + "-"))


# -- threads -------------------------------------------------------------------------------


def test_importing_nonblock_starts_no_thread():
    script = "import threading, nonblock; print(threading.active_count())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO, check=True, timeout=60)
    assert out.stdout.strip() == "1"


def test_a_queue_runs_exactly_two_named_io_threads_and_one_callback_thread(hq):
    assert queue_threads("testq") == []
    hq.submit_job(CallJob(lambda: 1)).result(timeout=30)
    assert queue_threads("testq") == ["testq-callbacks", "testq-io-0", "testq-io-1"]


def test_an_op_that_raises_is_recorded_and_the_threads_go_on(hq):
    failed = hq.submit_job(FailingJob(OSError(5, "simulated EIO")))
    assert isinstance(failed.exception(timeout=30), OSError)
    assert hq.submit_job(CallJob(lambda: "still alive")).result(timeout=30) == "still alive"
    assert len(queue_threads("testq")) == 3


# -- the task is a Future --------------------------------------------------------------------


def test_a_task_works_with_concurrent_futures(hq):
    tasks = [hq.submit_job(CallJob(lambda i=i: i * i)) for i in range(20)]
    done, not_done = concurrent.futures.wait(tasks, timeout=30)
    assert not not_done
    assert sorted(t.result() for t in concurrent.futures.as_completed(tasks)) == [i * i for i in range(20)]
    seen = []
    tasks[0].add_done_callback(seen.append)
    assert seen == [tasks[0]]  # already done: runs at once, as Future does


def test_a_task_can_be_awaited(hq):
    async def main() -> Any:
        return await hq.submit_job(CallJob(lambda: "awaited"))

    assert asyncio.run(main()) == "awaited"


def test_an_awaited_failure_raises_its_exception(hq):
    async def main() -> Any:
        return await hq.submit_job(FailingJob(ValueError("boom")))

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())


# -- states and callbacks --------------------------------------------------------------------


def test_success_walks_every_state_and_runs_on_success_then_on_end(hq):
    calls: List[Any] = []
    gate = threading.Event()
    task: Task[Any] = Task(on_success=lambda r: calls.append(("success", r, task.execution_state)),
                           on_fail=lambda e: calls.append(("fail", e)),
                           on_end=lambda t: calls.append(("end", t, t.execution_state)))
    states = task.execution_state_queue
    assert task.execution_state == "CREATED"
    hq.submit_job(LoggingJob("a", [], result=42, first_op_gate=gate), task)
    gate.set()
    assert task.result(timeout=30) == 42
    seen = [states.get(timeout=5) for _ in range(4)]
    assert seen == [ExecutionState.RUNNING, ExecutionState.RETURNED, ExecutionState.FINISHING,
                    ExecutionState.CLOSED]
    assert states.empty()
    assert calls == [("success", 42, "RETURNED"), ("end", task, "FINISHING")]
    assert task.execution_state == "CLOSED"


def test_failure_walks_the_exception_states_and_runs_on_fail_then_on_end(hq):
    calls: List[Any] = []
    error = OSError(28, "No space left on device")
    task: Task[Any] = Task(on_success=lambda r: calls.append("success"),
                           on_fail=lambda e: calls.append(("fail", e, task.execution_state)),
                           on_end=lambda t: calls.append(("end", t.execution_state)))
    states = task.execution_state_queue
    hq.submit_job(FailingJob(error), task)
    assert task.exception(timeout=30) is error
    assert [states.get(timeout=5) for _ in range(4)] == ["RUNNING", "EXCEPTION", "FINISHING", "CLOSED"]
    assert calls == [("fail", error, "EXCEPTION"), ("end", "FINISHING")]


def test_every_callback_has_run_when_result_returns(hq):
    ended = []
    task: Task[Any] = Task(on_end=lambda t: ended.append(t))
    hq.submit_job(CallJob(lambda: None), task)
    task.result(timeout=30)
    assert ended == [task]


def test_a_callback_may_ask_its_own_task_for_the_result(hq):
    answers: List[Any] = []
    task: Task[Any] = Task(on_end=lambda t: answers.append((t.result(), t.exception())))
    hq.submit_job(CallJob(lambda: "mine"), task)
    assert task.result(timeout=30) == "mine"
    assert answers == [("mine", None)]


def test_a_raising_callback_is_logged_and_the_next_callbacks_still_run(hq, caplog):
    ran: List[str] = []

    def bad_success(result: Any) -> None:
        raise RuntimeError("callback bug")

    task: Task[Any] = Task(on_success=bad_success, on_end=lambda t: ran.append("end"))
    with caplog.at_level(logging.ERROR, logger="nonblock"):
        hq.submit_job(CallJob(lambda: 1), task)
        assert task.result(timeout=30) == 1
    assert ran == ["end"]
    assert task.execution_state == "CLOSED"
    records = [r for r in caplog.records if r.name == "nonblock"]
    assert records and "callback bug" in records[0].exc_text


def test_a_callback_may_submit_more_work(hq):
    inner_results: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def chain(result: Any) -> None:
        inner = hq.submit_job(CallJob(lambda: result + 1))
        inner.add_done_callback(lambda t: inner_results.set_result(t.result()))

    hq.submit_job(CallJob(lambda: 1), Task(on_success=chain))
    assert inner_results.result(timeout=30) == 2


def test_a_callback_may_shut_the_queue_down(hq):
    log: List[Any] = []
    hq.submit_job(LoggingJob("late", log, ops=3))
    hq.submit_job(CallJob(lambda: None), Task(on_success=lambda r: hq.shutdown(wait=True)))
    assert hq.wait_idle(timeout=30)
    assert log == [("late", 0), ("late", 1), ("late", 2)]
    with pytest.raises(QueueShutdown):
        hq.submit_job(CallJob(lambda: None))


def test_a_slow_callback_does_not_delay_io(hq):
    release = threading.Event()
    hq.submit_job(CallJob(lambda: None), Task(on_end=lambda t: release.wait(60)))
    # The callback thread is stuck; IO must still happen.
    log: List[Any] = []
    io_done = threading.Event()
    hq.submit_job(CallJob(lambda: (log.append("io"), io_done.set())))
    assert io_done.wait(30)
    assert log == ["io"]
    release.set()


# -- order, fairness, throttling --------------------------------------------------------------


def test_a_small_job_waits_for_one_op_of_a_big_job_not_all_of_it(hq):
    log: List[Any] = []
    gate, started = threading.Event(), threading.Event()
    big = hq.submit_job(LoggingJob("big", log, ops=200, first_op_gate=gate, first_op_started=started))
    assert started.wait(30)
    small = hq.submit_job(LoggingJob("small", log))
    gate.set()
    small.result(timeout=30)
    big.result(timeout=30)
    assert log.index(("small", 0)) <= 2


def test_tasks_in_one_lane_run_in_submission_order_without_interleaving(hq):
    log: List[Any] = []
    tasks = [hq.submit_job(LoggingJob(f"w{i}", log, ops=5), lane="stream") for i in range(10)]
    for task in tasks:
        task.result(timeout=30)
    assert log == [(f"w{i}", op) for i in range(10) for op in range(5)]


def test_a_task_after_another_starts_only_when_that_one_is_done(hq):
    log: List[Any] = []
    gate = threading.Event()
    first = hq.submit_job(LoggingJob("first", log, ops=3, first_op_gate=gate))
    second = hq.submit_job(LoggingJob("second", log), after=[first])
    gate.set()
    second.result(timeout=30)
    assert log == [("first", 0), ("first", 1), ("first", 2), ("second", 0)]


def test_a_failed_predecessor_fails_its_successors_with_it_as_cause(hq):
    error = OSError(32, "Broken pipe")
    head = hq.submit_job(FailingJob(error))
    job = LoggingJob("never", [])
    successor = hq.submit_job(job, after=[head])
    grandchild = hq.submit_job(LoggingJob("never either", []), after=[successor])
    failure = successor.exception(timeout=30)
    assert isinstance(failure, PredecessorFailed)
    assert failure.__cause__ is error
    assert job.done_ops == 0 and job.abandoned_by is error
    assert isinstance(grandchild.exception(timeout=30), PredecessorFailed)


def test_a_dependency_on_another_queue_is_honoured(hq):
    other = HddQueue(name="otherq")
    try:
        log: List[Any] = []
        gate = threading.Event()
        first = other.submit_job(LoggingJob("other", log, first_op_gate=gate))
        second = hq.submit_job(LoggingJob("mine", log), after=[first])
        gate.set()
        second.result(timeout=30)
        assert log == [("other", 0), ("mine", 0)]
    finally:
        other.shutdown()


def test_a_cancelled_pending_task_never_runs_and_fails_its_successors(hq):
    log: List[Any] = []
    gate, started = threading.Event(), threading.Event()
    hq.submit_job(LoggingJob("blocker", log, first_op_gate=gate, first_op_started=started), lane="s")
    assert started.wait(30)
    victim = hq.submit_job(LoggingJob("victim", log), lane="s")
    successor = hq.submit_job(LoggingJob("successor", log), after=[victim])
    assert victim.cancel()
    gate.set()
    assert isinstance(successor.exception(timeout=30), PredecessorFailed)
    assert victim.cancelled()
    assert ("victim", 0) not in log and ("successor", 0) not in log


def test_a_throttled_task_does_not_hold_an_io_thread_while_it_rests(hq):
    # Two tasks resting for a long time between ops: if resting held an IO thread,
    # both threads would be taken and the quick task could not run until they woke.
    log: List[Any] = []
    resting = [hq.submit_job(LoggingJob(f"rest{i}", log, ops=2, pause_between_ops=5.0)) for i in range(2)]
    quick = hq.submit_job(LoggingJob("quick", log))
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


def test_a_task_completes_only_after_the_callbacks_of_tasks_that_finished_before_it(hq):
    # Tasks without callbacks may be completed straight from the IO thread; that
    # must never let one overtake an earlier task whose callbacks are still running.
    release = threading.Event()
    ran: List[str] = []

    def slow_success(result: Any) -> None:
        release.wait(60)
        ran.append("first's on_success")

    first = hq.submit_job(CallJob(lambda: 1), Task(on_success=slow_success), lane="s")
    second = hq.submit_job(CallJob(lambda: 2), lane="s")
    assert not second.wait(0.2)  # held behind first's callback, however long it takes
    release.set()
    assert second.result(timeout=30) == 2
    assert ran == ["first's on_success"] and first.done()


def test_a_done_callback_never_runs_on_an_io_thread(hq):
    threads: List[str] = []
    gate, started = threading.Event(), threading.Event()
    task = hq.submit_job(LoggingJob("t", [], first_op_gate=gate, first_op_started=started))
    assert started.wait(30)
    task.add_done_callback(lambda t: threads.append(threading.current_thread().name))
    gate.set()
    task.result(timeout=30)
    hq.wait_idle(timeout=30)
    assert threads == ["testq-callbacks"]
