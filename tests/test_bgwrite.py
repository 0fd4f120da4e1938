"""bgwrite: python-nonblock's API, with the semantics it gets wrong made right."""

from __future__ import annotations

import array
import gc
import inspect
import io
import os
import sys
import threading
import tracemalloc
import weakref
from pathlib import Path
from typing import Any, List

import pytest
from _jobs import CallJob, hold_disk
from _streams import ShortWriteFile, SlowReader, held_pipe, nonblocking_pipe

import nonblock
from nonblock import (
    IO_PRIORITY_PROFILES,
    BackgroundIOPriority,
    BackgroundWriteProcess,
    HddQueue,
    PredecessorFailed,
    bgwrite,
    bgwrite_chunk,
    chunk_data,
)

MiB = 1 << 20


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every offset mod 251, so a lost or doubled byte shows."""
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    return (block * (size // 251 + 1))[:size]


# -- the API is python-nonblock's -----------------------------------------------------------


def test_the_old_import_path_still_works():
    from nonblock.BackgroundWrite import (  # noqa: F401
        BackgroundIOPriority,
        BackgroundWriteProcess,
        bgwrite,
        bgwrite_chunk,
        chunk_data,
    )

    assert bgwrite is nonblock.bgwrite


NO_DEFAULT = inspect.Parameter.empty
OLD_WRITE_PARAMETERS = [("closeWhenFinished", False), ("chainAfter", None), ("ioPrio", 4)]


@pytest.mark.parametrize("function, expected", [
    (bgwrite, [("fileObj", NO_DEFAULT), ("data", NO_DEFAULT)] + OLD_WRITE_PARAMETERS),
    (bgwrite_chunk, [("fileObj", NO_DEFAULT), ("data", NO_DEFAULT), ("chunkSize", NO_DEFAULT)]
     + OLD_WRITE_PARAMETERS),
    (BackgroundWriteProcess, [("fileObj", NO_DEFAULT), ("dataBlocks", NO_DEFAULT)] + OLD_WRITE_PARAMETERS),
    (chunk_data, [("data", NO_DEFAULT), ("chunkSize", NO_DEFAULT)]),
    (BackgroundIOPriority, [("chainPollTime", NO_DEFAULT), ("defaultChunkSize", NO_DEFAULT),
                            ("bandwidthPct", NO_DEFAULT), ("numChunksRateSmoothing", 5)]),
])
def test_positional_parameters_and_defaults_are_python_nonblocks(function, expected):
    """New options exist, but only as keywords, so old positional calls mean what they meant."""
    parameters = inspect.signature(function).parameters.values()
    positional = [(p.name, p.default) for p in parameters if p.kind is not p.KEYWORD_ONLY]
    assert positional == expected


def test_the_profile_table_is_python_nonblocks():
    expected = {
        1: (0.0009, 5242880, 100), 2: (0.0009, 4194304, 90), 3: (0.0015, 3145728, 78),
        4: (0.0015, 2097152, 72), 5: (0.0019, 1677721, 65), 6: (0.0019, 786432, 55),
        7: (0.0024, 723517, 45), 8: (0.0024, 524288, 35), 9: (0.0031, 314572, 30),
        10: (0.0100, 262144, 20),
    }
    got = {n: (p.chainPollTime, p.defaultChunkSize, p.bandwidthPct) for n, p in IO_PRIORITY_PROFILES.items()}
    assert got == expected
    assert all(p.numChunksRateSmoothing == 5 for p in IO_PRIORITY_PROFILES.values())


def test_a_priority_profile_reads_and_writes_as_items_and_attributes():
    prio = BackgroundIOPriority(0.01, 1024, 50)
    assert prio["defaultChunkSize"] == prio.defaultChunkSize == 1024
    prio["bandwidthPct"] = 80
    assert prio.bandwidthPct == 80
    with pytest.raises(ValueError, match="bandwidthPct.*0"):
        prio["bandwidthPct"] = 0
    assert prio.bandwidthPct == 80
    with pytest.raises(KeyError):
        prio["nope"]


def test_chunk_data_returns_the_documented_slices():
    assert chunk_data("123456789", 2) == ["12", "34", "56", "78", "9"]
    assert chunk_data(b"abcde", 5) == [b"abcde"]
    assert chunk_data(b"", 3) == []


# -- bad input fails at the call, naming the argument, with nothing queued --------------------


class Sink:
    """A write-only stream of unknown mode that records what it is given."""

    def __init__(self) -> None:
        self.received: List[Any] = []

    def write(self, data: Any) -> int:
        self.received.append(data)
        return len(data)


@pytest.mark.parametrize("kwargs, name, shown", [
    ({"ioPrio": 0}, "ioPrio", "0"), ({"ioPrio": 11}, "ioPrio", "11"),
    ({"ioPrio": True}, "ioPrio", "True"), ({"ioPrio": 4.0}, "ioPrio", "4.0"),
    ({"ioPrio": "4"}, "ioPrio", "'4'"), ({"ioPrio": None}, "ioPrio", "None"),
    ({"chainAfter": 0}, "chainAfter", "0"), ({"chainAfter": ""}, "chainAfter", "''"),
    ({"chainAfter": []}, "chainAfter", "[]"), ({"chainAfter": object()}, "chainAfter", "object"),
    ({"data": 123}, "data", "123"), ({"data": None}, "data", "None"),
    ({"data": [b"ok", 1]}, "data[1]", "1"), ({"data": [b"a", "b"]}, "data", "str and bytes"),
    ({"fileObj": object()}, "fileObj", "object"), ({"fileObj": None}, "fileObj", "None"),
    ({"on_success": "not callable"}, "on_success", "'not callable'"),
])
def test_bad_bgwrite_arguments_fail_at_the_call(kwargs, name, shown):
    queue = HddQueue(name="badinput")
    sink = Sink()
    arguments = {"fileObj": sink, "data": b"payload", **kwargs}
    with pytest.raises((TypeError, ValueError)) as raised:
        bgwrite(queue=queue, **arguments)
    message = str(raised.value)
    assert message.startswith(name) and shown in message
    assert sink.received == []
    assert queue.wait_idle(timeout=0)  # nothing was accepted


def test_python_nonblocks_value_errors_are_still_value_errors():
    with pytest.raises(ValueError):
        bgwrite(Sink(), b"x", ioPrio="fast")
    with pytest.raises(ValueError):
        bgwrite(Sink(), b"x", chainAfter="previous")


# 1.5 is taken as 1 (truncated, as python-nonblock does): see test_python_nonblock_compat.
@pytest.mark.parametrize("chunk_size", [0, -1, True, 0.5, "8"])
def test_a_bad_chunk_size_fails_at_the_call(chunk_size):
    sink = Sink()
    with pytest.raises((TypeError, ValueError), match="chunkSize"):
        bgwrite_chunk(sink, b"payload", chunk_size)
    with pytest.raises((TypeError, ValueError), match="chunkSize"):
        chunk_data(b"payload", chunk_size)
    assert sink.received == []


@pytest.mark.parametrize("field, value", [
    ("chainPollTime", -0.1), ("chainPollTime", float("nan")), ("chainPollTime", "0.1"),
    ("defaultChunkSize", 0), ("defaultChunkSize", 2.5), ("defaultChunkSize", True),
    ("bandwidthPct", 0), ("bandwidthPct", 100.5), ("bandwidthPct", -5), ("bandwidthPct", True),
    ("bandwidthPct", float("nan")),
    ("numChunksRateSmoothing", 0), ("numChunksRateSmoothing", None),
])
def test_a_bad_priority_field_fails_in_the_constructor_and_in_setitem(field, value):
    fields = {"chainPollTime": 0.001, "defaultChunkSize": 4096, "bandwidthPct": 50,
              "numChunksRateSmoothing": 5}
    with pytest.raises((TypeError, ValueError), match=field):
        BackgroundIOPriority(**{**fields, field: value})
    prio = BackgroundIOPriority(**fields)
    with pytest.raises((TypeError, ValueError), match=field):
        prio[field] = value
    assert prio[field] == fields[field]


def test_a_type_mismatch_with_a_known_mode_fails_at_the_call(tmp_path):
    with open(tmp_path / "b", "wb") as binary, open(tmp_path / "t", "w") as text:
        with pytest.raises(TypeError, match="str"):
            bgwrite(binary, "text into a binary file")
        with pytest.raises(TypeError, match="bytes"):
            bgwrite(text, b"bytes into a text file")
        with pytest.raises(TypeError, match="str"):
            bgwrite(binary, ["also", "text"])
    assert (tmp_path / "b").read_bytes() == b"" and (tmp_path / "t").read_text() == ""


def test_a_type_mismatch_with_an_unknown_mode_is_recorded_on_the_task():
    class BytesOnly:
        def __init__(self) -> None:
            self.buffer = io.BytesIO()

        def write(self, data: Any) -> int:
            return self.buffer.write(data)

    stream = BytesOnly()
    task = bgwrite(stream, "text")
    assert task.wait(30)
    assert isinstance(task.exception(), TypeError)
    assert task.finished


def test_writing_to_a_closed_stream_fails_at_the_call(tmp_path):
    stream = open(tmp_path / "closed", "wb")
    stream.close()
    with pytest.raises(ValueError, match="closed"):
        bgwrite(stream, b"late")


# -- 1. no thread per write -------------------------------------------------------------------


def test_ten_thousand_pending_writes_run_on_the_queues_three_threads(tmp_path):
    queue = HddQueue(name="manywrites")
    pipe, reader, gate = held_pipe()
    before = threading.active_count()
    blocker = bgwrite(pipe, pattern(4 * MiB), queue=queue)  # more than the pipe holds
    files = [open(tmp_path / f"f{i}", "wb") for i in range(100)]
    writes = [bgwrite(files[i % 100], pattern(4096, i), chainAfter=blocker, queue=queue)
              for i in range(10_000)]
    assert threading.active_count() - before == 3
    assert not any(w.finished for w in writes)
    gate.set()
    for w in writes:
        assert w.wait(60)
    pipe.close()
    reader.join(60)
    for f in files:
        f.close()
    assert reader.data() == pattern(4 * MiB)
    for i in range(100):
        expected = b"".join(pattern(4096, j) for j in range(i, 10_000, 100))
        assert (tmp_path / f"f{i}").read_bytes() == expected
    queue.shutdown()


# -- 2. no copy of the payload ------------------------------------------------------------------


def test_bgwrite_returns_without_copying_a_bytes_payload(tmp_path):
    payload = pattern(64 * MiB)
    with open(tmp_path / "big", "wb") as stream:
        tracemalloc.start()
        try:
            task = bgwrite(stream, payload)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 * MiB
        assert task.result(timeout=60) == 64 * MiB
    assert (tmp_path / "big").read_bytes() == payload


def test_a_mutable_payload_is_copied_so_later_changes_do_not_reach_the_disk(tmp_path):
    original = pattern(3 * MiB)
    changing = bytearray(original)
    array_payload = array.array("i", range(1000))
    with open(tmp_path / "f", "wb") as stream:
        first = bgwrite_chunk(stream, changing, 4096)
        second = bgwrite(stream, memoryview(changing))
        third = bgwrite(stream, array_payload)
        changing[:] = b"\0" * len(changing)
        array_payload[0] = -1
        for task in (first, second, third):
            task.result(timeout=60)
    assert (tmp_path / "f").read_bytes() == original + original + array.array("i", range(1000)).tobytes()


# -- 3. chainAfter is an event; failures propagate --------------------------------------------


def test_a_chain_does_not_poll_even_with_an_hour_of_chain_poll_time(tmp_path):
    lazy = BackgroundIOPriority(chainPollTime=3600, defaultChunkSize=1024, bandwidthPct=100)
    with open(tmp_path / "chain", "wb") as stream:
        previous = None
        for i in range(50):
            previous = bgwrite(stream, bytes([65 + i % 26]) * 3000, chainAfter=previous, ioPrio=lazy)
        previous.result(timeout=60)  # an hour-long poll would hit the test timeout
    assert (tmp_path / "chain").read_bytes() == b"".join(bytes([65 + i % 26]) * 3000 for i in range(50))


def test_a_failed_predecessor_fails_its_chain_which_writes_nothing_but_still_closes(tmp_path):
    full = open("/dev/full", "wb")
    head = bgwrite(full, b"x" * 100_000)
    other = open(tmp_path / "never", "wb")
    second = bgwrite(other, b"must not appear", closeWhenFinished=True, chainAfter=head)
    third = bgwrite(other, b"nor this", chainAfter=second)
    error = second.exception(timeout=30)
    assert isinstance(head.exception(), OSError) and head.exception().errno == 28
    assert isinstance(error, PredecessorFailed) and error.__cause__ is head.exception()
    assert isinstance(third.exception(timeout=30), PredecessorFailed)
    assert all(t.finished for t in (head, second, third))
    assert other.closed
    assert (tmp_path / "never").read_bytes() == b""
    full.close()


# -- 4. one stream: call order, no interleaving -----------------------------------------------


def test_writes_to_one_stream_land_in_call_order_chained_or_not(tmp_path):
    expected = []
    tasks = []
    with open(tmp_path / "ordered", "wb") as stream:
        for i in range(60):
            data = pattern(1000 + i * 997, seed=i)
            expected.append(data)
            if i % 3 == 0:
                tasks.append(bgwrite_chunk(stream, data, 1 + i, ioPrio=1 + i % 10))
            elif i % 3 == 1:
                tasks.append(bgwrite(stream, [data[:10], data[10:]], ioPrio=10, chainAfter=tasks[-1]))
            else:
                tasks.append(bgwrite(stream, data, ioPrio=BackgroundIOPriority(0, 333, 100)))
        for task in tasks:
            task.result(timeout=60)
    assert (tmp_path / "ordered").read_bytes() == b"".join(expected)


# -- 5. short writes and EAGAIN ----------------------------------------------------------------


def test_short_writes_deliver_every_byte_exactly_once(tmp_path):
    payload = pattern(200_000)
    stream = ShortWriteFile(str(tmp_path / "short"), limit=999)
    task = bgwrite(stream, payload, closeWhenFinished=True)
    assert task.result(timeout=60) == len(payload)
    assert stream.calls > 200
    assert (tmp_path / "short").read_bytes() == payload


@pytest.mark.parametrize("buffering", [0, 8192], ids=["raw", "buffered"])
def test_a_nonblocking_pipe_with_a_slow_reader_gets_every_byte_once(buffering):
    payload = pattern(8 * MiB + 17)
    read_fd, pipe = nonblocking_pipe(buffering)
    reader = SlowReader(read_fd, bite=7919)
    reader.start()
    task = bgwrite_chunk(pipe, payload, 1 * MiB)
    assert task.result(timeout=60) == len(payload)
    pipe.close()
    reader.join(60)
    assert reader.data() == payload


def test_a_stream_waiting_for_room_does_not_hold_up_other_writes(tmp_path):
    pipe, reader, gate = held_pipe()
    stuck = bgwrite(pipe, pattern(2 * MiB))
    with open(tmp_path / "free", "wb") as stream:
        assert bgwrite(stream, b"through").result(timeout=30) == 7
    assert not stuck.finished
    gate.set()
    stuck.result(timeout=60)
    pipe.close()
    reader.join(60)
    assert reader.data() == pattern(2 * MiB)


# -- 6. every error recorded; the queue goes on ------------------------------------------------


def test_a_full_disk_is_recorded_and_the_next_write_works(tmp_path):
    full = open("/dev/full", "wb")
    failed = bgwrite(full, b"x" * 10_000)
    error = failed.exception(timeout=30)
    assert isinstance(error, OSError) and error.errno == 28
    assert failed.finished and not failed.is_alive()
    with open(tmp_path / "after", "wb") as stream:
        assert bgwrite(stream, b"fine").result(timeout=30) == 4
    assert (tmp_path / "after").read_bytes() == b"fine"
    try:
        full.close()
    except OSError:
        pass  # its buffer still holds bytes /dev/full refuses


def test_a_pipe_whose_reader_has_gone_records_broken_pipe():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    stream = open(write_fd, "wb", buffering=0)
    task = bgwrite(stream, b"nobody listens", closeWhenFinished=True)
    assert isinstance(task.exception(timeout=30), BrokenPipeError)
    assert task.finished and stream.closed


def test_callbacks_report_success_and_failure(tmp_path):
    events: List[Any] = []
    done = threading.Event()
    with open(tmp_path / "cb", "wb") as stream:
        bgwrite(stream, b"12345", on_success=lambda n: events.append(("ok", n)),
                on_end=lambda t: done.set()).result(timeout=30)
    full = open("/dev/full", "wb", buffering=0)
    bad = bgwrite(full, b"x", on_fail=lambda e: events.append(("fail", type(e).__name__)),
                  closeWhenFinished=True)
    bad.exception(timeout=30)
    assert done.is_set()
    assert events == [("ok", 5), ("fail", "OSError")]


# -- 7. throttling ------------------------------------------------------------------------------


def test_a_throttled_write_completes_with_every_byte(tmp_path):
    gentle = BackgroundIOPriority(0.01, 64 * 1024, 20, numChunksRateSmoothing=3)
    payload = pattern(2 * MiB)
    with open(tmp_path / "slow", "wb") as stream:
        assert bgwrite(stream, payload, ioPrio=gentle).result(timeout=60) == len(payload)
    assert (tmp_path / "slow").read_bytes() == payload


# -- attributes --------------------------------------------------------------------------------


def test_progress_attributes_tell_the_story_of_a_write(tmp_path):
    pipe, reader, gate = held_pipe()
    blocker = bgwrite(pipe, pattern(1 * MiB))
    task = bgwrite_chunk(pipe, b"abcdefghij", 4)
    assert not task.startedWriting and task.is_alive() and not task.finished
    assert list(task.remainingData) == [b"abcd", b"efgh", b"ij"]
    assert (task.bytes_written, task.total_bytes) == (0, 10)
    gate.set()
    task.join(timeout=60)
    assert task.finished and task.startedWriting and not task.is_alive()
    assert list(task.remainingData) == []
    assert task.bytes_written == task.status == task.result() == 10
    assert blocker.finished
    pipe.close()
    reader.join(60)
    assert reader.data() == pattern(1 * MiB) + b"abcdefghij"


def test_a_directly_built_process_waits_for_start(tmp_path):
    with open(tmp_path / "later", "wb") as stream:
        process = BackgroundWriteProcess(stream, [b"one", b"two"])
        assert not process.is_alive()
        process.start()
        assert process.result(timeout=30) == 6
        with pytest.raises(RuntimeError):
            process.start()
    assert (tmp_path / "later").read_bytes() == b"onetwo"


def test_close_when_finished_can_be_set_until_the_process_starts(tmp_path):
    stream = open(tmp_path / "closed later", "wb")
    process = BackgroundWriteProcess(stream, b"bye")
    assert process.fileObj is stream and process.closeWhenFinished is False
    process.closeWhenFinished = True
    process.start()
    with pytest.raises(RuntimeError, match="closeWhenFinished"):
        process.closeWhenFinished = False
    assert process.result(timeout=30) == 3
    assert stream.closed and process.closeWhenFinished is True


def test_a_finished_write_is_freed_by_reference_counting_alone(tmp_path):
    # The process is also its own job; the queue's hold on it must end with the
    # write, or every process would wait for the garbage collector.
    queue = HddQueue(name="freeing")
    with open(tmp_path / "freed", "wb") as stream:
        writes = [bgwrite(stream, b"x" * 100, queue=queue) for _ in range(21)]
        for write in writes:
            write.join(timeout=30)
        queue.shutdown(wait=True)  # its threads are gone, and whatever they held with them
    gone = [weakref.ref(write) for write in writes[:-1]]  # the queue remembers its last submission
    gc.disable()
    try:
        del writes, write
        assert [ref() for ref in gone] == [None] * 20
    finally:
        gc.enable()


def test_a_finished_write_lets_go_of_its_payload_and_of_the_writes_it_carried(tmp_path):
    queue = HddQueue(name="letgo")
    payloads = [os.urandom(1000) for _ in range(30)]
    held_before = [sys.getrefcount(data) for data in payloads]
    with open(tmp_path / "letgo", "wb") as stream:
        gate = hold_disk(queue)  # the writes wait meanwhile
        writes = [bgwrite(stream, data, queue=queue) for data in payloads]
        carried = [weakref.ref(write) for write in writes[1:]]
        gate.set()
        for write in writes:
            write.join(timeout=30)
        queue.shutdown(wait=True)
        # Every process is still held here, yet none holds its payload any more.
        assert [sys.getrefcount(data) for data in payloads] == held_before
        first = writes[0]
        del writes, write
        # The first write carried the others: finished, it keeps none of them alive.
        assert [ref() for ref in carried[:-1]] == [None] * 28  # the queue remembers the last
        assert first.result() == 1000
    assert (tmp_path / "letgo").read_bytes() == b"".join(payloads)


def test_a_failed_write_is_freed_by_reference_counting_alone():
    queue = HddQueue(name="failfree")
    full = open("/dev/full", "wb", buffering=0)
    try:
        write = bgwrite(full, b"x" * 10000, queue=queue)
        assert isinstance(write.exception(timeout=30), OSError)
        queue.submit_job(CallJob(lambda: None)).result(timeout=30)  # the queue has moved on
        queue.shutdown(wait=True)
        gone = weakref.ref(write)
        gc.disable()
        try:
            del write  # its error's traceback must not keep it (or its job) alive
            assert gone() is None
        finally:
            gc.enable()
    finally:
        full.close()


def test_completing_a_queued_write_by_hand_does_not_stop_the_queue(tmp_path):
    # Future's set_result() on a write that has not started is a misuse, but it
    # must not take an IO thread down with it: the writes behind it still run.
    queue = HddQueue(name="byhand")
    with open(tmp_path / "byhand", "wb") as stream:
        gate = hold_disk(queue)  # the writes wait meanwhile
        early = bgwrite(stream, b"never", queue=queue)
        early.set_result(0)
        gate.set()
        later = bgwrite(stream, b"later", queue=queue)
        assert later.result(timeout=30) == 5
        assert early.result() == 0
        queue.shutdown(wait=True)
    assert (tmp_path / "byhand").read_bytes() == b"later"


def test_text_is_chunked_by_characters_and_encoded_by_the_stream(tmp_path):
    text = "añb€c😀" * 1000
    with open(tmp_path / "text", "w", encoding="utf-8") as stream:
        assert bgwrite_chunk(stream, text, 7).result(timeout=30) == len(text)
    assert (tmp_path / "text").read_text(encoding="utf-8") == text


def test_close_when_finished_and_fsync(tmp_path):
    stream = open(tmp_path / "synced", "wb")
    assert bgwrite(stream, b"durable", closeWhenFinished=True, fsync=True).result(timeout=30) == 7
    assert stream.closed
    assert (tmp_path / "synced").read_bytes() == b"durable"


def test_an_empty_payload_finishes_with_nothing_written(tmp_path):
    with open(tmp_path / "empty", "wb") as stream:
        assert bgwrite(stream, b"").result(timeout=30) == 0
        assert bgwrite(stream, []).result(timeout=30) == 0
    assert Path(tmp_path / "empty").read_bytes() == b""
