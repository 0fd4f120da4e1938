"""bgread: a stream read in the background until it ends, without a thread per read."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from typing import Any, List

import pytest

from nonblock import BackgroundReadData, HddQueue, QueueShutdown, bgread
from nonblock.BackgroundRead import BackgroundReadData as OldPathReadData
from nonblock.BackgroundRead import bgread as old_path_bgread


def slow_writer(chunks: List[bytes]) -> subprocess.Popen[bytes]:
    """A process writing *chunks* to its stdout, flushing each, one per line read on its stdin."""
    script = textwrap.dedent("""
        import sys
        for chunk in sys.argv[1:]:
            sys.stdin.readline()
            sys.stdout.buffer.write(bytes.fromhex(chunk))
            sys.stdout.buffer.flush()
    """)
    return subprocess.Popen([sys.executable, "-c", script, *[c.hex() for c in chunks]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def release(process: subprocess.Popen[bytes]) -> None:
    assert process.stdin is not None
    process.stdin.write(b"\n")
    process.stdin.flush()


def test_the_old_import_path_works():
    assert old_path_bgread is bgread and OldPathReadData is BackgroundReadData


def test_a_slow_writers_bytes_arrive_as_blocks_in_order_and_the_stream_is_closed(queue):
    chunks = [b"alpha ", "bêta ".encode(), b"gamma"]
    writer = slow_writer(chunks)
    arrived = threading.Semaphore(0)
    seen: List[bytes] = []
    def on_data(block: bytes) -> None:
        seen.append(block)
        arrived.release()

    reading = bgread(writer.stdout, queue=queue, on_data=on_data)
    assert isinstance(reading, BackgroundReadData)
    assert not reading.isFinished and reading.error is None
    for index in range(len(chunks)):
        release(writer)
        while b"".join(seen) != b"".join(chunks[: index + 1]):
            assert arrived.acquire(timeout=30), "a block never arrived"
    writer.stdin.close()  # the writer exits: end of stream
    assert reading.result(timeout=30) == b"".join(chunks)
    assert reading.isFinished and reading.error is None
    assert reading.data == b"".join(chunks) and b"".join(reading.blocks) == reading.data
    assert writer.stdout.closed  # closeStream=True by default
    assert writer.wait(30) == 0


def test_utf8_split_across_writes_in_a_text_stream(queue):
    text = "aé東🎉z"
    encoded = text.encode()
    read_end, write_end = os.pipe()
    reader = os.fdopen(read_end, "r", encoding="utf-8")
    reading = bgread(reader, queue=queue)
    for index in range(len(encoded)):
        os.write(write_end, encoded[index:index + 1])
    os.close(write_end)
    assert reading.result(timeout=30) == text
    assert all(isinstance(block, str) and block for block in reading.blocks)
    assert reading.dataType is str


def test_a_socket_is_read_until_the_peer_shuts_down(queue):
    left, right = socket.socketpair()
    reading = bgread(left, queue=queue, closeStream=False)
    payload = os.urandom(500_000)
    right.sendall(payload)
    right.shutdown(socket.SHUT_WR)
    assert reading.result(timeout=30) == payload
    assert left.fileno() != -1  # closeStream=False left it open
    left.close()
    right.close()


def test_a_regular_file(tmp_path, queue):
    path = tmp_path / "f.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)
    path.write_bytes(data)
    stream = open(path, "rb")
    reading = bgread(stream, blockSizeLimit=100_000, queue=queue)
    assert reading.result(timeout=30) == data
    assert max(map(len, reading.blocks)) <= 100_000
    assert stream.closed


def test_a_writer_that_dies_mid_stream_keeps_what_it_sent(queue):
    writer = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; os.write(1, b'partial'); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    arrived = threading.Event()
    reading = bgread(writer.stdout, queue=queue, on_data=lambda block: arrived.set())
    assert arrived.wait(30)
    writer.send_signal(signal.SIGKILL)
    writer.wait(30)
    assert reading.result(timeout=30) == b"partial"


def test_a_read_error_finishes_it_records_the_error_and_closes_the_stream(queue):
    class FailingStream:
        closed = False
        calls = 0

        def read(self, size: int) -> bytes:
            self.calls += 1
            if self.calls == 1:
                return b"some"
            raise OSError(5, "Input/output error")

        def close(self) -> None:
            self.closed = True

    stream = FailingStream()
    failures: List[BaseException] = []
    reading = bgread(stream, queue=queue, on_fail=failures.append)
    assert isinstance(reading.exception(timeout=30), OSError)
    assert reading.isFinished  # python-nonblock leaves it False forever
    assert isinstance(reading.error, OSError) and failures == [reading.error]
    assert reading.data == b"some"
    assert stream.closed
    with pytest.raises(OSError):
        reading.result()


def test_a_hundred_concurrent_bgreads_add_no_thread(queue):
    pipes = [os.pipe() for _ in range(100)]
    before = threading.active_count()
    readings = [bgread(os.fdopen(read_end, "rb"), queue=queue) for read_end, _ in pipes]
    # The queue's own three threads at most, however many reads wait.
    assert threading.active_count() <= before + 3
    for index, (_, write_end) in enumerate(pipes):
        os.write(write_end, b"pipe %d" % index)
        os.close(write_end)
    for index, reading in enumerate(readings):
        assert reading.result(timeout=30) == b"pipe %d" % index
    assert threading.active_count() <= before + 3


def test_data_is_not_rejoined_when_nothing_new_came(queue):
    read_end, write_end = os.pipe()
    reading = bgread(os.fdopen(read_end, "rb"), queue=queue)
    os.write(write_end, b"x" * 10)
    os.close(write_end)
    reading.wait(30)
    first = reading.data
    assert reading.data is first  # the same object: no join on every access
    reading.addBlock(b"more")
    assert reading.data == b"x" * 10 + b"more"


@pytest.mark.parametrize("stream_kind", ["None", "int", "write-only", "closed"])
def test_what_cannot_be_read_is_refused_at_the_call(tmp_path, queue, stream_kind):
    stream: Any
    if stream_kind == "None":
        stream = None
    elif stream_kind == "int":
        stream = 0
    elif stream_kind == "write-only":
        stream = open(tmp_path / "w", "wb")
    else:
        stream = open(tmp_path / "w", "wb")
        stream.close()
    with pytest.raises((TypeError, ValueError), match="stream"):
        bgread(stream, queue=queue)
    assert queue.wait_idle(0)  # nothing was queued


@pytest.mark.parametrize("limit", [0, -5, 0.5, True, "10"])
def test_a_block_size_limit_below_one_is_refused(limit, queue):
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader:
        with pytest.raises((TypeError, ValueError), match="blockSizeLimit"):
            bgread(reader, blockSizeLimit=limit, queue=queue)
    os.close(write_end)


def test_a_pending_bgread_holds_up_neither_wait_idle_nor_shutdown():
    queue = HddQueue(name="bgread-stop")
    read_end, write_end = os.pipe()
    reader = os.fdopen(read_end, "rb")
    failures: List[BaseException] = []
    reading = bgread(reader, queue=queue, on_fail=failures.append)
    assert queue.wait_idle(30)
    queue.shutdown()
    assert isinstance(reading.exception(timeout=30), QueueShutdown)
    assert reader.closed and len(failures) == 1
    os.close(write_end)


def test_exit_with_a_bgread_pending_does_not_hang(tmp_path):
    script = textwrap.dedent("""
        import os, sys
        from nonblock import bgread, bgwrite
        read_end, write_end = os.pipe()          # the write end is never closed
        reading = bgread(os.fdopen(read_end, "rb"))
        os.write(write_end, b"seen")
        out = open(sys.argv[1], "wb")
        bgwrite(out, b"written before exit", closeWhenFinished=True)
        print("exiting")
    """)
    target = tmp_path / "out.bin"
    done = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"exiting\n" and done.stderr == b""
    assert target.read_bytes() == b"written before exit"  # the writes still drained


def test_a_forked_child_does_not_read_on_its_parents_behalf(queue):
    read_end, write_end = os.pipe()
    reader = os.fdopen(read_end, "rb")
    reading = bgread(reader, queue=queue, closeStream=False)
    status_read, status_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the read fails at once, and it reads nothing
        try:
            error = reading.exception(timeout=10)
            os.write(status_write, b"failed" if isinstance(error, RuntimeError) else b"other")
        finally:
            os._exit(0)
    os.close(status_write)
    assert os.read(status_read, 100) == b"failed"
    os.waitpid(pid, 0)
    os.write(write_end, b"for the parent")
    os.close(write_end)
    assert reading.result(timeout=30) == b"for the parent"  # nothing was taken by the child
    os.close(status_read)
    reader.close()
