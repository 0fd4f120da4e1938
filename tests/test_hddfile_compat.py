"""BackgroundHddFile where the standard library expects a file, and a property test against open().

Every test here does the same thing twice, once into a builtin open() file
and once into a BackgroundHddFile, and compares the bytes on disk (and every
value returned on the way).
"""

from __future__ import annotations

import csv
import gc
import gzip
import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nonblock import BackgroundHddFile, default_queue

RECORD = {"name": "caf\u00e9", "values": list(range(20)), "nested": {"ok": True, "none": None}}


def written_by_both(
    tmp_path: Path, mode: str, use: Callable[[Any], None], **kwargs: Any
) -> Tuple[bytes, bytes]:
    """Run *use(file)* on a builtin file and on a BackgroundHddFile; return both files' bytes."""
    contents = []
    for label, factory in (("open", open), ("background", BackgroundHddFile)):
        path = tmp_path / label
        with factory(path, mode, **kwargs) as file:
            use(file)
        if isinstance(file, BackgroundHddFile):
            assert file.wait(60) and file.finished
        contents.append(path.read_bytes())
    return contents[0], contents[1]


def test_print_to_a_background_file(tmp_path):
    def use(file: Any) -> None:
        for index in range(1000):
            print("row", index, 1.5 * index, sep="\t", file=file)
        print("no newline", end="", file=file, flush=True)

    builtin, ours = written_by_both(tmp_path, "w", use, encoding="utf-8")
    assert ours == builtin and len(ours) > 10_000


def test_json_dump_to_a_background_file(tmp_path):
    builtin, ours = written_by_both(
        tmp_path, "w", lambda file: json.dump([RECORD] * 200, file, indent=2), encoding="utf-8"
    )
    assert ours == builtin
    assert json.loads(ours) == [RECORD] * 200


def test_csv_writer_on_a_background_file(tmp_path):
    rows = [["id", "text", "quoted, comma"]] + [[index, f"line\n{index}", '"q"'] for index in range(500)]
    builtin, ours = written_by_both(
        tmp_path, "w", lambda file: csv.writer(file).writerows(rows), newline="", encoding="utf-8"
    )
    assert ours == builtin
    assert b"\r\n" in ours


