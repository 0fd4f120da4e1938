"""nonblock's BackgroundFileHandler side by side with the standard answers, in one run.

    python benchmarks/compare_logging.py [--quick]

Contenders, each logging the same records (about 100 bytes, one formatter:
``%(asctime)s %(levelname)s %(name)s: %(message)s``) into a file of its own:

* ``logging.FileHandler``;
* ``QueueHandler`` + ``QueueListener`` writing to a FileHandler (the formatter
  on the FileHandler, as usual: the listener's thread formats);
* loguru 0.7.3 with ``enqueue=True`` (an equivalent format string), installed
  with ``pip install --target benchmarks/.peers/loguru`` if missing;
* nonblock's ``BackgroundFileHandler``.

Every run is a fresh worker process (this script with ``--worker``), so no
contender inherits another's threads, queues or garbage; repetitions are
interleaved, the order rotating, so that all see the same machine weather.
Each run reports the caller's time (the whole ``logger.info`` loop, divided by
the count) and the time until every record is in the file (the handler closed,
the listener stopped, loguru's sink removed); it counts the lines it left.

Then the FIFO row: the log file is a named pipe that a reader process drains
at 1 MB/s; BackgroundFileHandler logs fewer records than its
``max_pending_bytes`` holds, and its caller time is compared with the
fast-disk figure of the same run.  (FileHandler into the same FIFO, for
contrast, logs a smaller count: it goes at the reader's pace.)

Prints a markdown table of medians and ratios with the issue's targets and
writes it to benchmarks/results_logging.md (overwritten).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import logging.handlers
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from compare import fmt_ratio, fmt_time, median, rotated, verdict

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULTS_PATH = os.path.join(BENCH_DIR, "results_logging.md")
LOGURU_FOLDER = os.path.join(BENCH_DIR, ".peers", "loguru")
LOGURU_REQUIREMENT = "loguru==0.7.3"

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOGURU_FORMAT = "{time:YYYY-MM-DD HH:mm:ss,SSS} {level} bench: {message}"
MESSAGE = "record %d: the caller goes on while the disk catches up"
LOGURU_MESSAGE = "record {}: the caller goes on while the disk catches up"
FIFO_RATE = 1_000_000  # bytes per second
FIFO_MAX_PENDING = 64 << 20

CONTENDERS = ("FileHandler", "QueueHandler+QueueListener", "loguru enqueue=True", "BackgroundFileHandler",
              "format only (floor)")


@dataclass(frozen=True)
class Settings:
    name: str
    records: int
    loguru_records: int  # loguru enqueue=True takes ~130 µs a record here: fewer, compared per record
    reps: int
    fifo_records: int
    fifo_plain_records: int
    fifo_reps: int


FULL = Settings("full", records=1_000_000, loguru_records=200_000, reps=5,
                fifo_records=300_000, fifo_plain_records=10_000, fifo_reps=3)
QUICK = Settings("quick", records=200_000, loguru_records=50_000, reps=3,
                 fifo_records=100_000, fifo_plain_records=5_000, fifo_reps=2)


# -- the workers: one run of one contender, in a process of its own ------------------------------


def _stdlib_logger() -> logging.Logger:
    logger = logging.getLogger("bench")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _formatted(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def _run_stdlib(records: int, attach: Callable[[logging.Logger], Callable[[], None]]) -> Dict[str, float]:
    logger = _stdlib_logger()
    finish = attach(logger)
    info = logger.info
    cpu = _cpu()
    started = time.perf_counter()
    for i in range(records):
        info(MESSAGE, i)
    logged = time.perf_counter()
    finish()
    done = time.perf_counter()
    return {"caller": logged - started, "total": done - started, "cpu": _cpu() - cpu}


def _cpu() -> float:
    """The process's CPU time, user and system, all threads: less swayed by other processes."""
    times = os.times()
    return times.user + times.system


def _file_handler(path: str) -> Callable[[logging.Logger], Callable[[], None]]:
    def attach(logger: logging.Logger) -> Callable[[], None]:
        handler = _formatted(logging.FileHandler(path))
        logger.addHandler(handler)
        return handler.close
    return attach


