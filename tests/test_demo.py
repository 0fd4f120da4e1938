"""The demos: ``python -m nonblock`` and ``python -m nonblock log``, run as a user runs them."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path
from typing import List

ROOT = str(Path(__file__).resolve().parents[1])
ENV = dict(os.environ, PYTHONPATH=ROOT)


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nonblock", *args], env=ENV, capture_output=True,
                          text=True, timeout=100)


def summary_rows(lines: List[str]) -> List[List[str]]:
    start = next(i for i, line in enumerate(lines) if "blocking write" in line and "bgwrite" in line
                 and "MiB" not in line)
    return [re.split(r"\s{3,}", line.strip()) for line in lines[start:start + 5]]


def test_write_demo_piped_prints_plain_progress_lines_then_the_side_by_side_summary() -> None:
    result = demo("--mib", "16")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Writing 16 MiB to ")
    blocking = [line for line in lines if line.startswith("blocking write:")]
    background = [line for line in lines if line.startswith("bgwrite       :")]
    # Plain lines, one per 10% reached at most, each ending at the whole size.
    assert 2 <= len(blocking) <= 11 and 1 <= len(background) <= 11
    assert "16.0 / 16 MiB (100%)" in blocking[-1] and "16.0 / 16 MiB (100%)" in background[-1]
    assert re.search(r"[\d,]+ rounds of work done$", background[-1])
    header, held, work, on_disk, rate = summary_rows(lines)
    assert header == ["blocking write", "bgwrite"]
    assert held[0] == "caller held" and all(re.fullmatch(r"[\d,.]+ (ms|µs)", v) for v in held[1:])
    assert work[:2] == ["work done meanwhile", "0 rounds"] and re.fullmatch(r"[\d,]+ rounds", work[2])
    assert on_disk[0] == "until on disk"
    assert rate[0] == "throughput" and all(re.fullmatch(r"[\d,]+ MiB/s", v) for v in rate[1:])
    assert re.fullmatch(r"bgwrite held the caller [\d,]+x less; the file was verified\.", lines[-1])


def test_write_demo_on_a_terminal_updates_one_line_in_place() -> None:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "nonblock", "--mib", "16"], env=ENV,
                                   stdout=follower, stderr=subprocess.PIPE)
        os.close(follower)
        output = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            assert ready, "the demo stopped writing"
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the demo closed its end
                break
            if not data:
                break
            output += data
        assert process.wait(60) == 0
    finally:
        os.close(leader)
    text = output.decode().replace("\r\n", "\n")  # the terminal's own newline translation
    lines = text.split("\n")
    progress = [line for line in lines if "MiB (" in line]
    assert len(progress) == 2, progress  # one line per write, rewritten in place
    blocking, background = progress
    # The blocking write has 8 chunks of 2 MiB, each an update of the same line; bgwrite may be
    # done within one look at its progress.
    assert blocking.startswith("\rblocking write:") and blocking.count("\r") == 8
    assert background.startswith("\rbgwrite") and background.count("\r") >= 1
    assert blocking.rstrip().endswith("caller held")
    assert background.rstrip().endswith("rounds of work done")
    for line in progress:
        assert "16.0 / 16 MiB (100%)" in line.split("\r")[-1]
    assert "work done meanwhile" in text


def test_log_demo_prints_each_handlers_caller_time_per_record() -> None:
    result = demo("log", "--records", "20000")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"Logging 20,000 records of about 100 bytes \('.*'\) into .+:", lines[0])
    number = r"\d+\.\d\d"
    for line, label in zip(lines[1:3], ["logging.FileHandler", "BackgroundFileHandler"]):
        assert re.fullmatch(rf"  {re.escape(label)} +{number} µs per record in the caller; "
                            rf"all on disk after +{number} s", line), line
    assert re.fullmatch(rf"BackgroundFileHandler's caller time is {number}x FileHandler's "
                        rf"\([+-]{number} µs saved per record\)\.", lines[3])
    assert len(lines) == 4


def test_the_log_demo_logs_a_million_unless_told_and_refuses_nonsense() -> None:
    assert "default 1,000,000" in demo("log", "--help").stdout
    result = demo("log", "--records", "0")
    assert result.returncode == 2 and "--records: must be at least 1, not 0" in result.stderr
    result = demo("--prio", "11")
    assert result.returncode == 2 and "--prio" in result.stderr
