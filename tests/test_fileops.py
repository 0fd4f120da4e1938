"""mhddq's file operations and oplists on the HDD queue, on real files and directories."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
from _jobs import CallJob

from nonblock import HddQueue, hddq
from nonblock.fileops import OPERATIONS

REPO = Path(__file__).resolve().parents[1]


class Collector:
    """A callback that keeps every report it receives."""

    def __init__(self) -> None:
        self.reports: List[Dict[str, Any]] = []
        self.threads: List[str] = []

    def __call__(self, report: Dict[str, Any]) -> None:
        self.reports.append(report)
        self.threads.append(threading.current_thread().name)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_text("alpha")
    (tmp_path / "dir" / "sub").mkdir()
    (tmp_path / "dir" / "sub" / "b.bin").write_bytes(b"\x00\x01")
    (tmp_path / "file.txt").write_text("hello")
    return tmp_path


def run(queue: HddQueue, name: str, *args: Any, **kwargs: Any) -> Dict[str, Any]:
    """Run one operation through the queue and return the report its callback got."""
    collect = Collector()
    task = getattr(queue, name)(collect, *args, **kwargs)
    task.exception(timeout=30)
    queue.wait_idle(timeout=30)
    assert len(collect.reports) == 1 and collect.threads == [f"{queue.name}-callbacks"]
    report = collect.reports[0]
    assert type(report) is dict and type(report["output"]) is dict
    assert report["action"] == name
    return report


# -- every operation, success and failure ---------------------------------------------------


def s(p: Path) -> str:
    return str(p)


SUCCESSES: List[Any] = [
    ("directory_exists", lambda t: (s(t / "dir"),), {"exists": True}, None),
    ("directory_create", lambda t: (s(t / "new"),), {}, lambda t: (t / "new").is_dir()),
    ("directory_delete", lambda t: (s(t / "dir"),), {}, lambda t: not (t / "dir").exists()),
    ("directory_rename", lambda t: (s(t / "dir"), s(t / "renamed")), {},
     lambda t: (t / "renamed" / "a.txt").read_text() == "alpha"),
    ("directory_move", lambda t: (s(t / "dir"), s(t / "moved")), {},
     lambda t: (t / "moved" / "sub" / "b.bin").exists() and not (t / "dir").exists()),
    ("directory_copy", lambda t: (s(t / "dir"), s(t / "copy")), {},
     lambda t: (t / "copy" / "sub" / "b.bin").read_bytes() == b"\x00\x01" and (t / "dir").exists()),
    ("directory_contents", lambda t: (s(t / "dir"),),
     {"contents": [{"name": "a.txt", "type": "file"}, {"name": "sub", "type": "directory"}]}, None),
    ("file_exists", lambda t: (s(t / "file.txt"),), {"exists": True}, None),
    ("file_create", lambda t: (s(t / "empty"),), {}, lambda t: (t / "empty").read_bytes() == b""),
    ("file_delete", lambda t: (s(t / "file.txt"),), {}, lambda t: not (t / "file.txt").exists()),
    ("file_rename", lambda t: (s(t / "file.txt"), s(t / "r.txt")), {},
     lambda t: (t / "r.txt").read_text() == "hello"),
    ("file_move", lambda t: (s(t / "file.txt"), s(t / "dir" / "m.txt")), {},
     lambda t: (t / "dir" / "m.txt").read_text() == "hello"),
    ("file_copy", lambda t: (s(t / "file.txt"), s(t / "c.txt")), {},
     lambda t: (t / "c.txt").read_text() == "hello" == (t / "file.txt").read_text()),
    ("file_read", lambda t: (s(t / "file.txt"),), {"data": "hello"}, None),
    ("file_write", lambda t: ("written", s(t / "w.txt")), {},
     lambda t: (t / "w.txt").read_text() == "written"),
    ("file_append", lambda t: (" world", s(t / "file.txt")), {},
     lambda t: (t / "file.txt").read_text() == "hello world"),
]


@pytest.mark.parametrize("name, arguments, output, check", SUCCESSES, ids=[row[0] for row in SUCCESSES])
def test_each_operation_succeeds_and_reports(queue, tree, name, arguments, output, check):
    args = arguments(tree)
    report = run(queue, name, *args)
    assert report["result"] is True
    assert report["output"] == output
    assert report["params"]["callback"] is not None
    assert list(report["params"].values())[1: 1 + len(args)] == list(args)
    if check is not None:
        assert check(tree)


FAILURES: List[Any] = [
    ("directory_create", lambda t: (s(t / "missing" / "child"),), "FileNotFoundError"),
    ("directory_create", lambda t: (s(t / "dir"),), "FileExistsError"),
    ("directory_delete", lambda t: (s(t / "file.txt"),), "NotADirectoryError"),
    ("directory_rename", lambda t: (s(t / "nope"), s(t / "x")), "FileNotFoundError"),
    ("directory_move", lambda t: (s(t / "dir"), s(t / "file.txt")), "FileExistsError"),
    ("directory_copy", lambda t: (s(t / "dir"), s(t / "file.txt")), "FileExistsError"),
    ("directory_contents", lambda t: (s(t / "nope"),), "FileNotFoundError"),
    ("file_create", lambda t: (s(t / "file.txt"),), "FileExistsError"),
    ("file_delete", lambda t: (s(t / "dir"),), "IsADirectoryError"),
    ("file_rename", lambda t: (s(t / "nope"), s(t / "x")), "FileNotFoundError"),
    ("file_move", lambda t: (s(t / "nope"), s(t / "x")), "FileNotFoundError"),
    ("file_copy", lambda t: (s(t / "nope"), s(t / "x")), "FileNotFoundError"),
    ("file_copy", lambda t: (s(t / "file.txt"), s(t / "dir" / "a.txt")), "FileExistsError"),
    ("file_read", lambda t: (s(t / "dir"),), "IsADirectoryError"),
    ("file_write", lambda t: ("x", s(t / "missing" / "f")), "FileNotFoundError"),
    ("file_append", lambda t: ("x", s(t / "dir")), "IsADirectoryError"),
    ("file_stat", lambda t: (s(t / "nope"),), "FileNotFoundError"),
]


@pytest.mark.parametrize("name, arguments, exception", FAILURES, ids=[f"{r[0]}-{r[2]}" for r in FAILURES])
def test_each_operation_reports_its_failure_with_type_and_message(queue, tree, name, arguments, exception):
    report = run(queue, name, *arguments(tree))
    assert report["result"] is False
    assert report["output"]["exception"].startswith(exception + ": ")
    assert len(report["output"]["exception"]) > len(exception) + 2


def test_the_task_of_an_operation_carries_its_output_or_its_exception(queue, tree):
    assert queue.file_read(None, str(tree / "file.txt")).result(timeout=30) == {"data": "hello"}
    assert isinstance(queue.file_read(None, str(tree / "nope")).exception(timeout=30), FileNotFoundError)


def test_exists_checks_the_kind_of_entry(queue, tree):
    assert run(queue, "file_exists", str(tree / "dir"))["output"] == {"exists": False}
    assert run(queue, "directory_exists", str(tree / "file.txt"))["output"] == {"exists": False}


def test_binary_read_and_write(queue, tree):
    run(queue, "file_write", b"\xff\x00", str(tree / "b"), True)
    assert run(queue, "file_read", str(tree / "b"), binary=True)["output"] == {"data": b"\xff\x00"}


def test_directory_create_with_parents(queue, tree):
    report = run(queue, "directory_create", str(tree / "x" / "y" / "z"), parents=True)
    assert report["result"] is True and (tree / "x" / "y" / "z").is_dir()
    assert report["params"]["parents"] is True


def test_atomic_fsynced_write_replaces_the_file_whole_and_leaves_no_temporary(queue, tree):
    run(queue, "file_write", "new content", str(tree / "file.txt"), atomic=True, fsync=True)
    assert (tree / "file.txt").read_text() == "new content"
    assert sorted(p.name for p in tree.iterdir()) == ["dir", "file.txt"]


def test_file_stat_reports_size_type_and_mode(queue, tree):
    output = run(queue, "file_stat", str(tree / "file.txt"))["output"]["stat"]
    assert output["size"] == 5 and output["type"] == "file"
    assert output["mode"] == os.stat(tree / "file.txt").st_mode & 0o7777


def test_deleting_a_tree_never_follows_a_symlink_out_of_it(queue, tree):
    outside = tree / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    os.symlink(outside, tree / "dir" / "link-to-precious")
    os.symlink(outside / "keep.txt", tree / "dir" / "link-to-file")
    assert run(queue, "directory_delete", str(tree / "dir"))["result"] is True
    assert not (tree / "dir").exists()
    assert (outside / "keep.txt").read_text() == "keep me"


def test_a_symlink_to_a_directory_is_not_deleted_as_a_tree(queue, tree):
    os.symlink(tree / "dir", tree / "alias")
    report = run(queue, "directory_delete", str(tree / "alias"))
    assert report["result"] is False
    assert (tree / "dir" / "a.txt").exists()


def test_bad_calls_fail_at_the_call(queue, tree):
    with pytest.raises(TypeError, match="callback"):
        queue.file_exists("not callable", str(tree))
    with pytest.raises(TypeError, match="missing"):
        queue.file_exists(None)
    with pytest.raises(TypeError, match="unexpected"):
        queue.file_exists(None, "x", nonsense=1)


# -- oplists ----------------------------------------------------------------------------------


def test_every_operation_has_an_oplist_twin_that_adds_that_operation():
    for name, operation in OPERATIONS.items():
        required = [p for p in operation.positional if p.default is p.empty]
        oplist = hddq.create_empty_oplist()
        getattr(hddq, "oplist_" + name)(oplist, None, *["x"] * len(required))
        assert len(oplist) == 1 and oplist[0].operation is operation
        assert callable(getattr(hddq, name)) and callable(getattr(HddQueue, name))


def test_an_oplist_runs_depth_first_in_order_and_each_operation_reports(queue, tree):
    collect = Collector()
    outer, inner = hddq.create_empty_oplist(), hddq.create_empty_oplist()
    hddq.oplist_file_write(outer, collect, "1", str(tree / "log"))
    hddq.oplist_file_append(inner, collect, "2", str(tree / "log"))
    hddq.oplist_file_read(inner, collect, str(tree / "nope"))  # fails, the rest goes on
    hddq.oplist_file_append(inner, collect, "3", str(tree / "log"))
    hddq.embed_oplist(outer, inner)
    hddq.oplist_file_read(outer, collect, str(tree / "log"))
    task = queue.enqueue_oplist(outer)
    reports = task.result(timeout=30)
    queue.wait_idle(timeout=30)
    assert [r["action"] for r in collect.reports] == [
        "file_write", "file_append", "file_read", "file_append", "file_read"]
    assert [r["result"] for r in collect.reports] == [True, True, False, True, True]
    assert collect.reports[-1]["output"] == {"data": "123"}
    assert reports == collect.reports
    assert set(collect.threads) == {f"{queue.name}-callbacks"}


def test_stop_on_error_skips_the_rest_and_reports_them_as_skipped(queue, tree):
    collect = Collector()
    oplist = hddq.create_empty_oplist(stop_on_error=True)
    hddq.oplist_file_write(oplist, collect, "a", str(tree / "f"))
    hddq.oplist_file_delete(oplist, collect, str(tree / "nope"))
    hddq.oplist_file_append(oplist, collect, "b", str(tree / "f"))
    queue.enqueue_oplist(oplist).result(timeout=30)
    queue.wait_idle(timeout=30)
    assert [r["result"] for r in collect.reports] == [True, False, False]
    assert collect.reports[2]["output"]["exception"].startswith("OplistStopped: ")
    assert (tree / "f").read_text() == "a"


def test_an_oplist_is_one_turn_at_the_disk(queue, tree):
    # While an oplist runs, no other operation of the queue may run between its items.
    oplist = hddq.create_empty_oplist()
    for index in range(200):
        hddq.oplist_file_append(oplist, None, f"{index},", str(tree / "turn"))
    task = queue.enqueue_oplist(oplist)
    other = queue.file_append(None, "OTHER,", str(tree / "turn"))
    task.result(timeout=30)
    other.result(timeout=30)
    items = (tree / "turn").read_text().strip(",").split(",")
    assert "OTHER" in items
    others_at = items.index("OTHER")
    assert others_at in (0, 200)  # before or after the whole list, never inside it


def test_an_oplist_is_frozen_when_queued(queue, tree):
    oplist = hddq.create_empty_oplist()
    hddq.oplist_file_write(oplist, None, "kept", str(tree / "f"))
    task = queue.enqueue_oplist(oplist)
    hddq.clear_oplist(oplist)
    assert len(oplist) == 0
    task.result(timeout=30)
    assert (tree / "f").read_text() == "kept"


def test_a_malformed_oplist_is_a_type_error_at_enqueue_never_a_dead_thread(queue, tree):
    oplist = hddq.create_empty_oplist()
    oplist.append("not an operation")
    with pytest.raises(TypeError, match="item 0"):
        queue.enqueue_oplist(oplist)
    with pytest.raises(TypeError, match="oplist"):
        queue.enqueue_oplist("not a list")
    looped = hddq.create_empty_oplist()
    with pytest.raises(ValueError):
        hddq.embed_oplist(looped, looped)
    assert queue.file_exists(None, str(tree)).result(timeout=30) == {"exists": False}


# -- the module functions keep mhddq's contract ----------------------------------------------


def test_module_functions_return_true_when_queued(tree):
    collect = Collector()
    assert hddq.file_exists(callback=collect, filename=str(tree / "file.txt")) is True
    oplist = hddq.create_empty_oplist()
    hddq.oplist_directory_exists(oplist=oplist, callback=collect, dirname=str(tree / "dir"))
    assert hddq.enqueue_oplist(oplist) is True
    assert hddq.default_queue().wait_idle(timeout=30)
    assert [r["output"] for r in collect.reports] == [{"exists": True}, {"exists": True}]
    assert collect.reports[0]["params"] == {"callback": collect, "filename": str(tree / "file.txt")}


def test_a_callback_may_enqueue_more_and_shut_down_without_deadlock(queue, tree):
    collect = Collector()
    done = threading.Event()

    def first(report: Dict[str, Any]) -> None:
        then = lambda r: (collect(r), queue.shutdown(wait=True), done.set())  # noqa: E731
        queue.file_write(then, "second", str(tree / "s"))

    queue.file_exists(first, str(tree / "file.txt"))
    assert done.wait(30)
    assert collect.reports[0]["action"] == "file_write" and (tree / "s").read_text() == "second"
    assert queue.wait_idle(timeout=30) and queue.is_shutdown()


def test_a_slow_callback_delays_neither_enqueueing_nor_io(queue, tree):
    release = threading.Event()
    started = threading.Event()
    queue.file_exists(lambda r: (started.set(), release.wait(60)), str(tree))
    assert started.wait(30)
    # Enqueueing returns at once, and the files get written, while the callback is held.
    tasks = [queue.file_write(None, str(i), str(tree / f"w{i}")) for i in range(20)]
    written = threading.Event()
    # after= waits for the writes' IO, not for their (held-up) completion.
    queue.submit_job(CallJob(written.set), after=tasks)
    assert written.wait(30)
    assert all_written(tree, 20)
    assert not release.is_set()
    release.set()
    for task in tasks:
        task.result(timeout=30)


def all_written(tree: Path, count: int) -> bool:
    paths = [tree / f"w{i}" for i in range(count)]
    return all(p.exists() and p.read_text() == str(i) for i, p in enumerate(paths))


MHDDQ_STYLE_PROGRAM = r"""
import sys, time, threading
from nonblock import hddq as mhddq

