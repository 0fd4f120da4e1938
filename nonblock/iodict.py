"""iodict's module, on nonblock's durable stores: change ``import iodict`` to ``from nonblock import iodict``.

``IODict(path, lock=None)``, ``DurableQueue(path, lock=None, semaphore=None)``
and the ``FlushQueue`` mixin, with iodict's signatures; see the README's
migration table for where they deliberately differ (popitem returns
``(key, value)``, ``copy()`` a plain dict, leaving ``with`` and ``close()``
delete nothing).
"""

from nonblock.durable import DurableQueue, FlushQueue, IODict

__all__ = ["DurableQueue", "FlushQueue", "IODict"]
