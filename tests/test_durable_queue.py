"""DurableQueue: queue.Queue's API on sqlite, across threads and processes, with leases."""

from __future__ import annotations

import multiprocessing
import os
import queue as std_queue
import statistics
import threading
import time
from collections import Counter
from typing import Any, Iterator, List

import pytest
from _durable_workers import STOP, consume, produce, wait_and_report

from nonblock import DurableQueue, HddQueue, LeaseExpired
from nonblock.background import ThreadManager


@pytest.fixture
def folder(tmp_path: Any) -> str:
    return os.path.join(os.fspath(tmp_path), "q")


@pytest.fixture
def q(folder: str, queue: HddQueue) -> Iterator[DurableQueue]:
    dq = DurableQueue(folder, queue=queue)
    yield dq
    dq.close()


def test_fifo_and_the_queue_api(q: DurableQueue) -> None:
    assert q.empty() and q.qsize() == 0 and not q.full()
    for i in range(10):
        q.put(i)
    q.put_nowait("ten")
    assert q.qsize() == 11 and not q.empty()
    assert [q.get() for _ in range(10)] == list(range(10))
    assert q.get_nowait() == "ten"
    with pytest.raises(std_queue.Empty):
        q.get_nowait()
    with pytest.raises(std_queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(std_queue.Empty):
        q.get(block=False, timeout=-1)  # as queue.Queue: timeout ignored without block


def test_items_survive_reopen_and_close_deletes_nothing(folder: str, queue: HddQueue) -> None:
    with DurableQueue(folder, queue=queue) as q:
        q.put_many(["a", "b", "c"])
    again = DurableQueue(folder, queue=queue)
    assert again.qsize() == 3 and again.get_many(10) == ["a", "b", "c"]
    again.close()


def test_own_pending_puts_are_got_before_their_commit(folder: str, queue: HddQueue) -> None:
    gate = threading.Event()
    holder = ThreadManager(queue).do_async(gate.wait, fn_args=[60])  # holds the disk: no commit runs
    q = DurableQueue(folder, queue=queue)
    try:
        task = q.put_async("early")
        assert q.qsize() == 1 and not task.done()
        assert q.get(timeout=5) == "early"
        q.put("late")
    finally:
        gate.set()
    holder.result(60)
    q.sync()
    assert q.get_nowait() == "late"
    q.close()


def test_maxsize_bounds_put(folder: str, queue: HddQueue) -> None:
    q = DurableQueue(folder, maxsize=2, queue=queue)
    q.put(1)
    q.put(2)
    assert q.full()
    with pytest.raises(std_queue.Full):
        q.put_nowait(3)
    with pytest.raises(std_queue.Full):
        q.put(3, timeout=0.01)
    put_done = threading.Event()

    def blocked_put() -> None:
        q.put(3)
        put_done.set()

    t = threading.Thread(target=blocked_put)
    t.start()
    assert not put_done.wait(0.05)  # still full: the put waits (a lower bound only)
    assert q.get() == 1
    assert put_done.wait(30)
    t.join()
    assert q.get_many(5) == [2, 3]
    q.close()
    unbounded = DurableQueue(folder, maxsize=0, queue=queue)
    unbounded.put_many(list(range(100)))
    assert not unbounded.full()
    unbounded.close()


def test_bad_arguments_fail_at_the_call(q: DurableQueue) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.put(1, timeout=-0.5)
    with pytest.raises(ValueError, match="lease"):
        q.claim(lease=0)
    with pytest.raises(ValueError, match="n must be"):
        q.get_many(0)
    with pytest.raises(TypeError, match="cannot be pickled"):
        q.put(lambda: None)
    with pytest.raises(TypeError, match="cannot be pickled"):
        q.put_many([1, 2, threading.Lock()])
    with pytest.raises(TypeError, match="Lease"):
        q.ack("not a lease")  # type: ignore[arg-type]
    assert q.qsize() == 0  # nothing half-stored
    with pytest.raises(ValueError, match="durability"):
        DurableQueue(q.path, durability="sometimes")
    with pytest.raises(ValueError, match="serializer"):
        DurableQueue(q.path, serializer="yaml")


def test_task_done_and_join(q: DurableQueue) -> None:
    q.put_many(["a", "b"])
    got = [q.get(), q.get()]
    assert got == ["a", "b"]
    joined = threading.Event()
    t = threading.Thread(target=lambda: (q.join(), joined.set()))
    t.start()
    q.task_done()
    assert not joined.wait(0.05)
    q.task_done()
    assert joined.wait(30)
    t.join()
    with pytest.raises(ValueError, match="too many"):
        q.task_done()


def test_claim_ack_nack_and_expiry(q: DurableQueue) -> None:
    q.put_many(["first", "second"])
    lease = q.claim(timeout=5, lease=30)
    assert lease.item == "first"
    assert q.get() == "second"  # the leased item is invisible
    with pytest.raises(std_queue.Empty):
        q.get_nowait()
    q.nack(lease)
    assert q.get_nowait() == "first"  # given back: delivered again

    q.put("short")
    short = q.claim(timeout=5, lease=0.2)
    assert short.item == "short"
    again = q.claim(timeout=30, lease=30)  # waits until the short lease expires
    assert again.item == "short" and again.id == short.id and again.token != short.token
    with pytest.raises(LeaseExpired):
        q.ack(short)  # redelivered meanwhile: the old holder cannot remove it
    q.ack(again)
    assert q.qsize() == 0
    with pytest.raises(LeaseExpired):
        q.ack(again)


def test_expired_lease_is_redelivered_to_get(q: DurableQueue) -> None:
    q.put("job")
    q.claim(timeout=5, lease=0.1)
    assert q.get(timeout=30) == "job"


def test_four_threads_drain_without_loss(q: DurableQueue) -> None:
    q.put_many(list(range(1000)))
    got: List[int] = []
    lock = threading.Lock()

    def drain() -> None:
        while True:
            try:
                item = q.get_nowait()
            except std_queue.Empty:
                return
            with lock:
                got.append(item)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1000)) and q.qsize() == 0


