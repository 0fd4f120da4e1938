"""``python -m nonblock``: a big write, blocking and then with bgwrite, while the caller computes.

Writes the same payload to a temporary file twice: with a plain blocking
loop, then with :func:`~nonblock.bgwrite` while the main thread does
arithmetic.  One progress line updates in place on a terminal (plain lines
otherwise); a side-by-side summary follows.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from typing import Callable, List, TextIO, Tuple

from nonblock.bgwrite import bgwrite

MiB = 1 << 20
_CHUNK = 2 * MiB
_WORK_SLICE = 0.05  # seconds of arithmetic between two looks at the write's progress


class Progress:
    """One line that updates in place on a terminal; plain lines, every 10%, anywhere else."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._width = 0
        self._next_step = 0

    def show(self, label: str, done: int, total: int, extra: str = "") -> None:
        percent = 100 * done // max(total, 1)
        text = f"{label}: {done / MiB:7.1f} / {total / MiB:.0f} MiB ({percent:3d}%){extra}"
        if self._tty:
            self._out.write("\r" + text.ljust(self._width))
            self._width = max(self._width, len(text))
        elif percent >= self._next_step:
            self._out.write(text + "\n")
            self._next_step = percent // 10 * 10 + 10
        self._out.flush()

    def end(self) -> None:
        if self._tty:
            self._out.write("\n")
        self._width = self._next_step = 0
        self._out.flush()


def _payload(size: int) -> bytes:
    unit = b"nonblock writes while you work. "
    return (unit * (size // len(unit) + 1))[:size]


def _busy_work(seconds: float) -> int:
    """Arithmetic for about *seconds*; returns how many rounds it did."""
    deadline = time.perf_counter() + seconds
    rounds = 0
    while time.perf_counter() < deadline:
        total = 0
        for i in range(2000):
            total += i * i
        rounds += 1
    return rounds


def blocking_write(path: str, payload: bytes, progress: Progress) -> float:
    """Write *payload* chunk by chunk, flushed; return how long the caller was held."""
    started = time.perf_counter()
    with open(path, "wb") as stream:
        view = memoryview(payload)
        for offset in range(0, len(payload), _CHUNK):
            stream.write(view[offset: offset + _CHUNK])
            stream.flush()
            progress.show("blocking write", min(offset + _CHUNK, len(payload)), len(payload), ", caller held")
    held = time.perf_counter() - started
    progress.end()
    return held


def background_write(path: str, payload: bytes, prio: int, progress: Progress) -> Tuple[float, float, int]:
    """bgwrite *payload*, computing meanwhile; return (caller held, until written, rounds of work)."""
    stream = open(path, "wb")
    started = time.perf_counter()
    task = bgwrite(stream, payload, closeWhenFinished=True, ioPrio=prio)
    held = time.perf_counter() - started
    ended: List[float] = []
    task.add_done_callback(lambda _: ended.append(time.perf_counter()))  # the moment it is written
    rounds = 0
    while True:
        done = task.finished  # read before the work slice: the last line shows the end
        if not done:
            rounds += _busy_work(_WORK_SLICE)
        progress.show("bgwrite       ", task.status or 0, len(payload), f", {rounds:,} rounds of work done")
        if done:
            break
    progress.end()
    task.result()  # raises if the write failed
    written = (ended[0] if ended else time.perf_counter()) - started
    return held, written, rounds


def summary(size: int, blocked: float, held: float, written: float, rounds: int) -> List[str]:
    """The side-by-side table: what each way cost the caller, and what it got done."""
    rows: List[Tuple[str, str, str]] = [
        ("", "blocking write", "bgwrite"),
        ("caller held", _duration(blocked), _duration(held)),
        ("work done meanwhile", "0 rounds", f"{rounds:,} rounds"),
        ("until on disk", _duration(blocked), _duration(written)),
        ("throughput", f"{size / MiB / blocked:,.0f} MiB/s", f"{size / MiB / written:,.0f} MiB/s"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [f"  {a.ljust(widths[0])}   {b.rjust(widths[1])}   {c.rjust(widths[2])}" for a, b, c in rows]


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds >= 0.01 else f"{seconds * 1e6:,.0f} µs"


def run(mib: int, prio: int, out: TextIO = sys.stdout, say: Callable[[str], None] = print) -> int:
    size = mib * MiB
    payload = _payload(size)
    expected = hashlib.sha256(payload).hexdigest()
    progress = Progress(out)
    with tempfile.TemporaryDirectory(prefix="nonblock-demo-") as folder:
        say(f"Writing {mib} MiB to {folder}, twice:")
        blocked = blocking_write(os.path.join(folder, "blocking.bin"), payload, progress)
        background_path = os.path.join(folder, "background.bin")
        held, written, rounds = background_write(background_path, payload, prio, progress)
        with open(background_path, "rb") as check:
            intact = hashlib.sha256(check.read()).hexdigest() == expected
    say("")
    for line in summary(size, blocked, held, written, rounds):
        say(line)
    say("")
    say(f"bgwrite held the caller {blocked / max(held, 1e-9):,.0f}x less; "
        f"the file {'was verified' if intact else 'is CORRUPT'}.")
    return 0 if intact else 1
