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

An oplist is one turn at the disk: an IO thread runs the whole list, embedded
lists included (depth first), without letting the sister thread touch the disk.
Each operation reports on its own; a failure stops the rest only in a list made
with ``stop_on_error=True``.
"""

from __future__ import annotations

import inspect
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
# raises; the queue turns either into the callback dict.


def directory_exists(dirname: str) -> Output:
    return {"exists": os.path.isdir(dirname)}


def directory_create(dirname: str, *, parents: bool = False) -> Output:
    if parents:
        os.makedirs(dirname, exist_ok=True)
    else:
        os.mkdir(dirname)
    return {}


def directory_delete(dirname: str) -> Output:
    # rmtree removes symlinks found inside the tree without following them, and
    # refuses a symlink given as the tree itself: nothing outside is touched.
    _require_directory(dirname)
    shutil.rmtree(dirname)
    return {}


def directory_rename(old_dirname: str, new_dirname: str) -> Output:
    _require_directory(old_dirname)
    os.rename(old_dirname, new_dirname)
    return {}


def directory_move(source_dirname: str, destination_dirname: str) -> Output:
    _require_directory(source_dirname)
    shutil.move(source_dirname, destination_dirname)
    return {}


def directory_copy(source_dirname: str, copy_dirname: str) -> Output:
    _require_directory(source_dirname)
    shutil.copytree(source_dirname, copy_dirname, symlinks=True)
    return {}


def directory_contents(dirname: str) -> Output:
    contents = []
    with os.scandir(dirname) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir():
                kind = "directory"
            elif entry.is_file():
                kind = "file"
            else:
                kind = "other"  # a broken symlink, a socket, a FIFO, a device
            contents.append({"name": entry.name, "type": kind})
    return {"contents": contents}


def file_exists(filename: str) -> Output:
    return {"exists": os.path.isfile(filename)}


def file_create(filename: str) -> Output:
    with open(filename, "x"):
        pass
    return {}


def file_delete(filename: str) -> Output:
    _require_file(filename)
    os.remove(filename)
    return {}


def file_rename(original_filename: str, new_filename: str) -> Output:
    _require_file(original_filename)
    os.rename(original_filename, new_filename)
    return {}


def file_move(source_filename: str, destination_filename: str) -> Output:
    _require_file(source_filename)
    shutil.move(source_filename, destination_filename)
    return {}


def file_copy(source_filename: str, copy_filename: str) -> Output:
    _require_file(source_filename)
    shutil.copyfile(source_filename, copy_filename)
    return {}


def file_read(filename: str, binary: bool = False) -> Output:
    with open(filename, "rb" if binary else "r") as stream:
        return {"data": stream.read()}


def file_write(data: Any, filename: str, binary: bool = False, *,
               atomic: bool = False, fsync: bool = False) -> Output:
    mode = "wb" if binary else "w"
    if not atomic:
        with open(filename, mode) as stream:
            stream.write(data)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        return {}
    # Atomic: a temporary file beside the target, fsynced, renamed over it, so a
    # reader (or a crash) sees the old file or the new one, never half of one.
    folder = os.path.dirname(os.path.abspath(filename))
    fd, temporary = _create_beside(filename)
    try:
        with open(fd, mode) as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, filename)
    except BaseException:
        os.unlink(temporary)
        raise
    if fsync:
        _fsync_directory(folder)
    return {}


def file_append(data: Any, filename: str, binary: bool = False, *, fsync: bool = False) -> Output:
    with open(filename, "ab" if binary else "a") as stream:
        stream.write(data)
        if fsync:
            stream.flush()
            os.fsync(stream.fileno())
    return {}


def file_stat(filename: str) -> Output:
    info = os.stat(filename)
    if stat.S_ISDIR(info.st_mode):
        kind = "directory"
    elif stat.S_ISREG(info.st_mode):
        kind = "file"
    else:
        kind = "other"
    return {"stat": {"size": info.st_size, "mtime": info.st_mtime, "mode": stat.S_IMODE(info.st_mode),
                     "type": kind}}


def _create_beside(filename: str) -> Tuple[int, str]:
    """A new temporary file in *filename*'s folder, with the mode open() would give it.

    The mode is the target's if it exists (a replacement keeps its permissions),
    else 0o666 less the umask, as for any new file.
    """
    folder, name = os.path.split(os.path.abspath(filename))
    while True:
        temporary = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
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


def _require_directory(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        raise NotADirectoryError(f"not a directory: {path!r}")


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"not a file: {path!r}")


def _fsync_directory(folder: str) -> None:
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

    def entry(self, callback: Any, args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> OpListEntry:
        """The call as an :class:`OpListEntry`; TypeError, naming the operation, if it does not fit."""
        if kwargs or len(args) != len(self._names):
            return OpListEntry(self, self.bind(callback, args, kwargs))
        # Every argument given by position (the usual mhddq call): nothing to look up,
        # and the dict written out for the common shapes (dict(zip()) costs 4x more).
        if callback is not None and not callable(callback):
            self.bind(callback, args, kwargs)  # raises, with the message
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
        return params


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
