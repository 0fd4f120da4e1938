"""nonblock: write to disk without waiting for it.

``bgwrite(fileObj, data)`` returns at once, and so does every write to a
``BackgroundHddFile(path, mode)`` (a drop-in for open()); a shared HDD IO queue
(two IO threads taking turns at the disk, one callback thread) writes the data
in the background, in order, and reports every error.
"""

from nonblock.background import ThreadManager, background, do_async, thread_manager
from nonblock.background_read import BackgroundReadData, bgread
from nonblock.bgwrite import (
    BG_IO_PRIOS,
    IO_PRIORITY_PROFILES,
    BackgroundIOPriority,
    BackgroundWriteProcess,
    bgwrite,
    bgwrite_chunk,
    chunk_data,
)
from nonblock.durable import (
    DurableDict,
    DurableQueue,
    FlushQueue,
    IODict,
    Lease,
    LeaseExpired,
    StoreError,
)
from nonblock.hddfile import BackgroundBinaryFile, BackgroundHddFile, BackgroundTextFile
from nonblock.hddq import (
    ExecutionState,
    HddQueue,
    PredecessorFailed,
    QueueShutdown,
    Task,
    default_queue,
    is_shutdown,
    shutdown,
)
from nonblock.read import nonblock_read
from nonblock.streamfailures import StreamFailed, clear_stream_error
from nonblock.syncq import MessageTooLarge, SharedFileWriter, SyncQueue

__version__ = "0.1.0"

__all__ = [
    "BG_IO_PRIOS",
    "BackgroundBinaryFile",
    "BackgroundHddFile",
    "BackgroundTextFile",
    "BackgroundIOPriority",
    "BackgroundReadData",
    "BackgroundWriteProcess",
    "DurableDict",
    "DurableQueue",
    "FlushQueue",
    "IODict",
    "Lease",
    "LeaseExpired",
    "StoreError",
    "ExecutionState",
    "HddQueue",
    "IO_PRIORITY_PROFILES",
    "MessageTooLarge",
    "PredecessorFailed",
    "ThreadManager",
    "QueueShutdown",
    "SharedFileWriter",
    "StreamFailed",
    "SyncQueue",
    "Task",
    "background",
    "bgread",
    "bgwrite",
    "bgwrite_chunk",
    "chunk_data",
    "clear_stream_error",
    "default_queue",
    "do_async",
    "is_shutdown",
    "nonblock_read",
    "shutdown",
    "thread_manager",
]
