"""nonblock side by side with python-nonblock 4.0.1, mhddq 0.3.0 and plain loops, in one run.

    python benchmarks/compare.py [--quick] [--only h,i,j]

Runs scenarios a-p (see SCENARIOS below), repetitions interleaved so that the
contenders see the same machine weather, prints a markdown table of medians
and ratios, and writes it, with the machine description, to
benchmarks/results.md (overwritten; not with --only).  Scenarios a-g compare
bgwrite with python-nonblock's, h-j compare nonblock.hddq's mhddq API with
mhddq, k-m compare BackgroundHddFile with the builtin open() doing the same
writes (there is no peer library), and n-p compare nonblock_read and bgread
with python-nonblock's and with plain blocking read loops.

The repository's nonblock runs in this process.  Each peer is installed (if
missing) with ``pip install --target benchmarks/.peers/<peer>`` and runs in a
worker subprocess of its own (peer_worker.py) that has that folder on sys.path
and the repository not at all: python-nonblock because it is also named
``nonblock``, mhddq because it can be shut down only once per process (its
package also needs its inner folder on sys.path; see peer_worker.import_mhddq).
Every contender runs the very same workload code (workloads.py).  Scenario m
measures peak memory, so each of its runs is a peer_worker.py subprocess of its
own that imports this checkout's nonblock.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import workloads
from workloads import KiB, MiB

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULTS_PATH = os.path.join(BENCH_DIR, "results.md")


@dataclass(frozen=True)
class PeerSpec:
    """A peer library: what peer_worker.py calls it, and where pip puts it."""

    kind: str
    requirement: str
    dist_info: str
    name: str
    home: str = ""  # where the worker imports it from, if not from pip's .peers/<kind>

    @property
    def folder(self) -> str:
        return self.home or os.path.join(BENCH_DIR, ".peers", self.kind)


PYTHON_NONBLOCK = PeerSpec("python-nonblock", "python-nonblock==4.0.1", "python_nonblock-4.0.1.dist-info",
                           "python-nonblock 4.0.1")
MHDDQ = PeerSpec("mhddq", "mhddq==0.3.0", "mhddq-0.3.0.dist-info", "mhddq 0.3.0")
# Not a peer: this checkout's nonblock in a worker process of its own (m: peak memory).
OWN_PROCESS = PeerSpec("nonblock", "", "", "nonblock in a process of its own", home=REPO_ROOT)
# k-m: BackgroundHddFile against the builtin open(), no peer library.
# The peer of a-g and n-p: python-nonblock, or (--against) nonblock at another checkout.
_peer_of_a_to_g = PYTHON_NONBLOCK
PEER_OF_SCENARIO: Dict[str, Optional[PeerSpec]] = {
    **dict.fromkeys("abcdefg", PYTHON_NONBLOCK), **dict.fromkeys("hij", MHDDQ), **dict.fromkeys("klm", None),
    **dict.fromkeys("nop", PYTHON_NONBLOCK),
}

# (bandwidthPct, the ioPrio whose profile has it, that profile's chunk size)
THROTTLE_PROFILES = ((90, 2, 4194304), (72, 4, 2097152), (45, 7, 723517), (20, 10, 262144))


@dataclass(frozen=True)
class Settings:
    """How much work each scenario does; --quick shrinks it."""

    name: str
    reps: int
    return_reps: int
    big_size: int
    drain_size: int
    drain_reps: int
    small_writes: int
    chain_links: int
    rate_seconds: float
    rate_reps: int
    interactive_size: int
    interactive_reps: int
    interactive_seconds: float
    ops_count: int
    ops_reps: int
    round_trips: int
    round_trip_reps: int
    enqueue_calls: int
    enqueue_reps: int
    file_size: int
    line_writes: int
    fifo_size: int
    fifo_reps: int
    read_size: int
    peer_read_size: int
    read_reps: int
    bgread_size: int
    peer_bgread_size: int
    bgread_count: int


FULL = Settings(
    name="full", reps=7, return_reps=15, big_size=256 * MiB, drain_size=1024 * MiB, drain_reps=5,
    small_writes=10_000, chain_links=1000, rate_seconds=0.75, rate_reps=7,
    interactive_size=512 * MiB, interactive_reps=5, interactive_seconds=1.0,
    ops_count=10_000, ops_reps=7, round_trips=200, round_trip_reps=5, enqueue_calls=100, enqueue_reps=5,
    file_size=1024 * MiB, line_writes=1_000_000, fifo_size=1024 * MiB, fifo_reps=3,
    read_size=16 * MiB, peer_read_size=16 * MiB, read_reps=7, bgread_size=256 * MiB,
    peer_bgread_size=16 * MiB, bgread_count=100,
)
QUICK = Settings(
    name="quick", reps=3, return_reps=7, big_size=256 * MiB, drain_size=1024 * MiB, drain_reps=2,
    small_writes=10_000, chain_links=1000, rate_seconds=0.4, rate_reps=3,
    interactive_size=512 * MiB, interactive_reps=3, interactive_seconds=0.5,
    ops_count=10_000, ops_reps=3, round_trips=200, round_trip_reps=3, enqueue_calls=100, enqueue_reps=3,
    file_size=256 * MiB, line_writes=200_000, fifo_size=256 * MiB, fifo_reps=2,
    read_size=16 * MiB, peer_read_size=2 * MiB, read_reps=3, bgread_size=256 * MiB, peer_bgread_size=4 * MiB,
    bgread_count=100,
)


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    measure: str
    plain: str
    nonblock: str
    peer: str
    ratio: str
    target: str
    met: Optional[bool]


# -- formatting --------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.2f}x"


def fmt_rate(bytes_per_s: float) -> str:
    if bytes_per_s < 1e8:
        return f"{bytes_per_s / 1e6:.2f} MB/s"
    return f"{bytes_per_s / 1e9:.2f} GB/s"


def verdict(met: Optional[bool]) -> str:
    return {True: "met", False: "**missed**", None: "n/a"}[met]


def render_table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table."""
    peer = f"peer: {_peer_of_a_to_g.name} (a-g, n-p), {MHDDQ.name} (h-j), none (k-m)"
    header = ("#", "measurement", "plain loop", "nonblock", peer, "ratio", "target", "")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = (row.scenario, row.measure, row.plain, row.nonblock, row.peer, row.ratio, row.target,
                 verdict(row.met))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(seconds: Sequence[float]) -> str:
    return f"{fmt_time(min(seconds))}-{fmt_time(max(seconds))}"


