"""One sqlite database inside a store's folder, and the group commit that writes it.

A :class:`Store` owns the database file ``<folder>/<kind>.sqlite3`` (WAL mode)
and a lock file beside it.  Callers never wait for the disk to write: a write
adds an *op* to ``store.pending`` and joins the current *batch*, whose commit
job runs on the HDD queue; the job commits every op waiting at that moment as
one transaction (group commit) and completes the batch's Task.

Every write transaction, in any thread of any process, is taken under the
store's *write lock*: a thread lock, then ``flock`` on the lock file.  So
writers queue in the kernel instead of spinning in sqlite's busy handler, and
readers (WAL) never wait for them.

Locks, in the order they are taken: write lock, ``caller_lock`` (the callers'
connection), ``state_lock`` (``pending`` and the batch, and whatever the dict
or queue keeps beside them).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import threading
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

from nonblock._checks import show
from nonblock.durable.codec import is_pickle
from nonblock.hddq import HddQueue, QueueShutdown, Step, Task, default_queue

__all__ = ["DURABILITIES", "Store", "StoreError", "check_timeout"]

DURABILITIES = ("group", "commit", "os")
# sqlite's synchronous setting for (the commit job's connection, the callers' connection).
_SYNCHRONOUS = {"group": ("FULL", "NORMAL"), "commit": ("FULL", "FULL"), "os": ("OFF", "OFF")}
_SQLITE_MAGIC = b"SQLite format 3\x00"
_APPLICATION_ID = 0x6E626431  # "nbd1": marks a database as a nonblock durable store

_live_stores: weakref.WeakSet[Store] = weakref.WeakSet()
# Connections a forked child inherited: never used or closed there (sqlite forbids both).
_inherited_connections: List[sqlite3.Connection] = []


class StoreError(RuntimeError):
    """The store's database is not one of ours, is corrupt, or failed to write."""


def check_timeout(timeout: Optional[float], name: str = "timeout") -> Optional[float]:
    """*timeout* as a float >= 0 or None; ValueError/TypeError naming it otherwise."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {show(timeout)}")
    if not timeout >= 0:
        raise ValueError(f"'{name}' must be a non-negative number, not {show(timeout)}")
    return float(timeout)


def prepare_folder(path: Any) -> str:
    """The absolute folder of a store at *path*, made private (0700) if new."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike folder, not {show(path)}")
    folder = os.path.abspath(os.path.expanduser(os.fsdecode(path)))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(errno.ENOTDIR, f"path {show(path)} is a file, not a store's folder", folder)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


_SUFFIXES = (".sqlite3", ".sqlite3-wal", ".sqlite3-shm", ".sqlite3-journal", ".lock")
_OUR_NAMES = {f"{kind}{suffix}" for kind in ("dict", "queue") for suffix in _SUFFIXES} | {"waiters"}


