"""SharedFileHandler: many processes logging into one file, through the shared-memory queue.

Real processes (spawned, so each joins the ring by name, and forked), a real
file: every record whole, each process's records in the order it logged them,
none lost, none written twice; dictConfig; exit without close; bad arguments.
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Dict, List

import pytest

from nonblock.handlers import SharedFileHandler

LINE = re.compile(r"^p(\d) (\d{6}) x{40}$")


def _unique_name() -> str:
    return "nb-test-log-" + uuid.uuid4().hex[:12]


def log_records(name: str, path: str, who: int, count: int) -> None:
    """A child's body: log *count* records through a SharedFileHandler, then close it."""
    handler = SharedFileHandler(name, path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"shared-child-{who}")
    logger.propagate = False
    logger.addHandler(handler)
    for index in range(count):
        logger.warning("p%d %06d %s", who, index, "x" * 40)
    handler.close()


def _records_by_process(path: Path) -> Dict[int, List[int]]:
    by_process: Dict[int, List[int]] = {}
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        assert match, f"a record was split or interleaved: {line!r}"
        by_process.setdefault(int(match.group(1)), []).append(int(match.group(2)))
    return by_process


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_four_processes_log_into_one_file_whole_and_in_order(tmp_path, start_method):
    name, path = _unique_name(), tmp_path / "shared.log"
    context = multiprocessing.get_context(start_method)
    children = [context.Process(target=log_records, args=(name, str(path), who, 5000)) for who in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(90)
        assert child.exitcode == 0
    assert _records_by_process(path) == {who: list(range(5000)) for who in range(4)}


def test_the_handler_works_from_dict_config_and_flush_waits_for_the_file(tmp_path, logger):
    path = tmp_path / "configured.log"
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(message)s"}},
        "handlers": {"shared": {"class": "nonblock.handlers.SharedFileHandler", "name": _unique_name(),
                                "filename": str(path), "formatter": "plain"}},
        "loggers": {logger.name: {"handlers": ["shared"], "level": "INFO"}},
    })
    # (pytest may add capture handlers of its own to the logger.)
    [handler] = [handler for handler in logger.handlers if isinstance(handler, SharedFileHandler)]
    assert handler.name == "shared"
    for index in range(100):
        logger.info("p0 %06d %s", index, "x" * 40)
    handler.flush()  # every record so far is in the file now
    assert _records_by_process(path) == {0: list(range(100))}


def test_records_emitted_before_exit_are_in_the_file_without_close(tmp_path):
    path = tmp_path / "exit.log"
    script = textwrap.dedent(f"""
        import logging
        from nonblock.handlers import SharedFileHandler
        handler = SharedFileHandler({_unique_name()!r}, {str(path)!r})
        handler.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger().addHandler(handler)
        for index in range(2000):
            logging.getLogger().warning("p1 %06d %s", index, "x" * 40)
    """)
    done = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True,
                          timeout=90, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert _records_by_process(path) == {1: list(range(2000))}


def test_a_record_the_encoding_cannot_take_goes_through_handle_error(tmp_path, logger, capsys):
    handler = SharedFileHandler(_unique_name(), tmp_path / "ascii.log", encoding="ascii")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.warning("p2 %06d %s", 0, "x" * 40)
    logger.warning("caf\u00e9")  # not ascii: reported, and the program goes on
    logger.warning("p2 %06d %s", 1, "x" * 40)
    handler.flush()
    assert "UnicodeEncodeError" in capsys.readouterr().err
    assert _records_by_process(tmp_path / "ascii.log") == {2: [0, 1]}


@pytest.mark.parametrize("arguments, error, words", [
    (("n", "f.log", "w"), ValueError, "mode must be 'a'"),
    (("n", 42), TypeError, "filename must be a path"),
    ((42, "f.log"), TypeError, "name"),
])
def test_bad_arguments_are_refused_at_the_call(tmp_path, monkeypatch, arguments, error, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=words):
        SharedFileHandler(*arguments)
    assert not (tmp_path / "f.log").exists()
