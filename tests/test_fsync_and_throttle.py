"""What fsync=True and a throttled ioPrio promise, observed from outside.

The fsync tests count the real ``os.fsync`` calls (wrapped by monkeypatch, still
calling through) and look at the file as each call sees it: an fsync that came
too early, on the wrong descriptor, twice or not at all fails here.  The
throttle test is coarse on purpose: a write at 20 % of the disk's rate must take
clearly longer than the same write unthrottled, whatever the machine.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator, List, Tuple

import pytest

from nonblock import BackgroundHddFile, BackgroundIOPriority, HddQueue, bgwrite

Fsynced = List[Tuple[int, int]]  # (descriptor, the file's size at the fsync)


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fsynced]:
    """Every os.fsync call from now on, as (descriptor, size of what it points at then)."""
    calls: Fsynced = []
    real_fsync: Callable[[int], None] = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append((fd, os.fstat(fd).st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    yield calls


def test_bgwrite_with_fsync_fsyncs_once_after_the_last_chunk(tmp_path, queue: HddQueue, fsynced: Fsynced):
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks at ioPrio 1
    with open(tmp_path / "out", "wb") as stream:
        assert bgwrite(stream, data, ioPrio=1, fsync=True, queue=queue).result(timeout=60) == len(data)
        assert fsynced == [(stream.fileno(), len(data))]
    assert (tmp_path / "out").read_bytes() == data


def test_bgwrite_without_fsync_never_fsyncs(tmp_path, queue: HddQueue, fsynced: Fsynced):
    with open(tmp_path / "out", "wb") as stream:
        tasks = [bgwrite(stream, b"x" * 1000, queue=queue) for _ in range(20)]
        for task in tasks:
            task.result(timeout=60)
    assert fsynced == []
    assert (tmp_path / "out").read_bytes() == b"x" * 20000


def test_a_file_opened_with_fsync_is_fsynced_once_whole_before_its_close(tmp_path, queue: HddQueue,
                                                                         fsynced: Fsynced):
    file = BackgroundHddFile(tmp_path / "out", "wb", fsync=True, queue=queue)
    fd = file.fileno()
    for _ in range(1000):
        file.write(b"y" * 100)
    file.close()
    assert file.wait(timeout=60)
    assert fsynced == [(fd, 100_000)]


def test_a_file_opened_without_fsync_is_never_fsynced(tmp_path, queue: HddQueue, fsynced: Fsynced):
    with BackgroundHddFile(tmp_path / "out", "w", queue=queue) as file:
        file.write("no fsync\n")
    assert file.wait(timeout=60)
    assert fsynced == []


def test_sync_fsyncs_what_was_written_before_it(tmp_path, queue: HddQueue, fsynced: Fsynced):
    with BackgroundHddFile(tmp_path / "out", "wb", queue=queue) as file:
        file.write(b"a" * 5000)
        file.sync().result(timeout=60)
        assert fsynced == [(file.fileno(), 5000)]
        file.write(b"b" * 10)
    assert file.wait(timeout=60)
    assert len(fsynced) == 1  # the close of a file opened without fsync adds none


def _seconds_to_write(path: str, data: bytes, io_prio: BackgroundIOPriority, queue: HddQueue) -> float:
    with open(path, "wb") as stream:
        started = time.perf_counter()
        assert bgwrite(stream, data, ioPrio=io_prio, queue=queue).result(timeout=120) == len(data)
        elapsed = time.perf_counter() - started
    assert os.path.getsize(path) == len(data)
    os.unlink(path)
    return elapsed


def test_a_throttled_write_takes_measurably_longer_than_an_unthrottled_one(tmp_path, queue: HddQueue):
    # The same chunks at 20 % of the unthrottled rate: about 5x the time.  A busy
    # machine only makes a run longer, so the fastest of several runs of each is
    # compared, interleaved, and 2x is asked: a throttle that did nothing fails.
    data = os.urandom(16 * 1024 * 1024)
    path = str(tmp_path / "out")
    full_speed = BackgroundIOPriority(0.01, 256 * 1024, 100)
    a_fifth = BackgroundIOPriority(0.01, 256 * 1024, 20)
    unthrottled, throttled = [], []
    for _ in range(3):
        unthrottled.append(_seconds_to_write(path, data, full_speed, queue))
        throttled.append(_seconds_to_write(path, data, a_fifth, queue))
    assert min(throttled) > 2 * min(unthrottled), (throttled, unthrottled)
