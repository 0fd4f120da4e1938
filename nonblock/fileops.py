"""mhddq's queued file operations and oplists, on the HDD queue.

Every operation is a plain function in :data:`OPERATIONS`, written once.  From
that table come, without writing any of them out by hand:

* the module functions of :mod:`nonblock.hddq` (``file_exists(callback,
  filename)``, ...), which use the default queue and return mhddq's value: True
  once queued, False after shutdown;
* the :class:`~nonblock.hddq.HddQueue` methods of the same names, which return
  the operation's task (its result is the operation's output);
* the ``oplist_<operation>(oplist, callback, ...)`` twins, which add the
  operation to an oplist instead of queueing it.

A callback receives a plain dict, on the callback thread::

    {'action': 'file_exists', 'result': True,
     'params': {'callback': cb, 'filename': './file.txt'},
     'output': {'exists': False}}

with ``'output': {'exception': 'TypeName: message'}`` and ``'result': False``
when the operation failed.

A call that the operation cannot take is a TypeError at the call, before
anything is queued: a path that is not str, bytes or os.PathLike (an int would
be opened as a file descriptor), ``binary`` other than True or False, ``data``
that is not str (text) or bytes-like (binary).

An oplist is one turn at the disk: an IO thread runs the whole list, embedded
lists included (depth first), without letting the sister thread touch the disk.
Each operation reports on its own; a failure stops the rest only in a list made
with ``stop_on_error=True``.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import io
import os
import secrets
import shutil
import stat
import types
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from nonblock import _checks

__all__ = ["OPERATIONS", "OpList", "create_empty_oplist", "clear_oplist", "embed_oplist"]

Output = Dict[str, Any]


# -- the operations --------------------------------------------------------------------------
# Each takes mhddq's parameters (by mhddq's names) and returns its output dict, or
# raises; the queue turns either into the callback dict.  Each does what mhddq 0.3.0
# does with the same files (tests/test_fileops_mhddq_parity.py pins it), except
# where mhddq loses data or reports a success it did not have: those places say so.

PathArg = Any
"""A path parameter: str, bytes or os.PathLike, checked when the operation is called
(an int would be taken by open() as a file descriptor).  Operation finds the path
parameters by this annotation."""


def directory_exists(dirname: PathArg) -> Output:
    return {"exists": os.path.isdir(dirname)}  # mhddq: os.path.exists, true for a file too


def directory_create(dirname: PathArg, *, parents: bool = False) -> Output:
    if parents:
        os.makedirs(dirname, exist_ok=True)
    else:
        os.mkdir(dirname)
    return {}


def directory_delete(dirname: PathArg) -> Output:
    # rmtree removes symlinks found inside the tree without following them, and
    # a symlink given as the tree itself is refused: nothing outside is touched.
    # (mhddq 0.3.0 follows both, and ends every delete with a KeyError.)
    info = os.lstat(dirname)
    if stat.S_ISLNK(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory (a symbolic link is not followed)", dirname)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), dirname)
    shutil.rmtree(dirname)
    return {}


def directory_rename(old_dirname: PathArg, new_dirname: PathArg) -> Output:
    # shutil.move, as mhddq: into new_dirname if that is a directory already.
    shutil.move(old_dirname, new_dirname)
    return {}


def directory_move(source_dirname: PathArg, destination_dirname: PathArg) -> Output:
    shutil.move(source_dirname, destination_dirname)
    return {}


def directory_copy(source_dirname: PathArg, copy_dirname: PathArg) -> Output:
    if os.path.lexists(copy_dirname):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), copy_dirname)
    # mhddq reports success, having copied nothing, for a missing source or a file.
    if not stat.S_ISDIR(os.stat(source_dirname).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), source_dirname)
    source, copy = os.fspath(source_dirname), os.fspath(copy_dirname)
    if type(source) is not type(copy):  # one given as bytes, the other as str
        source, copy = os.fsdecode(source), os.fsdecode(copy)
    real_source = os.path.realpath(source)
    if os.path.commonpath([real_source, os.path.realpath(copy)]) == real_source:
        # mhddq copies the copy into itself until the path is too long.
        raise OSError(errno.EINVAL, "Cannot copy a directory into itself", copy_dirname)
    os.makedirs(copy)  # its missing parents too, as mhddq
    _copy_contents(source, copy)
    return {}


def _copy_contents(source: Any, copy: Any) -> None:
    """Copy what is in *source* into the existing directory *copy*; stop at the first error.

    As mhddq: a file, or a symlink to one, is copied as a file (its contents and
    mode).  A symlink to a directory, or a dangling one, is copied as a symlink:
    mhddq leaves the first out and stops at the second.
    """
    with os.scandir(source) as scan:
        entries = list(scan)
    for entry in entries:
        target = os.path.join(copy, entry.name)
        if entry.is_dir(follow_symlinks=False):
            os.mkdir(target)
            _copy_contents(entry.path, target)
        elif entry.is_symlink() and not entry.is_file():
            os.symlink(os.readlink(entry.path), target)
        else:
            shutil.copy(entry.path, target)


def directory_contents(dirname: PathArg) -> Output:
    contents = []
    with os.scandir(dirname) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir():
                kind = "directory"
            elif entry.is_file():
                kind = "file"
            else:
                kind = "other"  # a broken symlink, a socket, a FIFO, a device (mhddq: "directory")
            contents.append({"name": entry.name, "type": kind})
    return {"contents": contents}


def file_exists(filename: PathArg) -> Output:
    return {"exists": os.path.isfile(filename)}  # mhddq: os.path.exists, true for a directory too


def file_create(filename: PathArg) -> Output:
    with open(filename, "x"):
        pass
    return {}


def file_delete(filename: PathArg) -> Output:
    os.remove(filename)  # a symlink is removed, never what it points to
    return {}


def file_rename(original_filename: PathArg, new_filename: PathArg) -> Output:
    os.rename(original_filename, new_filename)
    return {}


def file_move(source_filename: PathArg, destination_filename: PathArg) -> Output:
    shutil.move(source_filename, destination_filename)
    return {}


def file_copy(source_filename: PathArg, copy_filename: PathArg) -> Output:
    # mhddq refuses any destination that exists (a file, a directory, a link to
    # either), copies through a dangling link, and keeps the source's mode and
    # times (copy2).  Here the copy is also created with O_EXCL, so a file that
    # appears after the check is not overwritten either, and a failed copy
    # leaves no partial file behind.
    if os.path.exists(copy_filename):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), copy_filename)
    destination = os.path.realpath(copy_filename) if os.path.islink(copy_filename) else copy_filename
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
    source_fd = os.open(source_filename, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(source_fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), source_filename)
        if not stat.S_ISREG(mode):
            what = "a named pipe" if stat.S_ISFIFO(mode) else "not a regular file"
            raise shutil.SpecialFileError(f"`{os.fsdecode(source_filename)}` is {what}")
        copy_fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with open(source_fd, "rb", closefd=False) as source, open(copy_fd, "wb", closefd=False) as copy:
                shutil.copyfileobj(source, copy, _COPY_BUFFER)
        except BaseException:
            os.close(copy_fd)
            with contextlib.suppress(OSError):
                os.unlink(destination)
            raise
        os.close(copy_fd)
    finally:
        os.close(source_fd)
    shutil.copystat(source_filename, destination)
    return {}


_COPY_BUFFER = 1 << 20


def file_read(filename: PathArg, binary: bool = False) -> Output:
    fd = _open_without_waiting(filename, os.O_RDONLY)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), filename)
        if not stat.S_ISREG(mode):  # /dev/zero would be read until memory ran out
            raise shutil.SpecialFileError(f"`{os.fsdecode(filename)}` is not a regular file")
        stream = open(fd, "rb" if binary else "r")
    except BaseException:
        os.close(fd)
        raise
    with stream:
        return {"data": stream.read()}


def file_write(data: Any, filename: PathArg, binary: bool = False, *,
               atomic: bool = False, fsync: bool = False) -> Output:
    # The bytes are made first (text encoded as open() would), so nothing that
    # cannot be written ever truncates the file.
    payload = memoryview(data) if binary else _encode_text(data)
    if not atomic:
        fd = _open_without_waiting(filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with _file_object(fd, "wb") as stream:
            stream.write(payload)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        return {}
    # Atomic: a temporary file beside the target, fsynced, renamed over it, so a
    # reader (or a crash) sees the old file or the new one, never half of one.
    # A symlink is written through, as by the plain write: its target is replaced.
    target = _resolve_link(filename)
    fd, temporary = _create_beside(target)
    try:
        with open(fd, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    if fsync:
        _fsync_directory(os.path.dirname(os.path.abspath(target)))
    return {}


def file_append(data: Any, filename: PathArg, binary: bool = False, *, fsync: bool = False) -> Output:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    with _file_object(_open_without_waiting(filename, flags), "ab" if binary else "a") as stream:
        stream.write(data)
        if fsync:
            stream.flush()
            os.fsync(stream.fileno())
    return {}


def file_stat(filename: PathArg) -> Output:
    info = os.stat(filename)
    if stat.S_ISDIR(info.st_mode):
        kind = "directory"
    elif stat.S_ISREG(info.st_mode):
        kind = "file"
    else:
        kind = "other"
    return {"stat": {"size": info.st_size, "mtime": info.st_mtime, "mode": stat.S_IMODE(info.st_mode),
                     "type": kind}}


def _open_without_waiting(filename: Any, flags: int) -> int:
    """``os.open`` for a file operation, refusing a named pipe instead of waiting on it.

    Opening a FIFO waits for a peer, perhaps forever, and an operation that waits
    holds the disk token: every other write would wait with it.  So a FIFO is
    refused with a clear error, and the open itself is non-blocking (a FIFO made
    after the check cannot make it wait either); the descriptor is then made
    blocking again, for devices such as /dev/null that are fine to use.
    """
    if os.path.exists(filename) and stat.S_ISFIFO(os.stat(filename).st_mode):
        raise shutil.SpecialFileError(f"`{os.fsdecode(filename)}` is a named pipe: opening it would wait")
    fd = os.open(filename, flags | os.O_NONBLOCK, 0o666)
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise shutil.SpecialFileError(f"`{os.fsdecode(filename)}` is a named pipe: opening it would wait")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _file_object(fd: int, mode: str) -> Any:
    """open(fd, mode), closing *fd* if that fails (it would be leaked)."""
    try:
        return open(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def _encode_text(text: Any) -> bytes:
    """*text* as the bytes open(path, "w") would write for it (its encoding and newlines).

    TypeError for anything but str, UnicodeEncodeError for what the encoding
    cannot take: before any file is opened.
    """
    buffer = io.BytesIO()
    wrapper = io.TextIOWrapper(buffer)
    try:
        wrapper.write(text)
        wrapper.flush()
        return buffer.getvalue()
    finally:
        wrapper.detach()


def _resolve_link(filename: Any) -> Any:
    """Where *filename* leads, if it is a symlink (a dangling one too); else *filename*."""
    if not os.path.islink(filename):
        return filename
    resolved = os.path.realpath(filename)
    if os.path.islink(resolved):  # a loop: open() would fail, so must we
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), filename)
    return resolved


def _create_beside(filename: Any) -> Tuple[int, Any]:
    """A new temporary file in *filename*'s folder, with the mode open() would give it.

    The mode is the target's if it exists (a replacement keeps its permissions),
    else 0o666 less the umask, as for any new file.
    """
    folder, name = os.path.split(os.path.abspath(filename))
    while True:
        suffix = f".{secrets.token_hex(6)}.tmp"
        temporary: Any
        if isinstance(name, bytes):
            temporary = os.path.join(folder, b"." + name + os.fsencode(suffix))
        else:
            temporary = os.path.join(folder, f".{name}{suffix}")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        break
    try:
        os.chmod(fd, stat.S_IMODE(os.stat(filename).st_mode))
    except FileNotFoundError:
        pass
    return fd, temporary


def _fsync_directory(folder: Any) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Operation:
    """One row of the table: a function and the shape of its call."""

    def __init__(self, function: Callable[..., Output]) -> None:
        self.name = function.__name__
        self.function = function
        parameters = list(inspect.signature(function).parameters.values())
        self.positional = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        self.options = {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}
        self._names = tuple(p.name for p in self.positional)
        self._defaults = {p.name: p.default for p in self.positional if p.default is not p.empty}
        self._accepted = set(self._names) | self.options
        self._call_names = ("callback", *self._names)
        # What is checked at the call: the path parameters, and binary and data.
        self._paths = tuple(index for index, p in enumerate(self.positional) if p.annotation == "PathArg")
        self.path_names = tuple(self._names[index] for index in self._paths)
        self._binary = self._names.index("binary") if "binary" in self._names else None
        self._data = self._names.index("data") if "data" in self._names else None
        self._check_always = self._binary is not None or not 1 <= len(self._paths) <= 2

    def entry(self, callback: Any, args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> OpListEntry:
        """The call as an :class:`OpListEntry`; TypeError, naming the operation, if it does not fit."""
        if kwargs or len(args) != len(self._names):
            return OpListEntry(self, self.bind(callback, args, kwargs))
        # Every argument given by position (the usual mhddq call): nothing to look up,
        # and the dict written out for the common shapes (dict(zip()) costs 4x more).
        if callback is not None and not callable(callback):
            self.bind(callback, args, kwargs)  # raises, with the message
        paths = self._paths  # the usual case: one or two str paths, one look each
        if (self._check_always or type(args[paths[0]]) is not str
                or (len(paths) == 2 and type(args[paths[1]]) is not str)):
            self.check(args)
        names = self._names
        if len(names) == 1:
            params = {"callback": callback, names[0]: args[0]}
        elif len(names) == 2:
            params = {"callback": callback, names[0]: args[0], names[1]: args[1]}
        else:
            params = dict(zip(self._call_names, (callback, *args)))
        return OpListEntry(self, params, args)

    def bind(self, callback: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Dict[str, Any]:
        """The call's parameters by name, callback first, as the callback dict shows them.

        Raises TypeError, naming the operation, for a call that does not fit.
        """
        if callback is not None and not callable(callback):
            raise TypeError(f"{self.name}: callback must be callable or None, not {_checks.show(callback)}")
        if len(args) > len(self._names):
            raise TypeError(f"{self.name}() takes {len(self._names)} arguments after the callback, "
                            f"got {len(args)}")
        params: Dict[str, Any] = {"callback": callback}
        params.update(zip(self._names, args))
        for name, value in kwargs.items():
            if name in params or name not in self._accepted:
                raise TypeError(f"{self.name}() got an unexpected or repeated argument {name!r}")
            params[name] = value
        for name in self._names:
            if name not in params:
                if name not in self._defaults:
                    raise TypeError(f"{self.name}() is missing the argument {name!r}")
                params[name] = self._defaults[name]
        self.check([params[name] for name in self._names])
        return params

    def check(self, values: Sequence[Any]) -> None:
        """TypeError, naming the operation and the argument, for a value the operation cannot take.

        *values* are the arguments after the callback, in the operation's order.
        A path must be str, bytes or os.PathLike: open() would take an int as a
        file descriptor (and might close one of the queue's own).  ``binary`` must
        be True or False, and ``data`` str or bytes-like to match it: found only
        when the file is opened, it would have truncated the file first.
        """
        for index in self._paths:
            value = values[index]
            if type(value) is not str and not _is_path(value):
                raise TypeError(f"{self.name}: {self._names[index]} must be a path (str, bytes or "
                                f"os.PathLike), not {_checks.show(value)}")
        if self._binary is None:
            return
        binary = values[self._binary]
        if binary is not True and binary is not False:
            raise TypeError(f"{self.name}: binary must be True or False, not {_checks.show(binary)}")
        if self._data is None:
            return
        data = values[self._data]
        if binary:
            if isinstance(data, str) or not _is_bytes_like(data):
                raise TypeError(f"{self.name}: data must be a bytes-like object when binary is True, "
                                f"not {_checks.show(data)}")
        elif not isinstance(data, str):
            raise TypeError(f"{self.name}: data must be str when binary is False, not {_checks.show(data)}")


def _is_path(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return True
    if not isinstance(value, os.PathLike):
        return False
    try:
        os.fspath(value)  # its __fspath__ must give str or bytes
    except TypeError:
        return False
    return True


def _is_bytes_like(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    try:
        memoryview(value)
    except TypeError:
        return False
    return True


OPERATIONS: Dict[str, Operation] = {
    operation.__name__: Operation(operation)
    for operation in (
        directory_exists, directory_create, directory_delete, directory_rename, directory_move,
        directory_copy, directory_contents, file_exists, file_create, file_delete, file_rename,
        file_move, file_copy, file_read, file_write, file_append, file_stat,
    )
}
"""Every queued file operation, by name."""


def callback_report(name: str, params: Dict[str, Any], output: Optional[Output],
                    error: Optional[BaseException]) -> Dict[str, Any]:
    """The plain dict a callback receives."""
    if error is not None:
        return {"action": name, "result": False, "params": params,
                "output": {"exception": f"{type(error).__name__}: {error}"}}
    return {"action": name, "result": True, "params": params, "output": output if output is not None else {}}


# -- oplists -----------------------------------------------------------------------------------


class OpList(list):  # type: ignore[type-arg]
    """Operations (and embedded oplists) to run as one turn at the disk, in order.

    A list, as mhddq's oplists are, so code that looks inside one keeps working;
    a plain list handed to the oplist functions works too.
    """

    def __init__(self, *, stop_on_error: bool = False) -> None:
        super().__init__()
        self.stop_on_error = bool(stop_on_error)

    def __repr__(self) -> str:
        return f"OpList({list.__repr__(self)}, stop_on_error={self.stop_on_error})"


_NO_OPTIONS: Mapping[str, Any] = types.MappingProxyType({})


class OpListEntry:
    """One operation waiting to run, with its bound parameters.

    The call's arguments are laid out once, here, so that running it costs no
    more than the operation itself.
    """

    __slots__ = ("operation", "params", "args", "options")

    def __init__(
        self, operation: Operation, params: Dict[str, Any], args: Optional[Tuple[Any, ...]] = None
    ) -> None:
        self.operation = operation
        self.params = params
        self.args = tuple(map(params.__getitem__, operation._names)) if args is None else args
        self.options = (
            {name: params[name] for name in operation.options if name in params}
            if operation.options else _NO_OPTIONS
        )

    def run(self) -> Output:
        if self.options:
            return self.operation.function(*self.args, **self.options)
        return self.operation.function(*self.args)


def create_empty_oplist(*, stop_on_error: bool = False) -> OpList:
    """A new, empty oplist."""
    return OpList(stop_on_error=stop_on_error)


def clear_oplist(oplist: List[Any]) -> None:
    """Remove every item from *oplist*."""
    require_oplist("oplist", oplist)
    oplist.clear()


def embed_oplist(oplist: List[Any], sub_oplist: List[Any]) -> None:
    """Add *sub_oplist* to *oplist*: it will run, whole, in its place."""
    require_oplist("oplist", oplist)
    require_oplist("sub_oplist", sub_oplist)
    if sub_oplist is oplist or any(inner is oplist for inner in walk_oplists(sub_oplist)):
        raise ValueError("embedding this oplist would make it contain itself")
    oplist.append(sub_oplist)


def walk_oplists(oplist: List[Any]) -> Iterator[List[Any]]:
    """Every oplist embedded in *oplist*, at any depth."""
    for item in oplist:
        if isinstance(item, list):
            yield item
            yield from walk_oplists(item)


def validate_oplist(oplist: Any, seen: Tuple[int, ...] = ()) -> None:
    """TypeError for anything in *oplist* that is not an operation or an oplist."""
    require_oplist("oplist", oplist)
    if id(oplist) in seen:
        raise ValueError("an oplist contains itself")
    for index, item in enumerate(oplist):
        if isinstance(item, list):
            validate_oplist(item, seen + (id(oplist),))
        elif not isinstance(item, OpListEntry):
            raise TypeError(f"oplist item {index} is not an operation or an oplist: {_checks.show(item)}")


def require_oplist(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise TypeError(f"{name} must be an oplist from create_empty_oplist(), not {_checks.show(value)}")
