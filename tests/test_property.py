"""Property tests: whatever mix of writes callers make, every file ends up byte-exact.

Hypothesis draws a whole plan first (files, threads, and each thread's writes);
the plan then runs for real, with real threads and real files, and each file
must hold exactly its writes' bytes in call order.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nonblock import BackgroundWriteProcess, HddQueue, bgwrite, bgwrite_chunk

WAIT = 60.0

# Each example runs in a fresh directory of its own under tmp_path, so the
# function-scoped fixture is safe to share across examples.
PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def example_dir(tmp_path: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path))


# -- binary writes from several threads to several files ----------------------------------

PAYLOAD_FORMS = ("bytes", "bytearray", "memoryview", "list", "tuple")


@dataclass
class WriteOp:
    file: int
    chunk_size: Optional[int]  # None: bgwrite; an int: bgwrite_chunk with that chunkSize
    form: str  # one of PAYLOAD_FORMS
    pieces: List[bytes]  # the list items, or a single piece for the non-list forms
    io_prio: int
    chain_back: Optional[int]  # chainAfter this thread's write number chain_back


@dataclass
class Plan:
    unbuffered: List[bool]  # per file: open(..., buffering=0) or buffered
    threads: List[List[WriteOp]]
    private_queue: bool


@st.composite
def write_ops(draw: Any, file_count: int, index: int) -> WriteOp:
    form = draw(st.sampled_from(PAYLOAD_FORMS))
    if form in ("list", "tuple"):
        pieces = draw(st.lists(st.binary(max_size=64), max_size=6))
    else:
        pieces = [draw(st.binary(max_size=200))]
    return WriteOp(
        file=draw(st.integers(0, file_count - 1)),
        chunk_size=draw(st.none() | st.integers(1, 64)),
        form=form,
        pieces=pieces,
        io_prio=draw(st.integers(1, 10)),
        chain_back=draw(st.none() | st.integers(0, index - 1)) if index else None,
    )


@st.composite
def plans(draw: Any) -> Plan:
    file_count = draw(st.integers(3, 4))
    thread_count = draw(st.integers(2, 4))
    threads = []
    for _ in range(thread_count):
        op_count = draw(st.integers(1, 8))
        threads.append([draw(write_ops(file_count, index)) for index in range(op_count)])
    return Plan(
        unbuffered=draw(st.lists(st.booleans(), min_size=file_count, max_size=file_count)),
        threads=threads,
        private_queue=draw(st.booleans()),
    )


def build_payload(op: WriteOp) -> Tuple[Any, List[bytearray]]:
    """The data argument for *op*, and the mutable buffers in it (to scribble on afterwards)."""
    mutable: List[bytearray] = []

    def item(piece: bytes, form: str) -> Any:
        if form == "bytearray":
            buffer = bytearray(piece)
            mutable.append(buffer)
            return buffer
        if form == "memoryview":
            return memoryview(piece)
        return piece

    if op.form == "list":
        # Alternate item types inside a list too.
        return [item(p, ("bytes", "bytearray")[i % 2]) for i, p in enumerate(op.pieces)], mutable
    if op.form == "tuple":
        return tuple(item(p, "bytes") for p in op.pieces), mutable
    return item(op.pieces[0], op.form), mutable


def run_plan(plan: Plan, directory: Path) -> None:
    queue = HddQueue("property") if plan.private_queue else None
    paths = [directory / f"file{index}.bin" for index in range(len(plan.unbuffered))]
    streams = [
        open(path, "wb", buffering=0 if unbuffered else -1)
        for path, unbuffered in zip(paths, plan.unbuffered)
    ]
    file_locks = [threading.Lock() for _ in streams]
    expected: List[List[bytes]] = [[] for _ in streams]
    submitted: List[Tuple[BackgroundWriteProcess, int]] = []
    failures: List[BaseException] = []

    def caller(ops: List[WriteOp]) -> None:
        mine: List[BackgroundWriteProcess] = []
        try:
            for op in ops:
                data, mutable = build_payload(op)
                chain = mine[op.chain_back] if op.chain_back is not None else None
                content = b"".join(op.pieces)
                # The lock makes "call order" well defined for each file.
                with file_locks[op.file]:
                    if op.chunk_size is None:
                        task = bgwrite(
                            streams[op.file], data, chainAfter=chain, ioPrio=op.io_prio, queue=queue
                        )
                    else:
                        task = bgwrite_chunk(
                            streams[op.file], data, op.chunk_size,
                            chainAfter=chain, ioPrio=op.io_prio, queue=queue,
                        )
                    expected[op.file].append(content)
                # The caller may reuse its buffers at once: the write must not see it.
                for buffer in mutable:
                    buffer[:] = b"\xee" * len(buffer)
                mine.append(task)
                submitted.append((task, len(content)))
        except BaseException as error:  # report it from the test thread
            failures.append(error)

    threads = [
        threading.Thread(target=caller, args=(ops,), name=f"caller-{number}")
        for number, ops in enumerate(plan.threads)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
            assert not thread.is_alive(), "a calling thread blocked: bgwrite must return at once"
        assert not failures, f"a bgwrite call raised: {failures[0]!r}"
        assert len(submitted) == sum(len(ops) for ops in plan.threads)
        for task, size in submitted:
            assert task.result(timeout=WAIT) == size
            assert task.finished
        if queue is not None:
            queue.shutdown(wait=True)
            assert queue.is_shutdown()
    finally:
        for stream in streams:
            stream.close()
    for index, path in enumerate(paths):
        assert path.read_bytes() == b"".join(expected[index]), f"file{index} differs"


@PROPERTY_SETTINGS
@given(plan=plans())
def test_concurrent_mixed_binary_writes_leave_each_file_with_its_writes_in_call_order(tmp_path, plan):
    """bgwrite/bgwrite_chunk, bytes/bytearray/memoryview/list/tuple, any ioPrio, chainAfter
    across files, 2-4 calling threads: every file holds exactly its writes, in call order."""
    run_plan(plan, example_dir(tmp_path))


# -- text streams --------------------------------------------------------------------------

# Any code point a UTF codec can encode (no lone surrogates), so also non-ASCII,
# astral-plane characters and line separators.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


@dataclass
class TextOp:
    chunk_size: Optional[int]  # None: bgwrite; an int: bgwrite_chunk
    as_list: bool
    pieces: List[str]


text_ops = st.builds(
    TextOp,
    chunk_size=st.none() | st.integers(1, 16),
    as_list=st.booleans(),
    pieces=st.lists(texts, min_size=1, max_size=4),
)


@PROPERTY_SETTINGS
@given(
    ops=st.lists(text_ops, min_size=1, max_size=10),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    newline=st.sampled_from([None, "", "\n", "\r\n"]),
    chain=st.booleans(),
)
def test_text_written_in_the_background_matches_plain_writes(tmp_path, ops, encoding, newline, chain):
    """str data through bgwrite and bgwrite_chunk to a text file gives the same bytes as write()."""
    directory = example_dir(tmp_path)
    background_path, plain_path = directory / "background.txt", directory / "plain.txt"

    with open(plain_path, "w", encoding=encoding, newline=newline) as plain:
        for op in ops:
            text = "".join(op.pieces)
            # bgwrite skips empty data, and plain write("") would emit the BOM of
            # utf-8-sig/utf-16 even though closing an unwritten file does not.
            if text:
                plain.write(text)

    tasks: List[Tuple[BackgroundWriteProcess, int]] = []
    with open(background_path, "w", encoding=encoding, newline=newline) as stream:
        previous = None
        for op in ops:
            data = list(op.pieces) if op.as_list else "".join(op.pieces)
            after = previous if chain else None
            if op.chunk_size is None:
                task = bgwrite(stream, data, chainAfter=after)
            else:
                task = bgwrite_chunk(stream, data, op.chunk_size, chainAfter=after)
            tasks.append((task, len("".join(op.pieces))))
            previous = task
        for task, characters in tasks:
            assert task.result(timeout=WAIT) == characters

    assert background_path.read_bytes() == plain_path.read_bytes()
