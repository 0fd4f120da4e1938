"""One repetition of each benchmark workload, written once for nonblock and its peers.

nonblock and python-nonblock share the calls these workloads use
(``bgwrite(fileObj, data, closeWhenFinished, chainAfter, ioPrio)``,
``BackgroundIOPriority(...)``, ``.join()`` and ``.finished``), so every function
here takes the library module as *lib* and runs the same code for both:
compare.py passes the repository's ``nonblock`` in its own process, and
peer_worker.py passes python-nonblock's in a subprocess.  The ``plain_*``
functions are the physical reference: ordinary ``open()`` write+flush loops.

Scenarios h-j drive mhddq's API (``file_exists(callback, filename)`` and its
callback dict) the same way: *lib* is ``nonblock.hddq`` in compare.py's process
and mhddq's module in a peer_worker.py subprocess.

Scenarios k-m time ``lib.BackgroundHddFile`` (*lib* the repository's nonblock)
against the builtin open() doing the same writes: there *lib* None runs the
very loop on open().  k and l write new files; m writes into a FIFO that a slow
reader thread drains, in a process of its own (peer_worker.py), to measure
that process's peak memory.

This module imports no library under test.  Each function returns plain numbers (a
float or a dict of them) so the result can travel as JSON, and checks that the
bytes landed.

Big writes overwrite a reusable file in place (see :func:`overwriting`).  On
these virtual machines, allocating fresh page cache for a new file makes the
write rate swing between about 1 and 3.5 GB/s from one run to the next, while
overwriting already-cached pages runs at a steady ~6 GB/s; the steady rate is
what lets ratios between contenders mean something.  Small writes (scenarios
c, d, e's 4 KiB write) append to new files, as real callers do.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import threading
import time
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

MiB = 1024 * 1024
KiB = 1024
PRIO1_CHUNK = 5 * MiB
"""ioPrio=1's chunk size, in both libraries."""

BASELINE_THREADS = threading.active_count()
"""Threads alive when this module was imported, before either library ran anything."""

_COUNT_BATCH = 10_000
_PROBE = 4 * KiB
_payloads: Dict[int, bytes] = {}
_targets: Dict[Tuple[str, int], str] = {}
_file_numbers = itertools.count()

# -- payloads and files ------------------------------------------------------------------------


def payload(size: int) -> bytes:
    """*size* bytes of incompressible-looking data, built once per size and cached."""
    data = _payloads.get(size)
    if data is None:
        block = os.urandom(MiB)
        whole, rest = divmod(size, MiB)
        data = block * whole + block[:rest]
        _payloads[size] = data
    return data


def release() -> None:
    """Forget cached payloads and delete reusable files (they can be GiBs)."""
    _payloads.clear()
    for path in _targets.values():
        os.unlink(path)
    _targets.clear()


def fresh_path(dirpath: str, tag: str) -> str:
    """A path in *dirpath* that no earlier call has returned."""
    return os.path.join(dirpath, f"{tag}-{os.getpid()}-{next(_file_numbers)}.bin")


def check_and_remove(path: str, expected: int) -> None:
    """Raise unless *path* holds exactly *expected* bytes; delete it either way."""
    try:
        actual = os.path.getsize(path)
    finally:
        os.unlink(path)
    if actual != expected:
        raise RuntimeError(f"{path}: {actual} bytes on disk, expected {expected}")


def _reusable_file(dirpath: str, size: int) -> str:
    """A file of *size* bytes in *dirpath* whose pages are already in the page cache."""
    path = _targets.get((dirpath, size))
    if path is None:
        path = fresh_path(dirpath, "target")
        with open(path, "wb") as stream:
            chunked_write(stream, payload(size), PRIO1_CHUNK)
        _targets[(dirpath, size)] = path
    return path


def _probe_offsets(size: int) -> Tuple[int, int]:
    return 0, max(0, size - _PROBE)


def _arm(path: str, size: int) -> None:
    """Zero the file's first and last few KiB, so a write that did not happen shows."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset in _probe_offsets(size):
            os.pwrite(fd, bytes(min(_PROBE, size)), offset)
    finally:
        os.close(fd)


def _verify(path: str, data: bytes) -> None:
    """Raise unless the file's first and last few KiB are *data*'s."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in _probe_offsets(len(data)):
            expected = data[offset:offset + _PROBE]
            if os.pread(fd, len(expected), offset) != expected:
                raise RuntimeError(f"{path}: bytes at offset {offset} were not written")
    finally:
        os.close(fd)


