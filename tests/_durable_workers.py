"""Process bodies for the durable store tests (importable by spawned children)."""

from __future__ import annotations

import os
import time
from typing import Any, List

from nonblock.durable import DurableQueue

STOP = "stop"


def produce(path: str, first: int, count: int, batch: int) -> None:
    """Put the ints first..first+count-1, in put_many batches of *batch* (1: plain put)."""
    q = DurableQueue(path)
    for start in range(first, first + count, batch):
        if batch == 1:
            q.put(start)
        else:
            q.put_many(list(range(start, min(start + batch, first + count))))
    q.close()  # commits what is pending


def consume(path: str, out: Any, many: int) -> None:
    """Get until STOP; send the list of items got through the pipe *out*."""
    q = DurableQueue(path)
    got: List[Any] = []
    while True:
        items = [q.get()] if many == 1 else q.get_many(many)
        for at, item in enumerate(items):
            if item == STOP:
                # STOPs come after every item: any others in this batch belong to other consumers.
                q.put_many(items[at + 1:])
                out.send(got)
                q.close()
                return
            got.append(item)


def wait_and_report(path: str, out: Any, rounds: int) -> None:
    """Block in get() *rounds* times; after each, send (item, monotonic time it returned)."""
    q = DurableQueue(path)
    out.send("ready")
    for _ in range(rounds):
        item = q.get(timeout=60)
        out.send((item, time.monotonic()))
    q.close()


def pid() -> int:
    return os.getpid()


def write_keys(path: str, writer: int, count: int) -> None:
    """Set (writer, i) -> i for i < count in the DurableDict at *path*, then read them back."""
    from nonblock.durable import DurableDict
    d = DurableDict(path)
    for i in range(count):
        d[(writer, i)] = i
    assert all(d[(writer, i)] == i for i in range(count))
    d.close()
