"""iodict's README examples, verbatim after the import change, on real folders.

Each example is run as the README shows it (the README's own path,
/tmp/iodict, is replaced by a fresh folder; the REPL's echoed values become
asserts).
"""

from __future__ import annotations

import os
import queue
import threading

import pytest

from nonblock import iodict

# The names iodict's README shows for dir(data).
README_DIR = [
    '__class__', '__delattr__', '__delitem__', '__dict__', '__dir__', '__doc__', '__enter__', '__eq__',
    '__exit__', '__format__', '__ge__', '__getattribute__', '__getitem__', '__gt__', '__hash__',
    '__init__', '__init_subclass__', '__iter__', '__le__', '__len__', '__lt__', '__module__', '__ne__',
    '__new__', '__reduce__', '__reduce_ex__', '__repr__', '__setattr__', '__setitem__', '__sizeof__',
    '__str__', '__subclasshook__', '__weakref__', '_db_path', '_encoder', '_lock', 'clear', 'copy',
    'fromkeys', 'get', 'items', 'keys', 'pop', 'popitem', 'setdefault', 'update', 'values'
]


@pytest.fixture
def path(tmp_path: os.PathLike[str]) -> str:
    return os.path.join(os.fspath(tmp_path), "iodict")


def test_dictionary_usage(path: str) -> None:
    data = iodict.IODict(path=path)  # Could be any path on the file system
    data["key"] = "value"
    assert repr(data) == repr({'key': "value"})
    assert data == {'key': "value"}
    missing = [name for name in README_DIR if name not in dir(data)]
    assert missing == []
    assert data._db_path == path


def test_lock_argument(path: str) -> None:
    data = iodict.IODict(path=path, lock=threading.Lock)
    data["k"] = 1
    assert data["k"] == 1


def test_durable_queue_usage(path: str) -> None:
    q = iodict.DurableQueue(path=path)  # Could be any path on the file system
    q.put("test")
    data = q.get()
    assert data == 'test'


def test_flushing_capable_queue_usage(path: str) -> None:
    class NewQueue(queue.Queue, iodict.FlushQueue):  # type: ignore[type-arg]
        def __init__(self, path, lock=None, semaphore=None):  # type: ignore[no-untyped-def]
            super().__init__()
            self.path = path
            self.lock = lock
            self.semaphore = semaphore

    q = NewQueue(path=path)  # Could be any path on the file system
    q.put("test")
    assert q.qsize() == 1
    q.flush()
    assert q.qsize() == 0
    q.ingest()
    assert q.qsize() == 1
    assert q.get() == 'test'