@contextlib.contextmanager
def overwriting(dirpath: str, data: bytes) -> Iterator[Any]:
    """A binary stream over a reusable file of ``len(data)`` bytes, checked after the block."""
    path = _reusable_file(dirpath, len(data))
    _arm(path, len(data))
    with open(path, "r+b") as stream:
        yield stream
    _verify(path, data)


def chunked_write(stream: Any, data: bytes, chunk: int) -> None:
    """Write *data* to *stream* in *chunk*-byte slices, flushing after each."""
    view = memoryview(data)
    for start in range(0, len(view), chunk):
        stream.write(view[start:start + chunk])
        stream.flush()


def extra_threads() -> int:
    """How many more threads are alive now than when this module was imported."""
    return threading.active_count() - BASELINE_THREADS


# -- warm-up ------------------------------------------------------------------------------------


def warm_up(lib: Optional[ModuleType], dirpath: str, size: int) -> float:
    """Write *size* bytes once (lib None: with a plain loop), so first-use costs are paid."""
    data = payload(size)
    start = time.perf_counter()
    with overwriting(dirpath, data) as stream:
        if lib is None:
            chunked_write(stream, data, PRIO1_CHUNK)
        else:
            lib.bgwrite(stream, data, ioPrio=1).join()
    return time.perf_counter() - start


# -- a: how long bgwrite() takes to return --------------------------------------------------------


def bgwrite_return_time(lib: ModuleType, dirpath: str, size: int) -> Dict[str, float]:
    """Seconds until bgwrite() returns, and until the write finished, for *size* bytes."""
    data = payload(size)
    with overwriting(dirpath, data) as stream:
        start = time.perf_counter()
        process = lib.bgwrite(stream, data)
        returned = time.perf_counter() - start
        process.join()
        finished = time.perf_counter() - start
    return {"return_s": returned, "finished_s": finished}


def plain_write_time(dirpath: str, size: int, chunk: int) -> float:
    """Seconds for a plain write+flush loop to write *size* bytes in *chunk*-byte slices."""
    data = payload(size)
    with overwriting(dirpath, data) as stream:
        start = time.perf_counter()
        chunked_write(stream, data, chunk)
        return time.perf_counter() - start


# -- b: a big write, call to finished -------------------------------------------------------------


def big_write_time(lib: ModuleType, dirpath: str, size: int, prio: int) -> float:
    """Seconds from the bgwrite() call until *size* bytes at *prio* are written."""
    data = payload(size)
    with overwriting(dirpath, data) as stream:
        start = time.perf_counter()
        lib.bgwrite(stream, data, ioPrio=prio).join()
        return time.perf_counter() - start


# -- c: many small writes over many files ------------------------------------------------------


def _open_streams(dirpath: str, count: int) -> Tuple[List[str], List[Any]]:
    paths = [fresh_path(dirpath, "many") for _ in range(count)]
    return paths, [open(path, "wb") for path in paths]  # the caller closes them


def _close_and_check(paths: List[str], streams: List[Any], each: int) -> None:
    for stream in streams:
        stream.close()
    for path in paths:
        check_and_remove(path, each)


