"""Child-process bodies for the syncq tests (a module of its own so spawned children can import them)."""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any, List

from nonblock.pysyncq import PySyncQ
from nonblock.syncq import SharedFileWriter, SyncQueue


def pysyncq_late_joiner(name: str, size: int, opened: Any, out: Any) -> None:
    q = PySyncQ(name, create=False, size=size)
    q.open("late")
    opened.set()
    first = q.pop(block=True, timer=30)
    out.put((first, q.pop()))
    q.close()


def pysyncq_reader_that_stalls(q: PySyncQ, opened: Any) -> None:
    q.open("stalled")
    opened.set()
    signal.pause()  # never reads: the parent kills it


def pysyncq_pop_all(name: str, size: int, out: Any) -> None:
    q = PySyncQ(name, create=False, size=size)
    q.open("joiner")
    out.put(list(q))
    q.close()


def syncq_reader(name: str, count: int, ready: Any, out: Any, start: str = "latest") -> None:
    q = SyncQueue(name, create=False, reader=True, start=start)
    ready.set()
    out.put([q.get(timeout=60) for _ in range(count)])
    q.close()


def syncq_stalled_reader(name: str, ready: Any) -> None:
    q = SyncQueue(name, create=False, reader=True)
    ready.set()
    signal.pause()
    q.close()  # never reached: the parent kills it


def hold_the_lock_and_die(name: str) -> None:
    from nonblock.syncq.ring import Ring

    ring = Ring(name, False, 0, mode="broadcast", on_full="block", slots=64, check_capacity=False)
    with ring.lock:
        os.kill(os.getpid(), signal.SIGKILL)


# -- the fuzz ------------------------------------------------------------------------------

def fuzz_worker(name: str, mode: str, me: str, log_dir: str, stopped: Any) -> None:
    """Append (me, k) and read whatever comes, until told to stop; then drain and log.

    Work mode logs every message it got as soon as it has it (a killed worker's
    log shows what it took); broadcast mode logs at the end (only survivors count).
    The signals are files: a multiprocessing.Event has a lock, and a worker
    killed holding it would stop every other.
    """
    stop_file, drain_file = os.path.join(log_dir, "stop"), os.path.join(log_dir, "drain")
    q = SyncQueue(name, create=False, mode=mode, reader=True)
    rng = random.Random(me)
    got: List[bytes] = []
    log = os.open(os.path.join(log_dir, f"{me}.got"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sent = 0

    def take(timeout: float) -> int:
        try:
            batch = q.get_many(rng.randint(1, 8), timeout=timeout)
        except Exception as error:  # queue.Empty
            if type(error).__name__ != "Empty":
                raise
            return 0
        if mode == "work":
            os.write(log, b"".join(m + b"\n" for m in batch))
        else:
            got.extend(batch)
        return len(batch)

    while not os.path.exists(stop_file):
        payload = b"%s:%d:" % (me.encode(), sent) + b"p" * rng.randint(0, 300)
        deadline = time.monotonic() + 20
        # Every writer also reads: a full ring waits for the writers themselves,
        # so a writer reads while it waits (and gives up when told to stop).
        while not os.path.exists(stop_file):
            try:
                q.put(payload, timeout=0)
            except Exception as error:  # queue.Full
                if type(error).__name__ != "Full" or time.monotonic() > deadline:
                    raise
                take(0.005)
            else:
                sent += 1
                break
        take(0)
    with open(os.path.join(log_dir, f"{me}.sent"), "w") as out:
        out.write(str(sent))
    stopped.put(me)
    deadline = time.monotonic() + 60
    while not os.path.exists(drain_file) and time.monotonic() < deadline:
        time.sleep(0.01)
    while take(0):
        pass
    if mode == "broadcast":
        os.write(log, b"".join(m + b"\n" for m in got))
    os.close(log)
    with open(os.path.join(log_dir, f"{me}.done"), "w"):
        pass
    q.close()


# -- SharedFileWriter ------------------------------------------------------------------------

def file_drainer(name: str, path: str, size: int, ready: Any) -> None:
    writer = SharedFileWriter(name, path, size=size)
    deadline = time.monotonic() + 30
    while not writer.is_drainer and time.monotonic() < deadline:
        time.sleep(0.01)
    ready.put(writer.is_drainer)
    signal.pause()  # drains in its thread until killed


def file_writer(name: str, path: str, size: int, me: int, count: int, go: Any) -> None:
    writer = SharedFileWriter(name, path, size=size)
    go.wait(60)
    for i in range(count):
        writer.write(b"%d %06d " % (me, i) + b"r" * 88 + b"\n")
    writer.close()


def file_standby(name: str, path: str, size: int, until: Any) -> None:
    writer = SharedFileWriter(name, path, size=size)
    until.wait(120)
    writer.close()


def pysyncq_append_numbered(name: str, size: int, count: int) -> None:
    """Append *count* numbered messages of varying length, waiting for room as long as it takes."""
    q = PySyncQ(name, create=False, size=size)
    for index in range(count):
        q.append("t", f"m{index:06d}" + "x" * (index % 37), block=True, timer=None)
    q.close()


def syncq_put_only(q: SyncQueue, count: int, out: Any) -> None:
    """A forked child that only writes: *count* puts, each allowed 10 s; reports how many went in."""
    done = 0
    try:
        for _ in range(count):
            q.put(b"x" * 40, timeout=10)
            done += 1
    finally:
        out.put(done)
