"""syncq: message queues between processes in shared memory, and many processes writing one file.

* :class:`SyncQueue` - broadcast or work queue, joined by name by any process.
* :class:`SharedFileWriter` - any process writes records; one drainer writes them
  to the file, whole and in order, and another takes over if it dies.
* ``nonblock.pysyncq.PySyncQ`` - pysyncq's API on the same ring.
"""

from nonblock.syncq.errors import MessageTooLarge
from nonblock.syncq.filewriter import SharedFileWriter
from nonblock.syncq.queue import Empty, Full, SyncQueue

__all__ = ["Empty", "Full", "MessageTooLarge", "SharedFileWriter", "SyncQueue"]
