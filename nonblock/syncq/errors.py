"""The errors of syncq, and the checks that raise them at the call."""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

from nonblock._checks import show


class MessageTooLarge(ValueError, MemoryError):
    """A message that could never fit in the ring, raised at the call, never after a wait.

    It is a ValueError (bad input) and a MemoryError, so pysyncq code that
    catches MemoryError around ``append`` still catches it.
    """


def timeout(name: str, value: Any) -> Optional[float]:
    """*value* as a number of seconds >= 0, or None (wait as long as it takes)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds >= 0 or None, not {show(value)}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, not {show(value)}")
    return seconds


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, not {show(value)}")
    return str(value)


def byte_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, not {show(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {show(value)}")
    return int(value)


def name(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip("/") or "/" in value.strip("/") or "\0" in value:
        raise ValueError(f"name must be None or a non-empty str without '/' inside, not {show(value)}")
    return value
