"""nonblock_read: what a stream has now, never waiting (python-nonblock's read half, done right)."""

from __future__ import annotations

import io
import os
import pty
import select
import socket
import subprocess
import sys
import threading
from typing import Any, Iterator, List, Optional, Tuple

import pytest

import nonblock
from nonblock import nonblock_read
from nonblock.read import nonblock_read as read_module_nonblock_read

# A child that writes its argv's chunks (hex), flushing each and pausing until told
# (a line on stdin), so the test decides when every byte arrives.
_PACED_WRITER = """
import sys
chunks = [bytes.fromhex(h) for h in sys.argv[1:]]
for chunk in chunks:
    sys.stdin.readline()
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
sys.stdin.readline()
"""


class PacedWriter:
    """A writer process that sends one chunk each time :meth:`send_next` is called."""

    def __init__(self, chunks: List[bytes], text: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _PACED_WRITER, *[chunk.hex() for chunk in chunks]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=text,
        )
        self.stdout: Any = self.process.stdout

    def send_next(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"\n" if isinstance(self.process.stdin, io.BufferedIOBase) else "\n")
        self.process.stdin.flush()

    def finish(self) -> None:
        self.send_next()
        assert self.process.wait(timeout=30) == 0


def read_until(stream: Any, wanted: int, **kwargs: Any) -> Any:
    """Call nonblock_read until *wanted* items have come (waiting on the descriptor, not sleeping)."""

    got: List[Any] = []
    while sum(map(len, got)) < wanted:
        piece = nonblock_read(stream, **kwargs)
        assert piece is not None, "the stream ended early"
        if piece:
            got.append(piece)
        else:
            select.select([stream], [], [], 10)
    return type(got[0])().join(got)


def test_the_package_and_the_module_export_it():
    assert nonblock.nonblock_read is read_module_nonblock_read
    assert "nonblock_read" in nonblock.__all__ and "bgread" in nonblock.__all__


def test_python_nonblocks_documented_loop_over_a_subprocess_pipe():
    # python-nonblock's README example: data, then b'' while the child is quiet, then None.
    chunks = [b"first part ", b"second part ", b"last"]
    writer = PacedWriter(chunks)
    seen: List[bytes] = []
    assert nonblock_read(writer.stdout) == b""  # nothing written yet: empty, not None
    for chunk in chunks:
        writer.send_next()
        seen.append(read_until(writer.stdout, len(chunk)))
    writer.finish()
    while True:
        data = nonblock_read(writer.stdout)
        if data is None:
            break
        if data:
            seen.append(data)
        else:  # the README's idleTask(): here, wait for the descriptor
            select.select([writer.stdout], [], [], 10)
    assert seen == chunks
    assert nonblock_read(writer.stdout) is None  # and stays None


def test_utf8_characters_split_across_writes_are_never_broken():
    text = "naïve café — 東京 🎉 ok"
    encoded = text.encode("utf-8")
    # Cut inside every multi-byte character: one byte per chunk.
    writer = PacedWriter([encoded[i:i + 1] for i in range(len(encoded))], text=True)
    got = []
    for _ in range(len(encoded)):
        writer.send_next()
        assert select.select([writer.stdout], [], [], 30)[0]  # this byte has arrived
        piece = nonblock_read(writer.stdout)
        assert isinstance(piece, str)
        got.append(piece)
    writer.finish()
    assert "".join(got) == text
    # A character's first bytes give nothing; its last byte gives the whole character.
    assert got.count("") == len(encoded) - len(text)
    assert nonblock_read(writer.stdout) is None


def test_end_of_stream_right_after_some_bytes_returns_them_then_none():
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader:
        os.write(write_end, b"tail bytes")
        os.close(write_end)
        assert nonblock_read(reader) == b"tail bytes"
        assert nonblock_read(reader) is None
        assert nonblock_read(reader) is None


def test_a_buffered_reader_never_hides_the_bytes_it_buffered():
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader:
        os.write(write_end, b"header\nbody so far")
        assert reader.readline() == b"header\n"  # the reader buffered the rest
        assert nonblock_read(reader) == b"body so far"
        assert nonblock_read(reader) == b""
        assert os.get_blocking(read_end)  # left as it was found
        os.write(write_end, b"+more")
        assert nonblock_read(reader) == b"+more"
        os.close(write_end)
        assert nonblock_read(reader) is None


def test_limit_caps_each_call_and_zero_or_none_means_no_cap():
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        os.write(write_end, b"0123456789")
        assert nonblock_read(reader, limit=4) == b"0123"
        assert nonblock_read(reader, limit=4.9) == b"4567"  # truncated, as int() does
        assert nonblock_read(reader, limit=0) == b"89"
        os.write(write_end, b"abc")
        assert nonblock_read(reader, limit=None) == b"abc"
        os.close(write_end)


def test_a_large_pipe_transfer_arrives_whole_and_in_order():
    payload = os.urandom(3 * 1024 * 1024 + 17)
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    feeder = threading.Thread(target=lambda: (writer.stdin.write(payload), writer.stdin.close()))
    feeder.start()
    got = read_until(writer.stdout, len(payload))
    feeder.join(30)
    assert writer.wait(30) == 0
    assert got == payload
    assert nonblock_read(writer.stdout) is None  # the writer is gone: the end


