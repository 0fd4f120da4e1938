"""Each file operation against what mhddq 0.3.0 does with the same files.

mhddq 0.3.0's operations were read and run on real files: what it does is what
these tests expect, unless a test's name says ``unlike_mhddq`` (a place where
mhddq loses data, reports a success it did not have, or hides the error); its
docstring then says what mhddq does.  Every test runs the operation through a
real queue on real files in tmp_path, and checks the result flag, the output
dict and what is on disk afterwards.

The last section pins three defects of the call itself: a data type that does
not match ``binary``, a path that is not a path, and an atomic write onto a
symlink.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import pytest
from test_fileops import Collector, run

from nonblock import HddQueue, hddq
from nonblock.fileops import OPERATIONS

# -- the files ---------------------------------------------------------------------------------
# One tree for every test; links are relative, so the snapshot reads the same in any tmp_path.


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("alpha")
    (tmp_path / "d" / "sub").mkdir()
    (tmp_path / "d" / "sub" / "b.txt").write_text("beta")
    (tmp_path / "e").mkdir()
    (tmp_path / "f.txt").write_text("hello")
    (tmp_path / "g.txt").write_text("other")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("keep")
    os.symlink("d", tmp_path / "ldir")
    os.symlink("f.txt", tmp_path / "lfile")
    os.symlink("nowhere", tmp_path / "ldang")
    return tmp_path


BASE: Dict[str, str] = {
    "d": "dir", "d/a.txt": "file:alpha", "d/sub": "dir", "d/sub/b.txt": "file:beta",
    "e": "dir", "f.txt": "file:hello", "g.txt": "file:other", "out": "dir", "out/keep.txt": "file:keep",
    "ldir": "link:d", "lfile": "link:f.txt", "ldang": "link:nowhere",
}


def snapshot(top: Path) -> Dict[str, str]:
    """Every entry under *top*, by relative path: dir, file:<text>, link:<target> or other."""
    found = {}
    for folder, dirs, files in os.walk(top):  # never descends into a symlink
        for name in dirs + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                kind = "link:" + os.readlink(path)
            elif stat.S_ISDIR(mode):
                kind = "dir"
            elif stat.S_ISREG(mode):
                kind = "file:" + Path(path).read_text()
            else:
                kind = "other"
            found[os.path.relpath(path, top)] = kind
    return found


def changed(remove: Iterable[str] = (), add: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """BASE without *remove* (and everything below them), with *add*."""
    gone = tuple(remove)
    state = {k: v for k, v in BASE.items() if not any(k == g or k.startswith(g + "/") for g in gone)}
    state.update(add or {})
    return state


def ok(report: Dict[str, Any], output: Optional[Dict[str, Any]] = None) -> None:
    assert report["result"] is True, report["output"]
    assert report["output"] == ({} if output is None else output)


def failed(report: Dict[str, Any], type_name: str, *message_parts: str) -> str:
    assert report["result"] is False
    assert list(report["output"]) == ["exception"]
    message = report["output"]["exception"]
    assert message.startswith(type_name + ": "), message
    for part in message_parts:
        assert part in message, (part, message)
    return str(message)


def op(queue: HddQueue, name: str, root: Path, *names: str) -> Dict[str, Any]:
    return run(queue, name, *[str(root / n) for n in names])


# -- file_copy ---------------------------------------------------------------------------------


def test_file_copy_makes_a_new_file(queue, root):
    ok(op(queue, "file_copy", root, "f.txt", "new.txt"))
    assert snapshot(root) == changed(add={"new.txt": "file:hello"})


@pytest.mark.parametrize("destination", ["g.txt", "f.txt", "lfile", "e", "d", "ldir"])
def test_file_copy_refuses_any_destination_that_exists(queue, root, destination):
    """mhddq: FileExistsError (with an empty message) for a file, the source itself, a
    symlink to a file, a directory or a symlink to one; nothing is written."""
    failed(op(queue, "file_copy", root, "f.txt", destination), "FileExistsError",
           "File exists", str(root / destination))
    assert snapshot(root) == BASE


def test_file_copy_refuses_an_existing_destination_before_looking_at_the_source(queue, root):
    failed(op(queue, "file_copy", root, "nope", "g.txt"), "FileExistsError", str(root / "g.txt"))
    assert snapshot(root) == BASE


def test_file_copy_keeps_the_sources_mode_and_times(queue, root):
    os.chmod(root / "f.txt", 0o600)
    os.utime(root / "f.txt", ns=(1_000_000_000_000_000_000, 1_200_000_000_000_000_000))
    ok(op(queue, "file_copy", root, "f.txt", "new.txt"))
    copied = os.stat(root / "new.txt")
    assert stat.S_IMODE(copied.st_mode) == 0o600
    assert copied.st_mtime_ns == 1_200_000_000_000_000_000
    assert snapshot(root) == changed(add={"new.txt": "file:hello"})


def test_file_copy_of_a_symlink_copies_the_file_it_points_to(queue, root):
    ok(op(queue, "file_copy", root, "lfile", "new.txt"))
    assert not os.path.islink(root / "new.txt")
    assert snapshot(root) == changed(add={"new.txt": "file:hello"})


def test_file_copy_through_a_dangling_symlink_creates_the_file_it_points_to(queue, root):
    ok(op(queue, "file_copy", root, "f.txt", "ldang"))
    assert snapshot(root) == changed(add={"nowhere": "file:hello"})


@pytest.mark.parametrize("source, type_name, words", [
    ("nope", "FileNotFoundError", "No such file or directory"),
    ("ldang", "FileNotFoundError", "No such file or directory"),
    ("d", "IsADirectoryError", "Is a directory"),
    ("ldir", "IsADirectoryError", "Is a directory"),
])
def test_file_copy_of_a_missing_source_or_a_directory_fails_and_makes_nothing(
        queue, root, source, type_name, words):
    failed(op(queue, "file_copy", root, source, "new.txt"), type_name, words, str(root / source))
    assert snapshot(root) == BASE


def test_file_copy_of_a_fifo_fails_at_once_and_makes_nothing(queue, root):
    os.mkfifo(root / "fifo")
    failed(op(queue, "file_copy", root, "fifo", "new.txt"), "SpecialFileError", "is a named pipe")
    assert snapshot(root) == changed(add={"fifo": "other"})


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux's /proc/self/mem")
def test_file_copy_that_fails_while_copying_leaves_no_partial_file_unlike_mhddq(queue, root):
    """mhddq (copy2) leaves what it had written.  /proc/self/mem is a regular file whose
    first read fails (EIO: address 0 is not mapped)."""
    report = run(queue, "file_copy", "/proc/self/mem", str(root / "new.txt"))
    failed(report, "OSError", "Input/output error")
    assert snapshot(root) == BASE


def test_file_copy_missing_parent_folder(queue, root):
    failed(op(queue, "file_copy", root, "f.txt", "nope/new.txt"), "FileNotFoundError", str(root / "nope"))
    assert snapshot(root) == BASE


# -- file_delete, file_rename, file_move ---------------------------------------------------------


@pytest.mark.parametrize("link", ["lfile", "ldir", "ldang"])
def test_file_delete_of_a_symlink_removes_the_link_never_what_it_points_to(queue, root, link):
    ok(op(queue, "file_delete", root, link))
    assert snapshot(root) == changed(remove=[link])


def test_file_delete_of_a_directory_fails_and_keeps_it(queue, root):
    failed(op(queue, "file_delete", root, "d"), "IsADirectoryError", "Is a directory", str(root / "d"))
    assert snapshot(root) == BASE


def test_file_delete_of_a_missing_file(queue, root):
    failed(op(queue, "file_delete", root, "nope"), "FileNotFoundError", "No such file or directory")
    assert snapshot(root) == BASE


def test_file_rename_over_an_existing_file_replaces_it(queue, root):
    ok(op(queue, "file_rename", root, "f.txt", "g.txt"))
    assert snapshot(root) == changed(remove=["f.txt"], add={"g.txt": "file:hello"})


def test_file_rename_onto_a_directory_fails_and_moves_nothing(queue, root):
    failed(op(queue, "file_rename", root, "f.txt", "e"), "IsADirectoryError", "Is a directory")
    assert snapshot(root) == BASE


def test_file_rename_renames_a_directory_too(queue, root):
    ok(op(queue, "file_rename", root, "d", "renamed"))
    assert snapshot(root) == changed(remove=["d"], add={
        "renamed": "dir", "renamed/a.txt": "file:alpha", "renamed/sub": "dir",
        "renamed/sub/b.txt": "file:beta"})


@pytest.mark.parametrize("operation", ["file_rename", "file_move"])
@pytest.mark.parametrize("link", ["lfile", "ldir", "ldang"])
def test_file_rename_and_move_of_a_symlink_move_the_link_itself(queue, root, operation, link):
    ok(op(queue, operation, root, link, "moved"))
    assert snapshot(root) == changed(remove=[link], add={"moved": BASE[link]})


@pytest.mark.parametrize("operation", ["file_rename", "file_move"])
def test_file_rename_and_move_of_a_missing_file(queue, root, operation):
    failed(op(queue, operation, root, "nope", "new"), "FileNotFoundError", "No such file or directory")
    assert snapshot(root) == BASE


def test_file_move_into_an_existing_directory_puts_it_inside(queue, root):
    ok(op(queue, "file_move", root, "f.txt", "e"))
    assert snapshot(root) == changed(remove=["f.txt"], add={"e/f.txt": "file:hello"})


def test_file_move_moves_a_directory_too(queue, root):
    ok(op(queue, "file_move", root, "d", "e"))
    assert snapshot(root) == changed(remove=["d"], add={
        "e/d": "dir", "e/d/a.txt": "file:alpha", "e/d/sub": "dir", "e/d/sub/b.txt": "file:beta"})


def test_file_move_of_a_fifo_moves_it(queue, root):
    os.mkfifo(root / "fifo")
    ok(op(queue, "file_move", root, "fifo", "moved"))
    assert snapshot(root) == changed(add={"moved": "other"})


# -- directory_rename, directory_move --------------------------------------------------------------

MOVED_D_INTO_E = changed(remove=["d"], add={
    "e/d": "dir", "e/d/a.txt": "file:alpha", "e/d/sub": "dir", "e/d/sub/b.txt": "file:beta"})


@pytest.mark.parametrize("operation", ["directory_rename", "directory_move"])
def test_directory_rename_and_move_onto_an_existing_directory_put_it_inside(queue, root, operation):
    ok(op(queue, operation, root, "d", "e"))
    assert snapshot(root) == MOVED_D_INTO_E


@pytest.mark.parametrize("operation", ["directory_rename", "directory_move"])
def test_directory_rename_and_move_into_a_directory_that_has_that_name_fail(queue, root, operation):
    (root / "e" / "d").mkdir()
    failed(op(queue, operation, root, "d", "e"), "Error", "already exists")
    assert snapshot(root) == changed(add={"e/d": "dir"})


@pytest.mark.parametrize("operation", ["directory_rename", "directory_move"])
def test_directory_rename_and_move_make_a_missing_parent(queue, root, operation):
    ok(op(queue, operation, root, "d", "nope/new"))
    assert snapshot(root) == changed(remove=["d"], add={
        "nope": "dir", "nope/new": "dir", "nope/new/a.txt": "file:alpha", "nope/new/sub": "dir",
        "nope/new/sub/b.txt": "file:beta"})


@pytest.mark.parametrize("operation", ["directory_rename", "directory_move"])
def test_directory_rename_and_move_of_a_file_move_the_file(queue, root, operation):
    ok(op(queue, operation, root, "f.txt", "new"))
    assert snapshot(root) == changed(remove=["f.txt"], add={"new": "file:hello"})


@pytest.mark.parametrize("operation", ["directory_rename", "directory_move"])
@pytest.mark.parametrize("link", ["ldir", "lfile", "ldang"])
def test_directory_rename_and_move_of_a_symlink_move_the_link_itself(queue, root, operation, link):
    ok(op(queue, operation, root, link, "new"))
    assert snapshot(root) == changed(remove=[link], add={"new": BASE[link]})


@pytest.mark.parametrize("operation", ["directory_rename", "directory_move"])
def test_directory_rename_and_move_of_a_missing_directory(queue, root, operation):
    failed(op(queue, operation, root, "nope", "new"), "FileNotFoundError", "No such file or directory",
           str(root / "nope"))
    assert snapshot(root) == BASE


@pytest.mark.parametrize("operation", ["directory_rename", "directory_move"])
@pytest.mark.parametrize("destination", ["g.txt", "lfile", "ldang"])
def test_directory_rename_and_move_onto_a_file_or_symlink_fail_and_move_nothing(
        queue, root, operation, destination):
    failed(op(queue, operation, root, "d", destination), "FileExistsError", "File exists")
    assert snapshot(root) == BASE


@pytest.mark.parametrize("operation", ["directory_rename", "directory_move"])
def test_directory_rename_and_move_into_itself_fail_and_move_nothing(queue, root, operation):
    failed(op(queue, operation, root, "d", "d/sub/inner"), "Error", "Cannot move a directory")
    assert snapshot(root) == BASE


# -- directory_copy ------------------------------------------------------------------------------

COPY_OF_D = {"copy": "dir", "copy/a.txt": "file:alpha", "copy/sub": "dir", "copy/sub/b.txt": "file:beta"}


def test_directory_copy_copies_the_tree_with_file_modes(queue, root):
    os.chmod(root / "d" / "a.txt", 0o600)
    ok(op(queue, "directory_copy", root, "d", "copy"))
    assert snapshot(root) == changed(add=COPY_OF_D)
    assert stat.S_IMODE(os.stat(root / "copy" / "a.txt").st_mode) == 0o600


def test_directory_copy_of_a_symlink_to_a_directory_copies_that_directory(queue, root):
    ok(op(queue, "directory_copy", root, "ldir", "copy"))
    assert snapshot(root) == changed(add=COPY_OF_D)


def test_directory_copy_makes_a_missing_parent(queue, root):
    ok(op(queue, "directory_copy", root, "d", "nope/copy"))
    assert snapshot(root) == changed(add={"nope": "dir", **{"nope/" + k: v for k, v in COPY_OF_D.items()}})


@pytest.mark.parametrize("destination", ["e", "g.txt", "ldir", "lfile", "ldang", "d"])
def test_directory_copy_refuses_a_destination_that_exists(queue, root, destination):
    failed(op(queue, "directory_copy", root, "d", destination), "FileExistsError", str(root / destination))
    assert snapshot(root) == BASE


def test_directory_copy_copies_a_linked_file_as_a_file_and_keeps_other_links_unlike_mhddq(queue, root):
    """mhddq copies the contents of a symlink to a file too, but silently leaves a
    symlink to a directory out of the copy, and stops at a dangling one."""
    os.symlink("../out/keep.txt", root / "d" / "to-file")
    os.symlink("../out", root / "d" / "to-dir")
    os.symlink("nowhere", root / "d" / "dangling")
    ok(op(queue, "directory_copy", root, "d", "copy"))
    links = {"to-file": "link:../out/keep.txt", "to-dir": "link:../out", "dangling": "link:nowhere"}
    assert snapshot(root) == changed(add={
        **{"d/" + k: v for k, v in links.items()}, **COPY_OF_D,
        "copy/to-file": "file:keep", "copy/to-dir": "link:../out", "copy/dangling": "link:nowhere"})


@pytest.mark.parametrize("source, type_name", [
    ("nope", "FileNotFoundError"), ("ldang", "FileNotFoundError"),
    ("f.txt", "NotADirectoryError"), ("lfile", "NotADirectoryError"),
])
def test_directory_copy_of_a_missing_source_or_a_file_fails_unlike_mhddq(queue, root, source, type_name):
    """mhddq reports success, having copied nothing."""
    failed(op(queue, "directory_copy", root, source, "copy"), type_name, str(root / source))
    assert snapshot(root) == BASE


def test_directory_copy_into_itself_fails_at_once_unlike_mhddq(queue, root):
    """mhddq copies the copy into itself until the path is too long, leaving it all behind."""
    failed(op(queue, "directory_copy", root, "d", "d/sub/inner"), "OSError", "into itself")
    assert snapshot(root) == BASE


def test_directory_copy_stops_at_a_fifo(queue, root):
    os.mkfifo(root / "d" / "sub" / "fifo")
    failed(op(queue, "directory_copy", root, "d", "copy"), "SpecialFileError", "is a named pipe")
    after = snapshot(root)
    outside_the_copy = {k: v for k, v in after.items() if not k.startswith("copy")}
    assert outside_the_copy == changed(add={"d/sub/fifo": "other"})
    assert "copy/sub/fifo" not in after  # what was copied before it stays, as with mhddq


# -- directory_delete (mhddq 0.3.0 never succeeds) -----------------------------------------------


def test_directory_delete_removes_the_tree_unlike_mhddq(queue, root):
    """mhddq 0.3.0 empties the directory, keeps it, and reports failure: {'exception': "'dirname'"}."""
    ok(op(queue, "directory_delete", root, "d"))
    assert snapshot(root) == changed(remove=["d"])


def test_directory_delete_removes_dangling_links_and_fifos_inside_unlike_mhddq(queue, root):
    """mhddq takes a dangling symlink or a FIFO for a directory and stops there, half done."""
    os.symlink("nowhere", root / "d" / "dangling")
    os.mkfifo(root / "d" / "sub" / "fifo")
    ok(op(queue, "directory_delete", root, "d"))
    assert snapshot(root) == changed(remove=["d"])


@pytest.mark.parametrize("link", ["ldir", "lfile", "ldang"])
def test_directory_delete_of_a_symlink_is_refused_and_nothing_is_touched_unlike_mhddq(queue, root, link):
    """mhddq follows a symlink to a directory and deletes what is inside its target."""
    failed(op(queue, "directory_delete", root, link), "NotADirectoryError", "symbolic link", str(root / link))
    assert snapshot(root) == BASE


def test_directory_delete_of_a_file(queue, root):
    failed(op(queue, "directory_delete", root, "f.txt"), "NotADirectoryError", "Not a directory")
    assert snapshot(root) == BASE


def test_directory_delete_of_a_missing_directory(queue, root):
    failed(op(queue, "directory_delete", root, "nope"), "FileNotFoundError", "No such file or directory")
    assert snapshot(root) == BASE


# -- directory_contents, the exists checks, create, read, write ---------------------------------


def test_directory_contents_names_links_by_what_they_point_to_and_the_rest_other(queue, root):
    """mhddq calls everything that is not a file a "directory": a dangling symlink, a FIFO."""
    os.mkfifo(root / "fifo")
    report = op(queue, "directory_contents", root, "")
    ok(report, {"contents": [
        {"name": "d", "type": "directory"}, {"name": "e", "type": "directory"},
        {"name": "f.txt", "type": "file"}, {"name": "fifo", "type": "other"},
        {"name": "g.txt", "type": "file"}, {"name": "ldang", "type": "other"},
        {"name": "ldir", "type": "directory"}, {"name": "lfile", "type": "file"},
        {"name": "out", "type": "directory"},
    ]})
    assert snapshot(root) == changed(add={"fifo": "other"})


def test_directory_contents_through_a_symlink_and_of_a_file(queue, root):
    ok(op(queue, "directory_contents", root, "ldir"),
       {"contents": [{"name": "a.txt", "type": "file"}, {"name": "sub", "type": "directory"}]})
    failed(op(queue, "directory_contents", root, "f.txt"), "NotADirectoryError", "Not a directory")
    failed(op(queue, "directory_contents", root, "ldang"), "FileNotFoundError", "No such file or directory")
    assert snapshot(root) == BASE


@pytest.mark.parametrize("name, file_exists, directory_exists", [
    ("f.txt", True, False), ("d", False, True), ("lfile", True, False), ("ldir", False, True),
    ("ldang", False, False), ("nope", False, False),
])
def test_the_exists_checks_follow_links_and_tell_files_from_directories(
        queue, root, name, file_exists, directory_exists):
    """mhddq answers both with os.path.exists: True for anything there but a dangling link."""
    ok(op(queue, "file_exists", root, name), {"exists": file_exists})
    ok(op(queue, "directory_exists", root, name), {"exists": directory_exists})
    assert snapshot(root) == BASE


@pytest.mark.parametrize("operation", ["file_create", "directory_create"])
@pytest.mark.parametrize("name", ["f.txt", "d", "lfile", "ldir", "ldang"])
def test_create_refuses_anything_there_even_a_dangling_link(queue, root, operation, name):
    failed(op(queue, operation, root, name), "FileExistsError", "File exists", str(root / name))
    assert snapshot(root) == BASE


@pytest.mark.parametrize("operation", ["file_create", "directory_create"])
def test_create_in_a_missing_folder(queue, root, operation):
    failed(op(queue, operation, root, "nope/new"), "FileNotFoundError", "No such file or directory")
    assert snapshot(root) == BASE


def test_file_read_through_a_symlink_and_of_a_directory(queue, root):
    ok(op(queue, "file_read", root, "lfile"), {"data": "hello"})
    failed(op(queue, "file_read", root, "ldir"), "IsADirectoryError", "Is a directory")
    failed(op(queue, "file_read", root, "ldang"), "FileNotFoundError", "No such file or directory")
    assert snapshot(root) == BASE


def test_file_write_goes_through_a_symlink_and_keeps_it(queue, root):
    ok(run(queue, "file_write", "new", str(root / "lfile")))
    ok(run(queue, "file_write", "made", str(root / "ldang")))
    assert snapshot(root) == changed(add={"f.txt": "file:new", "nowhere": "file:made"})


def test_file_write_onto_a_directory_fails(queue, root):
    failed(run(queue, "file_write", "x", str(root / "ldir")), "IsADirectoryError", "Is a directory")
    assert snapshot(root) == BASE


# -- defects of the call itself ------------------------------------------------------------------
# (a) data of the wrong type for binary, (b) a path that is not a path, (c) an atomic
# write onto a symlink.  (a) and (b) are TypeErrors at the call: nothing is queued.


def nothing_ran(queue: HddQueue, collect: Collector, root: Path) -> None:
    assert queue.wait_idle(timeout=30)
    assert collect.reports == []
    assert snapshot(root) == BASE


WRONG_DATA = [
    ("file_write", (b"bytes", False), "data must be str when binary is False, not b'bytes'"),
    ("file_write", (bytearray(b"ba"), False), "data must be str when binary is False, not bytearray"),
    ("file_write", ("text", True), "data must be a bytes-like object when binary is True, not 'text'"),
    ("file_write", (None, True), "data must be a bytes-like object when binary is True, not None"),
    ("file_write", ("text", 1), "binary must be True or False, not 1"),
    ("file_append", (b"bytes", False), "data must be str when binary is False, not b'bytes'"),
    ("file_append", ("text", True), "data must be a bytes-like object when binary is True, not 'text'"),
]


@pytest.mark.parametrize("name, data_binary, message", WRONG_DATA,
                         ids=[f"{r[0]}-{r[2][:30]}" for r in WRONG_DATA])
def test_data_that_does_not_match_binary_is_a_type_error_at_the_call_and_the_file_is_untouched(
        queue, root, name, data_binary, message):
    data, binary = data_binary
    target = str(root / "f.txt")
    collect = Collector()
    calls = [
        lambda: getattr(queue, name)(collect, data, target, binary),
        lambda: getattr(queue, name)(collect, data, target, binary=binary),
        lambda: getattr(hddq, name)(collect, data, target, binary),
        lambda: getattr(hddq, "oplist_" + name)(hddq.create_empty_oplist(), collect, data, target, binary),
    ]
    if binary is False:
        calls.append(lambda: getattr(hddq, name)(collect, data, target))
    for call in calls:
        with pytest.raises(TypeError, match=f"^{name}: ") as raised:
            call()
        assert message in str(raised.value)
    assert hddq.default_queue().wait_idle(timeout=30)
    nothing_ran(queue, collect, root)


@pytest.mark.parametrize("binary", [1, 0, None, "yes"])
def test_file_read_binary_must_be_a_bool(queue, root, binary):
    collect = Collector()
    with pytest.raises(TypeError, match=f"file_read: binary must be True or False, not {binary!r}"):
        queue.file_read(collect, str(root / "f.txt"), binary)
    nothing_ran(queue, collect, root)


def test_bytes_like_data_of_every_kind_is_written(queue, root):
    ok(run(queue, "file_write", memoryview(b"view"), str(root / "f.txt"), True))
    ok(run(queue, "file_append", bytearray(b"+array"), str(root / "f.txt"), True))
    assert snapshot(root) == changed(add={"f.txt": "file:view+array"})


def test_text_the_encoding_cannot_take_fails_without_truncating_the_file(queue, root):
    report = run(queue, "file_write", "bad \udc80 surrogate", str(root / "f.txt"))
    failed(report, "UnicodeEncodeError", "surrogate")
    assert snapshot(root) == BASE


def test_file_write_text_is_encoded_as_open_would_encode_it(queue, root):
    ok(run(queue, "file_write", "çà\nline", str(root / "f.txt")))
    with open(root / "f.txt") as stream:  # the same default encoding and newline translation
        assert stream.read() == "çà\nline"
    expected = "çà\nline".encode(stream.encoding).replace(b"\n", os.linesep.encode())
    assert (root / "f.txt").read_bytes() == expected


def path_parameters() -> List[Any]:
    cases = []
    for name, operation in OPERATIONS.items():
        for index, parameter in enumerate(operation.positional):
            if parameter.name.endswith(("dirname", "filename")):
                cases.append(pytest.param(name, index, id=f"{name}-{parameter.name}"))
    return cases


def test_every_path_parameter_is_checked():
    names = {(name, parameter)
             for name, operation in OPERATIONS.items() for parameter in operation.path_names}
    assert names == {(p.values[0], OPERATIONS[p.values[0]].positional[p.values[1]].name)
                     for p in path_parameters()}
    assert len(names) == 23  # file_append and file_stat's filename included


def good_arguments(name: str, root: Path) -> List[Any]:
    values: List[Any] = []
    for parameter in OPERATIONS[name].positional:
        if parameter.name == "data":
            values.append("text")
        elif parameter.name == "binary":
            values.append(False)
        else:
            values.append(str(root / "nope"))
    return values


@pytest.mark.parametrize("name, index", path_parameters())
@pytest.mark.parametrize("bad", [None, 3.5, True, object(), bytearray(b"f.txt")],
                         ids=["None", "float", "bool", "object", "bytearray"])
def test_a_path_that_is_not_str_bytes_or_pathlike_is_a_type_error_at_the_call(queue, root, name, index, bad):
    collect = Collector()
    args = good_arguments(name, root)
    args[index] = bad
    parameter = OPERATIONS[name].positional[index].name
    message = f"^{name}: {parameter} must be a path \\(str, bytes or os.PathLike\\), not "
    for call in (lambda: getattr(queue, name)(collect, *args),
                 lambda: getattr(hddq, name)(collect, *args),
                 lambda: getattr(hddq, "oplist_" + name)(hddq.create_empty_oplist(), collect, *args)):
        with pytest.raises(TypeError, match=message) as raised:
            call()
        assert repr(bad)[:40] in str(raised.value)
    assert hddq.default_queue().wait_idle(timeout=30)
    nothing_ran(queue, collect, root)


@pytest.mark.parametrize("name, index", path_parameters())
def test_an_int_path_is_refused_and_no_descriptor_is_used(queue, root, name, index):
    """open() would take the int as a file descriptor: reading it, writing it, closing it."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"in the pipe")
        collect = Collector()
        for fd in (read_end, write_end):
            args = good_arguments(name, root)
            args[index] = fd
            parameter = OPERATIONS[name].positional[index].name
            with pytest.raises(TypeError, match=f"^{name}: {parameter} must be a path .*, not {fd}$"):
                getattr(hddq, name)(collect, *args)
            with pytest.raises(TypeError, match=f"^{name}: {parameter} must be a path"):
                getattr(queue, name)(collect, *args)
        assert hddq.default_queue().wait_idle(timeout=30)
        nothing_ran(queue, collect, root)
        os.write(write_end, b"!")  # both ends still open, the data still there
        assert os.read(read_end, 100) == b"in the pipe!"
    finally:
        os.close(read_end)
        os.close(write_end)