# -- the peer and the repository's nonblock ----------------------------------------------------


def ensure_peer_installed(spec: PeerSpec) -> None:
    """pip-install the peer into its own folder under .peers/ unless it is there already."""
    if os.path.isdir(os.path.join(spec.folder, spec.dist_info)):
        return
    log(f"installing {spec.requirement} into {spec.folder}")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--target", spec.folder, "--upgrade", spec.requirement],
        check=True,
    )


def import_repo_nonblock() -> ModuleType:
    """This checkout's nonblock, whatever else is installed."""
    sys.path.insert(0, REPO_ROOT)
    module = importlib.import_module("nonblock")
    where = os.path.abspath(module.__file__ or "")
    if not where.startswith(REPO_ROOT + os.sep):
        raise ImportError(f"expected the repository's nonblock under {REPO_ROOT}, got {where}")
    return module


class PeerWorker:
    """A peer_worker.py subprocess running workloads against one peer library.

    Started on the first call and kept for the whole run (mhddq cannot be
    restarted in a process once shut down; the worker shuts it down on close).
    """

    def __init__(self, spec: PeerSpec) -> None:
        self.spec = spec
        self.process: Optional[subprocess.Popen[str]] = None
        self.info: Dict[str, Any] = {}

    @property
    def started(self) -> bool:
        return self.process is not None

    def call(self, name: str, timeout: float = 600.0, **args: Any) -> Any:
        """Run ``workloads.name(peer_module, **args)`` in the worker and return its result."""
        process = self._running()
        assert process.stdin is not None
        process.stdin.write(json.dumps({"call": name, "args": args}) + "\n")
        process.stdin.flush()
        return self._receive(timeout)

    def close(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _running(self) -> subprocess.Popen[str]:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, "-I", os.path.join(BENCH_DIR, "peer_worker.py"), self.spec.kind,
                 self.spec.folder],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            self.info = self._receive(60.0)
        return self.process

    def _receive(self, timeout: float) -> Any:
        process = self.process
        assert process is not None and process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        if not ready:
            process.kill()
            process.wait()
            self.process = None
            raise TimeoutError(f"{self.spec.name} worker gave no answer in {timeout:.0f} s (killed)")
        line = process.stdout.readline()
        if not line:
            self.process = None
            raise RuntimeError(f"{self.spec.name} worker exited with {process.wait()}")
        message = json.loads(line)
        if not message["ok"]:
            raise RuntimeError(f"{self.spec.name} worker failed:\n{message['error']}")
        return message["result"]


@dataclass
class Bench:
    """What every scenario needs: settings, a scratch folder, nonblock and the peers."""

    settings: Settings
    dirpath: str
    nb: ModuleType
    peer: PeerWorker
    mhddq: PeerWorker

    @property
    def hddq(self) -> ModuleType:
        """nonblock.hddq: mhddq's API on nonblock's default queue."""
        return importlib.import_module(self.nb.__name__ + ".hddq")

    def release(self) -> None:
        """Drop cached payloads and reusable files in every process (only started workers)."""
        workloads.release()
        for worker in (self.peer, self.mhddq):
            if worker.started:
                worker.call("release")


def rotated(names: Sequence[str], rep: int) -> List[str]:
    """*names* rotated by *rep*, so no contender always goes first."""
    shift = rep % len(names)
    return list(names[shift:]) + list(names[:shift])


def interleave(reps: int, runners: Dict[str, Callable[[], Any]]) -> Dict[str, List[Any]]:
    """Run each runner *reps* times, rotating their order every repetition."""
    results: Dict[str, List[Any]] = {name: [] for name in runners}
    for rep in range(reps):
        for name in rotated(list(runners), rep):
            results[name].append(runners[name]())
    return results


# -- a: how long bgwrite() takes to return -----------------------------------------------------


def scenario_a(bench: Bench) -> List[Row]:
    d, reps = bench.dirpath, bench.settings.return_reps
    size = 64 * MiB
    runs = interleave(reps, {
        "plain": lambda: workloads.plain_write_time(d, size, 2 * MiB),
        "nonblock": lambda: workloads.bgwrite_return_time(bench.nb, d, size)["return_s"],
        "peer": lambda: bench.peer.call("bgwrite_return_time", dirpath=d, size=size)["return_s"],
    })
    plain, nb, peer = (median(runs[key]) for key in ("plain", "nonblock", "peer"))
    speedup = peer / nb
    rows = [Row(
        "a", "bgwrite() return time, 64 MiB bytes (ioPrio 4)",
        f"{fmt_time(plain)} (the blocking write)", fmt_time(nb), fmt_time(peer),
        f"{fmt_ratio(speedup)} shorter than peer", ">= 100x shorter", speedup >= 100,
    )]
    return rows + [scenario_a_sizes(bench)]


def scenario_a_sizes(bench: Bench) -> Row:
    d, reps = bench.dirpath, bench.settings.return_reps
    small, large = KiB, 256 * MiB
    runners = {
        "nb_small": lambda: workloads.bgwrite_return_time(bench.nb, d, small)["return_s"],
        "nb_large": lambda: workloads.bgwrite_return_time(bench.nb, d, large)["return_s"],
        "peer_small": lambda: bench.peer.call("bgwrite_return_time", dirpath=d, size=small)["return_s"],
        "peer_large": lambda: bench.peer.call("bgwrite_return_time", dirpath=d, size=large)["return_s"],
    }
    # Not interleave(): rotating keeps the cyclic order, so one size would always
    # follow the peer's 256 MiB write (queue threads long idle, a cold wake-up)
    # and the other its own.  Here each size goes first in every other repetition.
    orders = (("nb_small", "nb_large", "peer_small", "peer_large"),
              ("peer_large", "peer_small", "nb_large", "nb_small"))
    runs: Dict[str, List[Any]] = {name: [] for name in runners}
    for rep in range(reps):
        for name in orders[rep % 2]:
            runs[name].append(runners[name]())
    med = {key: median(values) for key, values in runs.items()}
    bench.release()
    ratio = med["nb_large"] / med["nb_small"]
    return Row(
        "a", "bgwrite() return time, 1 KiB vs 256 MiB",
        "—", f"{fmt_time(med['nb_small'])} / {fmt_time(med['nb_large'])}",
        f"{fmt_time(med['peer_small'])} / {fmt_time(med['peer_large'])}",
        f"256 MiB / 1 KiB = {fmt_ratio(ratio)}", "<= 2x", max(ratio, 1 / ratio) <= 2.0,
    )


