"""Process life cycle: what happens to background writes when a process exits or forks.

The exit tests run a real Python subprocess against this checkout and look at
what it left on disk after it ended.  The fork tests fork the test process
itself while a write is pending and follow both sides; the forked child always
leaves through os._exit, with an exit code that names what it found wrong.
"""

from __future__ import annotations

import enum
import gc
import hashlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import traceback
import weakref
from pathlib import Path
from typing import Any, Callable, List, Optional

import pytest
from _jobs import hold_disk

from nonblock import HddQueue, PredecessorFailed, bgwrite, default_queue

REPO_ROOT = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT = 90.0

MIB = 1 << 20


def run_python(script: str, *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run *script* with this interpreter, importing nonblock from this checkout.

    *args* become ``sys.argv[1:]``.  The script should print one JSON line of
    observations as its last line of output.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def observations(completed: subprocess.CompletedProcess[str]) -> dict:
    """The JSON line the script printed last, after checking it exited cleanly."""
    assert completed.returncode == 0, (
        f"subprocess exited with {completed.returncode}\n"
        f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    )
    assert not completed.stderr, f"the subprocess wrote to stderr:\n{completed.stderr}"
    lines = completed.stdout.strip().splitlines()
    assert lines, "the subprocess printed nothing"
    result: dict = json.loads(lines[-1])
    assert Path(result["nonblock_file"]).resolve().is_relative_to(REPO_ROOT), (
        f"the subprocess imported nonblock from {result['nonblock_file']}, not this checkout"
    )
    return result


def reproducible_block(index: int, size: int) -> bytes:
    """The *index*-th block of test content; subprocess scripts make the same bytes."""
    return random.Random(index).randbytes(size)


def assert_same_content(actual: bytes, expected: bytes) -> None:
    """Compare two possibly huge byte strings without letting pytest diff them."""
    if actual == expected:
        return
    first, step = 0, 1 << 16
    while actual[first: first + step] == expected[first: first + step]:
        first += step
    while first < min(len(actual), len(expected)) and actual[first] == expected[first]:
        first += 1
    pytest.fail(
        f"content differs: {len(actual)} bytes instead of {len(expected)}, "
        f"first difference at offset {first}; sha256 {hashlib.sha256(actual).hexdigest()[:16]} "
        f"instead of {hashlib.sha256(expected).hexdigest()[:16]}"
    )


# -- exit ----------------------------------------------------------------------------------

CHAINED_64_MIB_SCRIPT = """
    import json, random, sys
    import nonblock
    from nonblock import bgwrite

    path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    blocks = [random.Random(index).randbytes(size) for index in range(count)]
    stream = open(path, "wb")
    tasks = []
    previous = None
    for block in blocks:
        previous = bgwrite(stream, block, chainAfter=previous)
        tasks.append(previous)
    print(json.dumps({
        "nonblock_file": nonblock.__file__,
        "last_pending_at_exit": not tasks[-1].done(),
    }))
    # No shutdown, no wait, the stream left open: the process just ends here.
"""


def test_process_that_exits_without_waiting_still_writes_every_byte_of_a_64_mib_chain(tmp_path):
    """The default queue drains at interpreter exit: 64 chained 1 MiB writes all land, in order."""
    target = tmp_path / "chain.bin"
    count, size = 64, MIB

    completed = run_python(CHAINED_64_MIB_SCRIPT, target, count, size, cwd=tmp_path)

    seen = observations(completed)
    assert seen["last_pending_at_exit"], "the chain was already done: the exit drain was not exercised"
    expected = b"".join(reproducible_block(index, size) for index in range(count))
    assert target.stat().st_size == count * size
    assert_same_content(target.read_bytes(), expected)


FAILING_CHAIN_HEAD_SCRIPT = """
    import json, os, sys
    import nonblock
    from nonblock import bgwrite

    how, out_path, successors = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if how == "dev_full":
        broken = open("/dev/full", "wb", buffering=0)
    else:
        read_end, write_end = os.pipe()
        os.close(read_end)
        broken = open(write_end, "wb", buffering=0)
    out = open(out_path, "wb")
    previous = bgwrite(broken, b"this cannot be written" * 1000)
    for index in range(successors):
        previous = bgwrite(out, b"successor %d\\n" % index, chainAfter=previous)
    print(json.dumps({"nonblock_file": nonblock.__file__}))
    # No wait: the failure and its consequences play out while the process exits.
"""


@pytest.mark.parametrize("how", ["dev_full", "broken_pipe"])
def test_process_whose_chain_head_fails_exits_promptly_and_quietly_with_nothing_written(
    tmp_path, how
):
    """A failed head fails its few hundred successors at exit: exit code 0, no tracebacks, no bytes."""
    if how == "dev_full" and not os.path.exists("/dev/full"):
        pytest.skip("this system has no /dev/full")
    out = tmp_path / "successors.bin"

    completed = run_python(FAILING_CHAIN_HEAD_SCRIPT, how, out, 300, cwd=tmp_path)

    # observations() checks exit code 0 and an empty stderr (no "Exception in thread",
    # no traceback, nothing logged by the library) within SUBPROCESS_TIMEOUT.
    observations(completed)
    assert out.read_bytes() == b"", "a successor of a failed write wrote something"


SHUTDOWN_BEFORE_USE_SCRIPT = """
    import json, sys
    import nonblock
    from nonblock import bgwrite

    seen = {"nonblock_file": nonblock.__file__}
    seen["is_shutdown_before_use"] = nonblock.is_shutdown()
    nonblock.shutdown()
    seen["is_shutdown_after_shutdown"] = nonblock.is_shutdown()
    refused = open(sys.argv[1], "wb")
    try:
        bgwrite(refused, b"too late")
    except Exception as error:
        seen["error_type"] = type(error).__name__
        seen["error_is_runtime_error"] = isinstance(error, RuntimeError)
        seen["error_is_queue_shutdown"] = isinstance(error, nonblock.QueueShutdown)
    refused.close()
    nonblock.shutdown()  # again: harmless
    seen["is_shutdown_at_end"] = nonblock.is_shutdown()
    print(json.dumps(seen))
"""


def test_shutdown_before_any_write_refuses_later_writes_with_queue_shutdown(tmp_path):
    refused = tmp_path / "refused.bin"

    seen = observations(run_python(SHUTDOWN_BEFORE_USE_SCRIPT, refused, cwd=tmp_path))

    assert seen["is_shutdown_before_use"] is False
    assert seen["is_shutdown_after_shutdown"] is True
    assert seen.get("error_type") == "QueueShutdown", "bgwrite after shutdown did not raise"
    assert seen["error_is_runtime_error"] is True
    assert seen["error_is_queue_shutdown"] is True
    assert seen["is_shutdown_at_end"] is True
    assert refused.read_bytes() == b""


SHUTDOWN_DRAINS_SCRIPT = """
    import json, random, sys
    import nonblock
    from nonblock import bgwrite

    path, refused_path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = {"nonblock_file": nonblock.__file__}
    ended = []
    stream = open(path, "wb")
    task = bgwrite(stream, random.Random(0).randbytes(size), ioPrio=10, on_end=ended.append)
    seen["is_shutdown_while_pending"] = nonblock.is_shutdown()
    seen["pending_before_shutdown"] = not task.done()
    nonblock.shutdown(wait=True)
    seen["done_after_shutdown"] = task.done()
    seen["result"] = task.result(timeout=0)
    seen["on_end_ran"] = ended == [task]
    seen["is_shutdown_after_shutdown"] = nonblock.is_shutdown()
    with open(path, "rb") as check:
        seen["bytes_on_disk_when_shutdown_returned"] = len(check.read())
    refused = open(refused_path, "wb")
    try:
        bgwrite(refused, b"too late")
    except Exception as error:
        seen["error_type"] = type(error).__name__
        seen["error_is_runtime_error"] = isinstance(error, RuntimeError)
    print(json.dumps(seen))
"""


def test_shutdown_with_a_pending_write_returns_after_it_is_on_disk_then_refuses_new_writes(tmp_path):
    target, refused = tmp_path / "drained.bin", tmp_path / "refused.bin"
    size = 4 * MIB

    seen = observations(run_python(SHUTDOWN_DRAINS_SCRIPT, target, refused, size, cwd=tmp_path))

    assert seen["is_shutdown_while_pending"] is False
    assert seen["pending_before_shutdown"], "the write was done before shutdown: drain not exercised"
    assert seen["done_after_shutdown"] is True
    assert seen["result"] == size
    assert seen["on_end_ran"] is True, "shutdown(wait=True) returned before the callbacks ran"
    assert seen["bytes_on_disk_when_shutdown_returned"] == size
    assert seen["is_shutdown_after_shutdown"] is True
    assert seen.get("error_type") == "QueueShutdown"
    assert seen["error_is_runtime_error"] is True
    assert_same_content(target.read_bytes(), random.Random(0).randbytes(size))
    assert refused.read_bytes() == b""


THROTTLED_EXIT_SCRIPT = """
    import json, random, sys
    import nonblock
    from nonblock import bgwrite

    path, size = sys.argv[1], int(sys.argv[2])
    stream = open(path, "wb")
    task = bgwrite(stream, random.Random(7).randbytes(size), ioPrio=10)
    print(json.dumps({"nonblock_file": nonblock.__file__, "pending_at_exit": not task.done()}))
"""


def test_process_that_exits_during_a_throttled_write_still_writes_all_of_it(tmp_path):
    """ioPrio=10 rests between its chunks; exit waits out the rests and writes everything."""
    target = tmp_path / "throttled.bin"
    size = 16 * MIB  # 64 chunks of 256 KiB at ioPrio 10, each followed by a rest

    seen = observations(run_python(THROTTLED_EXIT_SCRIPT, target, size, cwd=tmp_path))

    assert seen["pending_at_exit"], "the write was done before exit: the exit drain was not exercised"
    assert_same_content(target.read_bytes(), random.Random(7).randbytes(size))


WRITE_FROM_CALLBACK_AT_EXIT_SCRIPT = """
    import json, sys
    import nonblock
    from nonblock import bgwrite

    path = sys.argv[1]
    stream = open(path, "wb")

    def write_the_second_part(_count):
        bgwrite(stream, b"second part, written by on_success\\n")

    # Throttled and several chunks long: still pending when the script ends.
    first = bgwrite(stream, b"first part\\n" * 100_000, ioPrio=10, on_success=write_the_second_part)
    print(json.dumps({"nonblock_file": nonblock.__file__, "pending_at_exit": not first.done()}))
"""


def test_write_submitted_by_a_callback_during_the_exit_drain_is_written_too(tmp_path):
    """Callbacks may submit new work; one that does so while the process exits loses nothing.

    Here the on_success of a write still pending at exit writes a second part
    to the same file: both parts must be on disk, and nothing on stderr.
    """
    target = tmp_path / "two-parts.bin"

    seen = observations(run_python(WRITE_FROM_CALLBACK_AT_EXIT_SCRIPT, target, cwd=tmp_path))

    assert seen["pending_at_exit"], "the write was done before exit: the exit drain was not exercised"
    assert_same_content(
        target.read_bytes(), b"first part\n" * 100_000 + b"second part, written by on_success\n"
    )


NON_DAEMON_WRITER_SCRIPT = """
    import json, sys, threading
    import nonblock
    from nonblock import bgwrite

    path, count = sys.argv[1], int(sys.argv[2])
    stream = open(path, "wb")
    main_is_ending = threading.Event()

    def late_writer():
        main_is_ending.wait()
        for index in range(count):
            # One at a time: this thread keeps writing well after the main thread ended.
            bgwrite(stream, b"line %05d\\n" % index, ioPrio=10).result()

    threading.Thread(target=late_writer, name="late-writer").start()
    bgwrite(stream, b"from main\\n")
    print(json.dumps({"nonblock_file": nonblock.__file__}))
    main_is_ending.set()
"""


def test_non_daemon_thread_still_writing_after_the_main_thread_ends_loses_nothing(tmp_path):
    """Python waits for non-daemon threads before it exits, so their writes are part of the
    program: the exit drain must not refuse them (no QueueShutdown) and must write them all."""
    target = tmp_path / "late-writer.bin"
    count = 300

    seen = observations(run_python(NON_DAEMON_WRITER_SCRIPT, target, count, cwd=tmp_path))

    assert seen["nonblock_file"]
    expected = b"from main\n" + b"".join(b"line %05d\n" % index for index in range(count))
    assert_same_content(target.read_bytes(), expected)


# -- fork ----------------------------------------------------------------------------------


class Child(enum.IntEnum):
    """Exit codes of a forked child, one per thing that can go wrong there."""

    OK = 0
    SAME_DEFAULT_QUEUE = 10
    NEW_QUEUE_NOT_EMPTY = 11
    OLD_QUEUE_STILL_HOLDS_PARENT_TASKS = 12
    PARENT_TASK_NOT_FAILED = 13
    PARENT_TASK_WRONG_ERROR = 14
    WRITE_DID_NOT_COMPLETE = 15
    WRITE_WRONG_CONTENT = 16
    NOT_IDLE_AFTER_WRITE = 17
    CHAINED_WRITE_HUNG = 20
    CHAINED_WRITE_WRONG_ERROR = 21
    CHAINED_WRITE_WRONG_CAUSE = 22
    CHAINED_WRITE_WROTE_SOMETHING = 23
    DONE_CALLBACK_NOT_RUN = 30
    PARENT_TASK_KEPT_ALIVE = 31
    RAISED = 99


def run_in_forked_child(child: Callable[[], Child], timeout: float = SUBPROCESS_TIMEOUT) -> str:
    """Fork; the child runs *child* and exits with its code.  Return the code's name.

    The child never returns into pytest (os._exit, whatever happens).  A child
    that does not end within *timeout* is killed, and "HUNG" is returned.
    """
    pid = os.fork()
    if pid == 0:
        code = Child.RAISED
        try:
            code = child()
        except BaseException:
            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(int(code))
    status: List[int] = []
    waiter = threading.Thread(target=lambda: status.append(os.waitpid(pid, 0)[1]), daemon=True)
    waiter.start()
    waiter.join(timeout)
    if waiter.is_alive():
        os.kill(pid, signal.SIGKILL)
        waiter.join(30)
        return "HUNG"
    exit_code = os.waitstatus_to_exitcode(status[0])
    try:
        return Child(exit_code).name
    except ValueError:
        return f"exit code {exit_code}"


class PendingPipeWrite:
    """A bgwrite on the default queue to a pipe nobody reads: pending until :meth:`drain`.

    The payload is four times the pipe's capacity and the write end is
    non-blocking, so the task takes what fits and then waits for writability.
    """

    def __init__(self) -> None:
        self.read_fd, write_fd = os.pipe()
        try:
            import fcntl

            capacity = fcntl.fcntl(write_fd, fcntl.F_GETPIPE_SZ)
        except (ImportError, AttributeError, OSError):
            capacity = 1 << 16
        self.payload = reproducible_block(99, 4 * capacity + 12345)
        os.set_blocking(write_fd, False)
        self.writer = open(write_fd, "wb", buffering=0)
        self._read_open = True
        self._reader: Optional[threading.Thread] = None
        self.task = bgwrite(self.writer, self.payload, ioPrio=1)
        states = self.task.execution_state_queue
        if self.task.execution_state == "CREATED":
            assert states.get(timeout=30) == "RUNNING"
        assert not self.task.done()

    def close_in_child(self) -> None:
        """In a forked child: drop the inherited ends, so only the parent holds the pipe."""
        self.writer.close()
        os.close(self.read_fd)

    def drain(self) -> bytes:
        """Read the pipe to EOF while the write finishes; return everything read."""
        received = bytearray()

        def read_to_eof() -> None:
            while True:
                piece = os.read(self.read_fd, 1 << 16)
                if not piece:
                    return
                received.extend(piece)

        self._reader = threading.Thread(target=read_to_eof, name="pipe-reader", daemon=True)
        self._reader.start()
        assert self.task.result(timeout=60) == len(self.payload)
        self.writer.close()  # the last write end (a forked child's copy died with it): EOF
        self._reader.join(60)
        assert not self._reader.is_alive(), "the pipe never reached EOF"
        return bytes(received)

    def __enter__(self) -> PendingPipeWrite:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.task.done():
            # Break the pipe, so the pending write fails now instead of lingering.
            os.close(self.read_fd)
            self._read_open = False
            self.task.wait(60)
        self.writer.close()
        if self._reader is not None:
            self._reader.join(60)
        if self._read_open:
            os.close(self.read_fd)


def _check_fresh_queue_in_child(parent_queue, pending: PendingPipeWrite, child_file: Path,
                                content: bytes) -> Child:
    pending.close_in_child()
    queue = default_queue()
    if queue is parent_queue:
        return Child.SAME_DEFAULT_QUEUE
    if not queue.wait_idle(timeout=0):
        return Child.NEW_QUEUE_NOT_EMPTY
    if not parent_queue.wait_idle(timeout=0):
        return Child.OLD_QUEUE_STILL_HOLDS_PARENT_TASKS
    if not pending.task.done():
        return Child.PARENT_TASK_NOT_FAILED
    if not isinstance(pending.task.exception(timeout=0), RuntimeError):
        return Child.PARENT_TASK_WRONG_ERROR
    with open(child_file, "wb") as stream:
        task = bgwrite(stream, content, ioPrio=1)
        if not task.wait(timeout=30) or task.result(timeout=0) != len(content):
            return Child.WRITE_DID_NOT_COMPLETE
    if child_file.read_bytes() != content:
        return Child.WRITE_WRONG_CONTENT
    if not queue.wait_idle(timeout=30):
        return Child.NOT_IDLE_AFTER_WRITE
    return Child.OK


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@needs_fork
def test_fork_while_a_write_is_pending_runs_it_once_in_the_parent_and_never_in_the_child(tmp_path):
    """The child gets a fresh, empty default queue in which new writes work; the parent's
    pending pipe write is failed (RuntimeError) in the child and lands exactly once.

    The child inherits the pipe's write end, so if the parent's task were run
    again in the child its bytes would reach the pipe twice.
    """
    child_file, child_content = tmp_path / "child.bin", reproducible_block(1234, 300_000)
    with PendingPipeWrite() as pending:
        parent_queue = default_queue()

        outcome = run_in_forked_child(
            lambda: _check_fresh_queue_in_child(parent_queue, pending, child_file, child_content)
        )

        assert outcome == "OK", f"the forked child failed: {outcome}"
        assert not pending.task.done(), "the parent's write finished although nobody read the pipe"
        assert_same_content(pending.drain(), pending.payload)
    assert child_file.read_bytes() == child_content


def _chain_after_parent_task_in_child(pending: PendingPipeWrite, target: Path) -> Child:
    pending.close_in_child()
    with open(target, "wb") as stream:
        task = bgwrite(stream, b"must not be written", chainAfter=pending.task)
        if not task.wait(timeout=20):
            return Child.CHAINED_WRITE_HUNG
    error = task.exception(timeout=0)
    if not isinstance(error, PredecessorFailed):
        return Child.CHAINED_WRITE_WRONG_ERROR
    if not isinstance(error.__cause__, RuntimeError):
        return Child.CHAINED_WRITE_WRONG_CAUSE
    if target.read_bytes() != b"":
        return Child.CHAINED_WRITE_WROTE_SOMETHING
    return Child.OK


@needs_fork
def test_in_a_forked_child_a_write_chained_after_a_parent_write_fails_at_once_and_writes_nothing(
    tmp_path,
):
    """In the child the parent's pending write is failed, so a write chained after it there
    fails with PredecessorFailed (cause: that RuntimeError) instead of waiting forever."""
    target = tmp_path / "chained-in-child.bin"
    with PendingPipeWrite() as pending:
        outcome = run_in_forked_child(lambda: _chain_after_parent_task_in_child(pending, target))

        assert outcome == "OK", f"the forked child failed: {outcome}"
        assert_same_content(pending.drain(), pending.payload)


def _done_callback_runs_in_child(pending: PendingPipeWrite, seen: List[Any]) -> Child:
    pending.close_in_child()
    if not isinstance(pending.task.exception(timeout=20), RuntimeError):
        return Child.PARENT_TASK_WRONG_ERROR
    if len(seen) != 1 or not isinstance(seen[0], RuntimeError):
        return Child.DONE_CALLBACK_NOT_RUN
    return Child.OK


@needs_fork
def test_in_a_forked_child_a_done_callback_added_in_the_parent_runs_when_the_task_fails_there():
    """A Future's done-callbacks go with it into the child, as with a plain Future."""
    with PendingPipeWrite() as pending:
        seen: List[Any] = []
        pending.task.add_done_callback(lambda task: seen.append(task.exception()))
        outcome = run_in_forked_child(lambda: _done_callback_runs_in_child(pending, seen))

        assert outcome == "OK", f"the forked child failed: {outcome}"
        assert_same_content(pending.drain(), pending.payload)
    assert seen == [None]  # in the parent it ran once, when the write was done


def _queued_parent_write_freed_in_child(parent_writes: List[Any]) -> Child:
    write = parent_writes.pop()
    if not isinstance(write.exception(timeout=20), RuntimeError):
        return Child.PARENT_TASK_WRONG_ERROR
    gone = weakref.ref(write)
    gc.disable()  # reference counting alone must free it
    del write
    return Child.OK if gone() is None else Child.PARENT_TASK_KEPT_ALIVE


@needs_fork
def test_in_a_forked_child_a_parent_write_that_failed_there_is_freed_without_the_gc(tmp_path):
    """A write is its own job: the child must not leave the parent's writes referring to themselves."""
    queue = HddQueue(name="forkfree")
    with open(tmp_path / "queued", "wb") as stream:
        gate = hold_disk(queue)  # the writes wait meanwhile
        parent_writes = [bgwrite(stream, b"x" * 1000, queue=queue)]
        outcome = run_in_forked_child(lambda: _queued_parent_write_freed_in_child(parent_writes))
        gate.set()
        assert parent_writes[0].result(timeout=60) == 1000
        queue.shutdown(wait=True)
    assert outcome == "OK", f"the forked child failed: {outcome}"
    assert (tmp_path / "queued").read_bytes() == b"x" * 1000


def _write_and_return_without_waiting(path: str, count: int, size: int) -> None:
    stream = open(path, "wb")
    previous = None
    for index in range(count):
        previous = bgwrite(stream, reproducible_block(index, size), chainAfter=previous, ioPrio=10)


@needs_fork
def test_multiprocessing_fork_child_that_returns_without_waiting_loses_nothing(tmp_path):
    """A multiprocessing child (fork start method) drains its queue as it ends, like a process does."""
    target = tmp_path / "mp-child.bin"
    count, size = 16, MIB
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_write_and_return_without_waiting, args=(str(target), count, size))
    child.start()
    child.join(SUBPROCESS_TIMEOUT)
    if child.is_alive():
        child.kill()
        child.join(30)
        pytest.fail("the multiprocessing child did not end")
    assert child.exitcode == 0
    assert_same_content(
        target.read_bytes(), b"".join(reproducible_block(index, size) for index in range(count))
    )
