"""Argument checks shared by the public calls.

Every check raises at the call, before anything is queued, with a message that
names the argument and shows the value that was refused.
"""

from __future__ import annotations

import decimal
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


def truncated_count(name: str, value: Any, minimum: int) -> int:
    """*value* truncated to an int >= *minimum*, as python-nonblock's ``int(value)`` did.

    Any real number is taken (float, Fraction, Decimal, numpy's numbers), so
    ``len(data) / 4`` works as a chunk size.  Refused with the argument named:
    bool, str and other non-numbers (``int()`` would take ``True`` and ``'4'``),
    NaN and infinities, and anything whose ``int()`` is below *minimum*.
    """
    if type(value) is int and value >= minimum:
        return value
    what = f"a number whose int() is >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)):
        raise TypeError(f"{name} must be {what}, not {show(value)}")
    if isinstance(value, decimal.Decimal):
        finite = value.is_finite()
    else:
        finite = isinstance(value, numbers.Integral) or math.isfinite(float(value))
    if not finite:
        raise ValueError(f"{name} must be {what}, not {show(value)}")
    count = int(value)  # type: ignore[arg-type]  # every Real and Decimal has __int__
    if count < minimum or value < minimum:
        raise ValueError(f"{name} must be {what}, not {show(value)}")
    return count


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