# -- b: throughput of a big write --------------------------------------------------------------


def scenario_b(bench: Bench) -> List[Row]:
    d, reps, size = bench.dirpath, bench.settings.reps, bench.settings.big_size
    runs = interleave(reps, {
        "plain": lambda: workloads.plain_write_time(d, size, workloads.PRIO1_CHUNK),
        "nonblock": lambda: workloads.big_write_time(bench.nb, d, size, 1),
        "peer": lambda: bench.peer.call("big_write_time", dirpath=d, size=size, prio=1),
    })
    plain, nb, peer = (median(runs[key]) for key in ("plain", "nonblock", "peer"))
    bench.release()
    ratio = nb / plain
    return [Row(
        "b", f"{size // MiB} MiB at ioPrio 1, call to finished (plain: 5 MiB write+flush)",
        f"{fmt_time(plain)} ({fmt_rate(size / plain)})", f"{fmt_time(nb)} ({fmt_rate(size / nb)})",
        f"{fmt_time(peer)} ({fmt_rate(size / peer)})",
        f"nonblock/plain {fmt_ratio(ratio)}; peer/plain {fmt_ratio(peer / plain)}",
        "nonblock/plain <= 1.10x", ratio <= 1.10,
    )]


# -- c: many small writes ----------------------------------------------------------------------


def scenario_c(bench: Bench) -> List[Row]:
    d, reps, count = bench.dirpath, bench.settings.reps, bench.settings.small_writes
    args = {"count": count, "nfiles": 100, "size": 4 * KiB}
    runs = interleave(reps, {
        "plain": lambda: workloads.plain_many_small_writes(d, **args),
        "nonblock": lambda: workloads.many_small_writes(bench.nb, d, **args),
        "peer": lambda: bench.peer.call("many_small_writes", dirpath=d, **args),
    })
    plain = median(runs["plain"])
    nb_runs = [run["elapsed_s"] for run in runs["nonblock"]]
    peer_runs = [run["elapsed_s"] for run in runs["peer"]]
    nb, peer = median(nb_runs), median(peer_runs)
    nb_threads = max(run["max_extra_threads"] for run in runs["nonblock"])
    peer_threads = max(run["max_extra_threads"] for run in runs["peer"])
    what = f"{count:,} x 4 KiB over 100 files, first call to all finished"
    return [
        Row("c", what, fmt_time(plain), f"{fmt_time(nb)} ({spread(nb_runs)})",
            f"{fmt_time(peer)} ({spread(peer_runs)})",
            f"peer/nonblock {fmt_ratio(peer / nb)}", "nonblock >= 3x sooner than peer", peer / nb >= 3),
        Row("c", "same, against the plain loop", fmt_time(plain), fmt_time(nb), "—",
            f"nonblock/plain {fmt_ratio(nb / plain)}", "nonblock/plain <= 2x", nb / plain <= 2),
        Row("c", "same, most extra threads seen (sampled)", "0", str(int(nb_threads)),
            str(int(peer_threads)), "—", "nonblock <= 3", nb_threads <= 3),
    ]


# -- d: chained writes -------------------------------------------------------------------------


def scenario_d(bench: Bench) -> List[Row]:
    d, reps, links = bench.dirpath, bench.settings.reps, bench.settings.chain_links
    args = {"links": links, "size": 4 * KiB}
    runs = interleave(reps, {
        "plain": lambda: workloads.plain_chain_per_link(d, **args),
        "nonblock": lambda: workloads.chain_per_link(bench.nb, d, **args),
        "peer": lambda: bench.peer.call("chain_per_link", dirpath=d, **args),
    })
    plain, nb, peer = (median(runs[key]) for key in ("plain", "nonblock", "peer"))
    return [Row(
        "d", f"{links:,}-link chainAfter chain of 4 KiB writes, time per link",
        fmt_time(plain), fmt_time(nb), f"{fmt_time(peer)} ({spread(runs['peer'])})",
        f"peer/nonblock {fmt_ratio(peer / nb)}", "nonblock >= 20x less per link", peer / nb >= 20,
    )]


# -- e: latency of a small write behind a big one ----------------------------------------------


def _latencies_in_chunks(runs: Sequence[Dict[str, Any]]) -> List[float]:
    return [latency / run["chunk_time_s"] for run in runs for latency in run["latencies_s"]]


def _describe_latency(in_chunks: Sequence[float]) -> Tuple[float, str]:
    if not in_chunks:
        return float("nan"), "no sample"
    ordered = sorted(in_chunks)
    mid, p90 = median(ordered), ordered[int(0.9 * (len(ordered) - 1))]
    return mid, f"{mid:.2f} (p90 {p90:.2f}, max {ordered[-1]:.2f}, n={len(ordered)})"


def scenario_e(bench: Bench) -> List[Row]:
    d, reps, size = bench.dirpath, bench.settings.drain_reps, bench.settings.drain_size
    args = {"big_size": size, "small_size": 4 * KiB, "gap_s": 0.02, "limit": 20}
    runs = interleave(reps, {
        "plain": lambda: workloads.plain_write_time(d, size, workloads.PRIO1_CHUNK),
        "nonblock": lambda: workloads.latency_during_drain(bench.nb, d, **args),
        "peer": lambda: bench.peer.call("latency_during_drain", dirpath=d, **args),
    })
    bench.release()
    plain_chunk = median(runs["plain"]) / (size / workloads.PRIO1_CHUNK)
    nb_chunk = median([run["chunk_time_s"] for run in runs["nonblock"]])
    nb_mid, nb_text = _describe_latency(_latencies_in_chunks(runs["nonblock"]))
    _, peer_text = _describe_latency(_latencies_in_chunks(runs["peer"]))
    nb_ms = median([lat for run in runs["nonblock"] for lat in run["latencies_s"]] or [float("nan")])
    return [Row(
        "e", f"4 KiB write issued while {size // MiB} MiB drains at ioPrio 1: latency in chunk-times",
        f"chunk-time {fmt_time(plain_chunk)}",
        f"{nb_text}; {fmt_time(nb_ms)}, chunk-time {fmt_time(nb_chunk)}",
        peer_text, "—", "nonblock median <= 3 chunk-times", nb_mid <= 3,
    )]


