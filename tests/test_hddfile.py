"""BackgroundHddFile: open()'s interface, writes that never wait, reads that see them.

The reference is always the builtin open(): the same calls on a file opened
by each must leave the same bytes and return the same values.  Where a test
needs the disk to be slow or stalled, it writes into a FIFO whose reader the
test controls (see _fifos.py).
"""

from __future__ import annotations

import array
import errno
import io
import os
import threading
import tracemalloc
from typing import Any, List

import pytest

from nonblock import (
    BackgroundBinaryFile,
    BackgroundHddFile,
    BackgroundTextFile,
    HddQueue,
    Task,
)
from tests._fifos import FifoReader, nonblocking_opener

MIB = 1 << 20


class CountingQueue(HddQueue):
    """A real HddQueue that also counts the jobs submitted or scheduled on it."""

    def __init__(self) -> None:
        super().__init__(name="counting")
        self.jobs: List[str] = []

    def submit_job(self, job: Any, task: Any = None, **kwargs: Any) -> Task[Any]:
        self.jobs.append(type(job).__name__)
        return super().submit_job(job, task, **kwargs)

    def schedule(self, job: Any) -> None:
        self.jobs.append(type(job).__name__)
        super().schedule(job)


@pytest.fixture
def private_queue():
    queue = CountingQueue()
    yield queue
    queue.shutdown()


# -- what the object is ---------------------------------------------------------------


def test_text_modes_give_a_text_file_and_binary_modes_a_binary_file(tmp_path):
    text = BackgroundHddFile(tmp_path / "t", "w")
    binary = BackgroundHddFile(tmp_path / "b", "wb")
    try:
        assert isinstance(text, BackgroundTextFile) and isinstance(text, io.TextIOBase)
        assert isinstance(binary, BackgroundBinaryFile) and isinstance(binary, io.BufferedIOBase)
        assert isinstance(text, BackgroundHddFile) and isinstance(binary, BackgroundHddFile)
        assert isinstance(text, io.IOBase) and isinstance(binary, io.IOBase)
        assert text.mode == "w" and binary.mode == "wb"
        assert text.name == str(tmp_path / "t")
        assert text.encoding == open(os.devnull, "w").encoding
        assert text.writable() and not text.readable() and text.seekable()
        assert text.fileno() != binary.fileno()
    finally:
        text.close()
        binary.close()
    assert text.closed and binary.closed
    with pytest.raises(ValueError, match="closed file"):
        text.fileno()


@pytest.mark.parametrize("mode", ["r", "rb", "r+", "r+b", "w", "wb", "w+", "w+b", "a", "ab", "a+",
                                  "a+b", "x", "xb", "x+", "x+b", "rt", "wt", "at+"])
def test_every_mode_leaves_the_bytes_and_returns_the_values_that_open_does(tmp_path, mode):
    binary = "b" in mode
    payload: Any = "first line\nsecond, \u00e9t\u00e9\n" if not binary else b"first line\nsecond\n"
    seen = {}
    for label, factory in (("open", open), ("background", BackgroundHddFile)):
        path = tmp_path / label
        if "x" not in mode:
            path.write_bytes(b"existing content\nmore\n")
        kwargs = {} if binary else {"encoding": "utf-8"}
        results: List[Any] = []
        with factory(path, mode, **kwargs) as file:
            if file.writable():
                results.append(file.write(payload))
                results.append(file.write(payload[:5]))
            if file.seekable():
                results.append(file.seek(0))
            if file.readable():
                results.append(file.read())
                results.append(file.tell())
            else:
                with pytest.raises(io.UnsupportedOperation):
                    file.read()
            if not file.writable():
                with pytest.raises(io.UnsupportedOperation):
                    file.write(payload)
        if isinstance(file, BackgroundHddFile):
            assert file.wait(60)
        seen[label] = (results, path.read_bytes())
    assert seen["background"] == seen["open"]


@pytest.mark.parametrize(
    "encoding, errors, newline",
    [("utf-16", None, None), ("latin-1", "replace", "\r\n"), ("ascii", "backslashreplace", ""),
     ("utf-8-sig", None, "\r"), ("cp1252", "xmlcharrefreplace", "\n")],
)
def test_text_mode_honours_encoding_errors_and_newline_as_open_does(tmp_path, encoding, errors, newline):
    lines = ["plain\n", "caf\u00e9 \u20ac\n", "\u4e2d\u6587 and \r\n mixed\r", "", "end"]
    contents = {}
    for label, factory in (("open", open), ("background", BackgroundHddFile)):
        path = tmp_path / label
        file = factory(path, "w", encoding=encoding, errors=errors, newline=newline)
        counts = [file.write(line) for line in lines]
        file.writelines(lines)
        file.close()
        if isinstance(file, BackgroundHddFile):
            assert file.wait(60)
        with factory(path, "r", encoding=encoding, errors=errors, newline=newline) as reader:
            read_back = reader.read()
        contents[label] = (counts, path.read_bytes(), read_back)
    assert contents["background"] == contents["open"]


