"""BackgroundHddFile's errors: raised by the next call, never dropped, never a hole in the file.

Each failure is real: /dev/full for a full disk, a FIFO whose reader has gone
for a broken pipe, a descriptor closed underneath the object, and a file-size
limit (RLIMIT_FSIZE, in a subprocess) for a disk that fills up mid-file.
"""

from __future__ import annotations

import errno
import gc
import io
import logging
import os

import pytest

from nonblock import BackgroundHddFile, default_queue
from tests._fifos import FifoReader, nonblocking_opener
from tests.test_exit_and_fork import observations, run_python

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


@needs_dev_full
def test_a_full_disk_is_raised_by_the_next_call_as_the_original_error_and_kept():
    file = BackgroundHddFile("/dev/full", "wb")
    assert file.write(b"x" * 100) == 100  # the disk has not been asked yet
    with pytest.raises(OSError) as raised:
        file.wait(60)
    error = raised.value
    assert type(error) is OSError and error.errno == errno.ENOSPC
    assert file.exception is error
    # From now on every call that would write refuses with the same error.
    for call in (lambda: file.write(b"more"), lambda: file.writelines([b"a"]), file.flush, file.sync):
        with pytest.raises(OSError) as again:
            call()
        assert again.value is error
    with pytest.raises(OSError) as by_close:
        file.close()
    assert by_close.value is error
    assert file.closed
    file.close()  # a second close is a no-op, as open()'s is
    with pytest.raises(OSError):
        file.wait(60)
    assert file.finished


@needs_dev_full
@pytest.mark.parametrize("call", ["write", "flush", "close", "wait", "tell"])
def test_each_kind_of_call_raises_a_background_error_that_happened_before_it(call):
    file = BackgroundHddFile("/dev/full", "w")
    file.write("doomed")
    file.flush()
    assert default_queue().wait_idle(60)  # the write has failed by now
    with pytest.raises(OSError) as raised:
        if call == "write":
            file.write("x")
        elif call == "wait":
            file.wait()
        else:
            getattr(file, call)()
    assert raised.value.errno == errno.ENOSPC
    if not file.closed:
        with pytest.raises(OSError):
            file.close()


def test_a_reader_that_went_away_is_a_broken_pipe_on_the_next_call(tmp_path):
    reader = FifoReader(tmp_path / "fifo", paused=True)
    file = BackgroundHddFile(tmp_path / "fifo", "wb", opener=nonblocking_opener)
    os.close(reader.fd)  # the only reader is gone before anything was read
    file.write(b"nobody will read this")
    with pytest.raises(BrokenPipeError) as raised:
        file.wait(60)
    assert file.exception is raised.value
    with pytest.raises(BrokenPipeError):
        file.write(b"again")
    with pytest.raises(BrokenPipeError):
        file.close()


def test_a_descriptor_closed_underneath_is_raised_by_the_next_call(tmp_path):
    file = BackgroundHddFile(tmp_path / "f", "wb")
    os.close(file.fileno())
    file.write(b"into nothing")
    with pytest.raises(OSError) as raised:
        file.wait(60)
    assert raised.value.errno == errno.EBADF
    with pytest.raises(OSError):
        file.close()


def test_a_read_error_is_the_readers_answer_not_the_files_error(tmp_path):
    path = tmp_path / "f"
    with BackgroundHddFile(path, "w") as file:
        with pytest.raises(io.UnsupportedOperation):
            file.read()
        file.write("still fine")  # the failed read did not stop the file
        assert file.exception is None
    assert file.wait(60)
    assert path.read_text() == "still fine"


FILE_SIZE_LIMIT_SCRIPT = """
    import errno, json, os, resource, signal, sys
    import nonblock
    from nonblock import BackgroundHddFile, default_queue

    path = sys.argv[1]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    file = BackgroundHddFile(path, "wb", ioPrio=10, max_pending_bytes=1 << 20)
    blocks = [bytes([65 + index]) * 100_000 for index in range(6)]
    outcome = {"nonblock_file": nonblock.__file__}
    try:
        for block in blocks:
            file.write(block)
            file.flush()
        file.wait()
        outcome["raised"] = None
    except OSError as error:
        outcome["raised"] = error.errno
    try:
        file.write(b"Z" * 10)
        outcome["write_after"] = "accepted"
    except OSError as error:
        outcome["write_after"] = error.errno
    try:
        file.close()
    except OSError:
        pass
    print(json.dumps(outcome))
"""


