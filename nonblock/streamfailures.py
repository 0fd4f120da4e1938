"""Streams whose writing failed: nothing more is written to them until the caller says so.

Writes A, B, C to one file where B fails (a full disk, a transient EIO) must not
leave a file holding A and C with a hole where B was, with C reporting success.
So the first failure of a write to a stream is remembered here, and every later
write to that stream fails with :class:`StreamFailed` (whose ``__cause__`` is
that first failure) without writing anything, until
:func:`clear_stream_error` is called for the stream.

A write cancelled before it started, or one whose ``chainAfter`` predecessor
failed, wrote nothing and leaves its stream whole: neither counts.
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, Optional, Tuple

__all__ = ["StreamFailed", "clear_stream_error", "failure_of", "record_failure"]


class StreamFailed(RuntimeError):
    """A write was not made because an earlier write to the same stream failed.

    The earlier failure is this exception's ``__cause__``.  Call
    :func:`nonblock.clear_stream_error` once the stream is fit to take writes again.
    """


# The first failure of each stream.  Streams that cannot be weakly referred to are
# kept (by id, with the stream itself, so the id cannot be reused) until cleared.
_by_stream: weakref.WeakKeyDictionary[Any, BaseException] = weakref.WeakKeyDictionary()
_by_id: Dict[int, Tuple[Any, BaseException]] = {}
# Whether any stream has failed: the write path looks no further while none has.
any_failed = False


def record_failure(stream: Any, error: BaseException) -> None:
    """Remember *error* as *stream*'s failure, unless it has one already."""
    global any_failed
    if isinstance(error, StreamFailed) or failure_of(stream) is not None:
        return
    try:
        _by_stream[stream] = error
    except TypeError:  # not hashable, or no weak references
        _by_id[id(stream)] = (stream, error)
    any_failed = True


def failure_of(stream: Any) -> Optional[BaseException]:
    """The first failure of a write to *stream* not yet cleared, or None."""
    if not any_failed:
        return None
    try:
        error = _by_stream.get(stream)
    except TypeError:
        error = None
    if error is None:
        entry = _by_id.get(id(stream))
        if entry is not None and entry[0] is stream:
            error = entry[1]
    return error


def refusal(stream: Any, first: BaseException) -> StreamFailed:
    """The error a write to *stream* fails with after its *first* failure."""
    error = StreamFailed(
        f"not written: an earlier write to {stream!r} failed ({type(first).__name__}: {first}); "
        "call nonblock.clear_stream_error(stream) to write to it again"
    )
    error.__cause__ = first
    return error


def clear_stream_error(stream: Any) -> Optional[BaseException]:
    """Let writes to *stream* go through again after a failure; return the failure cleared, or None.

    Writes queued behind the failure that have already failed stay failed;
    writes queued from now on are written.
    """
    global any_failed
    error = failure_of(stream)
    if error is None:
        return None
    try:
        _by_stream.pop(stream, None)
    except TypeError:
        pass
    _by_id.pop(id(stream), None)
    any_failed = bool(_by_stream) or bool(_by_id)
    return error