def many_small_writes(
    lib: ModuleType, dirpath: str, count: int, nfiles: int, size: int
) -> Dict[str, float]:
    """Issue *count* writes of *size* bytes to file ``i % nfiles``, then wait for all.

    Returns the seconds from the first call until every write finished, and the
    most threads seen alive beyond the baseline (sampled while issuing and waiting).
    """
    data = payload(size)
    paths, streams = _open_streams(dirpath, nfiles)
    peak = extra_threads()
    start = time.perf_counter()
    processes = []
    for index in range(count):
        processes.append(lib.bgwrite(streams[index % nfiles], data))
        if index % 50 == 0:
            peak = max(peak, extra_threads())
    for index, process in enumerate(processes):
        if index % 50 == 0:
            peak = max(peak, extra_threads())
        process.join()
    elapsed = time.perf_counter() - start
    _close_and_check(paths, streams, size * (count // nfiles))
    return {"elapsed_s": elapsed, "max_extra_threads": float(peak)}


def plain_many_small_writes(dirpath: str, count: int, nfiles: int, size: int) -> float:
    """Seconds for a plain loop doing the same writes as :func:`many_small_writes`."""
    data = payload(size)
    paths, streams = _open_streams(dirpath, nfiles)
    start = time.perf_counter()
    for index in range(count):
        stream = streams[index % nfiles]
        stream.write(data)
        stream.flush()
    elapsed = time.perf_counter() - start
    _close_and_check(paths, streams, size * (count // nfiles))
    return elapsed


# -- d: a chain of writes ----------------------------------------------------------------------


def chain_per_link(lib: ModuleType, dirpath: str, links: int, size: int) -> float:
    """Seconds per link for *links* writes of *size* bytes, each chained after the last."""
    data = payload(size)
    path = fresh_path(dirpath, "chain")
    with open(path, "wb") as stream:
        start = time.perf_counter()
        previous = None
        for _ in range(links):
            previous = lib.bgwrite(stream, data, chainAfter=previous)
        assert previous is not None
        previous.join()
        elapsed = time.perf_counter() - start
    check_and_remove(path, size * links)
    return elapsed / links


def plain_chain_per_link(dirpath: str, links: int, size: int) -> float:
    """Seconds per write for a plain loop of *links* write+flush calls appending to a new file."""
    path = fresh_path(dirpath, "chain")
    with open(path, "wb") as stream:
        start = time.perf_counter()
        chunked_write(stream, payload(size * links), size)
        elapsed = time.perf_counter() - start
    check_and_remove(path, size * links)
    return elapsed / links


# -- e: a small write's latency while a big one drains -----------------------------------------


def _sample_small_latencies(
    lib: ModuleType, big: Any, stream: Any, data: bytes, gap_s: float, limit: int
) -> Tuple[List[float], int]:
    """Issue small writes *gap_s* apart while *big* runs.

    Returns the latencies of those that finished before *big* did, and how many
    were issued in all.
    """
    latencies: List[float] = []
    issued = 0
    time.sleep(gap_s)
    while len(latencies) < limit and not big.finished:
        start = time.perf_counter()
        lib.bgwrite(stream, data).join()
        latency = time.perf_counter() - start
        issued += 1
        if big.finished:
            break
        latencies.append(latency)
        time.sleep(gap_s)
    return latencies, issued


def latency_during_drain(
    lib: ModuleType, dirpath: str, big_size: int, small_size: int, gap_s: float, limit: int
) -> Dict[str, Any]:
    """Latencies of small writes issued while *big_size* bytes drain at ioPrio=1.

    Also returns the big write's chunk-time: its duration over its number of
    ioPrio=1 (5 MiB) chunks.
    """
    small_path = fresh_path(dirpath, "small")
    small_data = payload(small_size)
    with overwriting(dirpath, payload(big_size)) as big_stream, open(small_path, "wb") as small_stream:
        start = time.perf_counter()
        big = lib.bgwrite(big_stream, payload(big_size), ioPrio=1)
        latencies, issued = _sample_small_latencies(lib, big, small_stream, small_data, gap_s, limit)
        big.join()
        big_s = time.perf_counter() - start
    check_and_remove(small_path, small_size * issued)
    return {"latencies_s": latencies, "chunk_time_s": big_s / math.ceil(big_size / PRIO1_CHUNK)}


# -- f: throttled rate -------------------------------------------------------------------------


def throttled_rate(lib: ModuleType, dirpath: str, size: int, chunk: int, pct: float) -> float:
    """Bytes per second achieved writing *size* bytes in *chunk*-byte chunks at bandwidthPct *pct*."""
    profile = lib.BackgroundIOPriority(0.001, chunk, pct)
    data = payload(size)
    with overwriting(dirpath, data) as stream:
        start = time.perf_counter()
        lib.bgwrite(stream, data, ioPrio=profile).join()
        return size / (time.perf_counter() - start)


# -- g: interactivity --------------------------------------------------------------------------


def _count_batch(iterations: int) -> int:
    total = 0
    for number in range(iterations):
        total += number
    return total


def count_while(keep_going: Callable[[], bool]) -> Tuple[int, float]:
    """Run a pure-Python counting loop while *keep_going()*; return (iterations, seconds)."""
    iterations = 0
    start = time.perf_counter()
    while keep_going():
        _count_batch(_COUNT_BATCH)
        iterations += _COUNT_BATCH
    return iterations, time.perf_counter() - start


def _count_for(seconds: float) -> Tuple[int, float]:
    deadline = time.perf_counter() + seconds
    return count_while(lambda: time.perf_counter() < deadline)


def _start_plain_drain(stream: Any, data: bytes, chunk: int) -> Tuple[Callable[[], bool], Callable[[], None]]:
    writer = threading.Thread(target=chunked_write, args=(stream, data, chunk), name="plain-writer")
    writer.start()
    return (lambda: not writer.is_alive()), writer.join


def _start_drain(
    lib: Optional[ModuleType], stream: Any, data: bytes, prio: int, chunk: int
) -> Tuple[Callable[[], bool], Callable[[], None]]:
    """Start the background write; return (is it finished?, wait for it)."""
    if lib is None:
        return _start_plain_drain(stream, data, chunk)
    process = lib.bgwrite(stream, data, ioPrio=prio)
    return (lambda: bool(process.finished)), process.join


def interactivity(
    lib: Optional[ModuleType], dirpath: str, drain_size: int, prio: int, chunk: int, seconds: float
) -> Dict[str, float]:
    """Counting speed in the main thread while *drain_size* bytes drain, as percent of solo speed.

    *lib* None drains with a plain thread running an unthrottled write+flush
    loop of *chunk*-byte slices.  The loaded loop runs for *seconds* or until the
    drain ends, whichever is first.  The solo speed is the mean of a solo loop
    just before and one just after, so a drift in the machine's speed cancels.
    Also returns how fast the drain went while the loop ran (it appends to a
    new file, so its size tells).
    """
    before = _rate(*_count_for(seconds))
    path = fresh_path(dirpath, "drain")
    with open(path, "wb") as stream:
        is_done, wait = _start_drain(lib, stream, payload(drain_size), prio, chunk)
        deadline = time.perf_counter() + seconds
        loaded_iterations, loaded_s = count_while(lambda: time.perf_counter() < deadline and not is_done())
        drained = os.fstat(stream.fileno()).st_size
        wait()
    check_and_remove(path, drain_size)
    after = _rate(*_count_for(seconds))
    return {
        "pct_of_solo": 100.0 * _rate(loaded_iterations, loaded_s) / ((before + after) / 2),
        "loaded_s": loaded_s,
        "drain_rate": drained / loaded_s,
    }


def _rate(iterations: int, seconds: float) -> float:
    return iterations / seconds if seconds > 0 else 0.0


# -- h, i, j: mhddq's file operations -----------------------------------------------------------
# These take *lib* as a module with mhddq's functions (``file_exists(callback,
# filename)`` returning True once queued, the callback getting a dict with 'result'
# and 'output' on a callback thread): nonblock.hddq here, the mhddq module in
# peer_worker.py.  They only use callbacks, never a library's own wait call, so both
# run exactly the same code.  None of them shuts the library down: mhddq cannot
# restart once shut down.

_CALLBACK_TIMEOUT_S = 120.0


class _Callbacks:
    """Counts file_exists callbacks and notes when the *expected*-th one ran."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.lock = threading.Lock()
        self.seen = 0
        self.existing = 0
        self.failures: List[Any] = []
        self.last_at = 0.0
        self.all_done = threading.Event()

    def __call__(self, report: Dict[str, Any]) -> None:
        now = time.perf_counter()
        with self.lock:
            self.seen += 1
            if report.get("result") is not True:
                self.failures.append(report.get("output"))
            elif report["output"].get("exists"):
                self.existing += 1
            if self.seen == self.expected:
                self.last_at = now
                self.all_done.set()

    def wait(self) -> None:
        """Wait for every expected callback; raise if one failed or they did not all come."""
        if not self.all_done.wait(_CALLBACK_TIMEOUT_S):
            raise RuntimeError(f"only {self.seen} of {self.expected} callbacks ran "
                               f"in {_CALLBACK_TIMEOUT_S:.0f} s")
        if self.failures:
            raise RuntimeError(f"{len(self.failures)} operations failed, first: {self.failures[0]}")


def _enqueue(lib: ModuleType, callback: Callable[[Dict[str, Any]], None], filename: str) -> None:
    if lib.file_exists(callback, filename) is not True:
        raise RuntimeError("file_exists was not queued (is the library shut down?)")


@contextlib.contextmanager
def _exists_names(dirpath: str, nfiles: int) -> Iterator[List[str]]:
    """*nfiles* paths of files that exist, then *nfiles* of files that do not, in a new folder."""
    folder = os.path.join(dirpath, f"exists-{os.getpid()}-{next(_file_numbers)}")
    os.mkdir(folder)
    try:
        names = [os.path.join(folder, f"present-{index}") for index in range(nfiles)]
        for name in names:
            with open(name, "wb"):
                pass
        yield names + [os.path.join(folder, f"missing-{index}") for index in range(nfiles)]
    finally:
        shutil.rmtree(folder)


def _round_trip(lib: ModuleType, filename: str) -> float:
    """Seconds from one file_exists call to its callback starting."""
    callbacks = _Callbacks(1)
    start = time.perf_counter()
    _enqueue(lib, callbacks, filename)
    callbacks.wait()
    return callbacks.last_at - start


def ops_throughput(lib: ModuleType, dirpath: str, count: int, nfiles: int) -> Dict[str, float]:
    """*count* file_exists calls cycling over *nfiles* present and *nfiles* missing files.

    Returns the seconds from the first call until the last callback ran, and
    the seconds the calls themselves took.  Checks every answer.
    """
    with _exists_names(dirpath, nfiles) as names:
        _round_trip(lib, names[0])  # threads up and running before the clock starts
        callbacks = _Callbacks(count)
        start = time.perf_counter()
        for index in range(count):
            _enqueue(lib, callbacks, names[index % len(names)])
        enqueued = time.perf_counter() - start
        callbacks.wait()
        expected = sum(1 for index in range(count) if index % len(names) < nfiles)
        if callbacks.existing != expected:
            raise RuntimeError(f"{callbacks.existing} files reported present, expected {expected}")
    return {"elapsed_s": callbacks.last_at - start, "enqueue_s": enqueued}


def plain_ops_throughput(dirpath: str, count: int, nfiles: int) -> float:
    """Seconds for a plain loop calling os.path.isfile the way :func:`ops_throughput` asks."""
    with _exists_names(dirpath, nfiles) as names:
        start = time.perf_counter()
        existing = sum(os.path.isfile(names[index % len(names)]) for index in range(count))
        elapsed = time.perf_counter() - start
    if existing != sum(1 for index in range(count) if index % len(names) < nfiles):
        raise RuntimeError("os.path.isfile miscounted")
    return elapsed


def round_trips(lib: ModuleType, dirpath: str, count: int) -> List[float]:
    """*count* sequential round trips (call to callback start) of file_exists, in seconds.

    Each call waits for the previous callback (a threading.Event) before it is made.
    """
    with _exists_names(dirpath, 1) as names:
        _round_trip(lib, names[0])  # not timed: starts the threads
        return [_round_trip(lib, names[index % 2]) for index in range(count)]


def plain_round_trips(dirpath: str, count: int) -> List[float]:
    """*count* direct os.path.isfile calls, in seconds each: the floor under a round trip."""
    with _exists_names(dirpath, 1) as names:
        times = []
        for index in range(count):
            start = time.perf_counter()
            os.path.isfile(names[index % 2])
            times.append(time.perf_counter() - start)
    return times


def enqueue_while_callback_sleeps(
    lib: ModuleType, dirpath: str, count: int, sleep_s: float
) -> Dict[str, float]:
    """Time *count* file_exists calls made while an earlier op's callback sleeps *sleep_s*.

    One op is queued whose callback signals that it started and then sleeps
    *sleep_s* (0: returns at once, the reference); once it has started, *count*
    further calls are timed one by one.  Returns their median, slowest and total
    seconds, and how long the sleeping callback had been running when the calls
    were done (to show they overlapped it).  Waits for every callback before returning.
    """
    started = threading.Event()
    started_at = [0.0]

    def sleeper(report: Dict[str, Any]) -> None:
        started_at[0] = time.perf_counter()
        started.set()
        if report.get("result") is not True:
            raise RuntimeError(f"file_exists failed: {report.get('output')}")
        time.sleep(sleep_s)

    with _exists_names(dirpath, 1) as names:
        _round_trip(lib, names[0])  # not timed: starts the threads
        _enqueue(lib, sleeper, names[0])
        if not started.wait(_CALLBACK_TIMEOUT_S):
            raise RuntimeError("the first callback never started")
        callbacks = _Callbacks(count)
        times = []
        for index in range(count):
            start = time.perf_counter()
            _enqueue(lib, callbacks, names[index % 2])
            times.append(time.perf_counter() - start)
        overlap = time.perf_counter() - started_at[0]
        callbacks.wait()
    times.sort()
    return {
        "median_s": times[(count - 1) // 2] / 2 + times[count // 2] / 2,
        "max_s": times[-1],
        "total_s": sum(times),
        "calls_done_after_s": overlap,
    }


# -- k, l, m: BackgroundHddFile against the builtin open() -------------------------------------
# *lib* is the repository's nonblock; None runs the very same loop on the builtin open().
# A BackgroundHddFile is timed until it is finished (close(), then wait()), the builtin
# file until close() returns.


def _open_file(lib: Optional[ModuleType], path: str, mode: str, max_pending: Optional[int]) -> Any:
    if lib is None:
        return open(path, mode)
    if max_pending is None:
        return lib.BackgroundHddFile(path, mode)
    return lib.BackgroundHddFile(path, mode, max_pending_bytes=max_pending)


def _close_and_wait(lib: Optional[ModuleType], stream: Any) -> None:
    """Close *stream*; a BackgroundHddFile is then waited for until it is finished."""
    stream.close()
    if lib is None:
        return
    stream.wait()
    if not stream.finished:
        raise RuntimeError(f"{stream!r}: wait() returned and the file is not finished")


def file_big_writes(
    lib: Optional[ModuleType], dirpath: str, size: int, piece: int, max_pending: Optional[int] = None
) -> Dict[str, float]:
    """Write *size* bytes to a new file as *piece*-byte writes of one bytes object.

    *lib* None: the builtin open().  Otherwise ``lib.BackgroundHddFile`` with
    max_pending_bytes *max_pending* (None: its default).  Returns the seconds
    from the open call until the file is finished (builtin: closed), and the
    mean seconds spent inside write(), timed around each call.
    """
    data = payload(piece)
    count = size // piece
    path = fresh_path(dirpath, "file")
    clock = time.perf_counter
    start = clock()
    stream = _open_file(lib, path, "wb", max_pending)
    inside = 0.0
    for _ in range(count):
        before = clock()
        stream.write(data)
        inside += clock() - before
    _close_and_wait(lib, stream)
    total = clock() - start
    check_and_remove(path, count * piece)
    return {"total_s": total, "write_s": inside / count}


def file_line_writes(lib: Optional[ModuleType], dirpath: str, count: int) -> Dict[str, float]:
    """Write *count* 100-character lines to a new file opened in mode "w".

    *lib* as for :func:`file_big_writes`.  Returns the seconds from the open
    call until the file is finished (builtin: closed), and the write loop's
    seconds over *count* (the loop calls a bound ``write`` fetched once).
    """
    line = "x" * 99 + "\n"
    path = fresh_path(dirpath, "lines")
    clock = time.perf_counter
    start = clock()
    stream = _open_file(lib, path, "w", None)
    write = stream.write
    loop_start = clock()
    for _ in range(count):
        write(line)
    loop = clock() - loop_start
    _close_and_wait(lib, stream)
    total = clock() - start
    check_and_remove(path, count * len(line))
    return {"total_s": total, "write_s": loop / count}


_READ_SIZE = 64 * KiB
_READS_PER_REST = 16


def _status_kib(field: str) -> int:
    """A memory field of /proc/self/status, in KiB: VmRSS (resident now), VmHWM (most resident)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} line in /proc/self/status")


def _rss_kib() -> int:
    return _status_kib("VmRSS")


def _reset_peak() -> bool:
    """Restart the kernel's high-water mark (VmHWM) from VmRSS now; False if Linux refused.

    Not ru_maxrss: getrusage() also counts the high-water mark inherited at exec
    from the process that spawned this one (a vfork child shares its parent's
    memory until it execs), so a big parent hides this process's own peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


class _RssSampler(threading.Thread):
    """Samples VmRSS every *interval_s* until stopped; keeps the largest."""

    def __init__(self, interval_s: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval_s = interval_s
        self.base_kib = self.peak_kib = _rss_kib()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            self.peak_kib = max(self.peak_kib, _rss_kib())

    def stop(self) -> int:
        self.stopping.set()
        self.join()
        return max(self.peak_kib, _rss_kib())


class _SlowReader(threading.Thread):
    """Reads a FIFO to its end at about *rate* bytes per second, counting the bytes.

    Reads _READ_SIZE at a time and, every _READS_PER_REST reads, sleeps until
    the schedule that *rate* sets; closes *fd* when done (so a writer left
    behind gets EPIPE rather than waiting forever).
    """

    def __init__(self, fd: int, rate: float) -> None:
        super().__init__(name="slow-reader", daemon=True)
        self.fd = fd
        self.rate = rate
        self.total = 0
        self.elapsed_s = 0.0
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            start = time.perf_counter()
            reads = 0
            while True:
                data = os.read(self.fd, _READ_SIZE)
                if not data:
                    break
                self.total += len(data)
                reads += 1
                if reads % _READS_PER_REST == 0:
                    ahead = self.total / self.rate - (time.perf_counter() - start)
                    if ahead > 0:
                        time.sleep(ahead)
            self.elapsed_s = time.perf_counter() - start
        except BaseException as error:
            self.error = error
        finally:
            os.close(self.fd)


def _nonblocking_opener(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)


def fifo_peak_memory(
    lib: ModuleType, dirpath: str, size: int, piece: int, max_pending: int, read_rate: float,
    builtin: bool = False,
) -> Dict[str, float]:
    """Peak memory growth while writing *size* bytes into a FIFO that a slow reader drains.

    Meant to run in a process of its own, so the peak is this workload's.  A
    FIFO is made in *dirpath*; its read end is opened first (non-blocking, so
    the open does not wait for a writer), then the write end: with *builtin*, a
    plain ``open(fifo, "wb")``, otherwise ``lib.BackgroundHddFile(fifo, "wb",
    max_pending_bytes=max_pending)`` on a non-blocking descriptor.  Then the
    read end is made blocking and a reader thread drains it at *read_rate*
    bytes per second, far slower than the writer.  The writes are *piece*
    bytes each, a new bytes object every time; the file is closed and waited for.

    Returns the kernel's peak RSS at the end (VmHWM, restarted just before the
    first write if Linux lets it: ``peak_reset``) less VmRSS just before the
    first write; the same for the most VmRSS sampled every 2 ms meanwhile; the
    most pending_bytes seen after a write() (0 for the builtin file); the
    seconds from the first write until finished; and the reader's rate.
    Raises unless the reader got every byte.
    """
    path = os.path.join(dirpath, f"fifo-{os.getpid()}-{next(_file_numbers)}")
    os.mkfifo(path)
    try:
        read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        stream: Any
        try:
            if builtin:
                stream = open(path, "wb")
            else:
                stream = lib.BackgroundHddFile(path, "wb", max_pending_bytes=max_pending,
                                               opener=_nonblocking_opener)
        except BaseException:
            os.close(read_fd)
            raise
        os.set_blocking(read_fd, True)
        reader = _SlowReader(read_fd, read_rate)
        reader.start()
        count = size // piece
        pending_peak = 0
        reset = _reset_peak()
        sampler = _RssSampler(0.002)
        sampler.start()
        start = time.perf_counter()
        try:
            for index in range(count):
                stream.write(bytes([index % 256]) * piece)
                if not builtin:
                    pending_peak = max(pending_peak, stream.pending_bytes)
            _close_and_wait(None if builtin else lib, stream)
        finally:
            with contextlib.suppress(Exception):  # an error of the writes is on its way up already
                stream.close()
            reader.join()
        elapsed = time.perf_counter() - start
        sampled_peak = sampler.stop()
        kernel_peak = _status_kib("VmHWM")
    finally:
        os.unlink(path)
    if reader.error is not None:
        raise RuntimeError(f"the FIFO reader failed: {reader.error!r}")
    if reader.total != count * piece:
        raise RuntimeError(f"the FIFO reader got {reader.total} bytes, expected {count * piece}")
    return {
        "peak_growth_mib": (kernel_peak - sampler.base_kib) / KiB,
        "peak_reset": float(reset),
        "sampled_growth_mib": (sampled_peak - sampler.base_kib) / KiB,
        "pending_peak_mib": pending_peak / MiB,
        "elapsed_s": elapsed,
        "read_rate": reader.total / reader.elapsed_s,
    }


# -- n-p: the read half (nonblock_read, bgread) ----------------------------------------------------

_FEEDER = (
    "import os, sys\n"
    "size = int(sys.argv[1]); block = b'r' * (1 << 20)\n"
    "while size > 0:\n"
    "    size -= os.write(1, block[:size])\n"
)


def _start_feeder(size: int) -> Any:
    """A process writing *size* bytes into a pipe; returned once its first bytes wait in the pipe."""
    import select
    import subprocess
    import sys

    feeder = subprocess.Popen([sys.executable, "-c", _FEEDER, str(size)], stdout=subprocess.PIPE, bufsize=0)
    select.select([feeder.stdout], [], [], 60)
    return feeder


def _end_feeder(feeder: Any, got: int, size: int) -> None:
    feeder.stdout.close()
    if feeder.wait(60) != 0 or got != size:
        raise AssertionError(f"read {got} of {size} bytes from the feeder")


def plain_pipe_drain(size: int) -> float:
    """Seconds for a blocking os.read loop to drain *size* bytes from another process's pipe."""
    feeder = _start_feeder(size)
    fd, got = feeder.stdout.fileno(), 0
    start = time.perf_counter()
    while True:
        block = os.read(fd, 65536)
        if not block:
            break
        got += len(block)
    elapsed = time.perf_counter() - start
    _end_feeder(feeder, got, size)
    return elapsed


def nonblock_read_drain(lib: ModuleType, size: int) -> float:
    """Seconds for a ``lib.nonblock_read`` loop to drain *size* bytes (select() when it gives nothing)."""
    import select

    feeder = _start_feeder(size)
    stream, got = feeder.stdout, 0
    start = time.perf_counter()
    while True:
        block = lib.nonblock_read(stream)
        if block is None:
            break
        if block:
            got += len(block)
        else:
            select.select([stream], [], [], 60)
    elapsed = time.perf_counter() - start
    _end_feeder(feeder, got, size)
    return elapsed


def plain_thread_read(size: int) -> float:
    """Seconds for a thread of its own, in a blocking read loop keeping every block, to drain *size* bytes."""
    feeder = _start_feeder(size)
    blocks: List[bytes] = []

    def read_all() -> None:
        fd = feeder.stdout.fileno()
        while True:
            block = os.read(fd, 65536)
            if not block:
                return
            blocks.append(block)

    start = time.perf_counter()
    reader = threading.Thread(target=read_all)
    reader.start()
    reader.join()
    elapsed = time.perf_counter() - start
    _end_feeder(feeder, sum(map(len, blocks)), size)
    return elapsed


def _wait_finished(reading: Any) -> None:
    wait = getattr(reading, "wait", None)
    if wait is not None:
        wait()
        return
    while not reading.isFinished and reading.error is None:  # python-nonblock has nothing to wait on
        time.sleep(0.001)


def bgread_drain(lib: ModuleType, size: int) -> float:
    """Seconds for ``lib.bgread`` to collect *size* bytes from another process's pipe, until finished."""
    feeder = _start_feeder(size)
    start = time.perf_counter()
    reading = lib.bgread(feeder.stdout, closeStream=False)
    _wait_finished(reading)
    elapsed = time.perf_counter() - start
    if reading.error is not None:
        raise reading.error
    _end_feeder(feeder, sum(map(len, reading.blocks)), size)
    return elapsed


def concurrent_bgreads(lib: ModuleType, count: int) -> Dict[str, float]:
    """Extra threads while *count* bgreads wait on *count* pipes, and seconds until all are read."""
    before = threading.active_count()
    pipes = [os.pipe() for _ in range(count)]
    readings = [lib.bgread(os.fdopen(read_end, "rb")) for read_end, _ in pipes]
    waiting = threading.active_count() - before
    start = time.perf_counter()
    for index, (_, write_end) in enumerate(pipes):
        os.write(write_end, b"pipe %d" % index)
        os.close(write_end)
    for reading in readings:
        _wait_finished(reading)
    elapsed = time.perf_counter() - start
    for index, reading in enumerate(readings):
        if reading.data != b"pipe %d" % index:
            raise AssertionError(f"bgread {index} got {reading.data!r}")
    return {"extra_threads": waiting, "seconds": elapsed}
