"""Argument checks shared by the public calls.

Every check raises at the call, before anything is queued, with a message that
names the argument and shows the value that was refused.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


class WrongTypeError(TypeError, ValueError):
    """A wrong-typed argument where python-nonblock raised ValueError.

    It is both, so old ``except ValueError`` code and new ``except TypeError``
    code each catch it.
    """


def show(value: Any, limit: int = 80) -> str:
    """A repr short enough for an error message."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def optional_callables(**callbacks: Any) -> None:
    """TypeError, naming the argument, for any given callback that is not callable."""
    for name, callback in callbacks.items():
        if callback is not None and not callable(callback):
            raise TypeError(f"{name} must be callable or None, not {show(callback)}")


def positive_int(name: str, value: Any) -> int:
    """*value* as an int >= 1; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, not {show(value)}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, not {show(value)}")
    return int(value)


def real_number(name: str, value: Any, *, minimum: float, maximum: float,
                minimum_allowed: bool, what: str) -> float:
    """*value* as a finite float in the given range; bools are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, not {show(value)}")
    number = float(value)
    too_small = number < minimum or (number == minimum and not minimum_allowed)
    if math.isnan(number) or too_small or number > maximum:
        raise ValueError(f"{name} must be {what}, not {show(value)}")
    return number