@pytest.mark.parametrize("durability", ["commit", "os"])
def test_durability_modes(folder: str, queue: HddQueue, durability: str) -> None:
    q = DurableQueue(folder, durability=durability, queue=queue)
    q.put("x")
    if durability == "commit":  # put returned after its commit
        other = DurableQueue(folder, queue=queue)
        assert other.get_nowait() == "x"
        other.close()
    else:
        assert q.get(timeout=5) == "x"
    q.close()


def test_a_blocked_get_in_another_process_wakes_within_50ms(folder: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    DurableQueue(folder).close()
    child = ctx.Process(target=wait_and_report, args=(folder, child_end, 10))
    child.start()
    assert parent_end.poll(60) and parent_end.recv() == "ready"
    q = DurableQueue(folder)
    delays = []
    for i in range(10):
        # Let the child block first (its socket appears in waiters/): then the put must wake it.
        deadline = time.monotonic() + 30
        while not os.listdir(os.path.join(folder, "waiters")):
            assert time.monotonic() < deadline, "the child never blocked"
            time.sleep(0.001)
        sent = time.monotonic()
        q.put(i)
        assert parent_end.poll(30)
        item, woke = parent_end.recv()
        assert item == i
        delays.append(woke - sent)
    child.join(30)
    assert child.exitcode == 0
    q.close()
    assert statistics.median(delays) < 0.05, delays


@pytest.mark.parametrize("many", [1, 100])
def test_four_producers_four_consumers_move_100000_items_exactly_once(folder: str, many: int) -> None:
    total, producers, consumers = 100_000, 4, 4
    ctx = multiprocessing.get_context("spawn")
    DurableQueue(folder).close()
    share = total // producers
    makers = [ctx.Process(target=produce, args=(folder, n * share, share, many)) for n in range(producers)]
    pipes = [ctx.Pipe() for _ in range(consumers)]
    takers = [ctx.Process(target=consume, args=(folder, child_end, many)) for _, child_end in pipes]
    for p in makers + takers:
        p.start()
    for p in makers:
        p.join(100)
        assert p.exitcode == 0
    q = DurableQueue(folder, durability="commit")
    q.put_many([STOP] * consumers)
    got: List[int] = []
    for parent_end, _ in pipes:
        assert parent_end.poll(100), "a consumer never got its STOP"
        got.extend(parent_end.recv())
    for p in takers:
        p.join(30)
        assert p.exitcode == 0
    counts = Counter(got)
    assert len(got) == total and len(counts) == total and set(counts) == set(range(total))
    assert q.qsize() == 0
    q.close()


def test_iodict_positional_lock_and_semaphore_are_accepted(folder: str, queue: HddQueue) -> None:
    q = DurableQueue(folder, threading.Lock(), threading.Semaphore, queue=queue)
    q.put("x")
    assert q.get() == "x"
    q.close()


def test_a_blocked_get_takes_a_pending_put_of_its_own_process(folder: str, queue: HddQueue) -> None:
    q = DurableQueue(folder, queue=queue)
    got: List[Any] = []
    blocked = threading.Thread(target=lambda: got.append(q.get(timeout=60)))
    blocked.start()
    deadline = time.monotonic() + 30
    while not os.listdir(os.path.join(folder, "waiters")):  # it is asleep on the doorbell
        assert time.monotonic() < deadline
        time.sleep(0.001)
    gate = threading.Event()
    holder = ThreadManager(queue).do_async(gate.wait, fn_args=[60])  # no commit can run
    try:
        task = q.put_async("mine")
        blocked.join(30)
        assert got == ["mine"] and not task.done()  # woken and served before the commit
    finally:
        gate.set()
    holder.result(60)
    task.result(60)
    assert q.qsize() == 0
    q.close()


def test_after_the_hdd_queue_shut_down_writes_commit_in_the_caller(folder: str) -> None:
    own = HddQueue(name="durable-shut")
    q = DurableQueue(folder, queue=own)
    q.put("before")
    own.shutdown()
    task = q.put_async("after")
    assert task.done() and task.exception() is None  # committed at the call: no queue is left to do it
    other = DurableQueue(folder)
    assert other.get_many(5) == ["before", "after"]
    other.close()
    q.close()