class _FormatOnly(logging.Handler):
    """The floor: what every handler here pays to build and format a record, and no more."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.out = open(path, "w")  # one line at the end, so the line count still checks

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.count = getattr(self, "count", 0) + 1

    def close(self) -> None:
        self.out.write("\n" * getattr(self, "count", 0))
        self.out.close()
        super().close()


def _format_only(path: str) -> Callable[[logging.Logger], Callable[[], None]]:
    def attach(logger: logging.Logger) -> Callable[[], None]:
        handler = _formatted(_FormatOnly(path))
        logger.addHandler(handler)
        return handler.close
    return attach


def _queue_listener(path: str) -> Callable[[logging.Logger], Callable[[], None]]:
    def attach(logger: logging.Logger) -> Callable[[], None]:
        records: queue.SimpleQueue[Any] = queue.SimpleQueue()
        target = _formatted(logging.FileHandler(path))
        listener = logging.handlers.QueueListener(records, target)
        listener.start()
        logger.addHandler(logging.handlers.QueueHandler(records))

        def finish() -> None:
            listener.stop()
            target.close()
        return finish
    return attach


def _background(path: str, **options: Any) -> Callable[[logging.Logger], Callable[[], None]]:
    def attach(logger: logging.Logger) -> Callable[[], None]:
        sys.path.insert(0, REPO_ROOT)
        from nonblock.handlers import BackgroundFileHandler
        handler = _formatted(BackgroundFileHandler(path, **options))
        logger.addHandler(handler)
        return handler.close
    return attach


def _run_loguru(records: int, path: str) -> Dict[str, float]:
    sys.path.insert(0, LOGURU_FOLDER)
    from loguru import logger
    logger.remove()
    logger.add(path, format=LOGURU_FORMAT, enqueue=True, level="INFO")
    info = logger.info
    cpu = _cpu()
    started = time.perf_counter()
    for i in range(records):
        info(LOGURU_MESSAGE, i)
    logged = time.perf_counter()
    logger.remove()  # waits for the queue to drain and closes the file
    done = time.perf_counter()
    return {"caller": logged - started, "total": done - started, "cpu": _cpu() - cpu}


def worker(contender: str, records: int, path: str, reader_pid: int) -> Dict[str, Any]:
    if contender == "loguru enqueue=True":
        result = _run_loguru(records, path)
    else:
        attach = {
            "FileHandler": _file_handler,
            "QueueHandler+QueueListener": _queue_listener,
            "BackgroundFileHandler": _background,
            "format only (floor)": _format_only,
            "fifo FileHandler": _file_handler,
        }.get(contender)
        if contender == "fifo BackgroundFileHandler":
            attach_fifo = _background(path, max_pending_bytes=FIFO_MAX_PENDING)
            logger = _stdlib_logger()
            finish = attach_fifo(logger)
            info = logger.info
            started = time.perf_counter()
            for i in range(records):
                info(MESSAGE, i)
            logged = time.perf_counter()
            os.kill(reader_pid, signal.SIGUSR1)  # measured: now let the reader go at full speed
            finish()
            result = {"caller": logged - started, "total": time.perf_counter() - started}
        else:
            assert attach is not None, contender
            result = _run_stdlib(records, attach(path))
    if not contender.startswith("fifo"):
        with open(path, "rb") as written:
            result["lines"] = sum(block.count(b"\n") for block in iter(lambda: written.read(1 << 20), b""))
    return result


def reader(path: str, rate: int) -> None:
    """Drain the FIFO at *rate* bytes/s until SIGUSR1, then at full speed; print the lines read."""
    fast = False

    def go_fast(signum: int, frame: Any) -> None:
        nonlocal fast
        fast = True

    signal.signal(signal.SIGUSR1, go_fast)
    print("ready", flush=True)
    fd = os.open(path, os.O_RDONLY)
    total = lines = 0
    started = time.perf_counter()
    while True:
        block = os.read(fd, 1 << 16 if fast else 16_384)
        if not block:
            break
        total += len(block)
        lines += block.count(b"\n")
        if not fast:
            ahead = total / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
    print(json.dumps({"bytes": total, "lines": lines}), flush=True)


# -- the orchestra -----------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


def run_worker(contender: str, records: int, path: str, reader_pid: int = 0) -> Dict[str, Any]:
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", contender, "--records", str(records),
         "--path", path, "--reader-pid", str(reader_pid)],
        capture_output=True, text=True, timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{contender} worker failed:\n{result.stderr}")
    if result.stderr.strip():
        raise RuntimeError(f"{contender} worker wrote to stderr:\n{result.stderr}")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def run_fifo(contender: str, records: int, folder: str) -> Dict[str, Any]:
    fifo = os.path.join(folder, "drained.fifo")
    os.mkfifo(fifo)
    try:
        drain = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--reader", fifo],
                                 stdout=subprocess.PIPE, text=True)
        assert drain.stdout is not None
        assert drain.stdout.readline() == "ready\n"
        try:
            result = run_worker(contender, records, fifo, drain.pid)
        except BaseException:
            drain.kill()
            raise
        finally:
            if contender == "fifo FileHandler":
                os.kill(drain.pid, signal.SIGUSR1)
        result.update(json.loads(drain.stdout.readline()))
        drain.wait(60)
    finally:
        os.unlink(fifo)
    return result


def ensure_loguru() -> None:
    if os.path.isdir(os.path.join(LOGURU_FOLDER, "loguru")):
        return
    _log(f"installing {LOGURU_REQUIREMENT} into {LOGURU_FOLDER}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--target", LOGURU_FOLDER, LOGURU_REQUIREMENT], check=True)


@dataclass
class Row:
    measure: str
    cells: List[str]
    ratio: str
    target: str
    met: Optional[bool]


# -- SharedFileHandler: 4 processes into one file ---------------------------------------------


def shared_worker(name: str, path: str, who: int, count: int, ready: Any, go: Any) -> None:
    """A child's body: log *count* records through a SharedFileHandler once *go* is set, then close it."""
    sys.path.insert(0, REPO_ROOT)
    from nonblock.handlers import SharedFileHandler

    handler = SharedFileHandler(name, path)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger(f"bench.shared.{who}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    ready.put(who)
    go.wait()
    for index in range(count):
        logger.info(MESSAGE, index)
    handler.close()


def run_shared(records: int, folder: str, processes: int = 4) -> float:
    """Seconds from the go to every record of *processes* spawned loggers in one file (checked)."""
    import multiprocessing
    import uuid

    context = multiprocessing.get_context("spawn")
    path = os.path.join(folder, "shared.log")
    name = "nb-bench-log-" + uuid.uuid4().hex[:10]
    ready, go = context.Queue(), context.Event()
    each = records // processes
    children = [context.Process(target=shared_worker, args=(name, path, who, each, ready, go))
                for who in range(processes)]
    for child in children:
        child.start()
    for _ in children:
        ready.get(timeout=120)
    started = time.perf_counter()
    go.set()
    for child in children:
        child.join(600)
        if child.exitcode != 0:
            raise RuntimeError(f"a SharedFileHandler child exited with {child.exitcode}")
    elapsed = time.perf_counter() - started
    with open(path, "rb") as log:
        lines = log.read().count(b"\n")
    os.unlink(path)
    if lines != each * processes:
        raise RuntimeError(f"SharedFileHandler left {lines} lines of {each * processes}")
    return elapsed


def records_of(name: str, settings: Settings) -> int:
    return settings.loguru_records if name.startswith("loguru") else settings.records


def per_record(seconds: float, records: int) -> str:
    return fmt_time(seconds / records)


def measure(settings: Settings, folder: str) -> List[Row]:
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in CONTENDERS}
    for rep in range(settings.reps):
        for name in rotated(CONTENDERS, rep):
            path = os.path.join(folder, f"{rep}-{name.split()[0]}.log")
            _log(f"rep {rep + 1}/{settings.reps}: {name}")
            count = records_of(name, settings)
            result = run_worker(name, count, path)
            os.unlink(path)
            if result["lines"] != count:
                raise RuntimeError(f"{name} left {result['lines']} lines of {count}")
            runs[name].append(result)
    fifo_runs: Dict[str, List[Dict[str, Any]]] = {"fifo BackgroundFileHandler": [], "fifo FileHandler": []}
    counts = {"fifo BackgroundFileHandler": settings.fifo_records,
              "fifo FileHandler": settings.fifo_plain_records}
    for rep in range(settings.fifo_reps):
        for name in rotated(list(fifo_runs), rep):
            _log(f"fifo rep {rep + 1}/{settings.fifo_reps}: {name}")
            result = run_fifo(name, counts[name], folder)
            if result["lines"] != counts[name]:
                raise RuntimeError(f"{name}: the reader got {result['lines']} lines of {counts[name]}")
            fifo_runs[name].append(result)

    n = settings.records
    # Per record, whatever the count; totals are for the count each ran.
    caller = {name: median([run["caller"] for run in runs[name]]) / records_of(name, settings) * n
              for name in CONTENDERS}
    total = {name: median([run["total"] for run in runs[name]]) for name in CONTENDERS}
    cpu = {name: median([run["cpu"] for run in runs[name]]) / records_of(name, settings) * n
           for name in CONTENDERS}
    ours = "BackgroundFileHandler"
    spreads = {name: f"{per_record(min(r['caller'] for r in runs[name]), records_of(name, settings))}-"
                     f"{per_record(max(r['caller'] for r in runs[name]), records_of(name, settings))}"
               for name in CONTENDERS}
    rows = [
        Row("caller time per record (the whole logger.info call)",
            [f"{per_record(caller[name], n)} ({spreads[name]})" for name in CONTENDERS],
            f"ours/FileHandler {fmt_ratio(caller[ours] / caller['FileHandler'])}",
            "<= 0.8x FileHandler", caller[ours] <= 0.8 * caller["FileHandler"]),
        Row("same: the floor (formatting alone) against FileHandler", [""] * len(CONTENDERS),
            f"floor/FileHandler {fmt_ratio(caller['format only (floor)'] / caller['FileHandler'])}",
            "(reference)", None),
        Row("same, against QueueHandler", [""] * len(CONTENDERS),
            f"ours/QueueHandler {fmt_ratio(caller[ours] / caller['QueueHandler+QueueListener'])}",
            "<= 1x QueueHandler", caller[ours] <= caller["QueueHandler+QueueListener"]),
        Row("process CPU time per record, all threads (user + system; less swayed by the neighbours)",
            [per_record(cpu[name], n) for name in CONTENDERS],
            f"ours/FileHandler {fmt_ratio(cpu[ours] / cpu['FileHandler'])}", "(reference)", None),
        Row(f"total time until all {n:,} records are in the file",
            [fmt_time(total[name]) + ("" if records_of(name, settings) == n
                                      else f" (for {records_of(name, settings):,})") for name in CONTENDERS],
            f"ours/FileHandler {fmt_ratio(total[ours] / total['FileHandler'])}",
            "<= 1.3x FileHandler", total[ours] <= 1.3 * total["FileHandler"]),
    ]
    fifo_ours = median([run["caller"] for run in fifo_runs["fifo BackgroundFileHandler"]])
    fifo_plain = median([run["caller"] for run in fifo_runs["fifo FileHandler"]])
    fast = caller[ours] / n
    slow = fifo_ours / settings.fifo_records
    plain_count = settings.fifo_plain_records
    cells = [f"{per_record(fifo_plain, plain_count)} ({plain_count:,} records)",
             "—", "—", f"{fmt_time(slow)} ({settings.fifo_records:,} records, "
                       f"max_pending_bytes {FIFO_MAX_PENDING >> 20} MiB)", "—"]
    rows.append(Row("log file a FIFO drained at 1 MB/s: caller time per record", cells,
                    f"ours FIFO/fast disk {fmt_ratio(slow / fast)}", "<= 1.5x the fast-disk figure",
                    slow <= 1.5 * fast))
    shared_records = settings.records // 2
    shared = median([run_shared(shared_records, folder) for _ in range(settings.fifo_reps)])
    rate = shared_records / shared
    rows.append(Row(f"SharedFileHandler, 4 spawned processes, {shared_records:,} records into one file "
                    "(go to all in the file)",
                    ["—", "—", "—", f"{rate:,.0f} records/s ({fmt_time(shared)})", "—"],
                    "", ">= 150,000 records/s", rate >= 150_000))
    return rows


