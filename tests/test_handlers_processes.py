"""The log handlers across processes: exit without shutdown, fork, spawn, a full disk."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Dict, List

import pytest

from nonblock.handlers import BackgroundFileHandler, BackgroundRotatingFileHandler

ROOT = str(Path(__file__).resolve().parents[1])


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=100)


def numbered(path: Path, pattern: str) -> Dict[str, List[int]]:
    """The numbers of each writer's records, in file order; fails on any line not whole."""
    line_re = re.compile(pattern)
    seen: Dict[str, List[int]] = {}
    data = path.read_text()
    assert data.endswith("\n")
    for line in data.split("\n")[:-1]:
        match = line_re.match(line)
        assert match, f"split or garbled record: {line!r}"
        seen.setdefault(match.group(1), []).append(int(match.group(2)))
    return seen


@pytest.mark.parametrize("kind", ["BackgroundFileHandler", "BackgroundRotatingFileHandler"])
def test_exit_without_close_or_shutdown_keeps_every_record(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "exit.log"
    result = run_python(f"""
        import logging, sys, threading
        from nonblock.handlers import {kind}
        options = {{"maxBytes": 1 << 18, "backupCount": 100}} if "{kind}" != "BackgroundFileHandler" else {{}}
        handler = {kind}(sys.argv[1], **options)
        handler.setFormatter(logging.Formatter("%(threadName)s %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        def work():
            for i in range(50_000):
                logging.info("%06d", i)
        workers = [threading.Thread(target=work, name=f"w{{n}}") for n in range(3)]
        for w in workers:
            w.start()
        work()
        # no close(), no logging.shutdown(), no nonblock.shutdown(): the workers may still be logging
    """, str(path))
    assert result.returncode == 0, result.stderr
    assert "Logging error" not in result.stderr
    seen: Dict[str, List[int]] = {}
    files = sorted(tmp_path.iterdir(), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    for part in files:
        for name, numbers in numbered(part, r"^(\S+) (\d{6})$").items():
            seen.setdefault(name, []).extend(numbers)
    assert seen == {name: list(range(50_000)) for name in ("MainThread", "w0", "w1", "w2")}
    if kind != "BackgroundFileHandler":
        assert len(files) > 3


def test_a_record_logged_by_an_atexit_hook_after_the_queue_stopped_is_written(tmp_path: Path) -> None:
    path = tmp_path / "late.log"
    result = run_python("""
        import atexit, logging, sys
        # Registered before nonblock is imported, so it runs after nonblock's own exit hook.
        atexit.register(lambda: logging.getLogger().warning("goodbye from atexit"))
        from nonblock.handlers import BackgroundFileHandler
        handler = BackgroundFileHandler(sys.argv[1])
        logging.getLogger().addHandler(handler)
        logging.getLogger().warning("hello")
    """, str(path))
    assert result.returncode == 0, result.stderr
    assert "Logging error" not in result.stderr, result.stderr
    assert path.read_text() == "hello\ngoodbye from atexit\n"


def test_fork_under_load_child_logs_at_once_and_never_repeats_the_parents_records(tmp_path: Path) -> None:
    path = tmp_path / "fork.log"
    log = logging.getLogger("test_fork_under_load")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = BackgroundFileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    stop = threading.Event()
    counts: Dict[str, int] = {}

    def work(name: str) -> None:
        i = 0
        while not stop.is_set() or i < 5_000:
            log.info("%s %07d", name, i)
            i += 1
        counts[name] = i

    threads = [threading.Thread(target=work, args=(f"p{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    children = []
    try:
        for n in range(3):
            pid = os.fork()
            if pid == 0:  # the child: log at once, flush, leave without running the parent's exit
                code = 1
                try:
                    for i in range(2_000):
                        log.info("c%d %07d", n, i)
                    handler.flush()
                    code = 0
                finally:
                    os._exit(code)
            children.append(pid)
        for pid in children:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        handler.close()
        log.removeHandler(handler)
    seen = numbered(path, r"^([pc]\d) (\d{7})$")
    for name, count in counts.items():
        assert seen[name] == list(range(count)), f"{name}: parent's records lost or repeated"
    for n in range(3):
        assert seen[f"c{n}"] == list(range(2_000))


def _spawned_writer(path: str, name: str, count: int) -> None:
    handler = BackgroundFileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("spawned")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for i in range(count):
        log.info("%s %06d %s", name, i, "z" * (i % 300))
    # no close: the exit writes the rest


def test_spawned_processes_appending_to_one_file_never_split_a_record(tmp_path: Path) -> None:
    path = tmp_path / "spawn.log"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_spawned_writer, args=(str(path), f"s{n}", 20_000)) for n in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(100)
        assert process.exitcode == 0
    seen = numbered(path, r"^(s\d) (\d{6}) z*$")
    assert seen == {f"s{n}": list(range(20_000)) for n in range(4)}


def test_a_full_disk_goes_to_handle_error_and_the_program_carries_on() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    result = run_python("""
        import logging
        from nonblock.handlers import BackgroundFileHandler
        handler = BackgroundFileHandler("/dev/full")
        log = logging.getLogger("full")
        log.addHandler(handler)
        for i in range(1000):
            log.warning("record %d", i)
        handler.flush()
        print("carried on after flush", flush=True)
        for i in range(1000):
            log.warning("later record %d", i)
        handler.close()
        print("carried on after close", flush=True)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "carried on after flush\ncarried on after close\n"
    # Reported (at least) at the flush and at the close, each time with the disk's error.
    assert result.stderr.count("--- Logging error ---") >= 2, result.stderr
    assert result.stderr.count("No space left on device") >= 2
    assert "('/dev/full', 'flushing')" in result.stderr and "('/dev/full', 'closing')" in result.stderr


def test_a_full_disk_is_reported_even_with_no_flush_or_close() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    result = run_python("""
        import logging
        from nonblock.handlers import BackgroundFileHandler
        log = logging.getLogger("full")
        log.addHandler(BackgroundFileHandler("/dev/full"))
        log.warning("lost, but never silently")
    """)
    assert result.returncode == 0, result.stderr
    assert "No space left on device" in result.stderr


def test_rotating_handler_sigkill_loses_only_what_was_not_written(tmp_path: Path) -> None:
    # A killed process cannot write what it held; what reached the files is whole and in order.
    path = tmp_path / "killed.log"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import logging, sys
        from nonblock.handlers import BackgroundRotatingFileHandler
        handler = BackgroundRotatingFileHandler(sys.argv[1], maxBytes=100_000, backupCount=1000)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger("k")
        log.addHandler(handler)
        for i in range(10 ** 9):
            log.warning("k0 %07d", i)
            if i == 100_000:
                handler.flush()
                print("flushed", flush=True)
    """), str(path)], env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "flushed\n"
    child.kill()
    child.wait()
    numbers: List[int] = []
    parts = sorted(tmp_path.iterdir(), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    for part in parts:
        data = part.read_text()
        complete = data[: data.rfind("\n") + 1]  # the kill may cut the last write of the base file
        if part.name != "killed.log":
            assert complete == data
        if complete:
            numbers += numbered_text(complete)
    assert numbers[: 100_001] == list(range(100_001))
    assert numbers == list(range(len(numbers)))


def numbered_text(text: str) -> List[int]:
    out = []
    for line in text.split("\n")[:-1]:
        assert re.match(r"^k0 \d{7}$", line), line
        out.append(int(line[3:]))
    return out


def test_the_handlers_are_importable_from_the_rotating_one(tmp_path: Path) -> None:
    handler = BackgroundRotatingFileHandler(tmp_path / "x.log")
    try:
        assert isinstance(handler, BackgroundFileHandler)
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
    finally:
        handler.close()
