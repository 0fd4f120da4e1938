"""Programs written for python-nonblock 4.0.1 run unchanged: its demo, its chunk sizes, its profile names."""

from __future__ import annotations

import decimal
import fractions
import io
import numbers
import os
import subprocess
import sys
import textwrap
from typing import List

import pytest

import nonblock
from nonblock import BackgroundIOPriority, bgwrite, bgwrite_chunk, chunk_data


class RecordingStream(io.RawIOBase):
    """A binary stream that keeps each write() it was given, as python-nonblock's chunks."""

    def __init__(self) -> None:
        self.writes: List[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def,override]
        self.writes.append(bytes(data))
        return len(data)


class ChunkCount(numbers.Integral):
    """Stands for numpy's integers: not an int, but registered as numbers.Integral as theirs are."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value

    __index__ = __int__

    def __lt__(self, other: object) -> bool:
        return self.value < int(other)  # type: ignore[call-overload]

    def __le__(self, other: object) -> bool:
        return self.value <= int(other)  # type: ignore[call-overload]

    def __eq__(self, other: object) -> bool:
        return self.value == other

    __hash__ = object.__hash__


# ChunkCount implements only what the checks use; the rest of the ABC is not needed here.
ChunkCount.__abstractmethods__ = frozenset()  # type: ignore[misc]


def test_python_nonblocks_demo_chain_runs_unchanged(tmp_path):
    # testWrite.py: two files, each a chain of bgwrite and bgwrite_chunk with a
    # float chunk size (len(data) / 4), the last link closing the file; the main
    # thread computes until both chains are finished.
    data = os.urandom(1_000_003)
    first, second = open(tmp_path / "out1", "wb"), open(tmp_path / "out2", "wb")
    for io_prio in (1, 4, 10):
        first.seek(0), first.truncate(), second.seek(0), second.truncate()  # type: ignore[func-returns-value]
        obj1 = bgwrite(first, data, ioPrio=io_prio)
        obj2 = bgwrite(first, data, chainAfter=obj1, ioPrio=io_prio)
        obj3 = bgwrite_chunk(first, data, len(data) / 4, chainAfter=obj2, ioPrio=io_prio)
        last1 = bgwrite(first, data, chainAfter=obj3, closeWhenFinished=io_prio == 10, ioPrio=io_prio)
        objy1 = bgwrite_chunk(second, data, len(data) / 4, ioPrio=io_prio)
        objy2 = bgwrite(second, data, chainAfter=objy1, ioPrio=io_prio)
        last2 = bgwrite(second, data, chainAfter=objy2, closeWhenFinished=io_prio == 10, ioPrio=io_prio)
        answers = [22]
        while last1.finished is False or last2.finished is False:
            answers.append(13 * 37 * len(answers))
            last1.wait(0.001)
        assert len(obj3.remainingData) == 0 and obj3.bytes_written == len(data)
    assert first.closed and second.closed
    assert (tmp_path / "out1").read_bytes() == data * 4
    assert (tmp_path / "out2").read_bytes() == data * 3


@pytest.mark.parametrize("chunk_size, expected", [
    (4.0, 4), (4.9, 4), (1.0, 1), (fractions.Fraction(9, 2), 4), (decimal.Decimal("3.7"), 3),
    (ChunkCount(5), 5), (10 / 4, 2),
])
def test_any_real_chunk_size_is_truncated_as_python_nonblock_does(queue, chunk_size, expected):
    digits = b"0123456789"
    assert chunk_data(digits, chunk_size) == [digits[i:i + expected] for i in range(0, 10, expected)]
    stream = RecordingStream()
    task = bgwrite_chunk(stream, b"0123456789", chunk_size, queue=queue)
    assert task.result(timeout=30) == 10
    assert stream.writes == chunk_data(b"0123456789", expected)


@pytest.mark.parametrize("chunk_size, error", [
    (True, TypeError), (False, TypeError), ("4", TypeError), (None, TypeError), (b"4", TypeError),
    (float("nan"), ValueError), (float("inf"), ValueError), (-float("inf"), ValueError),
    (0.5, ValueError), (0, ValueError), (-3, ValueError), (decimal.Decimal("NaN"), ValueError),
])
def test_what_int_would_take_but_is_no_size_is_refused_naming_chunk_size(queue, chunk_size, error):
    stream = RecordingStream()
    with pytest.raises(error, match="chunkSize") as refused:
        bgwrite_chunk(stream, b"data", chunk_size, queue=queue)
    assert repr(chunk_size) in str(refused.value)
    with pytest.raises(error, match="chunkSize"):
        chunk_data(b"data", chunk_size)
    assert queue.wait_idle(0) and stream.writes == []  # nothing was queued


def test_bg_io_prios_is_the_table_integer_priorities_come_from():
    from nonblock.BackgroundWrite import BG_IO_PRIOS
    from nonblock.bgwrite import BG_IO_PRIOS as same_table

    assert BG_IO_PRIOS is same_table is nonblock.BG_IO_PRIOS
    assert sorted(BG_IO_PRIOS) == list(range(1, 11))
    assert BG_IO_PRIOS[4] == BackgroundIOPriority(0.0015, 2097152, 72)


def test_changing_a_profile_in_bg_io_prios_changes_later_writes(queue):
    from nonblock.BackgroundWrite import BG_IO_PRIOS

    profile = BG_IO_PRIOS[4]
    saved = profile.defaultChunkSize
    try:
        profile.defaultChunkSize = 3
        stream = RecordingStream()
        bgwrite(stream, b"abcdefgh", queue=queue).result(timeout=30)
        assert stream.writes == [b"abc", b"def", b"gh"]
        with pytest.raises(ValueError, match="defaultChunkSize"):
            profile.defaultChunkSize = 0  # validated, as any field set is
        assert profile.defaultChunkSize == 3
    finally:
        profile.defaultChunkSize = saved


def test_replacing_a_profile_in_bg_io_prios_takes_effect_and_is_checked(queue):
    from nonblock.BackgroundWrite import BG_IO_PRIOS

    saved = BG_IO_PRIOS[7]
    try:
        BG_IO_PRIOS[7] = BackgroundIOPriority(0.001, 2, 100)
        stream = RecordingStream()
        task = bgwrite(stream, b"abcde", ioPrio=7, queue=queue)
        task.result(timeout=30)
        assert stream.writes == [b"ab", b"cd", b"e"]
        assert task.backgroundIOPriority is BG_IO_PRIOS[7]
        with pytest.raises(TypeError, match="BackgroundIOPriority"):
            BG_IO_PRIOS[7] = "fast"  # type: ignore[assignment]
    finally:
        BG_IO_PRIOS[7] = saved


def test_background_io_priority_is_the_resolved_profile(queue):
    from nonblock.BackgroundWrite import BG_IO_PRIOS

    task = bgwrite(RecordingStream(), b"x", ioPrio=9, queue=queue)
    assert task.backgroundIOPriority is BG_IO_PRIOS[9]
    custom = BackgroundIOPriority(0.01, 1024, 50)
    task2 = bgwrite(RecordingStream(), b"x", ioPrio=custom, queue=queue)
    assert task2.backgroundIOPriority is custom
    task.result(timeout=30), task2.result(timeout=30)  # type: ignore[func-returns-value]


def test_python_nonblocks_bgread_example_on_stdin():
    # The README's example: start reading stdin, do other work, then look at .data.
    script = textwrap.dedent("""
        import sys
        from nonblock import bgread
        inputData = bgread(sys.stdin)
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        inputData.wait(30)                 # stands for processThings()
        typedData = inputData.data
        print(repr(typedData), inputData.isFinished, inputData.error)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == "ready\n"
    out, err = child.communicate("typed while busy\n", timeout=60)
    assert err == ""
    assert out == "'typed while busy\\n' True None\n"
