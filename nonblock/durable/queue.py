"""DurableQueue: ``queue.Queue``'s API on a sqlite database, shared by threads and processes.

    from nonblock.durable import DurableQueue

    jobs = DurableQueue("/var/spool/myapp")
    jobs.put({"url": url})          # returns at once; committed in the background
    job = jobs.get()                # in any process; each item goes to one consumer

    lease = jobs.claim(lease=60)    # at-least-once: the item stays until acked
    handle(lease.item)
    jobs.ack(lease)                 # or nack(lease); an expired lease is redelivered

A ``put`` joins the store's pending batch (group commit, see store.py).  A
``get`` removes its item in a write transaction of its own, committed before it
returns, so across every thread and process each item is delivered once; if
the database has nothing, it takes this process's own pending items, which no
one else can see yet.  A blocked ``get`` sleeps on the store's doorbell
(doorbell.py) and wakes when any process commits items.
"""

from __future__ import annotations

import queue as std_queue
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

from nonblock._checks import show
from nonblock.durable.codec import SerializerSpec, resolve_serializer
from nonblock.durable.doorbell import Doorbell
from nonblock.durable.store import Store, check_timeout
from nonblock.hddq import HddQueue, Task

__all__ = ["DurableQueue", "Lease", "LeaseExpired"]

# One table, no counters: a put or a get then writes one page (what a commit fsyncs), and
# count(*) is cheap where it is needed (a bounded queue holds at most about maxsize rows).
# A new id is above every stored one (rowid = max + 1), which keeps the order FIFO.
_SCHEMA = """
CREATE TABLE items (id INTEGER PRIMARY KEY, value BLOB NOT NULL,
                    lease_until REAL NOT NULL DEFAULT 0, token TEXT)
"""
_LONGEST_SLEEP = 1.0  # a safety net only: every wake-up that matters comes through the doorbell
_Row = Tuple[int, bytes]


def _apply(connection: sqlite3.Connection, blobs: List[bytes]) -> None:
    connection.executemany("INSERT INTO items (value) VALUES (?)", [(blob,) for blob in blobs])


class LeaseExpired(RuntimeError):
    """``ack``/``nack`` of a lease that expired and whose item was delivered again (or was acked already)."""


@dataclass(frozen=True)
class Lease:
    """A claimed item: stored but invisible until ``ack``, ``nack`` or ``expires_at`` (a time.time())."""

    item: Any
    id: int
    token: str
    expires_at: float


