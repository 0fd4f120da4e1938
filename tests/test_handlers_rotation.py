"""The rotating handlers: the stdlib's names, sizes and times, done in order with the writes."""

from __future__ import annotations

import gzip
import logging
import logging.handlers
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import List

import pytest

from nonblock.handlers import BackgroundRotatingFileHandler, BackgroundTimedRotatingFileHandler

LINE = re.compile(r"^(t\d) (\d{6}) [a-z]+$")


def plain(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def backups_oldest_first(folder: Path, base: str) -> List[Path]:
    numbered = sorted((p for p in folder.iterdir() if p.name.startswith(base + ".")),
                      key=lambda p: -int(p.name.rsplit(".", 1)[1]))
    return numbered + [folder / base]


def contents(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("backups", [1, 4])
def test_size_rotation_gives_the_stdlib_files_byte_for_byte(tmp_path: Path, backups: int) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    (ours / "app.log").write_text("already here\n")
    (theirs / "app.log").write_text("already here\n")
    options = {"maxBytes": 1000, "backupCount": backups}
    background = plain(BackgroundRotatingFileHandler(ours / "app.log", **options))
    stdlib = plain(logging.handlers.RotatingFileHandler(theirs / "app.log", **options))
    for i in range(600):
        record = logging.makeLogRecord({"msg": "record %d %s", "args": (i, "y" * (i % 37))})
        background.handle(record)
        stdlib.handle(record)
    background.close()
    stdlib.close()
    assert contents(ours) == contents(theirs)
    assert sorted(contents(ours)) == ["app.log"] + [f"app.log.{n}" for n in range(1, backups + 1)]


def test_rotation_under_load_every_record_in_exactly_one_file_none_split(
        tmp_path: Path, logger: logging.Logger) -> None:
    max_bytes = 64 * 1024
    handler = plain(BackgroundRotatingFileHandler(tmp_path / "load.log", maxBytes=max_bytes,
                                                  backupCount=10_000))
    logger.addHandler(handler)
    per_thread = 15_000

    def work(name: str) -> None:
        for i in range(per_thread):
            logger.info("%s %06d %s", name, i, "abcdefghijklmnopqrstuvwxyz"[: i % 26 + 1])

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    files = backups_oldest_first(tmp_path, "load.log")
    assert len(files) > 30  # it really rotated, many times, while the threads logged
    seen: dict[str, List[int]] = {f"t{n}": [] for n in range(8)}
    for path in files:
        data = path.read_bytes()
        assert len(data) < max_bytes
        assert data.endswith(b"\n"), f"{path.name} ends inside a record"
        for line in data.decode().split("\n")[:-1]:
            match = LINE.match(line)
            assert match, f"split or garbled record in {path.name}: {line!r}"
            seen[match.group(1)].append(int(match.group(2)))
    for name, numbers in seen.items():
        assert numbers == list(range(per_thread)), f"{name}: lost, repeated or reordered records"


def test_backup_count_keeps_that_many_and_zero_never_rotates(tmp_path: Path, logger: logging.Logger) -> None:
    for name, count in [("two.log", 2), ("none.log", 0)]:
        handler = BackgroundRotatingFileHandler(tmp_path / name, maxBytes=100, backupCount=count)
        logger.addHandler(plain(handler))
    for i in range(100):
        logger.info("record number %04d", i)
    for handler in logger.handlers:
        handler.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["none.log", "two.log", "two.log.1", "two.log.2"]
    assert (tmp_path / "none.log").read_text().count("\n") == 100  # as the stdlib: grows on
    assert (tmp_path / "two.log").read_text().splitlines()[-1] == "record number 0099"


def test_a_record_longer_than_max_bytes_does_not_rotate_an_empty_file(
        tmp_path: Path, logger: logging.Logger) -> None:
    # CPython 3.11 rotates an empty file here, pushing the backups out with empty files.
    handler = plain(BackgroundRotatingFileHandler(tmp_path / "big.log", maxBytes=50, backupCount=3))
    logger.addHandler(handler)
    logger.info("x" * 200)
    logger.info("y" * 200)
    handler.flush()
    assert (tmp_path / "big.log").read_text() == "y" * 200 + "\n"
    assert (tmp_path / "big.log.1").read_text() == "x" * 200 + "\n"
    assert not (tmp_path / "big.log.2").exists()


def test_size_is_counted_in_encoded_bytes(tmp_path: Path, logger: logging.Logger) -> None:
    # The stdlib adds characters to a byte position; we count bytes, so no file passes maxBytes.
    handler = plain(BackgroundRotatingFileHandler(tmp_path / "u.log", maxBytes=100, backupCount=50,
                                                  encoding="utf-8"))
    logger.addHandler(handler)
    for i in range(60):
        logger.info("%02d ééééééééé", i)  # 12 characters, 21 bytes
    handler.flush()
    sizes = [p.stat().st_size for p in tmp_path.iterdir()]
    assert max(sizes) < 100 and sum(sizes) == 60 * 22


def test_namer_and_rotator_are_used(tmp_path: Path, logger: logging.Logger) -> None:
    handler = plain(BackgroundRotatingFileHandler(tmp_path / "z.log", maxBytes=200, backupCount=3))
    handler.namer = lambda name: name + ".gz"

    rotated_on: List[str] = []

    def gzip_rotator(source: str, dest: str) -> None:
        rotated_on.append(threading.current_thread().name)
        with open(source, "rb") as src, gzip.open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
        os.remove(source)

    handler.rotator = gzip_rotator
    logger.addHandler(handler)
    for i in range(30):
        logger.info("line %02d %s", i, "-" * 20)
    handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["z.log", "z.log.1.gz", "z.log.2.gz", "z.log.3.gz"]
    lines = []
    for name in ["z.log.3.gz", "z.log.2.gz", "z.log.1.gz"]:
        lines += gzip.decompress((tmp_path / name).read_bytes()).decode().splitlines()
    lines += (tmp_path / "z.log").read_text().splitlines()
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], 30))
    # On the queue's IO threads, not the caller's: the caller never waits for a rotation.
    assert rotated_on and all(re.fullmatch(r"nonblock-io-\d", name) for name in rotated_on)