def test_a_socket_pair():
    left, right = socket.socketpair()
    with left, right:
        assert nonblock_read(left) == b""
        right.sendall(b"over the socket")
        assert read_until(left, 15) == b"over the socket"
        right.sendall(b"last")
        right.shutdown(socket.SHUT_WR)
        assert read_until(left, 4) == b"last"
        assert nonblock_read(left) is None


def test_a_pty_whose_other_side_closes_ends_with_none_not_eio():
    controller, follower = pty.openpty()
    with os.fdopen(controller, "rb", buffering=0) as reader:
        os.write(follower, b"from the terminal")
        assert read_until(reader, 17) == b"from the terminal"
        os.close(follower)
        assert nonblock_read(reader) is None


def test_a_regular_file_is_read_to_its_end(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 200_000 + b"end")
    with open(path, "rb") as stream:
        assert nonblock_read(stream) == b"x" * 200_000 + b"end"
        assert nonblock_read(stream) is None
    path.write_text("line one\nline two\n", encoding="utf-8")
    with open(path, encoding="utf-8") as stream:
        assert nonblock_read(stream) == "line one\nline two\n"
        assert nonblock_read(stream) is None


def test_in_memory_streams_give_what_they_hold_then_none():
    assert nonblock_read(io.BytesIO(b"abc")) == b"abc"
    stream = io.StringIO("text")
    assert nonblock_read(stream) == "text"
    assert nonblock_read(stream) is None


def test_text_streams_translate_newlines_as_open_does():
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "r", encoding="utf-8") as reader:
        os.write(write_end, b"one\r\ntwo\rthree\n")
        os.close(write_end)
        assert nonblock_read(reader) == "one\ntwo\nthree\n"
        assert nonblock_read(reader) is None


# -- forceMode ------------------------------------------------------------------------------


def pipe_pair(mode: str) -> Tuple[Any, int]:
    read_end, write_end = os.pipe()
    return os.fdopen(read_end, mode, **({} if "b" in mode else {"encoding": "utf-8"})), write_end


def test_force_mode_t_decodes_a_binary_stream_as_utf8_across_calls():
    reader, write_end = pipe_pair("rb")
    with reader:
        os.write(write_end, "é".encode()[:1])
        assert nonblock_read(reader, forceMode="t") == ""  # half a character: nothing yet
        os.write(write_end, "é".encode()[1:] + b"!")
        assert nonblock_read(reader, forceMode="t") == "é!"
        os.close(write_end)
        assert nonblock_read(reader, forceMode="t") is None


def test_force_mode_b_encodes_a_text_streams_characters():
    reader, write_end = pipe_pair("r")
    with reader:
        os.write(write_end, "größe".encode())
        os.close(write_end)
        assert nonblock_read(reader, forceMode="b") == "größe".encode()
        assert nonblock_read(reader, forceMode="b") is None


def test_switching_back_to_bytes_returns_what_the_decoder_held():
    reader, write_end = pipe_pair("rb")
    with reader:
        os.write(write_end, b"ab\xc3")
        assert nonblock_read(reader, forceMode="t") == "ab"
        os.write(write_end, b"\xa9")
        assert nonblock_read(reader, forceMode="rb") == b"\xc3\xa9"
        os.close(write_end)


@pytest.mark.parametrize("force_mode", ["x", "", "r", 1, b"b"])
def test_a_force_mode_without_b_or_t_is_refused(force_mode):
    reader, write_end = pipe_pair("rb")
    with reader:
        with pytest.raises(ValueError, match="forceMode"):
            nonblock_read(reader, forceMode=force_mode)
        os.close(write_end)


# -- bad input ------------------------------------------------------------------------------


def bad_streams(tmp_path: Any) -> Iterator[Tuple[str, Any, type]]:
    yield "None", None, TypeError
    yield "an int", 3, TypeError
    yield "a str", "path.txt", TypeError
    write_only = open(tmp_path / "w.txt", "w")
    yield "a write-only file", write_only, ValueError
    write_only.close()
    closed = open(tmp_path / "w.txt", "rb")
    closed.close()
    yield "a closed file", closed, ValueError
    read_end, write_end = os.pipe()
    os.close(read_end)
    mislabelled = os.fdopen(write_end, "rb")  # a pipe's write end, opened as if readable
    yield "a pipe's write end", mislabelled, ValueError
    mislabelled.close()
    left, right = socket.socketpair()
    left.close()
    right.close()
    yield "a closed socket", left, ValueError


def test_what_cannot_be_read_is_refused_naming_the_stream(tmp_path):
    for what, stream, error in bad_streams(tmp_path):
        with pytest.raises(error, match="stream") as caught:
            nonblock_read(stream)
        assert "stream" in str(caught.value), what


@pytest.mark.parametrize("limit", [-1, -0.5, True, "4", float("nan")])
def test_a_bad_limit_is_refused_naming_it(limit):
    with pytest.raises((TypeError, ValueError), match="limit"):
        nonblock_read(io.BytesIO(b"data"), limit=limit)


def test_it_never_blocks_on_a_quiet_pipe_even_with_buffered_text():
    reader, write_end = pipe_pair("r")
    done = threading.Event()
    result: List[Optional[str]] = []

    def call() -> None:
        result.append(nonblock_read(reader))
        result.append(nonblock_read(reader, limit=5))
        done.set()

    with reader:
        os.write(write_end, b"partial")
        threading.Thread(target=call, daemon=True).start()
        assert done.wait(30), "nonblock_read blocked on a pipe with nothing more to give"
        assert result == ["partial", ""]
        os.close(write_end)