def test_open_errors_are_raised_by_the_constructor_as_open_raises_them(tmp_path):
    (tmp_path / "exists").write_text("x")
    cases = [
        (tmp_path / "missing" / "file", "w", FileNotFoundError),
        (tmp_path, "w", IsADirectoryError),
        (tmp_path / "exists", "x", FileExistsError),
        (tmp_path / "absent", "r", FileNotFoundError),
    ]
    for path, mode, error_type in cases:
        with pytest.raises(error_type) as builtin:
            open(path, mode)
        with pytest.raises(error_type) as ours:
            BackgroundHddFile(path, mode)
        assert ours.value.errno == builtin.value.errno
        assert ours.value.filename == builtin.value.filename


def _open_as_nobody(path: str) -> str:
    """In a forked child without root's rights, try both; report the two error types."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        outcome = "child failed"
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            names = []
            for factory in (open, BackgroundHddFile):
                try:
                    factory(path, "w").close()
                    names.append("opened")
                except OSError as error:
                    names.append(type(error).__name__)
            outcome = ",".join(names)
        finally:
            os.write(write_fd, outcome.encode())
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    answer = os.read(read_fd, 1000).decode()
    os.close(read_fd)
    return answer


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_permission_error_is_raised_by_the_constructor(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        assert _open_as_nobody(str(locked / "file")) == "PermissionError,PermissionError"
    finally:
        os.chmod(locked, 0o700)


@pytest.mark.parametrize(
    "args, kwargs",
    [(("wz",), {}), (("wb",), {"encoding": "utf-8"}), (("w",), {"buffering": 0}),
     (("w",), {"newline": "x"}), (("w",), {"buffering": "big"}), ((42,), {}), (("rw",), {}),
     (("w",), {"errors": 3})],
)
def test_bad_open_arguments_raise_what_open_raises(tmp_path, args, kwargs):
    with pytest.raises(Exception) as builtin:
        open(tmp_path / "a", *args, **kwargs)
    with pytest.raises(type(builtin.value)) as ours:
        BackgroundHddFile(tmp_path / "b", *args, **kwargs)
    assert str(ours.value) == str(builtin.value)


@pytest.mark.parametrize(
    "kwargs, error_type, words",
    [({"ioPrio": 0}, ValueError, "ioPrio"), ({"ioPrio": True}, TypeError, "ioPrio"),
     ({"ioPrio": "4"}, TypeError, "'4'"), ({"fsync": "yes"}, TypeError, "fsync"),
     ({"max_pending_bytes": 0}, ValueError, "max_pending_bytes"),
     ({"max_pending_bytes": 1.5}, TypeError, "1.5"), ({"queue": "default"}, TypeError, "queue")],
)
def test_bad_nonblock_arguments_fail_at_the_call_and_create_nothing(tmp_path, kwargs, error_type, words):
    with pytest.raises(error_type, match=words):
        BackgroundHddFile(tmp_path / "never", "w", **kwargs)
    assert not (tmp_path / "never").exists()


# -- writing ------------------------------------------------------------------------------


def test_write_returns_the_count_that_open_returns(tmp_path):
    ints = array.array("i", range(10))
    for label, factory in (("open", open), ("background", BackgroundHddFile)):
        with factory(tmp_path / f"{label}.bin", "wb") as binary:
            assert binary.write(b"abc") == 3
            assert binary.write(bytearray(b"de")) == 2
            assert binary.write(memoryview(ints)) == ints.itemsize * 10
            assert binary.write(b"") == 0
        with factory(tmp_path / f"{label}.txt", "w", encoding="utf-8") as text:
            assert text.write("\u20ac\u20ac") == 2
        if isinstance(binary, BackgroundHddFile):
            assert binary.wait(60) and text.wait(60)
    assert (tmp_path / "open.bin").read_bytes() == (tmp_path / "background.bin").read_bytes()
    assert (tmp_path / "open.txt").read_bytes() == (tmp_path / "background.txt").read_bytes()


def test_wrong_data_types_are_refused_at_the_call_as_open_refuses_them(tmp_path):
    with BackgroundHddFile(tmp_path / "b", "wb") as binary, open(tmp_path / "o", "wb") as builtin:
        for wrong in ("text", 42, None, ["b"]):
            with pytest.raises(TypeError):
                builtin.write(wrong)
            with pytest.raises(TypeError, match=type(wrong).__name__):
                binary.write(wrong)
    with BackgroundHddFile(tmp_path / "t", "w") as text:
        for wrong in (b"bytes", 42, None):
            with pytest.raises(TypeError, match=f"must be str, not {type(wrong).__name__}"):
                text.write(wrong)
    assert binary.wait(60) and text.wait(60)
    assert (tmp_path / "b").read_bytes() == b"" and (tmp_path / "t").read_bytes() == b""


def test_a_mutable_buffer_is_copied_so_changing_it_afterwards_changes_nothing(tmp_path):
    data = bytearray(b"original")
    view_source = bytearray(b"viewed")
    with BackgroundHddFile(tmp_path / "f", "wb") as file:
        file.write(data)
        file.write(memoryview(view_source))
        data[:] = b"CHANGED!"
        view_source[:] = b"XXXXXX"
    assert file.wait(60)
    assert (tmp_path / "f").read_bytes() == b"originalviewed"


def test_immutable_bytes_are_kept_by_reference_not_copied(tmp_path):
    payload = os.urandom(64 * MIB)
    file = BackgroundHddFile(tmp_path / "f", "wb", max_pending_bytes=256 * MIB)
    tracemalloc.start()
    try:
        file.write(payload)
        file.write(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    file.close()
    assert file.wait(60)
    assert peak < 4 * MIB, f"writing 128 MiB of bytes allocated {peak} bytes"
    assert (tmp_path / "f").read_bytes() == payload + payload


def test_small_writes_are_gathered_into_a_few_queue_jobs(tmp_path, private_queue):
    line = "x" * 99 + "\n"
    with BackgroundHddFile(tmp_path / "f", "w", queue=private_queue, ioPrio=1) as file:
        for _ in range(100_000):
            file.write(line)
    assert file.wait(60)
    assert (tmp_path / "f").read_text() == line * 100_000
    # 10 MB in 5 MiB batches: the open, then the file's stream writer, scheduled
    # once per stretch of work (at most once per batch and once for the close).
    assert private_queue.jobs[0] == "FunctionJob"
    assert 1 <= private_queue.jobs.count("StreamWriter") <= 4, private_queue.jobs
    assert len(private_queue.jobs) <= 5, private_queue.jobs


def test_write_flush_and_close_return_while_the_disk_cannot_take_anything(tmp_path):
    reader = FifoReader(tmp_path / "fifo", paused=True)
    payload = os.urandom(4 * MIB)  # many times what the pipe can hold
    file = BackgroundHddFile(tmp_path / "fifo", "wb", opener=nonblocking_opener)
    reader.start()
    assert file.write(payload) == len(payload)
    file.flush()
    file.close()
    assert file.closed
    assert not file.finished
    assert file.wait(timeout=0.05) is False  # the reader has not read a byte
    assert not file.finished
    assert reader.finish() == payload
    assert file.wait(60) is True
    assert file.finished


def test_leaving_a_with_block_closes_without_waiting_for_the_disk(tmp_path):
    reader = FifoReader(tmp_path / "fifo", paused=True)
    with BackgroundHddFile(tmp_path / "fifo", "wb", opener=nonblocking_opener) as file:
        reader.start()
        file.write(b"z" * (2 * MIB))
    assert file.closed and not file.finished
    assert reader.finish() == b"z" * (2 * MIB)
    assert file.wait(60) and file.finished


def test_wait_on_an_open_file_returns_once_every_earlier_write_is_on_disk(tmp_path):
    path = tmp_path / "f"
    file = BackgroundHddFile(path, "w")
    file.write("one\n")
    assert file.wait(60) is True
    assert path.read_text() == "one\n"
    file.write("two\n")
    assert file.wait() is True
    assert path.read_text() == "one\ntwo\n"
    assert not file.finished  # still open
    file.close()
    assert file.wait() and file.finished


def test_sync_queues_an_fsync_behind_the_writes_and_returns_its_task(tmp_path):
    path = tmp_path / "f"
    with BackgroundHddFile(path, "wb", fsync=True) as file:
        file.write(b"durable")
        task = file.sync()
        assert isinstance(task, Task)
        assert task.result(60) is None
        assert path.read_bytes() == b"durable"
    assert file.wait(60) and path.read_bytes() == b"durable"


def test_sync_on_a_descriptor_that_cannot_be_synced_is_the_file_error(tmp_path):
    reader = FifoReader(tmp_path / "fifo")
    file = BackgroundHddFile(tmp_path / "fifo", "wb", opener=nonblocking_opener)
    reader.start()
    task = file.sync()
    assert isinstance(task.exception(60), OSError) and task.exception().errno == errno.EINVAL
    with pytest.raises(OSError) as raised:
        file.write(b"after")
    assert raised.value is task.exception()
    with pytest.raises(OSError) as raised_by_close:
        file.close()
    assert raised_by_close.value is task.exception() and file.closed
    reader.finish()
    with pytest.raises(OSError):
        file.wait(60)
    assert file.finished


# -- reading your writes ---------------------------------------------------------------------


def test_reads_seeks_and_tells_see_every_write_issued_before_them(tmp_path):
    for label, factory in (("open", open), ("background", BackgroundHddFile)):
        path = tmp_path / label
        results: List[Any] = []
        with factory(path, "w+b") as file:
            file.write(b"line one\nline two\n")
            results.append(file.tell())
            file.seek(0)
            results.append(file.readline())
            file.write(b"LINE")
            results.append(file.tell())
            file.seek(0)
            results.append(list(file))
            file.seek(5)
            buffer = bytearray(3)
            results.append(file.readinto(buffer))
            results.append(bytes(buffer))
            results.append(file.read1(2))
            results.append(file.truncate(12))
            file.seek(0, os.SEEK_END)
            file.write(b"!")
            file.seek(0)
            results.append(file.readlines())
        results.append(path.read_bytes() if label == "open" else None)
        if isinstance(file, BackgroundHddFile):
            assert file.wait(60)
            results[-1] = path.read_bytes()
        if label == "open":
            expected = results
    assert results == expected


def test_text_iteration_and_tell_behave_as_open_does(tmp_path):
    for label, factory in (("open", open), ("background", BackgroundHddFile)):
        path = tmp_path / label
        with factory(path, "w+", encoding="utf-8") as file:
            file.write("\u00e9a\nb\nc\n")
            cookie = file.tell()
            file.seek(0)
            first = next(file)
            with pytest.raises(OSError, match="telling position disabled"):
                file.tell()
            rest = list(file)
            file.seek(cookie)
            file.write("d\n")
            file.seek(0)
            everything = file.read()
        outcome = (cookie, first, rest, everything)
        if label == "open":
            expected = outcome
    assert outcome == expected


def test_reading_from_many_threads_while_others_write_keeps_every_answer_consistent(tmp_path):
    file = BackgroundHddFile(tmp_path / "f", "a+b")
    record = b"r" * 63 + b"\n"
    failures: List[str] = []

    def writer() -> None:
        for _ in range(500):
            file.write(record)

    def reader() -> None:
        for _ in range(50):
            file.seek(0)
            data = file.read()
            if len(data) % len(record) or data != record * (len(data) // len(record)):
                failures.append(f"torn read of {len(data)} bytes")

    threads = [threading.Thread(target=writer) for _ in range(3)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    file.close()
    assert file.wait(60)
    assert failures == []
    assert (tmp_path / "f").read_bytes() == record * 1500


# -- the bound on pending data ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["wb", "w"])
def test_max_pending_bytes_bounds_what_the_object_holds_while_the_stream_is_slow(tmp_path, mode):
    bound = 1 * MIB
    piece_size = 48 * 1024
    count = 200  # about 9.4 MiB, many times the bound
    file_box: List[Any] = []
    over_bound: List[int] = []

    def check_bound() -> None:  # from the reader: what the writer holds while it is stalled
        if file_box and file_box[0].pending_bytes > bound:
            over_bound.append(file_box[0].pending_bytes)

    reader = FifoReader(tmp_path / "fifo", bite=8192, on_bite=check_bound)
    # Text mode needs a blocking descriptor (see the test below): an IO thread
    # waits in write() there, instead of the queue polling for room.
    opener = nonblocking_opener if mode == "wb" else None
    file = BackgroundHddFile(tmp_path / "fifo", mode, opener=opener, max_pending_bytes=bound)
    file_box.append(file)
    reader.start()
    pieces = [bytes([65 + index % 26]) * piece_size for index in range(count)]
    for piece in pieces:
        file.write(piece if mode == "wb" else piece.decode())
        assert file.pending_bytes <= bound
    file.close()
    assert reader.finish() == b"".join(pieces)
    assert file.wait(60)
    assert over_bound == []
    assert file.pending_bytes == 0


def test_a_single_write_bigger_than_the_bound_is_held_whole_once_earlier_writes_are_down(tmp_path):
    path = tmp_path / "f"
    with BackgroundHddFile(path, "wb", max_pending_bytes=64 * 1024) as file:
        file.write(b"a" * 1000)
        file.write(b"b" * (1 * MIB))
        # With what was gathered just before it (and each write's object overhead).
        assert file.pending_bytes <= 1000 + MIB + 2 * 64
    assert file.wait(60)
    assert path.read_bytes() == b"a" * 1000 + b"b" * MIB


def test_text_mode_on_a_non_blocking_descriptor_is_refused_at_the_call(tmp_path):
    # TextIOWrapper cannot say how much of a write a full pipe took, so text
    # could be lost; refuse it up front, as bgwrite does, and close what was opened.
    reader = FifoReader(tmp_path / "fifo")
    with pytest.raises(ValueError, match="non-blocking"):
        BackgroundHddFile(tmp_path / "fifo", "w", opener=nonblocking_opener)
    reader.start()
    assert reader.finish() == b""  # the write end was closed: EOF at once


def test_writes_racing_a_close_from_another_thread_are_either_on_disk_or_refused(tmp_path):
    path = tmp_path / "f"
    file = BackgroundHddFile(path, "wb")
    accepted: List[List[bytes]] = [[] for _ in range(4)]
    refused: List[int] = [0] * 4
    started = threading.Barrier(5)

    def writer(index: int) -> None:
        started.wait(60)
        for count in range(20_000):
            record = b"%d:%06d\n" % (index, count)
            try:
                file.write(record)
            except ValueError:
                refused[index] += 1
                return
            accepted[index].append(record)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    started.wait(60)
    file.close()
    for thread in threads:
        thread.join(60)
    assert file.wait(60)
    on_disk = path.read_bytes().splitlines(keepends=True)
    for index in range(4):
        mine = [line for line in on_disk if line.startswith(b"%d:" % index)]
        assert mine == accepted[index], f"writer {index}: accepted writes missing or extra on disk"


def test_a_background_function_writing_the_same_file_never_deadlocks_with_a_caller_waiting_for_room(tmp_path):
    from nonblock import do_async

    reader = FifoReader(tmp_path / "fifo", bite=16 * 1024)
    file = BackgroundHddFile(tmp_path / "fifo", "wb", opener=nonblocking_opener, max_pending_bytes=256 * 1024)
    reader.start()

    def background_writer() -> None:  # runs on an IO thread, holding the disk token
        for _ in range(100):
            file.write(b"B" * 1000)

    tasks = []
    for index in range(3000):
        file.write(b"M" * 1000)
        if index % 500 == 0:
            tasks.append(do_async(background_writer))
    for task in tasks:
        assert task.result(60) is None
    file.close()
    received = reader.finish()
    assert file.wait(60)
    assert received.count(b"M") == 3000 * 1000 and received.count(b"B") == 6 * 100 * 1000


def test_shutdown_writes_what_an_open_file_had_gathered_and_close_then_closes_quietly(tmp_path):
    from nonblock import HddQueue

    queue = HddQueue("private")
    text = BackgroundHddFile(tmp_path / "t", "w", queue=queue)
    binary = BackgroundHddFile(tmp_path / "b", "ab", queue=queue)
    text.write("gathered, not yet handed over\n")
    binary.write(b"same here\n")
    queue.shutdown()
    assert (tmp_path / "t").read_text() == "gathered, not yet handed over\n"
    text.close()
    binary.close()
    assert text.wait(60) and binary.wait(60)
    assert text.exception is None and binary.exception is None
    assert (tmp_path / "b").read_bytes() == b"same here\n"


def test_a_str_subclass_is_written_as_its_characters_as_open_does(tmp_path):
    import enum

    class Colour(str, enum.Enum):
        RED = "red"

    class Shouting(str):
        def __str__(self) -> str:
            return self.upper()

    for label, factory in (("open", open), ("background", BackgroundHddFile)):
        with factory(tmp_path / label, "w") as file:
            assert file.write(Colour.RED) == 3
            assert file.write(Shouting("quiet")) == 5
        if isinstance(file, BackgroundHddFile):
            assert file.wait(60)
    assert (tmp_path / "background").read_text() == (tmp_path / "open").read_text() == "redquiet"