def test_once_a_write_fails_nothing_after_it_is_written_so_the_file_has_no_hole(tmp_path):
    path = tmp_path / "limited"
    outcome = observations(run_python(FILE_SIZE_LIMIT_SCRIPT, path, cwd=tmp_path))
    assert outcome["raised"] == errno.EFBIG
    assert outcome["write_after"] == errno.EFBIG
    content = path.read_bytes()
    expected = b"".join(bytes([65 + index]) * 100_000 for index in range(6))
    # What is on disk is exactly a prefix of what was written: up to the limit, no gaps,
    # and nothing of the writes issued after the failure.
    assert content == expected[: len(content)]
    assert 200_000 <= len(content) <= 300_000
    assert b"Z" not in content


@needs_dev_full
def test_an_error_nobody_retrieved_is_logged_when_the_file_is_dropped(caplog):
    caplog.set_level(logging.ERROR, logger="nonblock")
    file = BackgroundHddFile("/dev/full", "wb")
    file.write(b"lost")
    file.flush()
    assert default_queue().wait_idle(60)  # the write has failed by now
    del file
    gc.collect()
    records = [record for record in caplog.records if record.name == "nonblock"]
    assert len(records) == 1
    assert "/dev/full" in records[0].getMessage()
    assert records[0].exc_info[1].errno == errno.ENOSPC


@needs_dev_full
def test_an_error_that_was_raised_to_a_caller_is_not_logged_again(caplog):
    caplog.set_level(logging.ERROR, logger="nonblock")
    file = BackgroundHddFile("/dev/full", "wb")
    file.write(b"lost")
    with pytest.raises(OSError):
        file.wait(60)
    del file
    gc.collect()
    assert [record for record in caplog.records if record.name == "nonblock"] == []


@needs_dev_full
def test_an_error_from_the_close_of_a_dropped_file_is_logged_when_it_happens(caplog):
    caplog.set_level(logging.ERROR, logger="nonblock")
    file = BackgroundHddFile("/dev/full", "wb")
    file.write(b"only written when the file is closed")
    real_file = file._channel.real
    del file
    gc.collect()  # the finaliser queues the close; the write fails after the owner is gone
    assert default_queue().wait_idle(60)
    assert real_file.closed
    records = [record for record in caplog.records if record.name == "nonblock"]
    assert len(records) == 1 and records[0].exc_info[1].errno == errno.ENOSPC


UNRETRIEVED_AT_EXIT_SCRIPT = """
    import json, logging, sys
    import nonblock
    from nonblock import BackgroundHddFile, default_queue

    logging.basicConfig(level=logging.ERROR, format="LOGGED %(name)s: %(message)s")
    kept = BackgroundHddFile("/dev/full", "w")
    kept.write("this never fits")
    kept.close()  # returns at once; the failure comes later and nobody asks for it
    print(json.dumps({"nonblock_file": nonblock.__file__}))
"""


@needs_dev_full
def test_an_error_nobody_retrieved_is_logged_at_exit(tmp_path):
    completed = run_python(UNRETRIEVED_AT_EXIT_SCRIPT, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.count("LOGGED nonblock:") == 1, completed.stderr
    assert "/dev/full" in completed.stderr
    assert "No space left on device" in completed.stderr


def test_text_that_cannot_be_encoded_is_refused_by_write_as_open_does(tmp_path):
    path = tmp_path / "f"
    file = BackgroundHddFile(path, "w", encoding="ascii")
    assert file.write("fine, ") == 6
    with pytest.raises(UnicodeEncodeError) as raised:
        file.write("caf\u00e9")  # at the call, as open() does: nothing of it is queued
    assert raised.value.object == "caf\u00e9"
    assert file.write("then more") == 9  # the file is not broken, as with open()
    file.close()  # nothing deferred to raise
    assert file.wait(60)
    assert path.read_text() == "fine, then more"
    with open(tmp_path / "builtin", "w", encoding="ascii") as builtin:
        builtin.write("fine, ")
        with pytest.raises(UnicodeEncodeError):
            builtin.write("caf\u00e9")
        builtin.write("then more")
    assert (tmp_path / "builtin").read_text() == path.read_text()
