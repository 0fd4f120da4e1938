"""Old import path: ``from nonblock.BackgroundWrite import bgwrite`` keeps working."""

from nonblock.bgwrite import (  # noqa: F401
    BackgroundIOPriority,
    BackgroundWriteProcess,
    bgwrite,
    bgwrite_chunk,
    chunk_data,
)

__all__ = ["BackgroundIOPriority", "BackgroundWriteProcess", "bgwrite", "bgwrite_chunk", "chunk_data"]