def render(rows: Sequence[Row]) -> str:
    header = ("measurement", *CONTENDERS, "ratio", "target", "")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.measure, *row.cells, row.ratio, row.target, verdict(row.met)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine(settings: Settings, folder: str) -> List[str]:
    revision = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    return [
        f"- CPU: {os.cpu_count()} cores, shared with other work (numbers are noisy; ratios matter)",
        f"- OS: {platform.system()} {platform.release()}; Python: {platform.python_implementation()} "
        f"{platform.python_version()}",
        f"- temp dir: {folder}",
        f"- nonblock: {REPO_ROOT} at {revision}; peer: {LOGURU_REQUIREMENT} from {LOGURU_FOLDER}",
        f"- mode: {settings.name} ({settings.records:,} records x {settings.reps} interleaved runs each); "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}",
    ]


_START = time.perf_counter()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 records, fewer runs (about 2 minutes)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--reader", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--reader-pid", type=int, default=0, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        print(json.dumps(worker(options.worker, options.records, options.path, options.reader_pid)))
        return 0
    if options.reader:
        reader(options.reader, FIFO_RATE)
        return 0
    settings = QUICK if options.quick else FULL
    ensure_loguru()
    with tempfile.TemporaryDirectory(prefix="nonblock-logbench-") as folder:
        description = machine(settings, folder)
        rows = measure(settings, folder)
    table = render(rows)
    print("\n" + table)
    with open(RESULTS_PATH, "w") as out:
        out.write("\n".join([
            "# Logging: BackgroundFileHandler side by side with the standard answers", "",
            "Produced by `python benchmarks/compare_logging.py`; overwritten on each run.", "",
            *description, f"- total run time: {time.perf_counter() - _START:.0f} s", "",
            table, "", "Cells: medians (caller: fastest-slowest run in brackets). See the script's docstring "
            "for the method.", "",
        ]))
    _log(f"wrote {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
