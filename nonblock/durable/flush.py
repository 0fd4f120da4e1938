"""FlushQueue: save an in-memory queue's items to disk and bring them back later.

    class JobQueue(queue.Queue, FlushQueue):
        def __init__(self, path):
            super().__init__()
            self.path = path

    jobs = JobQueue("/var/spool/myapp")
    ...
    jobs.flush()      # at shutdown: every queued item is now in a DurableQueue at path
    jobs.ingest()     # at the next start: they are back in the queue, in order

Mixed into any ``queue.Queue`` subclass that sets ``self.path`` (iodict's
contract).  Unlike iodict's, an error never stops halfway and loses items:
``flush`` writes every item in one committed transaction or puts them all
back, and ``ingest`` removes an item from disk only after it is in the queue.
"""

from __future__ import annotations

import os
import queue as std_queue
from typing import Any, List, Optional

from nonblock.durable.queue import DurableQueue

__all__ = ["FlushQueue"]


class FlushQueue:
    """A mixin for ``queue.Queue`` subclasses: ``flush()`` to disk, ``ingest()`` back."""

    path: Any

    def __init__(self, path: Any, lock: Any = None, semaphore: Any = None) -> None:
        self.path = path
        self.lock = lock
        self.semaphore = semaphore

    def _durable(self) -> DurableQueue:
        return DurableQueue(self.path, durability="commit")

    def flush(self) -> None:
        """Move every queued item to the DurableQueue at ``self.path``, committed, in order."""
        items: List[Any] = []
        while True:
            try:
                items.append(self.get_nowait())  # type: ignore[attr-defined]
            except std_queue.Empty:
                break
        durable: Optional[DurableQueue] = None
        try:
            durable = self._durable()
            durable.put_many(items)
            durable.sync()
        except BaseException:
            for item in items:  # nothing was stored (one transaction): nothing may be lost either
                self.put(item)  # type: ignore[attr-defined]
            raise
        finally:
            if durable is not None:
                durable.close()

    def ingest(self) -> None:
        """Put back every item that ``flush()`` saved at ``self.path``, oldest first."""
        if not os.path.exists(os.path.expanduser(os.fspath(self.path))):
            return
        durable = self._durable()
        try:
            while True:
                try:
                    lease = durable.claim(timeout=0)
                except std_queue.Empty:
                    return
                try:
                    self.put(lease.item)  # type: ignore[attr-defined]
                except BaseException:
                    durable.nack(lease)
                    raise
                durable.ack(lease)
        finally:
            durable.close()
