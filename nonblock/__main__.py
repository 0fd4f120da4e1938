"""``python -m nonblock``: watch a background write while the main thread keeps computing.

Writes a few hundred MiB to a temporary file twice: once with a plain blocking
loop, once with bgwrite while the main thread does arithmetic and reports the
write's progress from its task.  Then it compares how long the caller was held.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time

from nonblock import bgwrite

MiB = 1 << 20


def _payload(size: int) -> bytes:
    unit = b"nonblock writes while you work. "
    return (unit * (size // len(unit) + 1))[:size]


def _blocking_write(path: str, payload: bytes, chunk: int) -> float:
    started = time.perf_counter()
    with open(path, "wb") as stream:
        view = memoryview(payload)
        for offset in range(0, len(payload), chunk):
            stream.write(view[offset: offset + chunk])
            stream.flush()
    return time.perf_counter() - started


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nonblock", description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="how much to write (default 256)")
    parser.add_argument("--prio", type=int, default=4, help="ioPrio, 1 (fastest) to 10 (gentlest)")
    args = parser.parse_args(argv)
    size = args.mib * MiB
    payload = _payload(size)
    expected = hashlib.sha256(payload).hexdigest()

    with tempfile.TemporaryDirectory(prefix="nonblock-demo-") as folder:
        blocking_path = os.path.join(folder, "blocking.bin")
        background_path = os.path.join(folder, "background.bin")
        print(f"Writing {args.mib} MiB to {folder}")

        blocked = _blocking_write(blocking_path, payload, 2 * MiB)
        print(f"  blocking write loop: the caller waited {blocked * 1000:8.1f} ms")

        stream = open(background_path, "wb")
        started = time.perf_counter()
        task = bgwrite(stream, payload, closeWhenFinished=True, ioPrio=args.prio)
        returned = time.perf_counter() - started
        print(f"  bgwrite():           the caller waited {returned * 1000:8.3f} ms, then went on computing")

        rounds = 0
        while not task.finished:
            rounds += _busy_work(0.05)
            done = task.status or 0
            print(f"    {done / MiB:7.1f} / {args.mib} MiB on disk "
                  f"({100 * done / size:5.1f}%), {rounds:6d} rounds of arithmetic so far")
        finished = time.perf_counter() - started
        task.result()  # raises if the write failed

        with open(background_path, "rb") as check:
            intact = hashlib.sha256(check.read()).hexdigest() == expected
        print(f"  background write finished after {finished * 1000:.1f} ms; "
              f"file {'verified' if intact else 'CORRUPT'}")
        print(f"The caller was held {blocked / max(returned, 1e-9):,.0f}x less with bgwrite, "
              f"and did {rounds} rounds of work while the data went down.")
        return 0 if intact else 1


if __name__ == "__main__":
    raise SystemExit(main())
