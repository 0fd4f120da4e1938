"""nonblock.syncq side by side with pysyncq 0.0.1, multiprocessing.Queue and faster-fifo, in one run.

    python benchmarks/compare_syncq.py [--quick]

Scenarios (64-byte messages, real processes started with fork):

* q1  1 producer -> 1 consumer process: messages per second (nonblock in broadcast mode;
      work mode is shown beside it);
* q2  put_many / get_many in batches of 100 (1 -> 1): messages per second;
* q3  broadcast, 1 writer -> 4 reader processes: the median reader's rate;
* q4  wake-up latency: a put to a get blocked in another process (median of
      many pings, the sender pausing between them so that the reader sleeps);
* q5  SharedFileWriter: 4 processes write 100,000 records of 100 bytes into one
      file (the file checked exact); the plain reference is 4 processes each
      appending with os.write on an O_APPEND descriptor.

Repetitions are interleaved (contender order rotated each round) so that the
contenders see the same machine weather; the table shows medians and ratios
against the issue's targets, and is written to benchmarks/results_syncq.md.
The peers are installed with ``pip install --target benchmarks/.peers/<name>``
(the ``bench`` extra lists them) and imported from there.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
PEERS = {"pysyncq": "pysyncq==0.0.1", "faster-fifo": "faster-fifo==1.5.2"}
RESULTS_PATH = os.path.join(BENCH_DIR, "results_syncq.md")
MSG = b"m" * 64

sys.path.insert(0, REPO_ROOT)


def ensure_peers() -> None:
    for folder, requirement in PEERS.items():
        target = os.path.join(BENCH_DIR, ".peers", folder)
        if not os.path.isdir(target):
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", target, requirement],
                           check=True)
        sys.path.append(target)


# -- the contenders: each gives (make, put, get, put_many, get_many, close) ----------------

class Contender:
    name = ""

    def make(self, tag: str) -> Any: ...

    def producer_side(self, q: Any) -> Any:
        return q

    def consumer_side(self, q: Any) -> Any:
        return q

    def put(self, q: Any, msg: bytes) -> None: ...

    def get(self, q: Any) -> Any: ...

    def close(self, q: Any) -> None:
        pass


class Nonblock(Contender):
    name = "nonblock"

    def __init__(self, mode: str = "work") -> None:
        self.mode = mode

    def make(self, tag: str) -> Any:
        from nonblock.syncq import SyncQueue
        return SyncQueue(f"bench_{tag}_{os.getpid()}_{time.monotonic_ns()}", size=1 << 20, mode=self.mode)

    def consumer_side(self, q: Any) -> Any:
        from nonblock.syncq import SyncQueue
        return SyncQueue(q.name, create=False, mode=self.mode, reader=True)

    def put(self, q: Any, msg: bytes) -> None:
        q.put(msg)

    def get(self, q: Any) -> Any:
        return q.get()

    def put_many(self, q: Any, msgs: List[bytes]) -> None:
        q.put_many(msgs)

    def get_many(self, q: Any) -> List[Any]:
        return q.get_many(100)  # type: ignore[no-any-return]

    def close(self, q: Any) -> None:
        q.close()


class MpQueue(Contender):
    name = "multiprocessing.Queue"

    def make(self, tag: str) -> Any:
        return mp.get_context("fork").Queue()

    def put(self, q: Any, msg: bytes) -> None:
        q.put(msg)

    def get(self, q: Any) -> Any:
        return q.get()


class FasterFifo(Contender):
    name = "faster-fifo"

    def make(self, tag: str) -> Any:
        import faster_fifo
        return faster_fifo.Queue(max_size_bytes=1 << 20)

    def put(self, q: Any, msg: bytes) -> None:
        q.put(msg)

    def get(self, q: Any) -> Any:
        return q.get()

    def put_many(self, q: Any, msgs: List[bytes]) -> None:
        q.put_many(msgs)

    def get_many(self, q: Any) -> List[Any]:
        return q.get_many(max_messages_to_get=100)  # type: ignore[no-any-return]


class PySyncQPeer(Contender):
    name = "pysyncq 0.0.1"

    def make(self, tag: str) -> Any:
        from pysyncq.pysyncq import PySyncQ
        return PySyncQ(f"bench_p_{tag}_{os.getpid()}", size=1 << 20, start="fork")

    def producer_side(self, q: Any) -> Any:
        q.open("producer")
        return q

    def consumer_side(self, q: Any) -> Any:
        q.open("consumer")
        return q

    def put(self, q: Any, msg: bytes) -> None:
        # Every process that opened must read, the writer too (its own messages
        # are screened out but still held for it): when full, it reads, then waits.
        try:
            q.append("", msg)
        except MemoryError:
            for _ in q:
                pass
            q.append("", msg, block=True, timer=None)

    def get(self, q: Any) -> Any:
        return q.pop(block=True, timer=None, decode=False)

    def close(self, q: Any) -> None:
        q.close()


class NonblockBroadcast(Nonblock):
    def __init__(self) -> None:
        super().__init__("broadcast")


# -- the workloads (run in forked processes) -----------------------------------------------

def _consume(contender: Contender, q: Any, n: int, batch: bool, ready: Any, go: Any, done: Any) -> None:
    q = contender.consumer_side(q)
    ready.set()
    go.wait()
    got = 0
    if batch:
        while got < n:
            got += len(contender.get_many(q))  # type: ignore[attr-defined]
    else:
        get = contender.get
        for _ in range(n):
            get(q)
        got = n
    done.put(time.perf_counter())
    contender.close(q)


def throughput(contender: Contender, n: int, readers: int = 1, batch: bool = False) -> List[float]:
    """Messages per second seen by each reader (1 producer, *readers* consumer processes)."""
    ctx = mp.get_context("fork")
    q = contender.make(f"t{readers}{int(batch)}")
    ready = [ctx.Event() for _ in range(readers)]
    go, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_consume, args=(contender, q, n, batch, ready[i], go, done))
             for i in range(readers)]
    for p in procs:
        p.start()
    for event in ready:
        event.wait(60)
    producer = contender.producer_side(q)
    start = time.perf_counter()
    go.set()
    if batch:
        msgs = [MSG] * 100
        for _ in range(n // 100):
            contender.put_many(producer, msgs)  # type: ignore[attr-defined]
    else:
        put = contender.put
        for _ in range(n):
            put(producer, MSG)
    ends = [done.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    contender.close(producer)
    return [n / (end - start) for end in ends]


def _pong(contender: Contender, q: Any, n: int, ready: Any, out: Any) -> None:
    q = contender.consumer_side(q)
    ready.set()
    lat = []
    for _ in range(n):
        msg = contender.get(q)
        now = time.perf_counter_ns()
        sent = int(msg[-1] if isinstance(msg, tuple) else msg)
        lat.append((now - sent) / 1e9)
    out.put(lat)
    contender.close(q)


def latency(contender: Contender, n: int) -> List[float]:
    """Seconds from a put to the return of a get blocked in another process, per ping."""
    ctx = mp.get_context("fork")
    q = contender.make("lat")
    ready, out = ctx.Event(), ctx.Queue()
    p = ctx.Process(target=_pong, args=(contender, q, n, ready, out))
    p.start()
    ready.wait(60)
    producer = contender.producer_side(q)
    for _ in range(n):
        time.sleep(0.002)  # the reader is asleep in get() by now
        contender.put(producer, b"%d" % time.perf_counter_ns())
    lat: List[float] = out.get(timeout=120)
    p.join(60)
    contender.close(producer)
    return lat


def _file_writer(name: str, path: str, w: int, n: int, go: Any) -> None:
    from nonblock.syncq import SharedFileWriter
    f = SharedFileWriter(name, path)
    go.wait()
    for i in range(n):
        f.write(b"%d %07d " % (w, i) + b"r" * 89 + b"\n")
    f.close()


def _plain_writer(name: str, path: str, w: int, n: int, go: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    go.wait()
    for i in range(n):
        os.write(fd, b"%d %07d " % (w, i) + b"r" * 89 + b"\n")
    os.close(fd)


def shared_file(target: Callable[..., None], total: int, tmp: str) -> float:
    ctx = mp.get_context("fork")
    path = os.path.join(tmp, f"shared-{target.__name__}.log")
    if os.path.exists(path):
        os.unlink(path)
    name = f"bench_f_{os.getpid()}_{time.monotonic_ns()}"
    go = ctx.Event()
    procs = [ctx.Process(target=target, args=(name, path, w, total // 4, go)) for w in range(4)]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let them open; not part of the measurement
    start = time.perf_counter()
    go.set()
    for p in procs:
        p.join(300)
    elapsed = time.perf_counter() - start
    lines = open(path, "rb").read().split(b"\n")[:-1]
    for w in range(4):
        mine = [line for line in lines if line.startswith(b"%d " % w)]
        assert mine == [b"%d %07d " % (w, i) + b"r" * 89 for i in range(total // 4)], f"file not exact ({w})"
    assert len(lines) == total
    return total / elapsed


# -- the table --------------------------------------------------------------------------

def interleave(reps: int, runners: Dict[str, Callable[[], Any]]) -> Dict[str, List[Any]]:
    results: Dict[str, List[Any]] = {name: [] for name in runners}
    names = list(runners)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            results[name].append(runners[name]())
    return results


def rate(value: float) -> str:
    return f"{value / 1000:,.0f}k/s" if value < 1e6 else f"{value / 1e6:,.2f}M/s"


def micro(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less work per run, fewer runs")
    args = parser.parse_args(argv)
    ensure_peers()
    reps = 1 if args.quick else 3
    n = 50_000 if args.quick else 200_000
    began = time.perf_counter()
    rows: List[Tuple[str, ...]] = []
    nb, mpq, ff, ps = Nonblock(), MpQueue(), FasterFifo(), PySyncQPeer()

    bc = NonblockBroadcast()
    runs = interleave(reps, {c.name + getattr(c, "mode", ""): (lambda c=c: throughput(c, n)[0])
                             for c in (bc, nb, mpq, ff, ps)})
    med = {k: statistics.median(v) for k, v in runs.items()}
    med[nb.name], work = med[bc.name + "broadcast"], med[nb.name + "work"]
    r_mp, r_ps, r_ff = (med[nb.name] / med[c.name] for c in (mpq, ps, ff))
    rows.append(("q1", f"1 -> 1 process, 64-byte messages (work mode: {rate(work)})", rate(med[nb.name]),
                 rate(med[mpq.name]),
                 rate(med[ps.name]), rate(med[ff.name]),
                 f"{r_mp:.2f}x mp.Queue, {r_ps:.2f}x pysyncq, {r_ff:.2f}x faster-fifo",
                 ">= 1.5x mp.Queue and pysyncq, >= 0.8x faster-fifo",
                 verdict(r_mp >= 1.5 and r_ps >= 1.5 and r_ff >= 0.8)))

    runs = interleave(reps, {c.name: (lambda c=c: throughput(c, n * 4, batch=True)[0]) for c in (nb, ff)})
    med = {k: statistics.median(v) for k, v in runs.items()}
    rows.append(("q2", "put_many / get_many, batches of 100, 1 -> 1", rate(med[nb.name]), "—", "—",
                 rate(med[ff.name]), f"{med[nb.name] / med[ff.name]:.2f}x faster-fifo", ">= 1,000,000/s",
                 verdict(med[nb.name] >= 1e6)))

    runs = interleave(reps, {c.name: (lambda c=c: statistics.median(throughput(c, n // 2, readers=4)))
                             for c in (bc, ps)})
    med = {k: statistics.median(v) for k, v in runs.items()}
    ratio = med[bc.name] / med[ps.name]
    rows.append(("q3", "broadcast 1 -> 4 readers, rate per reader (median reader)", rate(med[bc.name]), "—",
                 rate(med[ps.name]), "—", f"{ratio:.2f}x pysyncq", ">= 2x pysyncq", verdict(ratio >= 2)))

    pings = 100 if args.quick else 300
    runs = interleave(reps, {c.name: (lambda c=c: latency(c, pings)) for c in (nb, mpq, ff, ps)})
    med = {k: statistics.median([x for run in v for x in run]) for k, v in runs.items()}
    rows.append(("q4", "wake-up latency, put -> blocked get in another process (median)", micro(med[nb.name]),
                 micro(med[mpq.name]), micro(med[ps.name]), micro(med[ff.name]),
                 f"{med[nb.name] / med[ff.name]:.2f}x faster-fifo's", "<= faster-fifo's",
                 verdict(med[nb.name] <= med[ff.name])))

    total = 40_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="nonblock-syncq-bench-") as tmp:
        runs = interleave(reps, {"nonblock": lambda: shared_file(_file_writer, total, tmp),
                                 "plain": lambda: shared_file(_plain_writer, total, tmp)})
    med = {k: statistics.median(v) for k, v in runs.items()}
    rows.append(("q5", f"SharedFileWriter, 4 processes x {total // 4:,} records of 100 bytes, file exact",
                 rate(med["nonblock"]), "—", "—", "—",
                 f"plain O_APPEND os.write loop: {rate(med['plain'])}", ">= 200,000 records/s",
                 verdict(med["nonblock"] >= 200_000)))

    header = ("| # | measurement | nonblock | multiprocessing.Queue | pysyncq 0.0.1 | faster-fifo 1.5.2 "
              "| ratio | target | |\n|---|---|---|---|---|---|---|---|---|\n")
    table = header + "".join("| " + " | ".join(row) + " |\n" for row in rows)
    print(table)
    text = ("# nonblock.syncq benchmarks: beside pysyncq, multiprocessing.Queue and faster-fifo\n\n"
            f"Produced by `python benchmarks/compare_syncq.py{' --quick' if args.quick else ''}`; "
            f"overwritten on each run.\n\n"
            f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
            f" (shared with other work: expect noise)\n"
            f"- Python: {platform.python_implementation()} {platform.python_version()}\n"
            f"- mode: {'quick' if args.quick else 'full'}, {reps} interleaved run(s) each; "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}\n"
            f"- total run time: {time.perf_counter() - began:.0f} s\n\n" + table)
    with open(RESULTS_PATH, "w") as out:
        out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