class BadPath:
    def __fspath__(self) -> Any:
        return 42


def test_a_pathlike_whose_fspath_is_not_a_path_is_refused(queue, root):
    collect = Collector()
    with pytest.raises(TypeError, match="file_read: filename must be a path .*BadPath"):
        queue.file_read(collect, BadPath())
    nothing_ran(queue, collect, root)


def test_bytes_and_pathlike_paths_work_everywhere_atomic_writes_too(queue, root):
    ok(run(queue, "file_write", "by bytes", os.fsencode(root / "f.txt"), atomic=True))
    ok(run(queue, "file_read", os.fsencode(root / "f.txt")), {"data": "by bytes"})
    ok(run(queue, "file_write", "by path", root / "g.txt", atomic=True, fsync=True))
    ok(run(queue, "file_copy", root / "g.txt", os.fsencode(root / "copied")))
    ok(run(queue, "directory_copy", os.fsencode(root / "d"), root / "copy"))
    assert snapshot(root) == changed(add={"f.txt": "file:by bytes", "g.txt": "file:by path",
                                          "copied": "file:by path", **COPY_OF_D})


def test_an_atomic_write_onto_a_symlink_replaces_its_target_and_keeps_the_link(queue, root):
    os.chmod(root / "out" / "keep.txt", 0o640)
    os.symlink("../out/keep.txt", root / "d" / "link")
    ok(run(queue, "file_write", "replaced", str(root / "d" / "link"), atomic=True, fsync=True))
    assert snapshot(root) == changed(add={"d/link": "link:../out/keep.txt", "out/keep.txt": "file:replaced"})
    assert stat.S_IMODE(os.stat(root / "out" / "keep.txt").st_mode) == 0o640


def test_an_atomic_write_through_a_chain_of_links_and_a_dangling_link(queue, root):
    os.symlink("lfile", root / "chain")
    ok(run(queue, "file_write", "via chain", str(root / "chain"), atomic=True))
    ok(run(queue, "file_write", "made", str(root / "ldang"), atomic=True))
    assert snapshot(root) == changed(add={
        "chain": "link:lfile", "f.txt": "file:via chain", "nowhere": "file:made"})


def test_an_atomic_write_onto_a_symlink_loop_fails_like_the_plain_write(queue, root):
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    plain = failed(run(queue, "file_write", "x", str(root / "loop-a")), "OSError", "symbolic links")
    atomic = failed(run(queue, "file_write", "x", str(root / "loop-a"), atomic=True),
                    "OSError", "symbolic links")
    assert plain.split(":")[1] == atomic.split(":")[1] == f" [Errno {errno.ELOOP}] {os.strerror(errno.ELOOP)}"
    assert snapshot(root) == changed(add={"loop-a": "link:loop-b", "loop-b": "link:loop-a"})
