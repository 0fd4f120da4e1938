"""kill -9 at random moments, restarts and fork: the store always opens, nothing lost or doubled."""

from __future__ import annotations

import os
import pickle
import queue as std_queue
import random
import signal
import sqlite3
import threading
import traceback
from collections import Counter
from typing import Any, Dict, List, Set

import pytest

from nonblock import DurableDict, DurableQueue, FlushQueue, HddQueue
from nonblock.background import ThreadManager

CYCLES = 200


def _torture_child(folder: str, out: int, first_id: int) -> None:
    """Put, get, claim and ack forever, reporting each step *after* it returned (killed at any moment)."""
    try:
        q = DurableQueue(folder)
        os.write(out, b"R\n")
        next_id = first_id
        while True:
            ids = list(range(next_id, next_id + 4))
            next_id += 4
            for item in ids:
                q.put_async(item)
            os.write(out, b"G?\n")
            try:
                os.write(out, f"G {q.get_nowait()}\n".encode())
            except std_queue.Empty:
                os.write(out, b"G-\n")
            q.sync()
            os.write(out, ("P " + " ".join(map(str, ids)) + "\n").encode())
            try:
                lease = q.claim(timeout=0, lease=3600)
            except std_queue.Empty:
                continue
            os.write(out, f"C {lease.item}\n".encode())
            q.ack(lease)
            os.write(out, f"A {lease.item}\n".encode())
    except BaseException:
        os.write(out, ("E " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
    finally:
        os._exit(1)


def _stored_items(folder: str) -> List[Any]:
    """Every stored item (leased ones too), straight from the database, which must be intact."""
    connection = sqlite3.connect(os.path.join(folder, "queue.sqlite3"))
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        items = [pickle.loads(v) for (v,) in connection.execute("SELECT value FROM items ORDER BY id")]
        return items
    finally:
        connection.close()


def test_kill_9_torture(tmp_path: Any) -> None:
    folder = os.path.join(os.fspath(tmp_path), "q")
    DurableQueue(folder).close()
    rng = random.Random(1313)
    committed: Set[int] = set()
    delivered: Counter[int] = Counter()
    acked: Set[int] = set()
    vanished_allowance = 0  # gets in flight when killed: their item may be gone unreported
    kills_before_ready = 0
    for cycle in range(CYCLES):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _torture_child(folder, write_fd, cycle * 1_000_000)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            early = rng.random() < 0.1
            if early:  # sometimes while it opens the store
                threading.Event().wait(rng.uniform(0, 0.005))
            else:
                assert pipe.readline() == b"R\n"
                threading.Event().wait(rng.uniform(0, 0.03))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            lines = pipe.read().decode().splitlines()
        if early and "R" not in lines:
            kills_before_ready += 1
        assert not [line for line in lines if line.startswith("E ")], lines
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind == "P":
                committed.update(int(x) for x in rest.split())
            elif kind in ("G", "C") and rest not in ("", "-") and not line.startswith("G?"):
                delivered[int(rest)] += 1
            elif kind == "A":
                acked.add(int(rest))
        if lines and lines[-1] == "G?":
            vanished_allowance += 1

        reopened = DurableQueue(folder)  # it opens, whatever moment the child died at
        reopened.close()
        stored = _stored_items(folder)
        stored_counts = Counter(stored)
        assert all(n == 1 for n in stored_counts.values()), "an item is stored twice"
        assert all(n == 1 for n in delivered.values()), "an item was delivered twice"
        assert not acked & set(stored_counts), "an acked item is still stored"
        gotten = {item for item in delivered if item not in acked}
        assert not {x for x in gotten if x in stored_counts and not _leased(folder, x)}, \
            "an item got by get() is still deliverable"
        missing = [x for x in committed if x not in stored_counts and x not in delivered]
        assert len(missing) <= vanished_allowance, (cycle, missing)
    assert len(committed) > CYCLES and len(delivered) > CYCLES / 2  # the children did real work
    assert kills_before_ready > 0


def _leased(folder: str, item: int) -> bool:
    connection = sqlite3.connect(os.path.join(folder, "queue.sqlite3"))
    try:
        return any(pickle.loads(v) == item and lease > 0
                   for v, lease in connection.execute("SELECT value, lease_until FROM items"))
    finally:
        connection.close()


class SavedQueue(std_queue.Queue, FlushQueue):  # type: ignore[type-arg]
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


def _flush_in_a_process(path: str) -> None:
    q = SavedQueue(path)
    for i in range(100):
        q.put({"job": i})
    q.flush()


def test_flush_queue_round_trip_across_a_process_restart(tmp_path: Any) -> None:
    import multiprocessing
    path = os.path.join(os.fspath(tmp_path), "saved")
    p = multiprocessing.get_context("spawn").Process(target=_flush_in_a_process, args=(path,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    q = SavedQueue(path)
    q.ingest()
    assert [q.get_nowait() for _ in range(q.qsize())] == [{"job": i} for i in range(100)]
    q.ingest()  # nothing left on disk
    assert q.qsize() == 0


def test_flush_error_loses_nothing(tmp_path: Any) -> None:
    q = SavedQueue(os.path.join(os.fspath(tmp_path), "saved"))
    for item in [1, threading.Lock(), 3]:
        q.put(item)
    with pytest.raises(TypeError, match="cannot be pickled"):
        q.flush()
    assert q.qsize() == 3  # iodict would have stored 1 and dropped the rest
    assert DurableQueue(q.path).qsize() == 0


def test_ingest_error_leaves_the_rest_on_disk(tmp_path: Any) -> None:
    class Picky(SavedQueue):
        def put(self, item: Any, block: bool = True, timeout: Any = None) -> None:
            if item == "refused":
                raise RuntimeError("no room for this one")
            super().put(item, block, timeout)

    path = os.path.join(os.fspath(tmp_path), "saved")
    saver = SavedQueue(path)
    for item in ["a", "refused", "c"]:
        saver.put(item)
    saver.flush()
    q = Picky(path)
    with pytest.raises(RuntimeError, match="no room"):
        q.ingest()
    assert q.get_nowait() == "a"
    assert DurableQueue(path).get_many(5) == ["refused", "c"]


def test_fork_child_and_parent_each_commit_their_own_writes(tmp_path: Any, queue: HddQueue) -> None:
    folder = os.path.join(os.fspath(tmp_path), "q")
    q = DurableQueue(folder, queue=queue)
    d = DurableDict(folder + "-d", queue=queue)
    q.put("committed before the fork")
    d["before"] = 1
    q.sync(), d.sync()
    gate = threading.Event()
    holder = ThreadManager(queue).do_async(gate.wait, fn_args=[60])
    q.put("parent's, pending at the fork")
    d["parent"] = 2
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            assert q.get_nowait() == "committed before the fork"
            q.put("child's")
            d["child"] = 3
            q.close(), d.close()
            code = 0
        finally:
            os._exit(code)
    gate.set()
    holder.result(60)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    q.sync(), d.sync()
    assert sorted(q.get_many(10)) == ["child's", "parent's, pending at the fork"]
    assert dict(d.items()) == {"before": 1, "parent": 2, "child": 3}
    q.close(), d.close()


def test_commit_mode_survives_kill_9_right_after_the_call(tmp_path: Any) -> None:
    folder = os.path.join(os.fspath(tmp_path), "d")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        d = DurableDict(folder, durability="commit")
        for i in range(50):
            d[i] = i
            os.write(write_fd, f"{i}\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        reported = [int(line) for line in pipe.read().split()]
    os.waitpid(pid, 0)
    values: Dict[Any, Any] = dict(DurableDict(folder).items())
    assert reported == list(range(50)) and values == {i: i for i in range(50)}


def test_group_writes_left_pending_are_committed_at_exit(tmp_path: Any) -> None:
    import subprocess
    import sys
    folder = os.path.join(os.fspath(tmp_path), "s")
    script = ("from nonblock import iodict\n"
              f"q = iodict.DurableQueue({folder!r})\n"
              "for i in range(1000): q.put(i)\n"
              f"d = iodict.IODict({folder!r})\n"
              "d['last'] = 'words'\n")  # no sync, no close: iodict's users never needed one
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert DurableQueue(folder).get_many(2000) == list(range(1000))
    assert DurableDict(folder)["last"] == "words"


def test_a_closed_store_refuses_calls(tmp_path: Any) -> None:
    q = DurableQueue(os.path.join(os.fspath(tmp_path), "q"))
    d = DurableDict(os.path.join(os.fspath(tmp_path), "d"))
    q.close(), d.close()
    for call in (lambda: q.put(1), q.get_nowait, q.qsize, lambda: d.__setitem__("k", 1), lambda: d["k"]):
        with pytest.raises(ValueError, match="closed store"):
            call()
