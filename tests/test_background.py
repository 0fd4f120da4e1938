"""Background functions: thread_manager's do_async and @background, on the HDD queue."""

from __future__ import annotations

import threading
from typing import Any, List

import pytest

from nonblock import HddQueue, ThreadManager, background, do_async, thread_manager
from nonblock.hddq import ExecutionState


@pytest.fixture
def manager():
    queue = HddQueue(name="bgfunc")
    yield ThreadManager(queue)
    queue.shutdown()


def test_do_async_returns_at_once_and_runs_on_an_io_thread(manager):
    gate = threading.Event()
    seen: List[str] = []

    def work(a: int, b: int, scale: int = 1) -> int:
        gate.wait(30)
        seen.append(threading.current_thread().name)
        return (a + b) * scale

    task = manager.do_async(work, fn_args=[2, 3], fn_kwargs={"scale": 10})
    assert not task.done()  # it is waiting on the gate, in the background
    gate.set()
    assert task.result(timeout=30) == 50
    assert seen[0].startswith("bgfunc-io-")


def test_success_walks_every_state_calling_on_success_then_on_end(manager):
    calls: List[Any] = []
    gate = threading.Event()
    task = manager.do_async(
        lambda: gate.wait(30) and "value",
        on_success=lambda result: calls.append(("success", result)),
        on_fail=lambda error: calls.append(("fail", error)),
        on_end=lambda t: calls.append(("end", t.execution_state)),
    )
    states = task.execution_state_queue
    gate.set()
    assert task.result(timeout=30) == "value"
    assert [states.get(timeout=10) for _ in range(4)] == [
        ExecutionState.RUNNING, ExecutionState.RETURNED, ExecutionState.FINISHING, ExecutionState.CLOSED,
    ]
    assert calls == [("success", "value"), ("end", "FINISHING")]


def test_failure_walks_the_exception_states_calling_on_fail_then_on_end(manager):
    calls: List[Any] = []
    gate = threading.Event()
    error = ConnectionError("network is down")

    def failing() -> None:
        gate.wait(30)
        raise error

    task = manager.do_async(failing, on_fail=lambda e: calls.append(e), on_end=lambda t: calls.append("end"))
    states = task.execution_state_queue
    gate.set()
    assert task.exception(timeout=30) is error
    assert [states.get(timeout=10) for _ in range(4)] == ["RUNNING", "EXCEPTION", "FINISHING", "CLOSED"]
    assert calls == [error, "end"]


def test_on_failure_is_another_name_for_on_fail(manager):
    failures: List[Any] = []
    task = manager.do_async(lambda: 1 / 0, on_failure=failures.append)
    assert isinstance(task.exception(timeout=30), ZeroDivisionError)
    assert len(failures) == 1 and isinstance(failures[0], ZeroDivisionError)
    with pytest.raises(TypeError, match="on_fail or on_failure"):
        manager.do_async(print, on_fail=print, on_failure=print)


def test_give_thread_passes_the_task_so_the_function_can_report_progress(manager):
    progress: List[Any] = []

    def count(task: Any, items: List[int]) -> int:
        for done, _ in enumerate(items, 1):
            task.status = done / len(items)
            progress.append(task.status)
        return len(items)

    task = manager.do_async(count, fn_args=[[1, 2, 3, 4]], give_thread=True)
    assert task.result(timeout=30) == 4
    assert progress == [0.25, 0.5, 0.75, 1.0] and task.status == 1.0


def test_a_raising_callback_is_logged_and_the_task_still_closes(manager, caplog):
    task = manager.do_async(lambda: 7, on_success=lambda r: 1 / 0)
    assert task.result(timeout=30) == 7
    assert task.execution_state == "CLOSED"
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records if r.name == "nonblock")


def test_background_bare_returns_a_task_per_call(manager):
    @manager.background
    def double(x: int) -> int:
        return 2 * x

    tasks = [double(i) for i in range(5)]
    assert [t.result(timeout=30) for t in tasks] == [0, 2, 4, 6, 8]
    assert double.__name__ == "double"


def test_background_with_arguments_gives_the_task_and_runs_callbacks(manager):
    ended: List[Any] = []

    @manager.background(give_thread=True, on_end=ended.append)
    def send(task: Any, users: List[str]) -> int:
        remaining = len(users)
        for _user in users:
            remaining -= 1
            task.status = remaining
        return len(users)

    task = send(["ann", "bob"])
    assert task.result(timeout=30) == 2
    assert task.status == 0 and ended == [task]


def test_module_level_names_use_the_default_queue():
    assert do_async(sum, fn_args=[[1, 2, 3]]).result(timeout=30) == 6
    assert thread_manager.do_async(max, fn_args=(4, 9)).result(timeout=30) == 9

    @background
    def hello(name: str) -> str:
        return "hello " + name

    assert hello("disk").result(timeout=30) == "hello disk"


@pytest.mark.parametrize("kwargs, name", [
    ({"function": "not callable"}, "function"),
    ({"fn_args": "abc"}, "fn_args"),
    ({"fn_args": 5}, "fn_args"),
    ({"fn_kwargs": [1]}, "fn_kwargs"),
    ({"on_end": 3}, "on_end"),
])
def test_bad_arguments_fail_at_the_call(manager, kwargs, name):
    arguments = {"function": print, **kwargs}
    with pytest.raises(TypeError, match=name):
        manager.do_async(**arguments)