def test_timed_rotation_names_and_deletes_as_the_stdlib(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    background = plain(BackgroundTimedRotatingFileHandler(ours / "t.log", when="S", backupCount=3))
    stdlib = plain(logging.handlers.TimedRotatingFileHandler(theirs / "t.log", when="S", backupCount=3))
    start = int(time.time()) - 3600
    for step in range(6):
        # Each step is a rollover due one second later than the last, so both name it alike.
        background.rolloverAt = stdlib.rolloverAt = start + step + 1
        for i in range(5):
            record = logging.makeLogRecord({"msg": "step %d record %d", "args": (step, i)})
            background.handle(record)
            stdlib.handle(record)
        assert background.rolloverAt > time.time() - 1  # the next rollover is in the future again
    background.close()
    stdlib.close()
    assert contents(ours) == contents(theirs)
    assert len(contents(ours)) == 4  # t.log and the 3 newest backups


def test_timed_rotation_computes_the_stdlib_rollover_times(tmp_path: Path) -> None:
    for when, interval, utc in [("midnight", 1, False), ("W3", 1, True), ("H", 2, False), ("D", 1, True)]:
        options = {"when": when, "interval": interval, "utc": utc}
        ours = BackgroundTimedRotatingFileHandler(tmp_path / f"{when}.a", **options)
        theirs = logging.handlers.TimedRotatingFileHandler(tmp_path / f"{when}.b", **options)
        try:
            assert ours.rolloverAt == theirs.rolloverAt, when
            assert (ours.suffix, ours.extMatch.pattern) == (theirs.suffix, theirs.extMatch.pattern)
        finally:
            ours.close()
            theirs.close()


def test_failed_rollover_of_a_removed_folder_reaches_handle_error_and_logging_resumes(
        tmp_path: Path, logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    handler = plain(BackgroundRotatingFileHandler(folder / "r.log", maxBytes=100, backupCount=2))
    logger.addHandler(handler)
    logger.info("a" * 60)
    handler.flush()
    shutil.rmtree(folder)
    logger.info("b" * 60)  # rolls over: the rename fails on the queue
    handler.flush()  # ... and the failure is reported here at the latest
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "FileNotFoundError" in err
    folder.mkdir()
    logger.info("c" * 60)
    handler.close()
    assert (folder / "r.log").read_text() == "c" * 60 + "\n"


def test_do_rollover_by_hand_with_delay_starts_the_fresh_file_at_once(
        tmp_path: Path, logger: logging.Logger) -> None:
    # The stdlib leaves no base file until the next record; the rotation here puts a fresh one
    # under the open stream, so it exists (empty) at once.
    handler = plain(BackgroundRotatingFileHandler(tmp_path / "d.log", maxBytes=10_000, backupCount=2,
                                                  delay=True))
    logger.addHandler(handler)
    logger.info("first")
    handler.doRollover()
    handler.flush()
    assert (tmp_path / "d.log.1").read_text() == "first\n"
    assert (tmp_path / "d.log").read_text() == ""
    logger.info("second")
    handler.flush()
    assert (tmp_path / "d.log").read_text() == "second\n"


def test_timed_rollover_onto_an_existing_backup_keeps_it_and_goes_on_in_the_base_file(
        tmp_path: Path, logger: logging.Logger) -> None:
    # CPython 3.9-3.12 delete the existing backup; 3.13 keeps it but retries at every record.
    handler = plain(BackgroundTimedRotatingFileHandler(tmp_path / "k.log", when="S", backupCount=5))
    logger.addHandler(handler)
    logger.info("before")
    due = int(time.time()) - 100
    taken = tmp_path / ("k.log." + time.strftime(handler.suffix, time.localtime(due - 1)))
    taken.write_text("another process's backup\n")
    handler.rolloverAt = due
    logger.info("after")
    assert handler.rolloverAt > due  # the next rollover is due later all the same
    handler.flush()
    assert taken.read_text() == "another process's backup\n"
    assert (tmp_path / "k.log").read_text() == "before\nafter\n"


def test_fsync_option_through_rotation_and_close(tmp_path: Path, logger: logging.Logger) -> None:
    handler = plain(BackgroundRotatingFileHandler(tmp_path / "s.log", maxBytes=300, backupCount=20,
                                                  fsync=True))
    logger.addHandler(handler)
    for i in range(40):
        logger.info("synced record %02d", i)
    handler.close()
    lines: List[str] = []
    for path in backups_oldest_first(tmp_path, "s.log"):
        lines += path.read_text().splitlines()
    assert lines == [f"synced record {i:02d}" for i in range(40)]
    assert len(list(tmp_path.iterdir())) == 3  # it rotated twice
