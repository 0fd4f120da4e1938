"""One repetition of each benchmark workload, written once for both libraries.

nonblock and python-nonblock share the calls these workloads use
(``bgwrite(fileObj, data, closeWhenFinished, chainAfter, ioPrio)``,
``BackgroundIOPriority(...)``, ``.join()`` and ``.finished``), so every function
here takes the library module as *lib* and runs the same code for both:
compare.py passes the repository's ``nonblock`` in its own process, and
peer_worker.py passes python-nonblock's in a subprocess.  The ``plain_*``
functions are the physical reference: ordinary ``open()`` write+flush loops.

This module imports neither library.  Each function returns plain numbers (a
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
