"""BackgroundHddFile across process exit and fork.

A program that writes to a BackgroundHddFile and ends without closing it must
find every byte on disk and the descriptor closed; a forked child must never
write what its parent had pending.  The programs are real subprocesses; the
fork happens inside them, so both sides end the way programs end.
"""

from __future__ import annotations

import os

import pytest

from tests.test_exit_and_fork import observations, run_python

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

EXIT_WITHOUT_CLOSING_SCRIPT = """
    import atexit, json, os, sys
    import nonblock
    from nonblock import BackgroundHddFile

    path, count = sys.argv[1], int(sys.argv[2])

    descriptors = []

    def descriptor_state_at_the_very_end():
        try:
            os.fstat(descriptors[0])
            state = "open"
        except OSError:
            state = "closed"
        with open(sys.argv[3], "w") as report:
            report.write(state)

    # Registered before the queue starts (and registers its own exit hook), so
    # atexit runs it after nonblock's drain.
    atexit.register(descriptor_state_at_the_very_end)
    text = BackgroundHddFile(path, "w")
    descriptors.append(text.fileno())
    for index in range(count):
        text.write(f"line {index}\\n")
    binary = BackgroundHddFile(path + ".bin", "ab")
    binary.write(b"tail that was never flushed")
    print(json.dumps({"nonblock_file": nonblock.__file__, "pending": text.pending_bytes}))
    # No close, no flush, no wait: the program just ends.
"""


def test_a_program_that_exits_without_closing_finds_every_byte_on_disk_and_the_descriptor_closed(tmp_path):
    path = tmp_path / "out.txt"
    report = tmp_path / "descriptor"
    count = 200_000
    outcome = observations(run_python(EXIT_WITHOUT_CLOSING_SCRIPT, path, count, report, cwd=tmp_path))
    assert outcome["pending"] > 0  # there really was unwritten data at exit
    assert path.read_text() == "".join(f"line {index}\n" for index in range(count))
    assert (tmp_path / "out.txt.bin").read_bytes() == b"tail that was never flushed"
    assert report.read_text() == "closed"


# Python 3.12+ warns that forking a threaded process is risky; these scripts fork on purpose.
QUIET_FORK = 'warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)'

FORK_WITH_GATHERED_WRITES_SCRIPT = """
    import json, os, sys, warnings
    import nonblock
    from nonblock import BackgroundHddFile

    QUIET_FORK
    path = sys.argv[1]
    file = BackgroundHddFile(path, "ab")
    file.write(b"parent before the fork, written and waited for\\n")
    file.wait()
    # In append mode the real file flushes only when told: after these lines its
    # buffer holds the tail of them when the fork comes.
    for index in range(150_000):
        file.write(b"parent bulk line %05d\\n" % index)
    nonblock.default_queue().wait_idle()
    file.write(b"parent before the fork, only gathered\\n")  # still in the parent's hands
    pid = os.fork()
    if pid == 0:
        # The child goes on using the file, then ends like any program (exit
        # hooks included), without closing it.
        file.write(b"child\\n")
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    file.write(b"parent after the fork\\n")
    file.close()
    file.wait()
    print(json.dumps({"nonblock_file": nonblock.__file__, "child_status": status}))
""".replace("QUIET_FORK", QUIET_FORK)


@needs_fork
def test_a_forked_child_never_writes_what_the_parent_had_gathered(tmp_path):
    path = tmp_path / "shared.log"
    outcome = observations(run_python(FORK_WITH_GATHERED_WRITES_SCRIPT, path, cwd=tmp_path))
    assert outcome["child_status"] == 0
    lines = path.read_bytes().splitlines(keepends=True)
    bulk = [b"parent bulk line %05d\n" % index for index in range(150_000)]
    assert sorted(lines) == sorted(bulk + [
        b"parent before the fork, written and waited for\n",
        b"parent before the fork, only gathered\n",
        b"child\n",
        b"parent after the fork\n",
    ])
    assert lines[0] == b"parent before the fork, written and waited for\n"


FORK_MID_WRITE_SCRIPT = """
    import json, os, sys, threading, warnings
    import nonblock
    from nonblock import BackgroundHddFile

    QUIET_FORK
    fifo = sys.argv[1]
    os.mkfifo(fifo)
    read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(read_fd, True)
    opener = lambda p, flags: os.open(p, flags | os.O_NONBLOCK)
    file = BackgroundHddFile(fifo, "wb", opener=opener)
    payload = bytes(range(256)) * 4096  # 1 MiB: the pipe takes a sixteenth of it
    file.write(payload)
    file.flush()
    while not file._channel.mid_chunk:  # until the write is part-way into the full pipe
        threading.Event().wait(0.001)
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        refused = None
        try:
            file.write(b"child")
        except OSError as error:
            refused = type(error).__name__
        with open(fifo + ".child", "w") as report:
            report.write(str(refused))
        # Leave only once the pipe has room again (the parent reads it now), so
        # that anything the child's copy still held would really get through.
        import select
        select.select([], [file.fileno()], [], 30)
        sys.exit(0)  # exit hooks run, and close the child's copy of the file
    received = bytearray()
    def read_all():
        while True:
            piece = os.read(read_fd, 1 << 16)
            if not piece:
                return
            received.extend(piece)
    reader = threading.Thread(target=read_all)
    reader.start()
    _, status = os.waitpid(pid, 0)
    file.close()
    file.wait()
    reader.join()
    print(json.dumps({
        "nonblock_file": nonblock.__file__,
        "child_status": status,
        "exactly_once": bytes(received).replace(b"child", b"", 1) == payload,
        "child_bytes": bytes(received).count(b"child"),
        "received": len(received),
    }))
""".replace("QUIET_FORK", QUIET_FORK)


@needs_fork
def test_a_child_forked_in_the_middle_of_a_write_never_repeats_the_parents_bytes_and_writes_its_own(
    tmp_path,
):
    fifo = tmp_path / "fifo"
    outcome = observations(run_python(FORK_MID_WRITE_SCRIPT, fifo, cwd=tmp_path))
    assert outcome["child_status"] == 0
    assert outcome["exactly_once"], f"the reader got {outcome['received']} bytes, not exactly the payload"
    assert (tmp_path / "fifo.child").read_text() == "None"  # the child's write was taken
    assert outcome["child_bytes"] == 1


FORK_CLOSEFD_FALSE_SCRIPT = """
    import json, os, sys, warnings
    import nonblock
    from nonblock import BackgroundHddFile

    QUIET_FORK
    path = sys.argv[1]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    file = BackgroundHddFile(fd, "ab", closefd=False)
    file.write(b"parent\\n")
    file.tell()  # written into the real file object's buffer, which append mode keeps
    pid = os.fork()
    if pid == 0:
        file.write(b"child\\n")
        file.close()
        file.wait()
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    file.close()
    file.wait()
    os.close(fd)
    print(json.dumps({"nonblock_file": nonblock.__file__, "child_status": status}))
""".replace("QUIET_FORK", QUIET_FORK)


@needs_fork
def test_a_child_never_repeats_the_parents_buffered_bytes_even_when_the_descriptor_is_the_callers(tmp_path):
    path = tmp_path / "shared"
    outcome = observations(run_python(FORK_CLOSEFD_FALSE_SCRIPT, path, cwd=tmp_path))
    assert outcome["child_status"] == 0
    assert sorted(path.read_bytes().splitlines(keepends=True)) == [b"child\n", b"parent\n"]
