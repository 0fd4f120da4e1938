"""``python -m nonblock log``: a million log records, through logging.FileHandler and BackgroundFileHandler.

Both handlers get the same records with the same formatter, one after the
other, each into its own temporary file.  What is timed is the caller: the
whole ``logger.info()`` call, per record; then how long until the records
were on disk (``close()`` returned).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Callable, List, Tuple

from nonblock.handlers import BackgroundFileHandler

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _timed(handler: logging.Handler, name: str, records: int) -> Tuple[float, float]:
    """Log *records* through *handler*; return (caller seconds, seconds until closed)."""
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    info = logger.info
    started = time.perf_counter()
    for i in range(records):
        info("record %d: the caller goes on while the disk catches up", i)
    logged = time.perf_counter()
    handler.close()
    closed = time.perf_counter()
    logger.removeHandler(handler)
    return logged - started, closed - started


def _lines(path: str) -> int:
    with open(path, "rb") as stream:
        return sum(block.count(b"\n") for block in iter(lambda: stream.read(1 << 20), b""))


def run(records: int, say: Callable[[str], None] = print) -> int:
    results: List[Tuple[str, float, float, bool]] = []
    # The logging HOWTO's "Optimization" switches, the same for both handlers: records
    # that skip what no format here shows, so that a million of each fits in seconds.
    switches = (logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    try:
        _compare(records, results, say)
    finally:
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing = switches
    (_, plain_caller, _, _), (_, background_caller, _, _) = results
    say(f"BackgroundFileHandler's caller time is {background_caller / plain_caller:.2f}x FileHandler's "
        f"({plain_caller / records * 1e6 - background_caller / records * 1e6:+.2f} µs saved per record).")
    return 0 if all(complete for *_, complete in results) else 1


def _compare(records: int, results: List[Tuple[str, float, float, bool]], say: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory(prefix="nonblock-log-demo-") as folder:
        say(f"Logging {records:,} records of about 100 bytes ({FORMAT!r}) into {folder}:")
        contenders = [("logging.FileHandler", "demo.plain", logging.FileHandler),
                      ("BackgroundFileHandler", "demo.bgwrt", BackgroundFileHandler)]
        for label, logger_name, make in contenders:
            path = os.path.join(folder, label + ".log")
            caller, total = _timed(make(path), logger_name, records)
            complete = _lines(path) == records
            results.append((label, caller, total, complete))
            say(f"  {label:<22} {caller / records * 1e6:6.2f} µs per record in the caller; "
                f"all on disk after {total:5.2f} s{'' if complete else '  (RECORDS MISSING)'}")