# -- f: bandwidth throttling -------------------------------------------------------------------


def _payload_for(rate_of: Callable[[int, float], float], bench: Bench, chunk: int, pct: float) -> int:
    """A payload whose throttled write takes about rate_seconds, from one unthrottled probe."""
    rate = rate_of(256 * MiB, 100)
    size = int(rate * pct / 100.0 * bench.settings.rate_seconds)
    size = max(32 * MiB, min(2048 * MiB, size))
    return size - size % chunk


def _throttle_chain(run_one: Callable[[float], float], pct: float, reps: int) -> List[float]:
    """*reps* throttled/unthrottled rate ratios, in percent.

    Runs unthrottled, throttled, unthrottled, throttled, ... unthrottled, and
    divides each throttled rate by the mean of the unthrottled runs on either
    side of it, so a drift in the machine's speed cancels out.
    """
    unthrottled = [run_one(100)]
    ratios = []
    for _ in range(reps):
        throttled = run_one(pct)
        unthrottled.append(run_one(100))
        ratios.append(100.0 * throttled / statistics.fmean(unthrottled[-2:]))
    return ratios


def _rate_at(rate: Callable[[int, float], float], size: int, pct: float) -> float:
    return rate(size, pct)


def _throttle_runs(bench: Bench, chunk: int, pct: float) -> Dict[str, Tuple[int, List[float]]]:
    """Per library: the payload size used (sized to its own speed) and its throttle ratios."""
    d = bench.dirpath
    rate_of: Dict[str, Callable[[int, float], float]] = {
        "nonblock": lambda size, p: workloads.throttled_rate(bench.nb, d, size, chunk, p),
        "peer": lambda size, p: float(
            bench.peer.call("throttled_rate", dirpath=d, size=size, chunk=chunk, pct=p)),
    }
    results = {}
    for name, rate in rate_of.items():
        size = _payload_for(rate, bench, chunk, pct)
        run_one = functools.partial(_rate_at, rate, size)
        results[name] = (size, _throttle_chain(run_one, pct, bench.settings.rate_reps))
    return results


def scenario_f(bench: Bench) -> List[Row]:
    rows = []
    for pct, prio, chunk in THROTTLE_PROFILES:
        runs = _throttle_runs(bench, chunk, pct)
        bench.release()
        (nb_size, nb_runs), (peer_size, peer_runs) = runs["nonblock"], runs["peer"]
        nb, peer = median(nb_runs), median(peer_runs)
        rows.append(Row(
            "f", f"bandwidthPct {pct} (ioPrio {prio} profile, {chunk:,} B chunks): "
            "throttled / unthrottled rate",
            "—", f"{nb:.1f} % ({min(nb_runs):.1f}-{max(nb_runs):.1f}; {nb_size // MiB} MiB)",
            f"{peer:.1f} % ({min(peer_runs):.1f}-{max(peer_runs):.1f}; {peer_size // MiB} MiB)",
            f"nonblock off by {abs(nb - pct):.1f} points", f"{pct} % ± 7 points", abs(nb - pct) <= 7,
        ))
    return rows


# -- g: interactivity --------------------------------------------------------------------------


def scenario_g(bench: Bench) -> List[Row]:
    d, reps, size = bench.dirpath, bench.settings.interactive_reps, bench.settings.interactive_size
    args = {"drain_size": size, "prio": 10, "chunk": 262144, "seconds": bench.settings.interactive_seconds}
    runs = interleave(reps, {
        "plain": lambda: workloads.interactivity(None, d, **args),
        "nonblock": lambda: workloads.interactivity(bench.nb, d, **args),
        "peer": lambda: bench.peer.call("interactivity", dirpath=d, **args),
    })
    bench.release()
    pct = {key: median([run["pct_of_solo"] for run in values]) for key, values in runs.items()}

    def cell(key: str) -> str:
        loaded = median([run["loaded_s"] for run in runs[key]])
        rate = median([run["drain_rate"] for run in runs[key]])
        return f"{pct[key]:.1f} % (over {fmt_time(loaded)}; drain meanwhile {rate / 1e6:,.0f} MB/s)"

    return [Row(
        "g", f"pure-Python counting loop while {size // MiB} MiB drains at ioPrio 10 "
        "(plain: unthrottled writer thread, 256 KiB chunks): % of solo speed",
        cell("plain"), cell("nonblock"), cell("peer"), "—", "nonblock >= 85 %", pct["nonblock"] >= 85,
    )]


# -- h: file operations per second -------------------------------------------------------------


def scenario_h(bench: Bench) -> List[Row]:
    d, reps, count = bench.dirpath, bench.settings.ops_reps, bench.settings.ops_count
    args = {"count": count, "nfiles": 100}
    runs = interleave(reps, {
        "plain": lambda: workloads.plain_ops_throughput(d, **args),
        "nonblock": lambda: workloads.ops_throughput(bench.hddq, d, **args),
        "peer": lambda: bench.mhddq.call("ops_throughput", dirpath=d, **args),
    })
    plain = median(runs["plain"])

    def cell(key: str) -> Tuple[float, str]:
        elapsed = [run["elapsed_s"] for run in runs[key]]
        calls = median([run["enqueue_s"] for run in runs[key]])
        mid = median(elapsed)
        return mid, (f"{count / mid:,.0f} ops/s ({fmt_time(mid)}, {spread(elapsed)}; "
                     f"the calls took {fmt_time(calls)})")

    (nb, nb_text), (peer, peer_text) = cell("nonblock"), cell("peer")
    speedup = peer / nb
    return [Row(
        "h", f"{count:,} file_exists calls over 100 present and 100 missing files, first call to "
        "last callback: operations per second",
        f"{count / plain:,.0f} ops/s (os.path.isfile loop)", nb_text, peer_text,
        f"nonblock/mhddq {fmt_ratio(speedup)} the ops/s", "nonblock >= 2x mhddq's ops/s", speedup >= 2,
    )]


