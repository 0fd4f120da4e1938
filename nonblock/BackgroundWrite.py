"""Old import path: ``from nonblock.BackgroundWrite import bgwrite`` keeps working."""

from nonblock.bgwrite import (  # noqa: F401
    BG_IO_PRIOS,
    BackgroundIOPriority,
    BackgroundWriteProcess,
    bgwrite,
    bgwrite_chunk,
    chunk_data,
)

__all__ = [
    "BG_IO_PRIOS", "BackgroundIOPriority", "BackgroundWriteProcess", "bgwrite", "bgwrite_chunk", "chunk_data",
]
