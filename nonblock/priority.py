"""IO priority profiles: how big the chunks are and how much bandwidth a write may take.

The ten numbered profiles are python-nonblock 4.0.1's, value for value, so a
program that passes ``ioPrio=7`` gets the same chunking it always did.  What
changed is the meaning of ``bandwidthPct``: here it is honoured (p percent of
the unthrottled rate) and ``chainPollTime`` is kept only for compatibility,
because chained writes start on an event, never by polling.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Union

from nonblock import _checks

__all__ = [
    "BG_IO_PRIOS", "BackgroundIOPriority", "IO_PRIORITY_PROFILES", "DEFAULT_IO_PRIORITY", "resolve_priority",
]

_FIELDS = ("chainPollTime", "defaultChunkSize", "bandwidthPct", "numChunksRateSmoothing")


def _check_chain_poll_time(value: Any) -> float:
    return _checks.real_number(
        "chainPollTime", value, minimum=0.0, maximum=float("inf"),
        minimum_allowed=True, what="a finite number of seconds >= 0",
    )


def _check_bandwidth_pct(value: Any) -> float:
    return _checks.real_number(
        "bandwidthPct", value, minimum=0.0, maximum=100.0,
        minimum_allowed=False, what="a number with 0 < bandwidthPct <= 100",
    )


_CHECKS: Dict[str, Callable[[Any], Any]] = {
    "chainPollTime": _check_chain_poll_time,
    "defaultChunkSize": lambda value: _checks.positive_int("defaultChunkSize", value),
    "bandwidthPct": _check_bandwidth_pct,
    "numChunksRateSmoothing": lambda value: _checks.positive_int("numChunksRateSmoothing", value),
}


class BackgroundIOPriority:
    """A priority profile for background writes.

    ``chainPollTime``
        Seconds, >= 0.  Accepted and validated for compatibility; nonblock
        starts a chained write the moment its predecessor ends, without polling.
    ``defaultChunkSize``
        Bytes (or characters, for text) per chunk when bgwrite cuts a single
        str or bytes payload.  Each chunk is one turn at the disk, flushed
        after it is written.  Bigger chunks: more throughput, coarser sharing.
    ``bandwidthPct``
        0 < p <= 100.  The write runs at p percent of its unthrottled rate: after
        each chunk it rests, off the IO threads, for ``(100 - p) / p`` times the
        average chunk time.
    ``numChunksRateSmoothing``
        How many recent chunks that average is taken over (>= 1).

    Fields can be read and set as attributes or items (``prio['bandwidthPct']``);
    every assignment is validated.
    """

    # Plain attributes, checked as they are set: bgwrite reads three of them per
    # call, and a property read costs several times an attribute read.
    chainPollTime: float
    defaultChunkSize: int
    bandwidthPct: float
    numChunksRateSmoothing: int

    def __init__(
        self,
        chainPollTime: float,
        defaultChunkSize: int,
        bandwidthPct: float,
        numChunksRateSmoothing: int = 5,
    ) -> None:
        self.chainPollTime = chainPollTime
        self.defaultChunkSize = defaultChunkSize
        self.bandwidthPct = bandwidthPct
        self.numChunksRateSmoothing = numChunksRateSmoothing

    def __setattr__(self, name: str, value: Any) -> None:
        check = _CHECKS.get(name)
        if check is not None:
            value = check(value)
        super().__setattr__(name, value)

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _FIELDS:
            raise KeyError(key)
        setattr(self, key, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BackgroundIOPriority):
            return NotImplemented
        return all(self[field] == other[field] for field in _FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict

    def __repr__(self) -> str:
        fields = ", ".join(f"{field}={self[field]!r}" for field in _FIELDS)
        return f"BackgroundIOPriority({fields})"


class _ProfileTable(Dict[int, BackgroundIOPriority]):
    """The numbered profiles: a dict whose entries can be replaced only by profiles."""

    def __setitem__(self, key: int, value: BackgroundIOPriority) -> None:
        if not isinstance(value, BackgroundIOPriority):
            raise TypeError(f"a priority profile must be a BackgroundIOPriority, not {_checks.show(value)}")
        super().__setitem__(key, value)


IO_PRIORITY_PROFILES: Dict[int, BackgroundIOPriority] = _ProfileTable({
    1: BackgroundIOPriority(0.0009, 5242880, 100),
    2: BackgroundIOPriority(0.0009, 4194304, 90),
    3: BackgroundIOPriority(0.0015, 3145728, 78),
    4: BackgroundIOPriority(0.0015, 2097152, 72),
    5: BackgroundIOPriority(0.0019, 1677721, 65),
    6: BackgroundIOPriority(0.0019, 786432, 55),
    7: BackgroundIOPriority(0.0024, 723517, 45),
    8: BackgroundIOPriority(0.0024, 524288, 35),
    9: BackgroundIOPriority(0.0031, 314572, 30),
    10: BackgroundIOPriority(0.0100, 262144, 20),
})
"""python-nonblock's ten profiles: 1 is the fastest, 10 leaves the most room to others.

An integer ``ioPrio`` is looked up here at each call, so changing a profile's
field (validated, as any assignment is) or putting another profile in its
place changes the writes made afterwards.
"""

BG_IO_PRIOS = IO_PRIORITY_PROFILES
"""python-nonblock's name for the same table (``nonblock.BackgroundWrite.BG_IO_PRIOS``)."""

DEFAULT_IO_PRIORITY = 4


def resolve_priority(ioPrio: Union[int, BackgroundIOPriority]) -> BackgroundIOPriority:
    """The profile for *ioPrio* (an int 1..10 or a BackgroundIOPriority), or a clear error."""
    if type(ioPrio) is int:
        profile = IO_PRIORITY_PROFILES.get(ioPrio)
        if profile is not None:
            return profile
    elif isinstance(ioPrio, BackgroundIOPriority):
        return ioPrio
    is_int = isinstance(ioPrio, int) and not isinstance(ioPrio, bool)
    if is_int and int(ioPrio) in IO_PRIORITY_PROFILES:
        return IO_PRIORITY_PROFILES[int(ioPrio)]
    message = f"ioPrio must be an int from 1 to 10 or a BackgroundIOPriority, not {_checks.show(ioPrio)}"
    if is_int:
        raise ValueError(message)
    raise _checks.WrongTypeError(message)