# -- i: one operation's round trip -------------------------------------------------------------


def _describe_times(samples: Sequence[float]) -> Tuple[float, str]:
    ordered = sorted(samples)
    mid, p90 = median(ordered), ordered[int(0.9 * (len(ordered) - 1))]
    return mid, f"{fmt_time(mid)} (p90 {fmt_time(p90)}, max {fmt_time(ordered[-1])}, n={len(ordered)})"


def scenario_i(bench: Bench) -> List[Row]:
    d, reps, count = bench.dirpath, bench.settings.round_trip_reps, bench.settings.round_trips
    runs = interleave(reps, {
        "plain": lambda: workloads.plain_round_trips(d, count),
        "nonblock": lambda: workloads.round_trips(bench.hddq, d, count),
        "peer": lambda: bench.mhddq.call("round_trips", dirpath=d, count=count),
    })
    (_, plain_text), (nb, nb_text), (peer, peer_text) = (
        _describe_times([sample for run in runs[key] for sample in run])
        for key in ("plain", "nonblock", "peer"))
    ratio = nb / peer
    return [Row(
        "i", f"one file_exists round trip, call to its callback starting ({count} sequential, each "
        f"waiting for the last; x{reps} runs)",
        f"{plain_text} (os.path.isfile call)", nb_text, peer_text,
        f"nonblock/mhddq {ratio:.2f}x (1/{1 / ratio:.1f})", "nonblock median <= 1/5 of mhddq's",
        ratio <= 0.2,
    )]


# -- j: enqueue time while a callback sleeps ---------------------------------------------------


def scenario_j(bench: Bench) -> List[Row]:
    d, reps, count = bench.dirpath, bench.settings.enqueue_reps, bench.settings.enqueue_calls
    sleep_s = 1.0

    def nonblock_run(seconds: float) -> Callable[[], Dict[str, float]]:
        return lambda: workloads.enqueue_while_callback_sleeps(bench.hddq, d, count, seconds)

    def peer_run(seconds: float) -> Callable[[], Dict[str, float]]:
        return lambda: bench.mhddq.call(
            "enqueue_while_callback_sleeps", dirpath=d, count=count, sleep_s=seconds)

    runs = interleave(reps, {
        "nonblock_sleep": nonblock_run(sleep_s), "nonblock_idle": nonblock_run(0.0),
        "peer_sleep": peer_run(sleep_s), "peer_idle": peer_run(0.0),
    })
    med = {(key, field): median([run[field] for run in values])
           for key, values in runs.items() for field in values[0]}

    def ratio(who: str, field: str) -> float:
        return med[(who + "_sleep", field)] / med[(who + "_idle", field)]

    def per_call(who: str) -> str:
        return (f"{fmt_time(med[(who + '_sleep', 'median_s')])} vs "
                f"{fmt_time(med[(who + '_idle', 'median_s')])} ({fmt_ratio(ratio(who, 'median_s'))})")

    def totals(who: str) -> str:
        sleep, idle = who + "_sleep", who + "_idle"
        return (f"total {fmt_time(med[(sleep, 'total_s')])} vs {fmt_time(med[(idle, 'total_s')])} "
                f"({fmt_ratio(ratio(who, 'total_s'))}); slowest call {fmt_time(med[(sleep, 'max_s')])} "
                f"vs {fmt_time(med[(idle, 'max_s')])}; all {count} done "
                f"{fmt_time(med[(sleep, 'calls_done_after_s')])} after the sleeper started")

    def both(field: str) -> str:
        return f"nonblock {fmt_ratio(ratio('nonblock', field))}; mhddq {fmt_ratio(ratio('peer', field))}"

    what = (f"file_exists call time while an earlier callback sleeps {sleep_s:g} s vs with no sleeper "
            f"({count} calls, x{reps} runs)")
    return [
        Row("j", what + ": median per call", "—", per_call("nonblock"), per_call("peer"),
            f"sleeping/none: {both('median_s')}", "nonblock <= 1.5x", ratio("nonblock", "median_s") <= 1.5),
        Row("j", what + f": all {count} calls", "—", totals("nonblock"), totals("peer"),
            f"sleeping/none: {both('total_s')}", "nonblock <= 1.5x", ratio("nonblock", "total_s") <= 1.5),
    ]


# -- k: BackgroundHddFile, big writes ---------------------------------------------------------


def _medians(runs: Dict[str, List[Dict[str, float]]]) -> Dict[Tuple[str, str], float]:
    """{(contender, field): the median of that field over the contender's runs}."""
    return {(key, field): median([run[field] for run in values])
            for key, values in runs.items() for field in values[0]}


def _one_in(ratio: float) -> str:
    return f"{ratio:.3f}x (1/{1 / ratio:.0f})" if ratio < 0.1 else f"{ratio:.2f}x (1/{1 / ratio:.1f})"


def scenario_k(bench: Bench) -> List[Row]:
    d, reps, size = bench.dirpath, bench.settings.reps, bench.settings.file_size
    unbounded = 2 * size  # max_pending_bytes past the whole file: write() never waits for the disk
    args = {"size": size, "piece": MiB}
    runs = interleave(reps, {
        "plain": lambda: workloads.file_big_writes(None, d, **args),
        "nonblock": lambda: workloads.file_big_writes(bench.nb, d, **args),
        "unbounded": lambda: workloads.file_big_writes(bench.nb, d, max_pending=unbounded, **args),
    })
    med = _medians(runs)

    def total(key: str) -> str:
        mid, times = med[(key, "total_s")], [run["total_s"] for run in runs[key]]
        return f"{fmt_time(mid)} ({fmt_rate(size / mid)}; {spread(times)})"

    ratio = med[("nonblock", "total_s")] / med[("plain", "total_s")]
    fastest = min(run["total_s"] for run in runs["nonblock"]) / min(run["total_s"] for run in runs["plain"])
    per_write = med[("unbounded", "write_s")] / med[("plain", "write_s")]
    count = size // MiB
    return [
        Row("k", f"BackgroundHddFile, {size // MiB} MiB to a new file as {count:,} x 1 MiB writes "
            "(default settings): open to finished (plain: open() to close)",
            total("plain"), total("nonblock"), "—",
            f"nonblock/plain {fmt_ratio(ratio)} (fastest runs: {fmt_ratio(fastest)})",
            "nonblock/plain <= 1.10x", ratio <= 1.10),
        Row("k", f"same, max_pending_bytes {unbounded // MiB} MiB: time inside write(), mean per call",
            fmt_time(med[("plain", "write_s")]),
            f"{fmt_time(med[('unbounded', 'write_s')])}; open to finished {total('unbounded')}; "
            f"with the default max_pending_bytes {fmt_time(med[('nonblock', 'write_s')])} per write()",
            "—", f"nonblock/plain {_one_in(per_write)}", "nonblock <= 1/20 of plain", per_write <= 1 / 20),
    ]