class DurableQueue:
    """A FIFO queue in the folder *path*: ``queue.Queue``'s API, across threads and processes.

    *lock* and *semaphore* are accepted for iodict compatibility and not
    needed.  *maxsize* <= 0 means unbounded, as in ``queue.Queue``; it counts
    every stored item (claimed ones too) and is exact among this object's
    threads, approximate across processes.  *durability*, *serializer*,
    *trusted* and *queue* are as for :class:`~nonblock.durable.DurableDict`.
    ``task_done``/``join`` count the items this object's ``get`` delivered.
    """

    def __init__(self, path: Any, lock: Any = None, semaphore: Any = None, *, maxsize: int = 0,
                 durability: str = "group", serializer: SerializerSpec = "pickle", trusted: bool = False,
                 queue: Optional[HddQueue] = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, not {show(maxsize)}")
        self._serializer = resolve_serializer(serializer)
        self._store = Store(path, "queue", _SCHEMA, durability=durability, serializer=self._serializer,
                            trusted=trusted, queue=queue, apply=_apply)
        self.maxsize = maxsize
        self.path = self._store.folder
        self.lock, self.semaphore = lock, semaphore  # iodict's; unused
        self._doorbell = Doorbell(self._store.folder)
        self._unfinished = 0
        self._store.rang = self._doorbell.ring
        self._store.after_fork = self._reset_after_fork

    def _reset_after_fork(self) -> None:
        self._doorbell.reset_after_fork()
        self._unfinished = 0

    # -- putting ------------------------------------------------------------------

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Add *item*; returns at once unless the queue is bounded and full (then as ``queue.Queue``)."""
        self.put_many([item], block, timeout)

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)

    def put_async(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> Task[Any]:
        """``put(item)``, returning the Task that completes when the item is committed."""
        return self.put_many([item], block, timeout)

    def put_many(self, items: Sequence[Any], block: bool = True,
                 timeout: Optional[float] = None) -> Task[Any]:
        """Add every item of *items* in order (all encoded before any is queued); the batch's Task."""
        blobs = [self._serializer.dumps(item) for item in items]
        timeout = check_timeout(timeout) if block else None
        if self.maxsize > 0:
            self._wait(lambda: self._has_room(len(blobs)), block, timeout, std_queue.Full)
        store = self._store
        with store.state_lock:
            store.pending.extend(blobs)
            task = store.batch_task()
        if self._doorbell.local_waiters:
            self._doorbell.ring_local()  # they can take our pending items already
        store.settle(task)
        return task

    def _has_room(self, count: int) -> bool:
        size = self.qsize()
        return size == 0 or size + count <= self.maxsize

    # -- getting ------------------------------------------------------------------

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the oldest item; ``queue.Empty`` if none comes in time."""
        return self.get_many(1, block, timeout)[0]

    def get_nowait(self) -> Any:
        return self.get(False)

    def get_many(self, n: int, block: bool = True, timeout: Optional[float] = None) -> List[Any]:
        """Remove and return up to *n* of the oldest items (at least one), in one transaction."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, not {show(n)}")
        timeout = check_timeout(timeout) if block else None
        rows = self._wait(lambda: self._take(n, None), block, timeout, std_queue.Empty)
        with self._store.state_lock:
            self._unfinished += len(rows)
        return [self._serializer.loads(blob) for _, blob in rows]

    def claim(self, timeout: Optional[float] = None, lease: float = 30.0) -> Lease:
        """Lease the oldest item for *lease* seconds (stored until ``ack``); ``queue.Empty`` on timeout."""
        timeout = check_timeout(timeout)
        seconds = check_timeout(lease, "lease")
        if not seconds:
            raise ValueError(f"lease must be a number of seconds > 0, not {show(lease)}")
        if self._store.pending:
            self._store.sync()  # a lease lives in the database: our own pending items must be there
        token = uuid.uuid4().hex
        rows = self._wait(lambda: self._take(1, (seconds, token)), timeout != 0, timeout, std_queue.Empty)
        (row_id, blob), = rows
        return Lease(self._serializer.loads(blob), row_id, token, time.time() + seconds)

    def ack(self, lease: Lease) -> None:
        """Remove a claimed item for good; LeaseExpired if it was redelivered meanwhile."""
        self._settle_lease(lease, "DELETE FROM items WHERE id = ? AND token = ?", True)

    def nack(self, lease: Lease) -> None:
        """Give a claimed item back: it is delivered again, before newer items."""
        self._settle_lease(lease, "UPDATE items SET lease_until = 0, token = NULL "
                                  "WHERE id = ? AND token = ?", False)
        self._doorbell.ring()

    def _settle_lease(self, lease: Lease, sql: str, removes: bool) -> None:
        if not isinstance(lease, Lease):
            raise TypeError(f"lease must be a Lease from claim(), not {show(lease)}")
        store = self._store

        def work(connection: sqlite3.Connection) -> int:
            return int(connection.execute(sql, (lease.id, lease.token)).rowcount)

        with store.write_lock(), store.caller_lock:
            changed = store.transact(store.caller, work)
        if not changed:
            raise LeaseExpired(f"{lease!r} expired and its item was delivered again, "
                               "or it was settled already")
        if removes and self.maxsize > 0:
            self._doorbell.ring()

    def _take(self, n: int, lease: Optional[Tuple[float, str]]) -> List[_Row]:
        """Up to *n* rows removed (or leased) in one transaction; then this process's pending items."""
        store = self._store

        def work(connection: sqlite3.Connection) -> List[_Row]:
            now = time.time()
            rows: List[_Row] = connection.execute(
                "SELECT id, value FROM items WHERE lease_until <= ? ORDER BY id LIMIT ?", (now, n)).fetchall()
            if rows and lease is None:
                connection.executemany("DELETE FROM items WHERE id = ?", [(row[0],) for row in rows])
            elif rows and lease is not None:
                connection.executemany("UPDATE items SET lease_until = ?, token = ? WHERE id = ?",
                                       [(now + lease[0], lease[1], row[0]) for row in rows])
            return rows

        with store.write_lock():
            with store.caller_lock:
                rows: List[_Row] = store.transact(store.caller, work)
            if len(rows) < n and lease is None:
                with store.state_lock:
                    mine = store.pending[:n - len(rows)]
                    del store.pending[:len(mine)]
                rows += [(0, blob) for blob in mine]
        if rows and self.maxsize > 0:
            self._doorbell.ring()  # putters may wait for room, here or elsewhere
        return rows

    def _wait(self, attempt: Callable[[], Any], block: bool, timeout: Optional[float],
              failure: type) -> Any:
        """attempt() until it gives something true; between tries, sleep on the doorbell."""
        result = attempt()
        if result or not block:
            if not result:
                raise failure
            return result
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._doorbell.listening() as ear:
            while True:
                result = attempt()  # once more, now that a ring cannot be missed
                if result:
                    return result
                remaining = _LONGEST_SLEEP if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise failure
                ear.wait(min(remaining, _LONGEST_SLEEP, self._until_a_lease_expires()))

    def _until_a_lease_expires(self) -> float:
        rows = self._store.read("SELECT min(lease_until) FROM items WHERE lease_until > 0")
        first = rows[0][0]
        return _LONGEST_SLEEP if first is None else max(0.001, first - time.time())

    # -- sizes and joining ------------------------------------------------------------------

    def qsize(self) -> int:
        """Items stored and not yet removed (claimed ones included), with this process's pending puts."""
        store = self._store
        with store.write_lock():  # no commit in flight: each item counted once
            count = int(store.read("SELECT count(*) FROM items")[0][0])
            with store.state_lock:
                return count + len(store.pending)

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return 0 < self.maxsize <= self.qsize()

    def task_done(self) -> None:
        """One item that this object's ``get`` delivered is processed."""
        with self._store.state_lock:
            if self._unfinished <= 0:
                raise ValueError("task_done() called too many times")
            self._unfinished -= 1
            finished = self._unfinished == 0
        if finished and self._doorbell.local_waiters:
            self._doorbell.ring_local()

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait until the queue is empty and every item this object got is ``task_done``."""
        timeout = check_timeout(timeout)
        # Other processes' gets do not ring: look again every 50 ms.
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._doorbell.listening() as ear:
            while self._unfinished or self.qsize():
                remaining = 0.05 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"join() timed out after {timeout} s")
                ear.wait(min(remaining, 0.05))

    # -- durability and lifetime --------------------------------------------------------

    def sync(self, timeout: Optional[float] = None) -> None:
        """Wait until every put made so far in this process is committed."""
        self._store.sync(timeout)

    def close(self) -> None:
        """Commit what is pending and close the database (the items stay: iodict deleted them)."""
        self._store.close()
        self._doorbell.close()

    def __enter__(self) -> DurableQueue:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
