"""Finalizers and signal handlers that write never hang the queue (a bounded stress run).

A GC finalizer runs on whatever thread allocated when the collection started,
an IO thread included, perhaps while that thread is inside the queue; a signal
handler runs on the main thread between two bytecodes, perhaps while it is
inside bgwrite().  Both may submit work.  A child process does all of that at
once for a bounded time, under a watchdog that dumps every thread's stack and
kills the process if it stops; then it checks that every byte landed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SECONDS = float(os.environ.get("NONBLOCK_STRESS_SECONDS", "10"))

_CHILD = textwrap.dedent("""
    import faulthandler, gc, itertools, os, signal, sys, threading, time
    from nonblock import BackgroundHddFile, bgwrite

    seconds, folder = float(sys.argv[1]), sys.argv[2]
    # The watchdog: if the run has not ended well after its time, dump every stack and die.
    faulthandler.dump_traceback_later(seconds + 30, exit=True)
    gc.set_threshold(100, 5, 5)  # collections often, so they land everywhere, IO threads included
    stop = threading.Event()
    counts = {"cyclic": 0, "small": 0, "signal": 0}

    def cyclic_garbage():
        # Unclosed files in reference cycles: only the cyclic GC frees them, and
        # their finalizers close them, which submits to the queue.
        while not stop.is_set():
            n = counts["cyclic"]
            f = BackgroundHddFile(os.path.join(folder, "cyclic-%d" % (n % 50)), "ab")
            f.write(b"cyclic %d\\n" % n)
            f.me = f
            del f
            counts["cyclic"] = n + 1

    small = open(os.path.join(folder, "small"), "wb")

    def small_writes():
        while not stop.is_set():
            bgwrite(small, b"s%08d\\n" % counts["small"])
            counts["small"] += 1

    from_signals = open(os.path.join(folder, "signals"), "wb")

    numbers = itertools.count()

    def on_alarm(signum, frame):
        # A handler may be interrupted by the next one: each takes its number atomically.
        bgwrite(from_signals, b"a%08d\\n" % next(numbers))

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    workers = [threading.Thread(target=cyclic_garbage), threading.Thread(target=small_writes)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + seconds
    main_writes = open(os.path.join(folder, "main"), "wb")
    n = 0
    try:
        while time.monotonic() < deadline:  # the main thread writes too, so signals land inside bgwrite
            bgwrite(main_writes, b"m%08d\\n" % n)
            n += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        stop.set()
    counts["signal"] = next(numbers)
    for worker in workers:
        worker.join()
    gc.collect()
    from nonblock import default_queue
    assert default_queue().wait_idle(60), "the queue never went idle"
    for name, stream in (("small", small), ("signals", from_signals), ("main", main_writes)):
        stream.close()
    def lines(name):
        with open(os.path.join(folder, name), "rb") as f:
            return f.read().splitlines()
    assert lines("small") == [b"s%08d" % i for i in range(counts["small"])]
    assert lines("main") == [b"m%08d" % i for i in range(n)]
    assert sorted(lines("signals")) == [b"a%08d" % i for i in range(counts["signal"])]
    cyclic = sum(len(lines("cyclic-%d" % i)) for i in range(min(50, counts["cyclic"])))
    assert cyclic == counts["cyclic"], (cyclic, counts["cyclic"])
    faulthandler.cancel_dump_traceback_later()
    print(counts["cyclic"], counts["small"], counts["signal"], n)
""")


@pytest.mark.timeout(SECONDS + 90)
def test_finalizers_and_signal_handlers_that_write_never_deadlock(tmp_path):
    done = subprocess.run([sys.executable, "-c", _CHILD, str(SECONDS), str(tmp_path)],
                          capture_output=True, text=True, timeout=SECONDS + 80)
    assert done.returncode == 0, f"the child hung or failed:\n{done.stderr[-6000:]}"
    cyclic, small, signals, main = map(int, done.stdout.split())
    # Each kind of work really happened, many times over.
    assert cyclic > 100 and small > 1000 and signals > 100 and main > 1000, done.stdout