root = sys.argv[1]
results = []

def collect(args):
    results.append((args['action'], args['result'], args['params'].get('filename')
                    or args['params'].get('dirname'), args['output']))

assert mhddq.directory_create(callback=collect, dirname=root + '/d') is True
assert mhddq.file_write(collect, 'payload', root + '/d/f.txt') is True
fileops = mhddq.create_empty_oplist()
mhddq.oplist_file_exists(oplist=fileops, callback=collect, filename=root + '/d/f.txt')
mhddq.oplist_file_read(fileops, collect, root + '/d/f.txt')
superlist = mhddq.create_empty_oplist()
mhddq.embed_oplist(superlist, fileops)
mhddq.oplist_directory_contents(superlist, collect, root + '/d')
assert mhddq.enqueue_oplist(superlist) is True

def stopper():
    mhddq.shutdown()

threading.Thread(target=stopper).start()
while mhddq.is_shutdown() is False:
    time.sleep(0.01)
assert mhddq.file_exists(collect, root + '/d/f.txt') is False
for row in results:
    print(row)
"""


def test_an_mhddq_program_runs_after_changing_only_its_import(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", MHDDQ_STYLE_PROGRAM, str(tmp_path)], cwd=REPO, capture_output=True,
        text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    d = str(tmp_path / "d")
    assert completed.stdout.splitlines() == [
        f"('directory_create', True, '{d}', {{}})",
        f"('file_write', True, '{d}/f.txt', {{}})",
        f"('file_exists', True, '{d}/f.txt', {{'exists': True}})",
        f"('file_read', True, '{d}/f.txt', {{'data': 'payload'}})",
        f"('directory_contents', True, '{d}', {{'contents': [{{'name': 'f.txt', 'type': 'file'}}]}})",
    ]


def test_an_atomic_write_gives_a_new_file_opens_mode_and_keeps_a_replaced_files_mode(queue, tree):
    run(queue, "file_write", "x", str(tree / "plain.txt"))
    run(queue, "file_write", "x", str(tree / "atomic.txt"), atomic=True)
    assert os.stat(tree / "atomic.txt").st_mode == os.stat(tree / "plain.txt").st_mode
    os.chmod(tree / "file.txt", 0o640)
    run(queue, "file_write", "y", str(tree / "file.txt"), atomic=True)
    assert os.stat(tree / "file.txt").st_mode & 0o777 == 0o640


def test_module_calls_and_other_submissions_keep_call_order_across_batches(tree):
    # Module calls share jobs (batches); a batch must never pull a later call ahead
    # of work submitted in between, nor reorder across its size limit.
    target = str(tree / "order")
    queue = hddq.default_queue()
    expected = []
    for index in range(700):
        if index % 97 == 0:
            queue.file_append(None, f"m{index},", target)  # a method call: its own task
        else:
            assert hddq.file_append(None, f"{index},", target) is True
        expected.append(f"m{index}" if index % 97 == 0 else str(index))
    assert queue.wait_idle(timeout=60)
    assert (tree / "order").read_text().rstrip(",").split(",") == expected


def test_module_calls_report_each_operation_once_in_order(tree):
    collect = Collector()
    for index in range(300):
        hddq.file_exists(collect, str(tree / ("file.txt" if index % 2 else "nope")))
    assert hddq.default_queue().wait_idle(timeout=60)
    assert [r["output"]["exists"] for r in collect.reports] == [bool(i % 2) for i in range(300)]
    assert set(collect.threads) == {"nonblock-callbacks"}
