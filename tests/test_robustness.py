"""Robustness: misbehaving callbacks, jobs and callers cannot break the queue.

Each case was a real bug found in review.  Should one come back, the queue it
breaks is taken out of ``engine._live_queues`` at the end of the test, so the
interpreter's exit drain does not wait for it and hang the test session.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap
from typing import Any, Optional

import pytest

from nonblock import engine
from nonblock.background import ThreadManager
from nonblock.bgwrite import bgwrite
from nonblock.hddq import HddQueue, Step, Task


class _OneOpJob:
    def __init__(self, result: Any = None) -> None:
        self.result = result

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        return Step.done(self.result)

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        return None


class _BadStepJob(_OneOpJob):
    """A job whose perform() returns something that is not a Step."""

    def perform(self, task: Task[Any]) -> Step:
        return None  # type: ignore[return-value]


@pytest.fixture
def broken_queue():
    queues = []

    def make(name: str) -> HddQueue:
        queue_ = HddQueue(name)
        queues.append(queue_)
        return queue_

    yield make
    for queue_ in queues:
        queue_.shutdown(wait=False)
        engine._live_queues.discard(queue_)


# -- callbacks that raise SystemExit ----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_callback_raising_system_exit_is_logged_and_the_queue_goes_on(broken_queue):
    queue_ = broken_queue("review-sysexit")
    manager = ThreadManager(queue_)

    def leave(_result: Any) -> None:
        raise SystemExit(3)  # e.g. a callback that calls sys.exit()

    first = manager.do_async(lambda: 1, on_success=leave)
    assert first.wait(5), "the task whose callback raised SystemExit never completed"
    second = manager.do_async(lambda: 2, on_success=lambda _r: None)
    assert second.wait(5), "the callback thread died: later tasks never complete"
    assert queue_.wait_idle(5)


# -- jobs that return bad steps ---------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_job_returning_a_non_step_fails_its_task_not_an_io_thread(broken_queue):
    queue_ = broken_queue("review-badstep")
    bad = queue_.submit_job(_BadStepJob())
    assert bad.wait(5), "a job returning a non-Step must fail its task, not kill the IO thread"
    assert isinstance(bad.exception(), TypeError)
    good = queue_.submit_job(_OneOpJob("ok"))
    assert good.wait(5), "work submitted after the bad job never ran"


@pytest.mark.timeout(30)
def test_a_job_sleeping_for_a_bad_duration_fails_its_task_not_an_io_thread(broken_queue):
    queue_ = broken_queue("review-badsleep")

    class BadSleep(_OneOpJob):
        def perform(self, task: Task[Any]) -> Step:
            return Step.sleep(None)  # type: ignore[arg-type]

    bad = queue_.submit_job(BadSleep())
    assert bad.wait(5), "a bad Step.sleep must fail its task, not kill the IO thread"
    good = queue_.submit_job(_OneOpJob("ok"))
    assert good.wait(5), "work submitted after the bad job never ran"


# -- after= with something that is not a task -------------------------------------------------------


@pytest.mark.timeout(30)
def test_after_with_a_plain_future_fails_at_the_call_with_nothing_queued(broken_queue):
    queue_ = broken_queue("review-after")
    with pytest.raises(TypeError, match="after"):
        queue_.submit_job(_OneOpJob(), after=[concurrent.futures.Future()])
    # The call failed, so nothing may be left queued: otherwise wait_idle,
    # shutdown and the interpreter's exit drain wait forever.
    assert queue_.wait_idle(3), "the refused submission left a task accepted forever"


# -- a cancelled write that owns its stream ---------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_cancelled_close_when_finished_write_still_closes_its_stream(tmp_path):
    queue_ = HddQueue("review-cancel-close")
    try:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        pipe = open(write_fd, "wb", buffering=0)
        reader = open(read_fd, "rb", buffering=0)
        # Fill the pipe so the first write waits for room (EAGAIN), holding the lane.
        blocker = bgwrite(pipe, b"x" * (1 << 20), queue=queue_)
        target = open(tmp_path / "out", "wb")
        # Chained after the blocked write: it is pending, so it can be cancelled.
        second = bgwrite(target, b"data", closeWhenFinished=True, chainAfter=blocker, queue=queue_)
        assert second.cancel()
        received = 0
        while received < (1 << 20):
            received += len(reader.read(1 << 16))
        assert blocker.wait(10)
        assert queue_.wait_idle(10)
        assert target.closed, "closeWhenFinished: a cancelled write still must close its stream"
    finally:
        queue_.shutdown()
        for stream in ("pipe", "reader", "target"):
            obj = locals().get(stream)
            if obj is not None:
                obj.close()


# -- waiting from inside the queue; text streams that say EAGAIN ------------------------------------


@pytest.mark.timeout(30)
def test_waiting_for_a_task_from_its_own_queues_thread_is_refused_not_a_deadlock(broken_queue):
    # An op holds the disk token, so a nested task of the same queue could never
    # run while the outer one waits: a clear error instead of a hang.
    queue_ = broken_queue("nested")
    manager = ThreadManager(queue_)

    def outer() -> Any:
        inner = manager.do_async(lambda: 42)
        return inner.result(timeout=5)

    task = manager.do_async(outer)
    assert task.wait(15)
    assert isinstance(task.exception(), RuntimeError)
    assert "deadlock" in str(task.exception())


def test_a_text_stream_on_a_nonblocking_descriptor_is_refused_at_the_call():
    # TextIOWrapper drops what it had encoded when its buffer meets EAGAIN, so no
    # retry could deliver every character: refuse rather than corrupt.
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    out = open(write_fd, "w", encoding="utf-8")
    try:
        with pytest.raises(ValueError, match="non-blocking"):
            bgwrite(out, "\u00e9" * 1000)
        binary = bgwrite(out.buffer, "\u00e9".encode() * 1000)
        assert binary.result(timeout=30) == 2000
        assert os.read(read_fd, 4096) == "\u00e9".encode() * 1000
    finally:
        out.close()
        os.close(read_fd)


# -- exit after a refused submission ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_refused_after_leaves_nothing_to_hang_the_exit_drain():
    script = textwrap.dedent(
        """
        import concurrent.futures
        from nonblock import hddq
        from nonblock.hddq import Step

        class Job:
            def prepare(self): pass
            def perform(self, task): return Step.done(1)
            def abandon(self, cause): return None

        try:
            hddq.default_queue().submit_job(Job(), after=[concurrent.futures.Future()])
        except Exception:
            pass
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the program hung at exit, draining a task that can never run")
