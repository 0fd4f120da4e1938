"""nonblock.durable side by side with iodict 0.0.8, persist-queue 1.1.0 and diskcache 5.6.3, in one run.

    python benchmarks/compare_durable.py [--quick] [--skip-iodict]

Scenarios (the targets of issue 13 are the verdict column):

  A  5,000 puts then 5,000 gets of small items, each contender at the durability it
     defaults to (ours "group", with a final sync() inside the timing).  iodict's run
     takes minutes: it is measured once, at full size (--quick measures it at 500/500
     and says so in the table; no extrapolation).
  B  the same with every contender fsyncing each operation (ours "commit",
     diskcache with sqlite_synchronous=2; persist-queue's default already does).
  C  caller time of one put (median of single calls): ours at "group",
     diskcache's Deque.append, persist-queue's put.
  D  one get of a present key: our IODict against diskcache's Index.
  E  4 producer + 4 consumer processes end to end (items/s): ours with get() and
     with get_many(100), diskcache's Deque (consumers retry popleft on IndexError).

Peers are installed, if missing, with ``pip install --target benchmarks/.peers/<name>``
and imported from there (their module names do not clash with nonblock's).
Repetitions are interleaved so the contenders see the same machine weather.
Results (markdown) go to benchmarks/results_durable.md.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULTS_PATH = os.path.join(BENCH_DIR, "results_durable.md")
PEERS = {"iodict": "iodict==0.0.8", "persist-queue": "persist-queue==1.1.0", "diskcache": "diskcache==5.6.3"}
ITEM = {"id": 0, "payload": "x" * 40}  # a small item


def use_peers() -> None:
    """Install each peer into its own folder if needed, and put the folders on sys.path."""
    for name, requirement in PEERS.items():
        folder = os.path.join(BENCH_DIR, ".peers", name)
        if not os.path.isdir(folder) or not os.listdir(folder):
            command = [sys.executable, "-m", "pip", "install", "-q", "--target", folder, requirement]
            subprocess.run(command, check=True)
        if folder not in sys.path:
            sys.path.insert(0, folder)
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)


# -- queue contenders: make(folder) -> (put, get, finish, close) ----------------------------------------

QueueParts = Tuple[Callable[[Any], None], Callable[[], Any], Callable[[], None], Callable[[], None]]


def ours(durability: str) -> Callable[[str], QueueParts]:
    def make(folder: str) -> QueueParts:
        from nonblock.durable import DurableQueue
        q = DurableQueue(folder, durability=durability)
        return q.put, q.get, q.sync, q.close
    return make


def persist_queue(folder: str) -> QueueParts:
    import persistqueue
    q = persistqueue.SQLiteQueue(folder, auto_commit=True, multithreading=True)
    return q.put, q.get, lambda: None, lambda: None


def diskcache_deque(synchronous: int) -> Callable[[str], QueueParts]:
    def make(folder: str) -> QueueParts:
        import diskcache
        cache = diskcache.Cache(folder, sqlite_synchronous=synchronous)
        deque = diskcache.Deque.fromcache(cache)
        return deque.append, deque.popleft, lambda: None, cache.close
    return make


def iodict_queue(folder: str) -> QueueParts:
    import iodict
    q = iodict.DurableQueue(path=folder)
    return q.put, q.get, lambda: None, lambda: None


def puts_then_gets(make: Callable[[str], QueueParts], count: int) -> float:
    folder = tempfile.mkdtemp(prefix="durable-bench-")
    try:
        put, get, finish, close = make(os.path.join(folder, "q"))
        start = time.perf_counter()
        for _ in range(count):
            put(ITEM)
        got = [get() for _ in range(count)]
        finish()
        elapsed = time.perf_counter() - start
        close()
        assert len(got) == count and got[-1] == ITEM
        return elapsed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def put_call_times(make: Callable[[str], QueueParts], count: int) -> float:
    """The median caller time of one put, each timed alone."""
    folder = tempfile.mkdtemp(prefix="durable-bench-")
    try:
        put, _, finish, close = make(os.path.join(folder, "q"))
        times = []
        clock = time.perf_counter
        for _ in range(count):
            t0 = clock()
            put(ITEM)
            times.append(clock() - t0)
        finish()
        close()
        return statistics.median(times)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def dict_get_time(kind: str, count: int) -> float:
    """Mean time of one get of a present key (keys looked up in a shuffled order)."""
    import random
    folder = tempfile.mkdtemp(prefix="durable-bench-")
    try:
        keys = [f"key-{i}" for i in range(1000)]
        if kind == "ours":
            from nonblock.durable import IODict
            store: Any = IODict(os.path.join(folder, "d"))
            for key in keys:
                store[key] = ITEM
            store.sync()
            close = store.close
        else:
            import diskcache
            store = diskcache.Index(os.path.join(folder, "d"))
            for key in keys:
                store[key] = ITEM
            close = store.cache.close
        order = [random.choice(keys) for _ in range(count)]
        start = time.perf_counter()
        for key in order:
            store[key]
        elapsed = (time.perf_counter() - start) / count
        close()
        return elapsed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- E: processes -------------------------------------------------------------------------------------

def _producer(kind: str, folder: str, count: int, batch: int) -> None:
    use_peers()
    if kind == "diskcache":
        import diskcache
        deque = diskcache.Deque(directory=folder)
        for _ in range(count):
            deque.append(ITEM)
        return
    from nonblock.durable import DurableQueue
    q = DurableQueue(folder)
    if batch == 1:
        for _ in range(count):
            q.put(ITEM)
    else:
        for _ in range(0, count, batch):
            q.put_many([ITEM] * batch)
    q.close()


def _consumer(kind: str, folder: str, count: int, batch: int, done: Any) -> None:
    """Take items until *done* (shared by the consumers) reaches *count*."""
    use_peers()
    import queue as std_queue
    if kind == "diskcache":
        import diskcache
        deque = diskcache.Deque(directory=folder)

        def take() -> int:
            try:
                deque.popleft()
                return 1
            except IndexError:
                time.sleep(0.0005)  # diskcache has no blocking pop: retry
                return 0
    else:
        from nonblock.durable import DurableQueue
        q = DurableQueue(folder)

        def take() -> int:
            try:
                return len(q.get_many(batch, timeout=0.05)) if batch > 1 else len([q.get(timeout=0.05)])
            except std_queue.Empty:
                return 0
    while True:
        got = take()
        with done.get_lock():
            done.value += got
            if done.value >= count:
                return


def processes_rate(kind: str, count: int, batch: int) -> float:
    ctx = multiprocessing.get_context("fork")
    folder = tempfile.mkdtemp(prefix="durable-bench-")
    path = os.path.join(folder, "q")
    try:
        if kind == "ours":
            from nonblock.durable import DurableQueue
            DurableQueue(path).close()
        done = ctx.Value("q", 0)
        share = count // 4
        procs = [ctx.Process(target=_producer, args=(kind, path, share, batch)) for _ in range(4)]
        procs += [ctx.Process(target=_consumer, args=(kind, path, count, batch, done)) for _ in range(4)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        assert all(p.exitcode == 0 for p in procs)
        return count / elapsed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- running and reporting ----------------------------------------------------------------------------

@dataclass
class Row:
    scenario: str
    measure: str
    ours: str
    peer: str
    ratio: str
    target: str
    met: Optional[bool]


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


def interleaved(contenders: Dict[str, Callable[[], float]], reps: int) -> Dict[str, float]:
    """Median of *reps* runs of each contender, the runs taken in turn."""
    results: Dict[str, List[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, run in contenders.items():
            results[name].append(run())
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, iodict at 500/500")
    parser.add_argument("--skip-iodict", action="store_true", help="leave iodict's minutes-long run out")
    args = parser.parse_args()
    use_peers()
    reps = 3 if args.quick else 5
    n = 5000
    rows: List[Row] = []

    a = interleaved({"ours": lambda: puts_then_gets(ours("group"), n),
                     "persist-queue": lambda: puts_then_gets(persist_queue, n),
                     "diskcache": lambda: puts_then_gets(diskcache_deque(1), n)}, reps)
    rows.append(Row("A", f"{n:,} puts then {n:,} gets (defaults)", fmt_time(a["ours"]),
                    f"persist-queue SQLiteQueue {fmt_time(a['persist-queue'])}",
                    f"{a['persist-queue'] / a['ours']:.1f}x", ">= 3x", a["persist-queue"] / a["ours"] >= 3))
    rows.append(Row("A", f"{n:,} puts then {n:,} gets (defaults)", fmt_time(a["ours"]),
                    f"diskcache Deque {fmt_time(a['diskcache'])}",
                    f"{a['diskcache'] / a['ours']:.1f}x", ">= 1.5x", a["diskcache"] / a["ours"] >= 1.5))
    if not args.skip_iodict:
        io_n = 500 if args.quick else n
        io_time = puts_then_gets(iodict_queue, io_n)  # once: minutes at full size
        ours_same = puts_then_gets(ours("group"), io_n)
        note = "" if io_n == n else f" (measured at {io_n:,}/{io_n:,} only, NOT full size)"
        rows.append(Row("A", f"{io_n:,} puts then {io_n:,} gets (defaults){note}", fmt_time(ours_same),
                        f"iodict DurableQueue {fmt_time(io_time)} (1 run)", f"{io_time / ours_same:.0f}x",
                        ">= 100x", io_time / ours_same >= 100 if io_n == n else None))

    b = interleaved({"ours": lambda: puts_then_gets(ours("commit"), n),
                     "persist-queue": lambda: puts_then_gets(persist_queue, n),
                     "diskcache": lambda: puts_then_gets(diskcache_deque(2), n)}, reps)
    labels = (("persist-queue", "persist-queue SQLiteQueue"), ("diskcache", "diskcache Deque (FULL)"))
    for peer, label in labels:
        rows.append(Row("B", f"{n:,} puts then {n:,} gets, fsync each op", fmt_time(b["ours"]),
                        f"{label} {fmt_time(b[peer])}", f"{b[peer] / b['ours']:.2f}x", ">= 1x (no slower)",
                        b[peer] >= b["ours"]))

    c = interleaved({"ours": lambda: put_call_times(ours("group"), n),
                     "persist-queue": lambda: put_call_times(persist_queue, 1000),
                     "diskcache": lambda: put_call_times(diskcache_deque(1), n)}, reps)
    rows.append(Row("C", "caller time of one put (median)", fmt_time(c["ours"]), "-", "-", "<= 20 µs",
                    c["ours"] <= 20e-6))
    for peer, label in (("diskcache", "diskcache Deque.append"), ("persist-queue", "persist-queue put")):
        rows.append(Row("C", "caller time of one put (median)", fmt_time(c["ours"]),
                        f"{label} {fmt_time(c[peer])}", f"{c[peer] / c['ours']:.1f}x", "-", None))

    d = interleaved({"ours": lambda: dict_get_time("ours", 20000),
                     "diskcache": lambda: dict_get_time("diskcache", 20000)}, reps)
    rows.append(Row("D", "IODict get of a present key", fmt_time(d["ours"]),
                    f"diskcache Index {fmt_time(d['diskcache'])}",
                    f"{d['diskcache'] / d['ours']:.2f}x", ">= 1x (no slower)", d["diskcache"] >= d["ours"]))

    e_count = 20_000 if args.quick else 40_000
    e = interleaved({"get": lambda: processes_rate("ours", e_count, 1),
                     "get_many": lambda: processes_rate("ours", 5 * e_count, 100),
                     "diskcache": lambda: processes_rate("diskcache", e_count, 1)}, max(1, reps - 2))
    rows.append(Row("E", f"4+4 processes, {e_count:,} items, get()", f"{e['get']:,.0f} items/s",
                    f"diskcache Deque {e['diskcache']:,.0f} items/s", f"{e['get'] / e['diskcache']:.1f}x",
                    ">= 10,000 items/s", e["get"] >= 10_000))
    rows.append(Row("E", f"4+4 processes, {5 * e_count:,} items, get_many(100)",
                    f"{e['get_many']:,.0f} items/s",
                    "-", "-", ">= 50,000 items/s", e["get_many"] >= 50_000))

    table = ["| | measure | nonblock.durable | peer | peer/ours | target | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        verdict = "-" if r.met is None else ("met" if r.met else "NOT met")
        table.append(f"| {r.scenario} | {r.measure} | {r.ours} | {r.peer} | {r.ratio} | {r.target} "
                     f"| {verdict} |")
    text = "\n".join(table)
    print(text)
    machine = f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs"
    with open(RESULTS_PATH, "w") as f:
        size = "quick" if args.quick else "full"
        f.write(f"# nonblock.durable against its peers\n\n{datetime.date.today()}, {size}"
                f" run, {machine}; medians of {reps} interleaved runs (E: {max(1, reps - 2)}). "
                "The 2 CPUs are shared with other work: expect noise.\n\n" + text + "\n")


if __name__ == "__main__":
    main()
