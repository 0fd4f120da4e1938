"""nonblock.pysyncq: pysyncq's guide, unchanged but for the import, and the defects it fixes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid

import _syncq_procs as procs
import pytest

from nonblock.pysyncq import PySyncQ
from nonblock.syncq import MessageTooLarge

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def fresh_name() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def shm_leftovers(name: str) -> list:
    return [entry for entry in os.listdir("/dev/shm") if entry.startswith(name)]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_guides_example_runs_unchanged(method: str) -> None:
    name = fresh_name()
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, os.path.join(HERE, "_syncq_guide.py"), method, name],
                         capture_output=True, text=True, env=env, timeout=100)
    assert (run.returncode, run.stdout, run.stderr) == (0, "OK\n", "")
    assert shm_leftovers(name) == []


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_late_joiner_reads_no_phantom_only_what_comes_after_it(method: str) -> None:
    ctx = multiprocessing.get_context(method)
    name = fresh_name()
    q = PySyncQ(name, size=4096)
    q.open("parent", filtself=False)
    for i in range(3):
        q.append("old", f"pending {i}")
    opened, out = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=procs.pysyncq_late_joiner, args=(name, 4096, opened, out))
    child.start()
    assert opened.wait(60)
    q.append("new", "after the join")
    assert out.get(timeout=60) == ((("parent", "new", "after the join")), None)
    child.join(60)
    assert child.exitcode == 0
    # the parent still has its own three, then the new one
    assert [m[2] for m in q] == ["pending 0", "pending 1", "pending 2", "after the join"]
    q.close()
    assert shm_leftovers(name) == []


def test_create_false_keeps_pending_messages() -> None:
    name = fresh_name()
    q = PySyncQ(name, size=4096)
    q.open("first", filtself=False)
    q.append("t", "one")
    q.append("t", "two")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    joiner = ctx.Process(target=procs.pysyncq_pop_all, args=(name, 4096, out))
    joiner.start()
    assert out.get(timeout=60) == []  # a joiner starts after the pending ones
    joiner.join(60)
    assert [m[2] for m in q] == ["one", "two"]  # and did not wipe them
    q.close()


def test_timer_zero_never_waits() -> None:
    q = PySyncQ(fresh_name(), size=256)
    q.open("me")
    began = time.monotonic()
    assert q.pop(block=True, timer=0) is None
    other = PySyncQ(q.name, create=False, size=256)
    other.open("stalled")  # never reads: the queue fills up
    with pytest.raises(MemoryError):
        for _ in range(100):
            q.append("t", "x" * 40, block=True, timer=0)
    assert time.monotonic() - began < 5  # returns at once (pysyncq 0.0.1 blocks forever)
    other.close()
    q.close()


def test_a_message_that_can_never_fit_raises_at_once_even_with_timer_none() -> None:
    q = PySyncQ(fresh_name(), size=256)
    q.open("me", filtself=False)
    with pytest.raises(MessageTooLarge) as caught:
        q.append("t", "x" * 300, block=True, timer=None)
    assert isinstance(caught.value, MemoryError) and isinstance(caught.value, ValueError)
    assert q.pop() is None  # nothing was half-written
    q.close()


def test_a_sigkilled_reader_no_longer_pins_the_queue() -> None:
    ctx = multiprocessing.get_context("fork")
    q = PySyncQ(fresh_name(), size=256)
    q.open("writer")
    opened = ctx.Event()
    reader = ctx.Process(target=procs.pysyncq_reader_that_stalls, args=(q, opened))
    reader.start()
    assert opened.wait(60)
    # alive but stalled: the writer's timer is honoured, then MemoryError
    with pytest.raises(MemoryError):
        for _ in range(20):
            q.append("t", "x" * 20, block=True, timer=0.2)
            for _m in q:
                pass
    os.kill(reader.pid, signal.SIGKILL)
    reader.join(60)
    for i in range(200):  # much more than the queue holds: pysyncq 0.0.1 failed after 6
        q.append("t", f"message {i}", block=True, timer=5)
        for _m in q:
            pass
    q.close()


def test_screening_by_sender_and_type() -> None:
    q = PySyncQ(fresh_name(), size=4096)
    q.open("me")
    other = PySyncQ(q.name, create=False, size=4096)
    other.open("other", filtself=False)
    q.scrntype.add("noise")
    other.append("noise", "ignored")
    other.append("news", "kept")
    q.append("news", "mine")  # screened: filtself
    assert list(q) == [("other", "news", "kept")]
    assert list(other(decode=False)) == [(b"other", b"noise", b"ignored"), (b"other", b"news", b"kept"),
                                         (b"me", b"news", b"mine")]
    other.close()
    q.close()


def test_bad_input_is_refused_at_the_call_naming_the_argument() -> None:
    name = fresh_name()
    with pytest.raises(ValueError, match="start"):
        PySyncQ(name, start="teleport")
    with pytest.raises(TypeError, match="size"):
        PySyncQ(name, size="big")
    q = PySyncQ(name, size=4096)
    q.open("me", filtself=False)
    with pytest.raises(ValueError, match="timer.*-1"):
        q.append("t", "x", block=True, timer=-1)
    with pytest.raises(ValueError, match="timer"):
        q.pop(block=True, timer=-0.5)
    with pytest.raises(TypeError, match="sender"):
        q.open(42)
    with pytest.raises(ValueError, match="capacity of 4096 bytes, not 8192"):
        PySyncQ(name, create=False, size=8192)
    with pytest.raises(FileNotFoundError, match="no syncq named"):
        PySyncQ(fresh_name(), create=False)
    assert q.pop() is None  # nothing got in
    q.close()
    assert shm_leftovers(name) == []


def test_any_object_goes_through_str_and_bytes_stay_bytes() -> None:
    q = PySyncQ(fresh_name(), size=4096)
    q.open("me", filtself=False)
    q.append(3, 4.5)
    q.append(b"raw", b"\xff\x00")
    assert q.pop() == ("me", "3", "4.5")
    assert q.pop(decode=False) == (b"me", b"raw", b"\xff\x00")
    q.close()


# -- the rest of the README's migration table, one test per row ------------------------------


def test_size_is_the_room_for_messages_each_costing_16_bytes_more_rounded_to_8() -> None:
    q = PySyncQ(fresh_name(), size=256)
    q.open("s", filtself=False)  # sender "s": 1 byte
    q.append("t", "x" * (256 - 16 - 2))  # exactly fills the ring
    assert q.pop()[2] == "x" * 238
    with pytest.raises(MessageTooLarge):
        q.append("t", "x" * 239)
    q.close()


def test_append_before_open_sends_as_the_pid() -> None:
    name = fresh_name()
    reader = PySyncQ(name, size=4096)
    reader.open("reader")
    writer = PySyncQ(name, create=False, size=4096)
    writer.append("t", "no open() first")  # pysyncq 0.0.1: TypeError on len(None)
    assert reader.pop() == (str(os.getpid()), "t", "no open() first")
    writer.close()
    reader.close()


def test_str_and_the_internals_that_are_gone() -> None:
    q = PySyncQ(fresh_name(), size=4096)
    q.open("me")
    assert str(q) == f"PySyncQ(name={q.name},size=4096,sender=me)"
    for internal in ("i", "slno", "cond", "shm", "h", "b"):
        assert not hasattr(q, internal)
    assert q.scrns == (q.scrnsend, q.scrntype) and b"me" in q.scrnsend and "me" in q.scrnsend
    q.close()


def test_at_most_slots_processes_take_part_at_once() -> None:
    from nonblock.syncq import SyncQueue

    name = fresh_name()
    with SyncQueue(name, size=256, slots=2), SyncQueue(name, create=False):
        with pytest.raises(RuntimeError, match="all 2 slots"):
            SyncQueue(name, create=False)


def test_pop_without_open_joins_as_a_reader_and_reads_every_message_whole() -> None:
    # A handle that pops without open() once read at a cursor the writers did not
    # know of: a writer in another process overwrote what it had not read, and it
    # read payload bytes as headers.  Now it joins as a reader at its first pop.
    name, count = fresh_name(), 5000
    reader = PySyncQ(name, size=256)
    assert reader.pop() is None  # joins as a reader, at the newest message
    writer = multiprocessing.get_context("fork").Process(
        target=procs.pysyncq_append_numbered, args=(name, 256, count))
    writer.start()
    received = []
    while len(received) < count:
        message = reader.pop(block=True, timer=30)
        assert message is not None, f"nothing for 30 s after {len(received)} messages"
        received.append(message[2])
    writer.join(30)
    reader.close()
    assert received == [f"m{index:06d}" + "x" * (index % 37) for index in range(count)]
