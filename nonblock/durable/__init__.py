"""Durable dict and queue: iodict's API on sqlite, with writes that never wait for the disk.

``DurableDict`` (alias ``IODict``) is an ordered dict and ``DurableQueue`` a
``queue.Queue``, each kept in a sqlite database (WAL) inside a folder that any
number of threads and processes may open at once.  Writes return at once and
are committed by the HDD queue in groups; reads see this process's own writes
at once.  ``FlushQueue`` saves an in-memory queue's items to disk and back.
``nonblock.iodict`` is the drop-in module for code written for iodict.
"""

from nonblock.durable.codec import Serializer
from nonblock.durable.dict import DurableDict, IODict
from nonblock.durable.flush import FlushQueue
from nonblock.durable.queue import DurableQueue, Lease, LeaseExpired
from nonblock.durable.store import DURABILITIES, StoreError

__all__ = ["DURABILITIES", "DurableDict", "DurableQueue", "FlushQueue", "IODict", "Lease", "LeaseExpired",
           "Serializer", "StoreError"]