# -- l: BackgroundHddFile, many short text lines -----------------------------------------------


def scenario_l(bench: Bench) -> List[Row]:
    d, reps, count = bench.dirpath, bench.settings.reps, bench.settings.line_writes
    runs = interleave(reps, {
        "plain": lambda: workloads.file_line_writes(None, d, count),
        "nonblock": lambda: workloads.file_line_writes(bench.nb, d, count),
    })
    med = _medians(runs)

    def cell(key: str, field: str) -> str:
        return f"{fmt_time(med[(key, field)])} ({spread([run[field] for run in runs[key]])})"

    per_write = med[("nonblock", "write_s")] / med[("plain", "write_s")]
    total = med[("nonblock", "total_s")] / med[("plain", "total_s")]
    what = f'BackgroundHddFile, {count:,} writes of a 100-character line (mode "w") to a new file'
    return [
        Row("l", what + ": time per write() (the loop's time / count)", cell("plain", "write_s"),
            cell("nonblock", "write_s"), "—", f"nonblock/plain {fmt_ratio(per_write)}",
            "nonblock/plain <= 4x", per_write <= 4),
        Row("l", "same, open to finished (plain: open() to close)", cell("plain", "total_s"),
            cell("nonblock", "total_s"), "—", f"nonblock/plain {fmt_ratio(total)}",
            "nonblock/plain <= 3x", total <= 3),
    ]


# -- m: BackgroundHddFile, memory while a slow stream holds the writer back ---------------------

FIFO_READ_RATE = 256 * MiB
"""Bytes per second the FIFO's reader takes: far below what the writer could offer."""


def _in_own_process(name: str, **args: Any) -> Any:
    """``workloads.name(nonblock, **args)`` in a new worker process, which ends after it."""
    worker = PeerWorker(OWN_PROCESS)
    try:
        return worker.call(name, timeout=300.0, **args)
    finally:
        worker.close()


def scenario_m(bench: Bench) -> List[Row]:
    d, reps, size = bench.dirpath, bench.settings.fifo_reps, bench.settings.fifo_size
    bound = 64 * MiB
    target = (bound + 16 * MiB) / MiB
    args = {"dirpath": d, "size": size, "piece": MiB, "max_pending": bound, "read_rate": FIFO_READ_RATE}
    runs = interleave(reps, {
        "plain": lambda: _in_own_process("fifo_peak_memory", builtin=True, **args),
        "nonblock": lambda: _in_own_process("fifo_peak_memory", **args),
    })
    med = _medians(runs)
    worst = max(run["peak_growth_mib"] for run in runs["nonblock"])
    reset = all(run["peak_reset"] for values in runs.values() for run in values)

    def cell(key: str) -> str:
        growth = [run["peak_growth_mib"] for run in runs[key]]
        pending = "" if key == "plain" else (
            f"; pending_bytes peaked at {med[(key, 'pending_peak_mib')]:.1f} MiB")
        return (f"{med[(key, 'peak_growth_mib')]:.1f} MiB ({min(growth):.1f}-{max(growth):.1f}; sampled "
                f"VmRSS {med[(key, 'sampled_growth_mib')]:.1f} MiB{pending}; "
                f"{fmt_time(med[(key, 'elapsed_s')])}, read at {med[(key, 'read_rate')] / MiB:.0f} MiB/s)")

    return [Row(
        "m", f"BackgroundHddFile, max_pending_bytes {bound // MiB} MiB, {size // MiB} MiB as 1 MiB writes "
        f"(a new bytes object each) into a FIFO read at {FIFO_READ_RATE // MiB} MiB/s: peak RSS growth "
        f"from the first write (VmHWM{'' if reset else ', not reset: an upper bound'}; a process per run, "
        f"x{reps} runs)",
        cell("plain"), cell("nonblock"), "—", f"nonblock worst run {worst:.1f} MiB = {worst / target:.2f}x "
        "the target", f"nonblock <= {target:.0f} MiB (max_pending_bytes + 16 MiB) in every run",
        worst <= target,
    )]


# -- n-p: the read half --------------------------------------------------------------------------


def scenario_n(bench: Bench) -> List[Row]:
    size, peer_size, reps = bench.settings.read_size, bench.settings.peer_read_size, bench.settings.read_reps
    runs = interleave(reps, {
        "plain": lambda: workloads.plain_pipe_drain(size),
        "nonblock": lambda: workloads.nonblock_read_drain(bench.nb, size),
    })
    # python-nonblock reads a byte per select(): one run, of its own size, compared as a rate.
    peer_s = bench.peer.call("nonblock_read_drain", timeout=1200.0, size=peer_size)
    plain, nb = median(runs["plain"]), median(runs["nonblock"])
    vs_plain = nb / plain
    speedup = (size / nb) / (peer_size / peer_s)
    return [Row(
        "n", f"nonblock_read draining {size // MiB} MiB from a pipe fed by another process "
        f"(python-nonblock: {peer_size // MiB} MiB, one run)",
        f"{fmt_time(plain)} ({spread(runs['plain'])}; blocking os.read loop)",
        f"{fmt_time(nb)} ({spread(runs['nonblock'])}), {fmt_rate(size / nb)}",
        f"{fmt_time(peer_s)}, {fmt_rate(peer_size / peer_s)}",
        f"{fmt_ratio(speedup)} the peer's rate; nonblock/plain {fmt_ratio(vs_plain)}",
        ">= 100x the peer; nonblock/plain <= 1.5x", speedup >= 100 and vs_plain <= 1.5,
    )]