def refuse_foreign_files(folder: str) -> None:
    """StoreError if *folder* holds files no store writes: an iodict folder is no empty store."""
    foreign = sorted(name for name in os.listdir(folder) if name not in _OUR_NAMES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise StoreError(f"{folder} holds files that no nonblock store writes ({shown}): "
                         "an iodict 0.0.8 folder? Move its items over with iodict itself, "
                         "or use an empty folder")


def refuse_if_others_can_write(paths: List[str]) -> None:
    """PermissionError if another user could write any of *paths* (a pickle store runs what it loads)."""
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise PermissionError(
                errno.EACCES,
                f"{path} can be written by another user "
                f"(owner uid {st.st_uid}, mode {oct(st.st_mode & 0o777)}); "
                "unpickling from it could run their code: make it private, use serializer='json' or 'raw', "
                "or pass trusted=True", path)


class _CommitJob:
    """The op that commits a store's pending batch: one transaction, on an IO thread."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        count = self.store.commit_pending()
        error = self.store.failure_of(task)
        if error is not None:  # its ops failed in a commit made outside this job (sync on an IO thread)
            raise error
        return Step.done(count)

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        return None


class Store:
    """A sqlite database of one *kind* ("dict" or "queue") in *folder*.

    *schema* is the SQL that makes a new database; *apply(connection, ops)*
    writes a batch of ops inside the commit's transaction; *committed(ops)*
    runs after the commit, holding the write lock, and *rang()* after it is
    released (a queue rings its doorbell there).
    """

    def __init__(self, path: Any, kind: str, schema: str, *, durability: str, serializer: Any, trusted: bool,
                 queue: Optional[HddQueue], apply: Callable[[sqlite3.Connection, List[Any]], None]) -> None:
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, not {show(durability)}")
        if queue is not None and not isinstance(queue, HddQueue):
            raise TypeError(f"queue must be an HddQueue or None, not {show(queue)}")
        self.folder = prepare_folder(path)
        refuse_foreign_files(self.folder)
        self.kind = kind
        self.db_path = os.path.join(self.folder, f"{kind}.sqlite3")
        self.lock_path = os.path.join(self.folder, f"{kind}.lock")
        self.durability = durability
        self.serializer = serializer
        self._schema = schema
        self._apply = apply
        self._queue = queue
        self.committed: Callable[[List[Any]], None] = lambda ops: None
        self.rang: Callable[[], None] = lambda: None
        self.after_fork: Callable[[], None] = lambda: None
        self.closed = False
        self._open()
        if not trusted and is_pickle(serializer):
            db = self.db_path
            refuse_if_others_can_write([self.folder, db, db + "-wal", db + "-shm", self.lock_path])
        _live_stores.add(self)

    # -- opening ----------------------------------------------------------------

    def _open(self) -> None:
        self.state_lock = threading.Lock()
        self.caller_lock = threading.Lock()
        self._thread_write_lock = threading.Lock()
        self.pending: List[Any] = []
        self._batch: Optional[Task[Any]] = None
        self._jobless: Set[Task[Any]] = set()  # batches committed by their writers, not by a job
        self._last: Optional[Task[Any]] = None
        self._synced: Optional[Task[Any]] = None  # the last batch sync() waited for
        self._failure: Optional[BaseException] = None
        self._batch_errors: Dict[Task[Any], BaseException] = {}
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with self.write_lock():
            self._create_or_check()
        writer_sync, caller_sync = _SYNCHRONOUS[self.durability]
        self.writer = self._connect(writer_sync)
        self.caller = self._connect(caller_sync)

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None,
                                         check_same_thread=False)
            connection.execute(f"PRAGMA synchronous={synchronous}")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.db_path}: cannot open the store's database: {error}") from error
        return connection

    def _create_or_check(self) -> None:
        """Make the database if new; a clear error if it is not one of ours (under the write lock)."""
        os.close(os.open(self.db_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        with open(self.db_path, "rb") as f:
            header = f.read(len(_SQLITE_MAGIC))
        if header and header != _SQLITE_MAGIC:
            raise StoreError(f"{self.db_path} is not a sqlite database, so not a nonblock {self.kind} store")
        connection = self._connect("FULL")
        try:
            app_id = connection.execute("PRAGMA application_id").fetchone()[0]
            tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id == 0 and tables == 0:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(
                    f"BEGIN; {self._schema}; PRAGMA application_id={_APPLICATION_ID}; COMMIT;")
            elif app_id != _APPLICATION_ID:
                raise StoreError(f"{self.db_path} is a sqlite database of something else, "
                                 f"not a nonblock {self.kind} store")
            else:
                mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreError(f"{self.db_path}: cannot use WAL mode (journal_mode={mode})")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.db_path} is corrupt or not a nonblock {self.kind} store: "
                             f"{error}") from error
        finally:
            connection.close()

    def reopen_after_fork(self) -> None:
        """In a forked child: fresh locks, lock file and connections (pending writes are the parent's)."""
        _inherited_connections.extend([self.writer, self.caller])
        os.close(self._lock_fd)  # a shared flock description: the child needs its own
        if not self.closed:
            self._open()
            self.after_fork()

    def check_open(self) -> None:
        """ValueError after close(), as a closed file raises."""
        if self.closed:
            raise ValueError(f"I/O operation on a closed store ({self.folder})")

    # -- locking and transactions --------------------------------------------------

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the store's write lock: this process's threads, then other processes (flock)."""
        self.check_open()
        with self._thread_write_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def transact(self, connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run *work* in one write transaction on *connection*; the caller holds the write lock."""
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.db_path}: {error}") from error
        return result

    def read(self, sql: str, args: Any = ()) -> List[Any]:
        """All rows of one query on the callers' connection."""
        self.check_open()
        with self.caller_lock:
            try:
                return self.caller.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as error:
                raise StoreError(f"{self.db_path}: {error}") from error

    def read_one(self, sql: str, args: Any = ()) -> Any:
        """The first row of one query on the callers' connection, or None."""
        self.check_open()
        with self.caller_lock:
            try:
                return self.caller.execute(sql, args).fetchone()
            except sqlite3.DatabaseError as error:
                raise StoreError(f"{self.db_path}: {error}") from error

    # -- group commit ---------------------------------------------------------------

    def add(self, op: Any) -> Task[Any]:
        """Add *op* to the pending batch and return the batch's Task; the caller holds ``state_lock``."""
        self.pending.append(op)
        return self.batch_task()

    def batch_task(self) -> Task[Any]:
        """The Task of the pending batch, its commit job queued if new; the caller holds ``state_lock``.

        Under "commit" no job is queued: the writer commits in its own thread
        right after (``settle``), taking along every op other threads added.
        """
        self.check_open()
        batch = self._batch
        if batch is None:
            batch = self._batch = self._last = Task()
            if self.durability == "commit":
                self._jobless.add(batch)
                return batch
            try:
                (self._queue or default_queue()).submit_job(_CommitJob(self), batch, lane=self)
            except QueueShutdown:
                self._jobless.add(batch)  # no queue to run it: the writer commits it itself
        return batch

    def settle(self, task: Task[Any]) -> None:
        """After a write (``state_lock`` released): commit where no job will, or wait under "commit"."""
        if task in self._jobless:
            self._commit_inline(task)
        elif self.durability == "commit":
            self.wait(task, None)

    def commit_pending(self) -> int:
        """Commit every pending op as one transaction; the number committed."""
        with self.write_lock():
            with self.state_lock:
                ops, self.pending = self.pending, []
                batch, self._batch = self._batch, None
            jobless = batch is not None and batch in self._jobless
            if jobless:
                self._jobless.discard(batch)
            try:
                if ops:
                    self.transact(self.writer, lambda connection: self._apply(connection, ops))
            except BaseException as error:
                self._failure = error
                self.committed(ops)  # the ops are gone either way: drop what the caller side kept of them
                if jobless and batch is not None:
                    batch.set_exception(error)
                elif batch is not None:
                    self._batch_errors[batch] = error  # its job reports it
                raise
            if ops:
                self.committed(ops)
            if jobless and batch is not None:
                batch.set_result(len(ops))  # before the lock goes: a writer waiting for it finds it done
        if ops:
            self.rang()
        return len(ops)

    def failure_of(self, batch: Task[Any]) -> Optional[BaseException]:
        """The error of *batch*'s ops if they failed in a commit outside its job (and forget it)."""
        with self.state_lock:
            return self._batch_errors.pop(batch, None)

    def _commit_inline(self, task: Task[Any]) -> None:
        if not task.done():
            self.commit_pending()
        if not task.done():  # committed by an earlier batch's writer: nothing left for this one
            task.set_result(0)
        error = task.exception(0)
        if error is not None:
            raise error

    def wait(self, task: Task[Any], timeout: Optional[float]) -> None:
        """Wait for *task*'s batch to commit (on the queue's own threads, commit now instead)."""
        if task in self._jobless or task.done():
            self._commit_inline(task)
            return
        if (self._queue or default_queue()).owns_current_thread():
            self.commit_pending()
            return
        if not task.wait(timeout):
            raise TimeoutError(f"the store's pending writes did not commit within {timeout} s")
        error = task.exception(0)
        if error is not None:
            raise error

    def sync(self, timeout: Optional[float] = None) -> None:
        """Wait until every write made so far by this process is committed; raise a failure once."""
        timeout = check_timeout(timeout)
        with self.state_lock:
            last = self._last
        failure: Optional[BaseException] = None
        if last is not None and last is not self._synced:
            try:
                self.wait(last, timeout)
            except TimeoutError:
                raise
            except BaseException as error:
                failure = error
            self._synced = last
        failure, self._failure = failure or self._failure, None
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Commit what is pending, then close the connections (idempotent)."""
        if self.closed:
            return
        try:
            self.sync()
        finally:
            self.closed = True
            _live_stores.discard(self)
            for connection in (self.writer, self.caller):
                connection.close()
            os.close(self._lock_fd)


def _after_fork_in_child() -> None:
    for store in list(_live_stores):
        store.reopen_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
