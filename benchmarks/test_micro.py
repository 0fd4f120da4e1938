"""Micro benchmarks of nonblock's call paths (pytest-benchmark).

    pytest benchmarks/ --benchmark-enable     # measure
    pytest benchmarks/                        # setup.cfg adds --benchmark-disable: run once, as tests

Each benchmark also checks its outcome, so a disabled run is still a real test.
The side-by-side comparison with python-nonblock is compare.py, not this file.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

from nonblock import BackgroundIOPriority, bgwrite, bgwrite_chunk, default_queue

PAGE = bytes(range(256)) * 16  # 4 KiB


@pytest.fixture
def stream(tmp_path: Any) -> Iterator[Any]:
    with open(tmp_path / "out.bin", "wb") as handle:
        yield handle


def _counting(action: Callable[[], Any]) -> tuple[Callable[[], Any], List[int]]:
    """*action* wrapped to count its calls, so the bytes on disk can be checked."""
    calls = [0]

    def counted() -> Any:
        calls[0] += 1
        return action()

    return counted, calls


def _written(stream: Any) -> bytes:
    assert default_queue().wait_idle(timeout=60)
    stream.flush()
    with open(stream.name, "rb") as handle:
        return handle.read()


def test_bgwrite_call(benchmark: Any, stream: Any) -> None:
    """The cost of bgwrite() itself: 4 KiB bytes to a file, not waiting for the write."""
    call, calls = _counting(lambda: bgwrite(stream, PAGE))
    process = benchmark(call)
    assert process.wait(timeout=60)
    assert process.result() == len(PAGE)
    assert _written(stream) == PAGE * calls[0]


def test_bgwrite_chunk_call(benchmark: Any, stream: Any) -> None:
    """The cost of bgwrite_chunk(): 64 KiB cut into 4 KiB chunks, not waiting for the write."""
    data = PAGE * 16
    call, calls = _counting(lambda: bgwrite_chunk(stream, data, 4096))
    process = benchmark(call)
    assert process.wait(timeout=60)
    assert process.result() == len(data)
    assert _written(stream) == data * calls[0]


def test_priority_construction(benchmark: Any) -> None:
    """Building (and validating) a BackgroundIOPriority."""
    profile = benchmark(BackgroundIOPriority, 0.002, 65536, 50, 3)
    assert (profile.chainPollTime, profile.defaultChunkSize) == (0.002, 65536)
    assert (profile.bandwidthPct, profile.numChunksRateSmoothing) == (50, 3)
    with pytest.raises(ValueError):
        BackgroundIOPriority(0.002, 65536, 0)


def test_write_wait_round_trip(benchmark: Any, stream: Any) -> None:
    """bgwrite() of 4 KiB and wait() until it is on its way to disk: the full round trip."""

    def round_trip() -> int:
        process = bgwrite(stream, PAGE)
        assert process.wait(timeout=60)
        return int(process.result())

    call, calls = _counting(round_trip)
    assert benchmark(call) == len(PAGE)
    assert _written(stream) == PAGE * calls[0]


def test_chained_round_trip(benchmark: Any, stream: Any) -> None:
    """Ten 4 KiB writes chained with chainAfter, then wait for the last one."""

    def chain() -> int:
        previous = None
        for index in range(10):
            previous = bgwrite(stream, bytes([index]) * 4096, chainAfter=previous)
        assert previous is not None and previous.wait(timeout=60)
        return int(previous.result())

    call, calls = _counting(chain)
    assert benchmark(call) == 4096
    expected = b"".join(bytes([index]) * 4096 for index in range(10))
    assert _written(stream) == expected * calls[0]
