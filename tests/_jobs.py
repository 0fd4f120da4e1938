"""Small real jobs for driving the engine in tests.

They are inputs to the queue, like a user's job would be: they do real work
(append to a log, wait for an event, fail) and report real steps.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional

from nonblock.hddq import Step, Task


class LoggingJob:
    """*ops* ops, each appending (name, index) to *log*; the result is *result*."""

    def __init__(self, name: str, log: List[Any], ops: int = 1, result: Any = None,
                 first_op_gate: Optional[threading.Event] = None,
                 first_op_started: Optional[threading.Event] = None,
                 pause_between_ops: float = 0.0) -> None:
        self.name = name
        self.log = log
        self.ops = ops
        self.result = result
        self.done_ops = 0
        self.first_op_gate = first_op_gate
        self.first_op_started = first_op_started
        self.pause_between_ops = pause_between_ops
        self.abandoned_by: Optional[BaseException] = None

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        if self.done_ops == 0:
            if self.first_op_started is not None:
                self.first_op_started.set()
            if self.first_op_gate is not None:
                assert self.first_op_gate.wait(60), "test gate never opened"
        self.log.append((self.name, self.done_ops))
        self.done_ops += 1
        task.status = self.done_ops
        if self.done_ops < self.ops:
            if self.pause_between_ops:
                return Step.sleep(self.pause_between_ops)
            return Step.more()
        return Step.done(self.result)

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        self.abandoned_by = cause
        return None


class FailingJob:
    """Raises *error* on its first op."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        raise self.error

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        return None


class CallJob:
    """Runs *function()* as one op; its return value is the result."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        return Step.done(self.function())

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        return None


def hold_disk(queue: Any) -> threading.Event:
    """Hold *queue*'s disk until the returned event is set; returns once it is held.

    Work queued meanwhile all waits, and is all there when the disk is free
    again: small writes to one stream then share one chunk, whatever the timing.
    """
    gate = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        holding.set()
        assert gate.wait(60), "test gate never opened"

    queue.submit_job(CallJob(hold))
    assert holding.wait(60), "the disk was never held"
    return gate
