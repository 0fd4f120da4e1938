"""Small writes queued on one stream ride together in one op: one write() call, one flush.

Each test holds the queue's disk with a gate (a job that waits for an event),
queues writes meanwhile, then opens the gate: whatever the timing, the writes
are all waiting when the stream's writer gets its turn.
"""

from __future__ import annotations

import fcntl
import io
import os
import threading
import time
from typing import Any, List, Tuple

from _jobs import hold_disk
from _streams import ShortWriteFile

from nonblock import BackgroundIOPriority, bgwrite, bgwrite_chunk

# One chunk of 64 KiB per op, no throttling.
SMALL_CHUNKS = BackgroundIOPriority(0, 65536, 100)


def pattern(size: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


class FirstWriteHeld(io.FileIO):
    """A real file whose first write() waits for ``release`` (and sets ``in_write`` first)."""

    def __init__(self, path: str, mode: str) -> None:
        super().__init__(path, mode)
        self.in_write = threading.Event()
        self.release = threading.Event()

    def write(self, data: Any) -> int:
        if not self.in_write.is_set():
            self.in_write.set()
            assert self.release.wait(60)
        return super().write(data)


def counting_file(tmp_path: Any, name: str) -> Tuple[Any, ShortWriteFile]:
    raw = ShortWriteFile(str(tmp_path / name), limit=1 << 30)  # takes everything, counts calls
    return tmp_path / name, raw


def test_small_writes_waiting_on_one_stream_go_down_in_one_write_call(queue, tmp_path):
    path, stream = counting_file(tmp_path, "batched")
    gate = hold_disk(queue)
    payloads = [pattern(100 + 37 * i, seed=i) for i in range(50)]
    writes = [bgwrite(stream, data, ioPrio=SMALL_CHUNKS, queue=queue) for data in payloads]
    gate.set()
    assert [write.result(timeout=60) for write in writes] == [len(data) for data in payloads]
    assert [write.bytes_written for write in writes] == [len(data) for data in payloads]
    assert [write.status for write in writes] == [len(data) for data in payloads]
    assert stream.calls == 1
    stream.close()
    assert path.read_bytes() == b"".join(payloads)


def test_a_batch_never_grows_past_one_chunk(queue, tmp_path):
    path, stream = counting_file(tmp_path, "chunked")
    gate = hold_disk(queue)
    payloads = [pattern(3000, seed=i) for i in range(50)]  # 21 of them fill a 64 KiB chunk
    writes = [bgwrite(stream, data, ioPrio=SMALL_CHUNKS, queue=queue) for data in payloads]
    gate.set()
    for write in writes:
        write.result(timeout=60)
    assert stream.calls == 3
    stream.close()
    assert path.read_bytes() == b"".join(payloads)


def test_a_batch_joins_at_most_256_writes_so_other_work_waits_little(queue, tmp_path):
    # The op that writes a batch completes each of its writes: bounded, so that
    # work queued behind it (an open, a read) waits a fraction of a millisecond.
    path, stream = counting_file(tmp_path, "bounded")
    gate = hold_disk(queue)
    writes = [bgwrite(stream, b"%03d" % (i % 1000), queue=queue) for i in range(600)]
    gate.set()
    assert [write.result(timeout=60) for write in writes] == [3] * 600
    assert stream.calls == 3  # 256 + 256 + 88
    stream.close()
    assert path.read_bytes() == b"".join(b"%03d" % i for i in range(600))


def test_a_failed_batch_fails_every_write_it_carried(queue):
    full = open("/dev/full", "wb")
    gate = hold_disk(queue)
    writes = [bgwrite(full, b"x" * 100, queue=queue) for _ in range(20)]
    gate.set()
    errors = [write.exception(timeout=60) for write in writes]
    assert all(isinstance(error, OSError) and error.errno == 28 for error in errors)
    assert all(write.finished for write in writes)
    # The buffered stream took every byte; its flush is what failed.
    assert [write.bytes_written for write in writes] == [100] * 20
    try:
        full.close()
    except OSError:
        pass  # its buffer still holds bytes /dev/full refuses


def test_a_cancelled_write_is_left_out_of_the_batch(queue, tmp_path):
    path, stream = counting_file(tmp_path, "cancelled")
    gate = hold_disk(queue)
    first, second, third = (bgwrite(stream, data, queue=queue) for data in (b"one ", b"two ", b"three"))
    assert second.cancel()
    gate.set()
    assert first.result(timeout=60) == 4 and third.result(timeout=60) == 5
    assert second.cancelled()
    stream.close()
    assert path.read_bytes() == b"one three"


def test_a_carried_write_runs_its_callbacks_and_releases_its_chain(queue, tmp_path):
    path, stream = counting_file(tmp_path, "carried")
    gate = hold_disk(queue)
    seen: List[Any] = []
    bgwrite(stream, b"head ", queue=queue)
    carried = bgwrite(stream, b"carried", queue=queue, on_success=seen.append,
                      on_end=lambda task: seen.append(task.execution_state))
    with open(tmp_path / "chained", "wb") as other:
        chained = bgwrite(other, b"after", chainAfter=carried, queue=queue)
        gate.set()
        assert chained.result(timeout=60) == 5
    assert carried.result(timeout=60) == 7
    assert seen == [7, "FINISHING"]
    assert stream.calls == 1
    stream.close()
    assert path.read_bytes() == b"head carried"
    assert (tmp_path / "chained").read_bytes() == b"after"


def test_text_writes_ride_together_and_count_characters(queue, tmp_path):
    with open(tmp_path / "text", "w", encoding="utf-8") as stream:
        gate = hold_disk(queue)
        lines = [f"línea {i} ✓\n" for i in range(30)]
        writes = [bgwrite(stream, line, queue=queue) for line in lines]
        gate.set()
        assert [write.result(timeout=60) for write in writes] == [len(line) for line in lines]
    assert (tmp_path / "text").read_text(encoding="utf-8") == "".join(lines)


def test_writes_that_close_fsync_or_keep_their_own_chunks_are_not_carried(queue, tmp_path):
    path, stream = counting_file(tmp_path, "apart")
    gate = hold_disk(queue)
    writes = [
        bgwrite(stream, b"a", queue=queue),
        bgwrite(stream, b"b", queue=queue),  # rides with a
        bgwrite(stream, [b"c", b"d"], queue=queue),  # a list keeps its own chunks: c, d
        bgwrite(stream, b"e", queue=queue, fsync=True),
        bgwrite_chunk(stream, b"fgh", 1, queue=queue),  # one byte a chunk: f, g, h
        bgwrite(stream, b"i", queue=queue, closeWhenFinished=True),
    ]
    gate.set()
    assert [write.result(timeout=60) for write in writes] == [1, 1, 2, 1, 3, 1]
    assert stream.closed
    assert path.read_bytes() == b"abcdefghi"
    assert stream.calls == 8  # ab, c, d, e, f, g, h, i


def test_a_write_queued_while_the_batch_is_written_goes_in_the_next_op(queue, tmp_path):
    # A stream whose first write() waits: writes queued meanwhile cannot join the
    # chunk already being written, and still land after it.
    path = tmp_path / "later"
    stream = FirstWriteHeld(str(path), "w")
    first = bgwrite(stream, b"first ", queue=queue)
    assert stream.in_write.wait(60)
    later = bgwrite(stream, b"later", queue=queue)
    stream.release.set()
    assert first.result(timeout=60) == 6 and later.result(timeout=60) == 5
    stream.close()
    assert path.read_bytes() == b"first later"


def test_a_carried_write_has_started_and_cannot_be_cancelled(queue, tmp_path):
    path = tmp_path / "started"
    stream = FirstWriteHeld(str(path), "w")
    gate = hold_disk(queue)
    carrier = bgwrite(stream, b"carrier ", queue=queue)
    carried = bgwrite(stream, b"carried", queue=queue)
    gate.set()
    assert stream.in_write.wait(60)  # both are in the chunk being written now
    assert carried.running() and carried.startedWriting and carried.execution_state == "RUNNING"
    assert not carried.cancel()
    stream.release.set()
    assert carrier.result(timeout=60) == 8 and carried.result(timeout=60) == 7
    assert carried.execution_state == "CLOSED"
    stream.close()
    assert path.read_bytes() == b"carrier carried"


class BothKinds:
    """A stream of no io class and no mode, taking str and bytes alike (as some wrappers do)."""

    def __init__(self) -> None:
        self.parts: List[Any] = []

    def write(self, data: Any) -> int:
        self.parts.append(data if isinstance(data, str) else bytes(data))
        return len(data)


def test_text_and_bytes_to_a_stream_that_takes_both_are_never_joined(queue):
    stream = BothKinds()
    gate = hold_disk(queue)
    # The first write is empty, so its own data says nothing of the batch's kind.
    texts = 200
    writes = [bgwrite(stream, b"", queue=queue)]
    writes += [bgwrite(stream, "x", queue=queue) for _ in range(texts)]
    writes.append(bgwrite(stream, b"y", queue=queue))
    gate.set()
    assert [write.result(timeout=60) for write in writes] == [0] + [1] * texts + [1]
    assert stream.parts == ["x" * texts, b"y"]


def test_a_batch_waiting_for_a_pipe_reports_each_writes_own_progress(queue):
    read_fd, write_fd = os.pipe()
    capacity = fcntl.fcntl(write_fd, getattr(fcntl, "F_GETPIPE_SZ", 1032))  # Python < 3.10 lacks the name
    os.set_blocking(write_fd, False)
    stream = open(write_fd, "wb", buffering=0)
    first_data, second_data = pattern(6000, seed=1), pattern(6000, seed=2)
    try:
        # One page of room: the batch (larger than PIPE_BUF, so not atomic) stops inside the first write.
        os.write(write_fd, b"." * (capacity - 4096))
        gate = hold_disk(queue)
        first = bgwrite(stream, first_data, queue=queue)
        second = bgwrite(stream, second_data, queue=queue)
        gate.set()
        deadline = time.monotonic() + 60
        while first.bytes_written == 0:  # the op takes what fits, then waits for room
            assert time.monotonic() < deadline, "the batch never started"
            first.wait(0.01)
        taken = first.bytes_written
        assert 0 < taken < len(first_data)
        assert b"".join(first.remainingData) == first_data[taken:]
        assert b"".join(second.remainingData) == second_data
        assert second.bytes_written == 0 and second.running() and not second.done()
        received = b""
        while len(received) < capacity - 4096 + 12000:
            received += os.read(read_fd, 1 << 16)
        assert first.result(timeout=60) == 6000 and second.result(timeout=60) == 6000
        assert received[capacity - 4096:] == first_data + second_data
        assert list(first.remainingData) == [] and second.bytes_written == second.status == 6000
    finally:
        stream.close()
        os.close(read_fd)


class FlushAnnounced(io.BufferedWriter):
    """A real buffered writer that sets ``flush_called`` each time flush() starts."""

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        self.flush_called = threading.Event()

    def flush(self) -> None:
        self.flush_called.set()
        super().flush()


def test_writes_a_buffered_stream_took_whole_show_it_while_its_flush_waits_for_room(queue):
    # The buffer takes the whole batch at once; flushing it then meets a full
    # pipe (EAGAIN), and the op waits for room.  The stream has every byte.
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    filler = 0
    try:
        while True:
            filler += os.write(write_fd, b"." * 4096)
    except BlockingIOError:
        pass
    stream = FlushAnnounced(io.FileIO(write_fd, "wb"))
    payloads = [bytes([65 + index]) * 100 for index in range(3)]
    try:
        gate = hold_disk(queue)
        writes = [bgwrite(stream, data, queue=queue) for data in payloads]
        gate.set()
        assert stream.flush_called.wait(60)
        assert [write.bytes_written for write in writes] == [100, 100, 100]
        assert [write.status for write in writes] == [100, 100, 100]
        assert [list(write.remainingData) for write in writes] == [[], [], []]
        assert not any(write.done() for write in writes)  # the flush is still to happen
        received = b""
        while len(received) < filler + 300:  # the reader makes room; the flush goes on
            received += os.read(read_fd, 1 << 16)
        assert [write.result(timeout=60) for write in writes] == [100, 100, 100]
        assert received == b"." * filler + b"".join(payloads)
    finally:
        try:
            stream.close()
        except OSError:
            pass
        os.close(read_fd)


def test_empty_writes_carried_behind_a_write_report_nothing_written(queue, tmp_path):
    path, stream = counting_file(tmp_path, "empties")
    gate = hold_disk(queue)
    writes = [bgwrite(stream, data, queue=queue) for data in (b"abc", b"", b"")]
    gate.set()
    assert [write.result(timeout=60) for write in writes] == [3, 0, 0]
    assert [write.status for write in writes] == [3, 0, 0]
    assert [write.bytes_written for write in writes] == [3, 0, 0]
    stream.close()
    assert path.read_bytes() == b"abc"