def scenario_o(bench: Bench) -> List[Row]:
    settings = bench.settings
    size, peer_size, reps = settings.bgread_size, settings.peer_bgread_size, settings.read_reps
    runs = interleave(reps, {
        "plain": lambda: workloads.plain_thread_read(size),
        "nonblock": lambda: workloads.bgread_drain(bench.nb, size),
    })
    peer_s = bench.peer.call("bgread_drain", timeout=1200.0, size=peer_size)
    plain, nb = median(runs["plain"]), median(runs["nonblock"])
    share = plain / nb
    return [Row(
        "o", f"bgread of {size // MiB} MiB from a pipe fed by another process, until finished "
        f"(python-nonblock: {peer_size // MiB} MiB, one run)",
        f"{fmt_time(plain)} ({spread(runs['plain'])}; a blocking read loop on its own thread), "
        f"{fmt_rate(size / plain)}",
        f"{fmt_time(nb)} ({spread(runs['nonblock'])}), {fmt_rate(size / nb)}",
        f"{fmt_time(peer_s)}, {fmt_rate(peer_size / peer_s)}",
        f"nonblock's throughput {share:.2f}x the plain thread's",
        ">= 0.8x the plain thread's throughput", share >= 0.8,
    )]


def scenario_p(bench: Bench) -> List[Row]:
    count = bench.settings.bgread_count
    with open(os.devnull, "wb") as sink:  # the queue's own threads are started before counting
        bench.nb.bgwrite(sink, b"start").join()
    nb = workloads.concurrent_bgreads(bench.nb, count)
    peer = bench.peer.call("concurrent_bgreads", count=count)
    return [Row(
        "p", f"{count} concurrent bgreads of {count} pipes: threads added while they wait "
        "(nonblock: beyond its queue's three, started before)",
        "—", f"{nb['extra_threads']:.0f} (all read in {fmt_time(nb['seconds'])})",
        f"{peer['extra_threads']:.0f} (all read in {fmt_time(peer['seconds'])})",
        f"{nb['extra_threads']:.0f} vs {peer['extra_threads']:.0f}",
        "nonblock <= 1 extra thread", nb["extra_threads"] <= 1,
    )]


SCENARIOS: Sequence[Tuple[str, Callable[[Bench], List[Row]]]] = (
    ("a", scenario_a), ("b", scenario_b), ("c", scenario_c), ("d", scenario_d),
    ("e", scenario_e), ("f", scenario_f), ("g", scenario_g), ("h", scenario_h),
    ("i", scenario_i), ("j", scenario_j), ("k", scenario_k), ("l", scenario_l),
    ("m", scenario_m), ("n", scenario_n), ("o", scenario_o), ("p", scenario_p),
)


# -- the machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total() -> str:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def filesystem_of(path: str) -> str:
    """'TYPE (DEVICE at MOUNTPOINT)' for the mount holding *path*, from /proc/mounts."""
    real = os.path.realpath(path)
    best = ("", "unknown", "unknown")
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                device, mountpoint, fstype = line.split()[:3]
                inside = real == mountpoint or real.startswith(mountpoint.rstrip("/") + "/")
                if inside and len(mountpoint) >= len(best[0]):
                    best = (mountpoint, fstype, device)
    except OSError:
        pass
    return f"{best[1]} ({best[2]} at {best[0] or '?'})"


def revision_of(checkout: str) -> str:
    """The commit a checkout is at (short hash), or its path if git cannot say."""
    try:
        return subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return checkout


def repo_revision() -> str:
    try:
        head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--", "nonblock"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in nonblock/" if dirty else "")


def machine_description(dirpath: str, settings: Settings, workers: Sequence[PeerWorker]) -> List[str]:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return [
        f"- CPU: {cpu_model()}, {cores} cores ({usable} usable)",
        f"- memory: {memory_total()}",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- temp dir: {dirpath}, filesystem {filesystem_of(dirpath)}",
        f"- nonblock: {REPO_ROOT} at {repo_revision()}",
        *(f"- peer: {worker.spec.name} from {os.path.dirname(worker.info.get('module_file', '?'))}"
          for worker in workers if worker.started),
        f"- mode: {settings.name}; {datetime.datetime.now().isoformat(timespec='seconds')}",
    ]


# -- running it all ----------------------------------------------------------------------------


_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


def run_scenarios(bench: Bench, only: Sequence[str]) -> List[Row]:
    rows: List[Row] = []
    for name, scenario in SCENARIOS:
        if only and name not in only:
            continue
        log(f"scenario {name}")
        try:
            rows.extend(scenario(bench))
        except Exception as error:  # one broken scenario should not hide the others
            log(f"scenario {name} failed: {error!r}")
            rows.append(Row(name, f"failed: {type(error).__name__}: {error}".replace("\n", " ")[:300],
                            "", "", "", "", "", False))
        finally:
            release_quietly(bench)
    return rows


def release_quietly(bench: Bench) -> None:
    """Free both processes' payloads and files between scenarios, whatever happened."""
    try:
        bench.release()
    except Exception as error:
        log(f"could not release the scenario's memory: {error!r}")


def warm_up(bench: Bench, scenarios: Sequence[str]) -> None:
    """Pay first-use costs (page cache, queue threads, the workers) before anything is timed."""
    if any(PEER_OF_SCENARIO[name] is PYTHON_NONBLOCK for name in scenarios):
        for _ in range(2):
            workloads.warm_up(None, bench.dirpath, 1024 * MiB)
        workloads.warm_up(bench.nb, bench.dirpath, 64 * MiB)
        bench.peer.call("warm_up", dirpath=bench.dirpath, size=64 * MiB)
    if any(PEER_OF_SCENARIO[name] is MHDDQ for name in scenarios):
        workloads.round_trips(bench.hddq, bench.dirpath, 20)
        bench.mhddq.call("round_trips", dirpath=bench.dirpath, count=20)
    if any(name in "kl" for name in scenarios):
        for lib in (None, bench.nb):
            workloads.file_big_writes(lib, bench.dirpath, 64 * MiB, MiB)
            workloads.file_line_writes(lib, bench.dirpath, 10_000)
    bench.release()


