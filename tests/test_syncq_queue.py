"""SyncQueue: put/get between real processes, both modes, both full policies, and bad input."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from multiprocessing import shared_memory

import _syncq_procs as procs
import pytest

from nonblock.syncq import MessageTooLarge, SyncQueue

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_name() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def test_bytes_and_str_come_back_as_they_went_in() -> None:
    with SyncQueue(fresh_name(), size=4096, reader=True) as q:
        q.put(b"raw\x00bytes")
        q.put("text \u00e9\U0001f600")
        q.put(bytearray(b"ba"))
        q.put(memoryview(b"mv"))
        got = [q.get(timeout=0) for _ in range(4)]
        assert got == [b"raw\x00bytes", "text \u00e9\U0001f600", b"ba", b"mv"]
        with pytest.raises(TypeError, match="bytes or str.*int"):
            q.put(42)
        with pytest.raises(queue.Empty):
            q.get(timeout=0)  # the refused put left nothing behind


def test_pickle_serializer_carries_objects() -> None:
    with SyncQueue(fresh_name(), size=4096, reader=True, serializer="pickle") as q:
        q.put({"a": [1, 2]})
        q.put(b"still bytes")
        assert q.get(timeout=0) == {"a": [1, 2]}
        assert q.get(timeout=0) == b"still bytes"


def test_put_many_and_get_many_keep_order_and_give_separate_objects() -> None:
    with SyncQueue(fresh_name(), size=1 << 16, reader=True) as q:
        items = [b"item %d" % i for i in range(1000)]  # more than one batch fits at once
        done = threading.Thread(target=q.put_many, args=(items,), kwargs={"timeout": 30})
        done.start()
        got = []
        while len(got) < 1000:
            got.extend(q.get_many(100, timeout=30))
        done.join()
        assert got == items
        assert len({id(x) for x in got[:100]}) == 100


def test_timeouts_zero_never_wait_and_none_waits() -> None:
    with SyncQueue(fresh_name(), size=256, reader=True) as q:
        began = time.monotonic()
        with pytest.raises(queue.Empty):
            q.get(timeout=0)
        with pytest.raises(queue.Full):
            for _ in range(100):
                q.put(b"x" * 40, timeout=0)
        assert time.monotonic() - began < 5
        # None waits until a reader makes room
        threading.Timer(0.2, lambda: q.get_many(100)).start()
        q.put(b"y" * 40, timeout=None)


def test_bad_input_raises_at_the_call_and_queues_nothing() -> None:
    name = fresh_name()
    with pytest.raises(ValueError, match="mode"):
        SyncQueue(name, mode="gossip")
    with pytest.raises(ValueError, match="on_full"):
        SyncQueue(name, on_full="panic")
    with pytest.raises(ValueError, match="drop_oldest"):
        SyncQueue(name, mode="work", on_full="drop_oldest")
    with pytest.raises(ValueError, match="size"):
        SyncQueue(name, size=8)
    with SyncQueue(name, size=256, reader=True) as q:
        with pytest.raises(ValueError, match="timeout.*-1"):
            q.put(b"x", timeout=-1)
        with pytest.raises(ValueError, match="timeout"):
            q.get(timeout=float("nan"))
        with pytest.raises(MessageTooLarge, match="300 bytes"):
            q.put(b"x" * 300, timeout=None)  # never a wait
        with pytest.raises(MessageTooLarge):
            q.put_many([b"ok", b"x" * 300])
        with pytest.raises(ValueError, match="capacity of 256 bytes, not 512"):
            SyncQueue(name, create=False, size=512)
        with pytest.raises(ValueError, match="mode 'broadcast', not 'work'"):
            SyncQueue(name, create=False, mode="work")
        with pytest.raises(FileExistsError, match="live participants"):
            SyncQueue(name, size=256)
        with pytest.raises(queue.Empty):
            q.get(timeout=0)  # put_many checked every item before putting any


def test_another_layout_version_is_a_clear_error() -> None:
    name = fresh_name()
    with SyncQueue(name, size=256):
        raw = shared_memory.SharedMemory(name)
        try:
            raw.buf[8] = 99  # the layout version
            with pytest.raises(ValueError, match="layout version 99"):
                SyncQueue(name, create=False)
            raw.buf[8] = 1
        finally:
            raw.close()
            from multiprocessing import resource_tracker
            resource_tracker.unregister("/" + name, "shared_memory")


def test_a_process_that_did_not_inherit_anything_joins_by_name() -> None:
    name = fresh_name()
    with SyncQueue(name, size=4096, reader=True) as q:
        code = (f"from nonblock.syncq import SyncQueue\n"
                f"q = SyncQueue({name!r}, create=False)\n"
                f"q.put('hello from a stranger')\n")
        run = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
        assert (run.returncode, run.stderr) == (0, "")
        assert q.get(timeout=10) == "hello from a stranger"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_work_mode_gives_each_message_to_exactly_one_reader(method: str) -> None:
    ctx = multiprocessing.get_context(method)
    name = fresh_name()
    with SyncQueue(name, size=4096, mode="work") as q:
        out = ctx.Queue()
        readers = [ctx.Process(target=_work_reader, args=(name, out)) for _ in range(3)]
        for p in readers:
            p.start()
        for i in range(3000):
            q.put(b"%d" % i, timeout=30)
        for _ in readers:
            q.put(b"stop", timeout=30)
        got = [out.get(timeout=60) for _ in readers]
        for p in readers:
            p.join(60)
    flat = [m for part in got for m in part]
    assert sorted(flat, key=int) == [b"%d" % i for i in range(3000)]
    for part in got:
        assert part == sorted(part, key=int)  # each reader sees its share in order


def _work_reader(name: str, out: multiprocessing.Queue[list]) -> None:
    q = SyncQueue(name, create=False, mode="work")
    mine = []
    while (m := q.get(timeout=60)) != b"stop":
        mine.append(m)
    out.put(mine)
    q.close()


def test_drop_oldest_never_blocks_the_writer_and_the_stalled_reader_learns_its_losses() -> None:
    name = fresh_name()
    with SyncQueue(name, size=1024, on_full="drop_oldest") as writer, \
            SyncQueue(name, create=False, reader=True) as stalled:
        for i in range(500):
            writer.put(b"%05d" % i, timeout=0)  # never full, never waits
        got = []
        while True:
            try:
                got.append(int(stalled.get(timeout=0)))
            except queue.Empty:
                break
        assert stalled.lost == 500 - len(got) > 0
        assert got == list(range(500 - len(got), 500))  # the newest, in order


def test_a_late_joiner_starts_at_the_latest_or_the_earliest() -> None:
    name = fresh_name()
    with SyncQueue(name, size=4096, reader=True) as first:
        first.put(b"before")
        with SyncQueue(name, create=False, reader=True) as latest, \
                SyncQueue(name, create=False, reader=True, start="earliest") as earliest:
            first.put(b"after")
            assert latest.get(timeout=0) == b"after"
            assert [earliest.get(timeout=0), earliest.get(timeout=0)] == [b"before", b"after"]
            with pytest.raises(queue.Empty):
                latest.get(timeout=0)


def test_writers_carry_on_within_their_timers_when_a_reader_is_sigkilled() -> None:
    ctx = multiprocessing.get_context("fork")
    name = fresh_name()
    with SyncQueue(name, size=512) as q, SyncQueue(name, create=False, reader=True) as live:
        ready = ctx.Event()
        victim = ctx.Process(target=procs.syncq_stalled_reader, args=(name, ready))
        victim.start()
        assert ready.wait(60)
        with pytest.raises(queue.Full):  # alive and stalled: the writer's timer is honoured
            for i in range(100):
                q.put(b"%03d" % i, timeout=0.1)
                live.get_many(100, timeout=0)
        os.kill(victim.pid, signal.SIGKILL)
        for i in range(1000):  # dead: dropped, and the writer carries on
            q.put(b"%03d" % i, timeout=5)
            live.get_many(100, timeout=0)
        victim.join(10)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_broadcast_reaches_every_reader_in_order(method: str) -> None:
    ctx = multiprocessing.get_context(method)
    name = fresh_name()
    with SyncQueue(name, size=2048) as q:
        out = ctx.Queue()
        ready = [ctx.Event() for _ in range(3)]
        readers = [ctx.Process(target=procs.syncq_reader, args=(name, 2000, ready[i], out)) for i in range(3)]
        for p in readers:
            p.start()
        for event in ready:
            assert event.wait(60)
        sent = [b"message %d " % i + b"." * (i % 37) for i in range(2000)]  # odd sizes wrap the ring
        for m in sent:
            q.put(m, timeout=30)
        for _ in readers:
            assert out.get(timeout=60) == sent
        for p in readers:
            p.join(60)


def test_one_handle_shared_by_threads() -> None:
    name = fresh_name()
    with SyncQueue(name, size=4096, mode="work", reader=True) as q:
        got: list = []

        def reader() -> None:
            while (m := q.get(timeout=30)) != b"end":
                got.append(m)

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        writers = [threading.Thread(target=lambda w=w: [q.put(b"%d-%d" % (w, i), timeout=30)
                                                         for i in range(2000)]) for w in range(2)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        q.put(b"end")
        q.put(b"end")
        for t in threads:
            t.join()
        assert sorted(got) == sorted(b"%d-%d" % (w, i) for w in range(2) for i in range(2000))


def test_a_forked_child_that_only_writes_never_holds_messages_back() -> None:
    # It used to inherit its parent's reader role: a cursor nothing moved pinned
    # the ring, and with on_full="block" every writer, the child too, waited on it.
    q = SyncQueue(fresh_name(), size=512, reader=True)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=procs.syncq_put_only, args=(q, 200, out))
    child.start()
    got = 0
    while got < 200:
        q.get(timeout=30)
        got += 1
    assert out.get(timeout=30) == 200
    child.join(30)
    q.close()