def test_pickle_dump_to_a_background_file(tmp_path):
    payload = {"record": RECORD, "blob": os.urandom(300_000), "text": "x" * 100_000}

    def use(file: Any) -> None:
        pickle.dump(payload, file, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump([1, 2, 3], file, protocol=2)

    builtin, ours = written_by_both(tmp_path, "wb", use)
    assert ours == builtin
    with open(tmp_path / "background", "rb") as reader:
        assert pickle.load(reader) == payload and pickle.load(reader) == [1, 2, 3]


def test_logging_stream_handler_on_a_background_file(tmp_path):
    def use(file: Any) -> None:
        handler = logging.StreamHandler(file)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        log = logging.getLogger("compat.stream")
        log.propagate = False
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            for index in range(300):
                log.info("event %d: %s", index, RECORD["name"])
            log.warning("done")
        finally:
            log.removeHandler(handler)
            handler.close()

    builtin, ours = written_by_both(tmp_path, "a", use, encoding="utf-8")
    assert ours == builtin
    assert ours.endswith(b"WARNING compat.stream done\n") and ours.count(b"\n") == 301


def test_shutil_copyfileobj_into_and_out_of_a_background_file(tmp_path):
    source = tmp_path / "source"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    with open(source, "rb") as reader, BackgroundHddFile(tmp_path / "copy", "wb") as destination:
        shutil.copyfileobj(reader, destination)
    assert destination.wait(60)
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()
    with BackgroundHddFile(tmp_path / "copy", "rb") as background_source, \
            open(tmp_path / "copy2", "wb") as plain_destination:
        shutil.copyfileobj(background_source, plain_destination, 100_000)
    assert (tmp_path / "copy2").read_bytes() == source.read_bytes()


def test_gzip_file_over_a_background_file(tmp_path):
    data = b"".join(b"line %d of a compressible log\n" % index for index in range(20_000))

    def use(file: Any) -> None:
        with gzip.GzipFile(fileobj=file, mode="wb", mtime=0, filename="") as compressed:
            compressed.write(data)

    builtin, ours = written_by_both(tmp_path, "wb", use)
    assert ours == builtin
    assert gzip.decompress(ours) == data
    with BackgroundHddFile(tmp_path / "background", "rb") as file, gzip.GzipFile(fileobj=file) as unzip:
        assert unzip.read() == data


def test_a_with_statement_closes_the_file_and_the_object_reads_as_closed(tmp_path):
    with BackgroundHddFile(tmp_path / "f", "w") as file:
        assert not file.closed
        file.write("inside")
    assert file.closed
    with pytest.raises(ValueError, match="closed file"):
        file.write("outside")
    with pytest.raises(ValueError, match="closed file"):
        with file:
            pass
    assert file.wait(60)
    assert (tmp_path / "f").read_text() == "inside"


def test_a_file_dropped_without_close_is_closed_and_written_like_an_open_file(tmp_path):
    file = BackgroundHddFile(tmp_path / "f", "wb")
    file.write(b"dropped but not lost")
    real_file = file._channel.real
    del file
    gc.collect()
    assert default_queue().wait_idle(60)
    assert real_file.closed
    assert (tmp_path / "f").read_bytes() == b"dropped but not lost"


# -- the property: any sequence of calls, the same outcome as open() -------------------------------

MODES = ["w", "wb", "a", "ab", "w+", "r+b", "a+"]
TEXT_ALPHABET = st.sampled_from(list("ab\n\r \u00e9\u20ac\U0001f600"))


def _data(binary: bool) -> st.SearchStrategy[Any]:
    if binary:
        return st.binary(max_size=300) | st.integers(0, 70_000).map(lambda n: b"\xab" * n)
    return st.text(TEXT_ALPHABET, max_size=200)


def _operations(binary: bool) -> st.SearchStrategy[List[Tuple[Any, ...]]]:
    data = _data(binary)
    operation = st.one_of(
        st.tuples(st.just("write"), data),
        st.tuples(st.just("write_mutable"), st.binary(max_size=100)) if binary
        else st.tuples(st.just("write"), data),
        st.tuples(st.just("writelines"), st.lists(data, max_size=5)),
        st.tuples(st.just("flush")),
        st.tuples(st.just("tell")),
        st.tuples(st.just("read"), st.integers(-1, 400)),
        st.tuples(st.just("readline")),
        # Text files only seek to 0, the end, or a cookie from tell(), as open() requires.
        st.tuples(st.just("seek_start")),
        st.tuples(st.just("seek_end")),
        st.tuples(st.just("seek_told")),
        st.tuples(st.just("seek_to"), st.integers(0, 5000)) if binary else st.tuples(st.just("tell")),
        st.tuples(st.just("seek_back"), st.integers(0, 300)) if binary else st.tuples(st.just("tell")),
    )
    return st.lists(operation, max_size=40)


def _run(file: Any, operations: List[Tuple[Any, ...]]) -> List[Any]:
    """Apply *operations*; return every value or exception type each one produced."""
    outcomes: List[Any] = []
    told = 0
    for operation in operations:
        name, args = operation[0], operation[1:]
        try:
            if name == "write_mutable":
                result: Any = file.write(bytearray(args[0]))
            elif name == "seek_start":
                result = file.seek(0)
            elif name == "seek_end":
                result = file.seek(0, os.SEEK_END)
            elif name == "seek_told":
                result = file.seek(told)
            elif name == "seek_to":
                result = file.seek(args[0])
            elif name == "seek_back":
                result = file.seek(-args[0], os.SEEK_CUR)
            else:
                result = getattr(file, name)(*args)
            if name == "tell":
                told = result
        except (OSError, ValueError) as error:  # io.UnsupportedOperation is both
            result = type(error).__name__
        outcomes.append(result)
    return outcomes


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_sequence_of_calls_gives_the_same_bytes_and_answers_as_open(tmp_path, mode, data):
    binary = "b" in mode
    operations = data.draw(_operations(binary), label="operations")
    initial = data.draw(st.binary(max_size=200) if binary else st.text(TEXT_ALPHABET, max_size=100),
                        label="initial content")
    results: Dict[str, Any] = {}
    for label, factory in (("open", open), ("background", BackgroundHddFile)):
        path = tmp_path / f"{label}-{mode}"
        if binary:
            path.write_bytes(initial)
        else:
            path.write_bytes(initial.encode("utf-8"))
        kwargs = {} if binary else {"encoding": "utf-8"}
        extra = {"max_pending_bytes": 4096} if factory is BackgroundHddFile else {}
        file = factory(path, mode, **kwargs, **extra)
        outcomes = _run(file, operations)
        file.close()
        if isinstance(file, BackgroundHddFile):
            assert file.wait(60)
        results[label] = (outcomes, path.read_bytes())
    assert results["background"] == results["open"]