NOTES = """\
How to read it:

- Cells are medians of the repetitions; where a spread matters it is shown as min-max. The
  contenders' repetitions are interleaved, their order rotated each time, so they share the
  machine's weather. Ratios compare medians.
- "plain loop" is ordinary open()/write()+flush() code in the main thread (h, i: os.path.isfile
  calls). a-g compare bgwrite with python-nonblock's, h-j nonblock.hddq's mhddq API with mhddq's;
  each peer runs the very same workload code (workloads.py) in a subprocess of its own.
- Big writes (a, b, e's drain, f) overwrite a file whose pages are already cached: on this VM,
  allocating fresh page cache makes write rates swing between ~1 and ~3.5 GB/s from run to run,
  while overwriting runs at a steady ~6 GB/s. Small writes (c, d, e's 4 KiB write) append to new
  files. Every run checks that its bytes landed.
- e: each latency is divided by the chunk-time of the drain it was issued during; the cell gives
  the median, the 90th percentile and the maximum over all samples.
- f: per library, runs go unthrottled, throttled, unthrottled, ...; each throttled rate is divided
  by the mean of its two unthrottled neighbours, and the cell is the median of those ratios.
- g: the loop runs for a fixed time (or until the drain ends) and is compared with the same loop
  run alone just before and just after; "drain meanwhile" is how fast the background write went
  while the loop ran.
- h-j use only callbacks (never a library's own wait) and never shut a library down: mhddq cannot
  restart, so it runs in one worker process for the whole run and is shut down when that ends.
- i: the cell pools every round trip of every run: median, 90th percentile, maximum.
- j: one op is queued whose callback sleeps 1 s (or, for the reference, returns at once); once it
  has started, the next calls are timed one by one. Cells are "with the sleeper vs without". In
  mhddq a callback runs holding the queue's lock, so the first call waits out the sleep and the
  rest are quick again: the median hides it, the total and the slowest call show it.
- k-m: BackgroundHddFile against the builtin open() doing the same writes (the plain loop
  column); there is no peer library. k and l write new files ("wb", "w") in the temp dir and
  delete them after each run, so, unlike a, b, e and f, they allocate fresh page cache and swing
  with it: the cells give min-max, and k's first ratio also compares the two fastest runs, which
  on this VM is steadier than the medians. BackgroundHddFile is timed from the open call until
  finished (close(), then wait()), the builtin file until close() returns. k times each write()
  call; l divides the write loop's time by its count.
- m: each run is a worker process of its own (peer_worker.py with this checkout's nonblock), so
  the peak is that run's: the growth is the kernel's high-water mark (VmHWM, restarted through
  /proc/self/clear_refs just before the first write) at the end less VmRSS at the first write;
  "sampled VmRSS" is the most VmRSS seen every 2 ms over the same span. Not ru_maxrss: it keeps
  the high-water mark a new process inherits from the one that spawned it. A reader thread
  drains the FIFO at a fixed rate far below the writer's, so the writer waits on its bound the
  whole time; it checks it got every byte.
- n-o: a child process writes the bytes into a pipe in 1 MiB os.write calls; timing starts once
  its first bytes wait in the pipe, and every run checks the count. python-nonblock reads a byte
  per select() (n) or sleeps pollTime after every block (o), so it gets one run of a smaller size
  and is compared by rate. o's reference is a thread of its own in a blocking os.read loop that
  keeps every block, as bgread does; bgread's time runs from the call until it is finished.
- p: threads alive while the bgreads wait, less those alive before (nonblock's queue threads are
  started first, by a write); then every pipe gets a line and is closed.
"""


def report(machine: Sequence[str], rows: Sequence[Row], elapsed: float) -> str:
    return "\n".join([
        "# nonblock benchmarks: side by side with python-nonblock, mhddq and plain loops", "",
        "Produced by `python benchmarks/compare.py`; overwritten on each run.", "",
        *machine, f"- total run time: {elapsed:.0f} s", "",
        render_table(rows), "", NOTES,
    ])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about 2 minutes)")
    parser.add_argument("--only", default="", help="comma-separated scenarios, e.g. c,d "
                        "(prints the table but leaves results.md alone)")
    parser.add_argument("--against", default="", metavar="CHECKOUT",
                        help="an A/B run: nonblock at another checkout (a git worktree of an earlier "
                        "commit, say) takes python-nonblock's place as the peer of a-g and n-p; the "
                        "peer column is then that revision (its verdicts mean nothing); leaves "
                        "results.md alone")
    options = parser.parse_args(argv)
    global _peer_of_a_to_g
    if options.against:
        _peer_of_a_to_g = PeerSpec("nonblock-revision", "", "", f"nonblock at {revision_of(options.against)}",
                                   home=os.path.abspath(options.against))
    settings = QUICK if options.quick else FULL
    only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in PEER_OF_SCENARIO]
    if unknown:
        parser.error(f"--only: no scenario {', '.join(unknown)} (there are {', '.join(PEER_OF_SCENARIO)})")
    scenarios = only or list(PEER_OF_SCENARIO)
    for spec in (PYTHON_NONBLOCK, MHDDQ):
        if any(PEER_OF_SCENARIO[name] is spec for name in scenarios) and spec.requirement:
            if spec is not PYTHON_NONBLOCK or not options.against:
                ensure_peer_installed(spec)
    nb = import_repo_nonblock()
    dirpath = tempfile.mkdtemp(prefix="nonblock-bench-")
    workers = (PeerWorker(_peer_of_a_to_g), PeerWorker(MHDDQ))
    try:
        bench = Bench(settings, dirpath, nb, *workers)
        log(f"warming up in {dirpath}")
        warm_up(bench, scenarios)
        machine = machine_description(dirpath, settings, workers)
        print("\n".join(machine), flush=True)
        rows = run_scenarios(bench, only)
    finally:
        for worker in workers:
            worker.close()
        shutil.rmtree(dirpath, ignore_errors=True)
    text = report(machine, rows, time.perf_counter() - _START)
    print("\n" + render_table(rows))
    if not only and not options.against:
        with open(RESULTS_PATH, "w") as out:
            out.write(text)
        log(f"wrote {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
