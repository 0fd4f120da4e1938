"""BackgroundFileHandler: records exact and in order, flush and close, config, errors, drop-in."""

from __future__ import annotations

import logging
import logging.config
import os
import re
import threading
from pathlib import Path
from typing import List

import pytest

from nonblock import BackgroundHddFile
from nonblock.handlers import BackgroundFileHandler

LINE = re.compile(r"^(t\d+) (\d{6}) [a-z]+$")


def attach(log: logging.Logger, handler: logging.Handler, fmt: str = "%(message)s") -> logging.Handler:
    handler.setFormatter(logging.Formatter(fmt))
    log.addHandler(handler)
    return handler


def test_one_thread_records_exact_and_in_order(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "app.log"
    handler = attach(logger, BackgroundFileHandler(path))
    expected = [f"record {i:06d} {'é' if i % 7 == 0 else 'e'} {'x' * (i % 50)}" for i in range(50_000)]
    for line in expected:
        logger.info(line)
    handler.close()
    assert path.read_text(encoding="utf-8").split("\n") == expected + [""]


def test_eight_threads_each_record_once_whole_and_in_thread_order(
        tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "threads.log"
    handler = attach(logger, BackgroundFileHandler(path))
    per_thread = 20_000
    start = threading.Barrier(8)

    def work(name: str) -> None:
        start.wait()
        for i in range(per_thread):
            logger.info("%s %06d %s", name, i, "abcdefghijklmnopqrstuvwxyz"[: i % 26 + 1])

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    seen: dict[str, List[int]] = {f"t{n}": [] for n in range(8)}
    lines = path.read_text().split("\n")
    assert lines[-1] == ""
    for line in lines[:-1]:
        match = LINE.match(line)
        assert match, f"split or garbled record: {line!r}"
        seen[match.group(1)].append(int(match.group(2)))
    for name, numbers in seen.items():
        assert numbers == list(range(per_thread)), name


def test_flush_waits_for_every_record_so_far(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "flush.log"
    handler = attach(logger, BackgroundFileHandler(path))
    for i in range(30_000):
        logger.info("line %d", i)
    handler.flush()
    # Read with a plain file: what flush() promised is on the file, not in a buffer.
    with open(path) as check:
        lines = check.read().splitlines()
    assert len(lines) == 30_000 and lines[-1] == "line 29999"
    assert handler.stream is not None and not handler.stream.closed  # still open for more


def test_close_waits_for_all_and_a_closed_handler_reopens_as_the_stdlib_does(
        tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "close.log"
    handler = attach(logger, BackgroundFileHandler(path))
    for i in range(20_000):
        logger.info("line %d", i)
    handler.close()
    assert handler.stream is None
    assert len(path.read_text().splitlines()) == 20_000
    # logging.FileHandler in mode 'a' opens its file again for a record after close().
    logger.info("after close")
    handler.close()
    assert path.read_text().splitlines()[-1] == "after close"


def test_mode_w_truncates_and_stays_closed_after_close(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "w.log"
    path.write_text("old contents\n")
    handler = attach(logger, BackgroundFileHandler(path, mode="w"))
    logger.info("new")
    handler.close()
    logger.info("dropped, as logging.FileHandler drops it")
    assert path.read_text() == "new\n"


def test_appends_to_an_existing_file(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "a.log"
    path.write_text("first\n")
    handler = attach(logger, BackgroundFileHandler(str(path)))
    logger.info("second")
    handler.close()
    assert path.read_text() == "first\nsecond\n"


def test_what_the_stdlib_handler_offers(tmp_path: Path) -> None:
    path = tmp_path / "attrs.log"
    handler = BackgroundFileHandler(path, encoding="latin-1", delay=True, errors="replace")
    try:
        assert isinstance(handler, logging.FileHandler)
        assert handler.baseFilename == str(path)
        options = (handler.mode, handler.encoding, handler.errors, handler.delay)
        assert options == ("a", "latin-1", "replace", True)
        assert handler.stream is None and not path.exists()  # delay: opened by the first record
        assert repr(handler) == f"<BackgroundFileHandler {path} (NOTSET)>"
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.handle(logging.makeLogRecord({"msg": "café ✓"}))
        handler.flush()
        assert path.read_bytes() == "café ?\n".encode("latin-1")
        assert isinstance(handler.stream, BackgroundHddFile)  # not a TextIOWrapper
    finally:
        handler.close()


def test_a_stateful_encoding_writes_one_byte_order_mark(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "utf16.log"
    handler = attach(logger, BackgroundFileHandler(path, encoding="utf-16"))
    logger.info("one")
    logger.info("two")
    handler.close()
    expected = tmp_path / "expected.log"
    stdlib = logging.FileHandler(expected, encoding="utf-16")
    stdlib.setFormatter(logging.Formatter("%(message)s"))
    for text in ("one", "two"):
        stdlib.handle(logging.makeLogRecord({"msg": text}))
    stdlib.close()
    assert path.read_bytes() == expected.read_bytes()


@pytest.mark.parametrize("options, error, words", [
    ({"max_pending_bytes": 0}, ValueError, "max_pending_bytes"),
    ({"max_pending_bytes": "64M"}, TypeError, "max_pending_bytes"),
    ({"max_pending_bytes": 1.5}, TypeError, "max_pending_bytes"),
    ({"fsync": "yes"}, TypeError, "fsync"),
])
def test_bad_options_fail_at_the_call_and_create_nothing(
        tmp_path: Path, options: dict, error: type, words: str) -> None:
    path = tmp_path / "never.log"
    with pytest.raises(error, match=words):
        BackgroundFileHandler(path, **options)
    assert not path.exists()


def test_a_record_the_encoding_cannot_take_goes_to_handle_error_and_logging_goes_on(
        tmp_path: Path, logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ascii.log"
    handler = attach(logger, BackgroundFileHandler(path, encoding="ascii"))
    logger.info("before")
    logger.info("caf\u00e9")
    logger.info("after")
    handler.close()
    assert path.read_text() == "before\nafter\n"
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "UnicodeEncodeError" in err and "'caf\u00e9'" in err


def test_removed_folder_with_delay_goes_to_handle_error_until_it_is_back(
        tmp_path: Path, logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    handler = attach(logger, BackgroundFileHandler(folder / "app.log", delay=True))
    folder.rmdir()
    logger.info("lost, and reported")
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "FileNotFoundError" in err
    folder.mkdir()
    logger.info("written")
    handler.close()
    assert (folder / "app.log").read_text() == "written\n"


def test_dict_config(tmp_path: Path) -> None:
    path = tmp_path / "dict.log"
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
        "handlers": {"file": {
            "class": "nonblock.handlers.BackgroundFileHandler", "filename": str(path),
            "formatter": "plain", "max_pending_bytes": 1 << 20, "encoding": "utf-8",
        }},
        "loggers": {"dictconf": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    })
    log = logging.getLogger("dictconf")
    [handler] = [h for h in log.handlers if type(h).__module__ == "nonblock.handlers"]  # not pytest's
    try:
        assert type(handler) is BackgroundFileHandler and handler.max_pending_bytes == 1 << 20
        log.info("configured %d", 1)
        log.debug("not at this level")
    finally:
        handler.close()
        log.removeHandler(handler)
    assert path.read_text() == "INFO dictconf configured 1\n"


def test_file_config(tmp_path: Path) -> None:
    path = tmp_path / "file.log"
    ini = tmp_path / "logging.ini"
    ini.write_text(
        "[loggers]\nkeys=root,fileconf\n\n"
        "[handlers]\nkeys=bg\n\n"
        "[formatters]\nkeys=plain\n\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n\n"
        "[logger_fileconf]\nlevel=INFO\nhandlers=bg\nqualname=fileconf\npropagate=0\n\n"
        "[handler_bg]\nclass=nonblock.handlers.BackgroundRotatingFileHandler\nformatter=plain\n"
        f"args=({str(path)!r}, 'a', 1000000, 3)\nkwargs={{'max_pending_bytes': 4194304}}\n\n"
        "[formatter_plain]\nformat=%(levelname)s %(message)s\n"
    )
    root_handlers = list(logging.getLogger().handlers)
    logging.config.fileConfig(ini, disable_existing_loggers=False)
    log = logging.getLogger("fileconf")
    [handler] = [h for h in log.handlers if type(h).__module__ == "nonblock.handlers"]  # not pytest's
    try:
        assert type(handler).__name__ == "BackgroundRotatingFileHandler"
        assert (handler.maxBytes, handler.backupCount, handler.max_pending_bytes) == (1000000, 3, 4194304)
        log.info("from fileConfig")
    finally:
        handler.close()
        log.removeHandler(handler)
        for old in root_handlers:
            logging.getLogger().addHandler(old)
    assert path.read_text() == "INFO from fileConfig\n"


def test_set_stream_is_refused_naming_why(tmp_path: Path) -> None:
    handler = BackgroundFileHandler(tmp_path / "s.log")
    try:
        with pytest.raises(NotImplementedError, match="its own file"):
            with open(os.devnull, "w") as other:
                handler.setStream(other)
    finally:
        handler.close()


def test_a_slow_fifo_holds_emit_back_at_max_pending_bytes_and_gets_every_record(
        tmp_path: Path, logger: logging.Logger) -> None:
    fifo = tmp_path / "slow.fifo"
    os.mkfifo(fifo)
    received: List[bytes] = []

    def slow_reader() -> None:
        with open(fifo, "rb", buffering=0) as source:
            while True:
                block = source.read(16384)
                if not block:
                    return
                received.append(block)
                threading.Event().wait(0.02)  # about 0.8 MB/s: far slower than the logger

    reader = threading.Thread(target=slow_reader)
    reader.start()
    bound = 256 << 10
    handler = attach(logger, BackgroundFileHandler(fifo, max_pending_bytes=bound))
    most = 0
    for i in range(20_000):
        logger.info("record %06d %s", i, "p" * 80)
        most = max(most, handler.stream.pending_bytes)
    handler.close()
    reader.join(60)
    assert bound // 2 < most <= bound  # it filled up to the bound, never past it
    lines = b"".join(received).decode().split("\n")
    assert lines == [f"record {i:06d} {'p' * 80}" for i in range(20_000)] + [""]
