"""SharedFileWriter: many processes, one file, every record whole, in order, exactly once."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid

import _syncq_procs as procs
import pytest

from nonblock.syncq import MessageTooLarge, SharedFileWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_name() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def check_exact(path: str, writers: int, count: int) -> None:
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    assert lines[-1] == b""  # the file ends with a whole record
    lines = lines[:-1]
    assert len(lines) == writers * count
    for me in range(writers):
        mine = [line for line in lines if line.startswith(b"%d " % me)]
        assert mine == [b"%d %06d " % (me, i) + b"r" * 88 for i in range(count)], f"writer {me}"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_four_writers_and_the_drainer_sigkilled_mid_run_leave_the_file_exact(method: str, tmp_path) -> None:
    ctx = multiprocessing.get_context(method)
    name, path, size, count = fresh_name(), str(tmp_path / "shared.log"), 64 * 1024, 6000
    ready, go, until = ctx.Queue(), ctx.Event(), ctx.Event()
    drainer = ctx.Process(target=procs.file_drainer, args=(name, path, size, ready))
    drainer.start()
    assert ready.get(timeout=60) is True  # it holds the drainer lock
    standby = ctx.Process(target=procs.file_standby, args=(name, path, size, until))
    standby.start()
    writers = [ctx.Process(target=procs.file_writer, args=(name, path, size, me, count, go))
               for me in range(4)]
    for p in writers:
        p.start()
    go.set()
    deadline = time.monotonic() + 60
    while (not os.path.exists(path) or os.path.getsize(path) < 200_000) and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(drainer.pid, signal.SIGKILL)  # mid-run: the writers are far from done (2.4 MB in all)
    assert os.path.getsize(path) < 4 * count * 100
    for p in writers:
        p.join(90)
    assert [p.exitcode for p in writers] == [0] * 4
    until.set()
    standby.join(60)
    drainer.join(10)
    check_exact(path, 4, count)
    assert [e for e in os.listdir("/dev/shm") if e.startswith(name)] == []


def test_flush_waits_until_the_records_are_in_the_file(tmp_path) -> None:
    name, path = fresh_name(), str(tmp_path / "f.log")
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Queue()
    drainer = ctx.Process(target=procs.file_drainer, args=(name, path, 1 << 20, ready))
    drainer.start()
    try:
        assert ready.get(timeout=60) is True
        with SharedFileWriter(name, path, size=1 << 20) as writer:
            assert not writer.is_drainer  # the other process writes the file
            for i in range(1000):
                assert writer.write(f"line {i}\n") == len(f"line {i}\n")
            writer.flush()
            with open(path) as f:
                assert f.read() == "".join(f"line {i}\n" for i in range(1000))
    finally:
        os.kill(drainer.pid, signal.SIGKILL)
        drainer.join(10)
    # A SIGKILLed last participant cannot remove the segment; the next one to leave does.
    SharedFileWriter(name, path, size=1 << 20).close()
    assert [e for e in os.listdir("/dev/shm") if e.startswith(name)] == []


def test_a_full_disk_is_reported_by_flush_and_close_does_not_hang() -> None:
    writer = SharedFileWriter(fresh_name(), "/dev/full", size=4096)
    writer.write(b"record\n")
    with pytest.raises(OSError) as caught:
        writer.flush(timeout=30)
    assert caught.value.errno == errno.ENOSPC
    writer.close()
    assert writer.closed


def test_bad_input_is_refused_at_the_call(tmp_path) -> None:
    path = str(tmp_path / "b.log")
    with pytest.raises(TypeError, match="name"):
        SharedFileWriter(42, path)  # type: ignore[arg-type]
    with pytest.raises(LookupError):
        SharedFileWriter(fresh_name(), path, encoding="no-such-codec")
    with SharedFileWriter(fresh_name(), path, size=256) as writer:
        with pytest.raises(TypeError, match="bytes or str.*int"):
            writer.write(42)
        with pytest.raises(MessageTooLarge):
            writer.write(b"x" * 300)
        with pytest.raises(ValueError, match="timeout"):
            writer.flush(timeout=-1)
        writer.write(b"kept\n")
    with open(path, "rb") as f:
        assert f.read() == b"kept\n"
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"late\n")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_exit_without_close_loses_nothing_and_prints_nothing(method: str, tmp_path) -> None:
    path, name = str(tmp_path / "x.log"), fresh_name()
    code = f"""
import multiprocessing as mp
from nonblock.syncq import SharedFileWriter

def child(me):
    w = SharedFileWriter({name!r}, {path!r})
    for i in range(500):
        w.write(b"%d %06d\\n" % (me, i))

if __name__ == "__main__":
    mp.set_start_method({method!r})
    w = SharedFileWriter({name!r}, {path!r})
    kids = [mp.Process(target=child, args=(me,)) for me in (1, 2)]
    for k in kids:
        k.start()
    for i in range(500):
        w.write(b"0 %06d\\n" % i)
    for k in kids:
        k.join()
"""
    script = tmp_path / "noclose.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, "-W", "error", str(script)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=100)
    assert (run.returncode, run.stderr) == (0, "")
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    for me in range(3):
        assert [line for line in lines if line.startswith(b"%d " % me)] == [b"%d %06d" % (me, i)
                                                                             for i in range(500)]
    assert [e for e in os.listdir("/dev/shm") if e.startswith(name)] == []
