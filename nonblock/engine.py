"""The scheduler under every HDD queue: two IO threads that take turns at the disk, one callback thread.

:class:`Engine` is the part of :class:`nonblock.hddq.HddQueue` that schedules
work and knows nothing of what the work is: streams, files and file operations
are its users' business.  Everything nonblock writes goes through it.  A caller submits a
*job* (something that knows how to do its IO one step at a time) and gets back a
:class:`Task`, a :class:`concurrent.futures.Future` that also carries
thread_manager's execution states and callbacks.  The caller never waits.

How the work moves:

* A job is cut into *ops*: one turn at the disk each (one chunk written and
  flushed, one file operation, ...).  Ready tasks wait in a round-robin deque, so a
  small write queued behind a huge one waits for one chunk of it, not all of it.
* Each IO thread takes the next ready task, lets the job prepare its op (slicing,
  encoding) *without* the disk token, then takes the token, does the IO, gives the
  token back and does the bookkeeping.  So one op touches the disk at a time while
  the sister thread prepares the next one.
* A job may own tasks of its own, beside the one it runs under (a stream's
  writer completes a task per caller's write): it ends them with
  :meth:`Engine.complete`, which keeps their completions in order with the
  queue's others.
* A job that wants to slow down (bandwidth throttling) goes into a timer heap; a
  job whose stream said EAGAIN waits in ``poll()`` for writability.  Neither holds
  the disk token, and a throttled job does not hold an IO thread either.
* When a job ends, its task's successors are released at once (lane order and
  ``after=`` dependencies), and the outcome goes to the callback thread, which
  runs the user callbacks and then completes the Future; a task with no
  callbacks is completed by the IO thread itself when that keeps the order.
  IO threads never run user code, so a slow or re-entrant callback cannot
  stall the disk.

The module also drains every queue at interpreter exit and resets them in a
forked child.  The default queue and mhddq's API live in :mod:`nonblock.hddq`.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import heapq
import itertools
import logging
import os
import queue
import select
import threading
import time
import traceback
import weakref
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Hashable,
    Iterable,
    List,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
)

from nonblock import _checks
from nonblock.task import _CREATED, ExecutionState, Task, end_io_in_order

__all__ = [
    "Engine",
    "ExecutionState",
    "Job",
    "PredecessorFailed",
    "QueueShutdown",
    "Step",
    "Task",
    "TasklessJob",
    "checked_predecessors",
    "prepare_before_stop",
]

logger = logging.getLogger("nonblock")


class QueueShutdown(RuntimeError):
    """Raised when work is submitted to a queue that has been shut down."""


class PredecessorFailed(RuntimeError):
    """A task did not run because a task it was chained after failed.

    The predecessor's exception is this exception's ``__cause__``.
    """


class Step:
    """What a job asks the queue for after one op.

    Use the constructors: :meth:`more`, :meth:`sleep`, :meth:`wait_writable`,
    :meth:`wait_readable`, :meth:`wait_for`, :meth:`done`.
    """

    __slots__ = ("kind", "value")

    MORE = 0
    SLEEP = 1
    WAIT_WRITABLE = 2
    DONE = 3
    WAIT_READABLE = 4
    WAIT_FOR = 5

    def __init__(self, kind: int, value: Any = None) -> None:
        self.kind = kind
        self.value = value

    @classmethod
    def more(cls) -> Step:
        """Another op is ready now; queue it behind the other ready tasks."""
        return _STEP_MORE

    @classmethod
    def sleep(cls, seconds: float) -> Step:
        """Run the next op no sooner than *seconds* from now (throttling)."""
        return cls(cls.SLEEP, seconds)

    @classmethod
    def wait_writable(cls, fileno: Optional[int]) -> Step:
        """Run the next op once the descriptor *fileno* is writable."""
        return cls(cls.WAIT_WRITABLE, fileno)

    @classmethod
    def wait_readable(cls, fileno: Optional[int]) -> Step:
        """Run the next op once the descriptor *fileno* has data (or its end) to read."""
        return cls(cls.WAIT_READABLE, fileno)

    @classmethod
    def wait_for(cls, task: Task[Any]) -> Step:
        """Run the next op once *task* has finished its IO (it may belong to any queue)."""
        return cls(cls.WAIT_FOR, task)

    @classmethod
    def done(cls, result: Any = None) -> Step:
        """The job is complete; *result* becomes the task's result."""
        return cls(cls.DONE, result)


_STEP_MORE = Step(Step.MORE)


def checked_predecessors(task: Task[Any], after: Iterable[Optional[Task[Any]]]) -> List[Task[Any]]:
    """The tasks in *after*, or a clear error before anything is queued."""
    predecessors = []
    for predecessor in after:
        if predecessor is None:
            continue
        if not isinstance(predecessor, Task):
            raise TypeError(f"after must hold nonblock Tasks or None, not {predecessor!r}")
        if predecessor is task:
            raise ValueError("a task cannot run after itself")
        if predecessor.queue is None:
            # Nothing would ever end it: the task would wait forever, and so would the exit.
            raise ValueError(f"after holds a task that was never submitted (start it first): {predecessor!r}")
        predecessors.append(predecessor)
    return predecessors


def _check_step(step: Any) -> None:
    """TypeError for a step the queue cannot follow, so that it fails its task, not a thread."""
    if not isinstance(step, Step):
        raise TypeError(f"a job's perform() must return a Step, not {step!r}")
    if step.kind == Step.SLEEP:
        if isinstance(step.value, bool) or not isinstance(step.value, (int, float)) or not step.value >= 0:
            raise TypeError(f"Step.sleep needs a number of seconds >= 0, not {step.value!r}")
    elif step.kind in (Step.WAIT_WRITABLE, Step.WAIT_READABLE):
        if step.value is not None and (isinstance(step.value, bool) or not isinstance(step.value, int)):
            raise TypeError(f"Step.wait_writable/wait_readable need a descriptor or None, not {step.value!r}")
    elif step.kind == Step.WAIT_FOR:
        if not isinstance(step.value, Task) or step.value.queue is None:
            raise TypeError(f"Step.wait_for needs a submitted Task, not {step.value!r}")
    elif step.kind not in (Step.MORE, Step.DONE):
        raise TypeError(f"unknown step kind {step.kind!r}")


class Job(Protocol):
    """The work behind a task, done one op at a time by the IO threads.

    ``prepare()`` runs on an IO thread without the disk token: slicing,
    encoding, anything that does not touch the device.  It may run more than
    once before the op (if the disk was busy, the task waits for the next turn
    already prepared), so it must do nothing when the op is prepared already.
    ``perform(task)`` runs holding the disk token and returns a :class:`Step`;
    an exception it raises fails the task.  ``abandon(cause)``
    runs, holding the token, instead of the job when a task it was chained
    after failed: it cleans up (closing a stream it owns, say) and returns the
    exception to record, or None for the default :class:`PredecessorFailed`.
    """

    def prepare(self) -> None: ...

    def perform(self, task: Task[Any]) -> Step: ...

    def abandon(self, cause: BaseException) -> Optional[BaseException]: ...


class TasklessJob(Protocol):
    """A :class:`Job` given to :meth:`Engine.schedule`: it runs with no task of its own.

    Its ``perform`` is given None; it ends its callers' tasks itself
    (:meth:`Engine.complete`).  A stream's writer is one.
    """

    def prepare(self) -> None: ...

    def perform(self, task: None) -> Step: ...

    def abandon(self, cause: BaseException) -> Optional[BaseException]: ...


_STOP = object()


def _default_max_pending_bytes() -> int:
    """A quarter of the machine's memory, and at least 1 GiB."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 0
    return max(1 << 30, physical // 4)


DEFAULT_MAX_PENDING_BYTES = _default_max_pending_bytes()
_LONG_OP_SECONDS = 0.0005
_EAGAIN_BACKOFF = 0.001  # for a stream that said EAGAIN but has no descriptor to poll

_live_queues: weakref.WeakSet[Engine] = weakref.WeakSet()
_exit_hook_registered = False


class _WorkItem:
    """What the engine knows of one submission, kept beside its Task rather than on it.

    As ``concurrent.futures.thread._WorkItem`` sits beside its Future: the job
    to run, the task it completes (None for a job given to
    :meth:`Engine.schedule`), its lane, how many gates still hold it, and why it
    is to be abandoned rather than run.
    """

    __slots__ = ("job", "task", "lane", "gates", "abandon_cause", "daemon")

    def __init__(self, job: Any, task: Optional[Task[Any]], lane: Optional[Hashable] = None,
                 daemon: bool = False) -> None:
        self.job = job  # a Job, or a TasklessJob when task is None
        self.task = task
        self.lane = lane
        self.gates = 0
        self.abandon_cause: Optional[BaseException] = None
        self.daemon = daemon


# A submission from inside the queue, waiting in its inbox: the item and its predecessors.
_Deferred = Tuple[_WorkItem, Sequence[Task[Any]]]
_PARENTS_TASK = "this task belongs to the parent process, which runs it"


class Engine:
    """A disk queue: two IO threads sharing one disk token, one callback thread.

    Threads start on the first submission, never at construction.  Programs use
    :class:`nonblock.hddq.HddQueue`, which adds mhddq's file operations, and
    :func:`nonblock.hddq.default_queue` for the queue shared by the whole process.
    """

    def __init__(self, name: str = "nonblock", *, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        self.name = name
        self._max_pending = _checks.positive_int("max_pending_bytes", max_pending_bytes)
        self._reset()
        _live_queues.add(self)

    @property
    def max_pending_bytes(self) -> int:
        """The most that pending work may weigh at once.

        A quarter of the machine's memory, at least 1 GiB, unless set.

        A bgwrite weighs its payload's size.  Past the bound, a submission waits
        for the disk (bgwrite's *timeout*); one that weighs more than the whole
        bound goes alone, when nothing else is pending, so it never waits forever.
        """
        return self._max_pending

    @max_pending_bytes.setter
    def max_pending_bytes(self, value: int) -> None:
        checked = _checks.positive_int("max_pending_bytes", value)
        with self._lock:
            self._max_pending = checked
            self._room.notify_all()

    @property
    def pending_bytes(self) -> int:
        """What the pending work weighs now (the payload bytes of queued bgwrites)."""
        return self._weight_held

    @property
    def accepting(self) -> bool:
        """True until :meth:`shutdown` is called: submissions are taken."""
        return not self._shutdown_requested

    def owns_current_thread(self) -> bool:
        """True on one of this queue's own threads (an IO thread or the callback thread).

        Such a thread must never wait for the queue's work: that work may need it.
        """
        return threading.current_thread() in self._threads

    def _reset(self) -> None:
        # Re-entrant only so that a GC finalizer or a signal handler that submits
        # work on a thread inside the queue does not wait for itself; such a
        # submission goes through _inbox instead (see _submit).
        self._lock = threading.RLock()
        # Submissions (and room taken) from inside the queue, for an IO thread to take in.
        self._inbox: queue.SimpleQueue[Union[int, _Deferred]] = queue.SimpleQueue()
        self._work_ready = threading.Condition(self._lock)
        # What pending work weighs (bgwrite payloads), bounded by max_pending_bytes:
        # submitters wait on _room; every end of a write gives its weight back.
        self._room = threading.Condition(self._lock)
        self._room_waiters = 0
        self._weight_held = 0
        self._drained = threading.Condition(self._lock)
        # The right to touch the disk.  A thread that finds it taken does not
        # queue for it (a hand-over per op costs a thread switch, which dwarfs a
        # small write); it puts its prepared item back at the head of the ready
        # deque, where the holder takes it next.  Fairness lives in the deque.
        self._disk_token = threading.Lock()
        self._ready: Deque[_WorkItem] = collections.deque()
        self._timers: List[Tuple[float, int, _WorkItem]] = []
        # (descriptor, poll events, item): work waiting in poll() to write or read.
        self._fd_waiters: List[Tuple[int, int, _WorkItem]] = []
        # Work not yet ended.  Daemon work (a bgread of a pipe that may never end)
        # is kept apart: it never holds up a drain or the exit.
        self._items: set[_WorkItem] = set()
        self._daemon_items: set[_WorkItem] = set()
        self._lanes: Dict[Hashable, Deque[_WorkItem]] = {}
        self._tiebreak = itertools.count()
        self._shutdown_requested = False
        self._threads: List[threading.Thread] = []
        self._completions: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._poller_active = False
        self._idle_io_threads = 0  # waiting on _work_ready, so worth a notify()
        self._busy_io_threads = 0  # between taking an item and asking for the next
        self._ops_are_long = False  # the last op held the disk long enough to prepare beside it
        self._undelivered = 0  # completions handed to the callback thread, not yet delivered
        self._wake_fds: Optional[Tuple[int, int]] = None
        # The task of the most recent submission (None for a scheduled job): work
        # may join a task that is still the last one queued (and not started)
        # without changing the queue's order.
        self.last_submitted: Optional[Task[Any]] = None

    # -- submitting ---------------------------------------------------------------

    def submit_job(
        self,
        job: Job,
        task: Optional[Task[Any]] = None,
        *,
        lane: Optional[Hashable] = None,
        after: Iterable[Optional[Task[Any]]] = (),
    ) -> Task[Any]:
        """Queue *job* and return its task (a new :class:`Task` unless one is given).

        Tasks with the same *lane* (a stream, say) run one after another in
        submission order, never interleaved.  A task does not start before every
        task in *after* has finished its IO; if one of them failed, the job is
        abandoned and the task fails with :class:`PredecessorFailed`.

        Raises :class:`QueueShutdown` once :meth:`shutdown` has been called.
        """
        if task is None:
            task = Task()
        predecessors = checked_predecessors(task, after) if after else ()
        self._submit(_WorkItem(job, task, lane), predecessors)
        return task

    def schedule(self, job: TasklessJob) -> None:
        """Queue *job* with no task of its own: its ``perform`` is given None.

        For a job that completes its callers' tasks itself (see :meth:`complete`),
        such as a stream's writer.  It counts as pending work until it returns
        ``Step.done()``; an exception it raises is logged.  Raises
        :class:`QueueShutdown` once :meth:`shutdown` has been called.
        """
        self._submit(_WorkItem(job, None), ())

    def _submit(self, item: _WorkItem, predecessors: Sequence[Task[Any]]) -> None:
        lock = self._lock
        if lock._is_owned():  # type: ignore[attr-defined]
            # This thread is inside the queue already: a GC finalizer or a signal
            # handler interrupted it there.  The structures may be half-way through
            # a change, so the submission waits in a lock-free inbox for an IO thread.
            self._refuse_unless_accepting(item.task)
            if item.task is not None:
                item.task.attach(self)  # taken: a second submission is refused
            self._inbox.put((item, predecessors))  # SimpleQueue.put is safe here, by design
            self._work_ready.notify()  # allowed: this thread holds the lock
            if self._poller_active:
                self._wake_poller()
            return
        with lock:
            self._refuse_unless_accepting(item.task)
            if not self._threads:
                self._start_threads()  # before accepting: if it fails, nothing is queued
            if item.task is not None:
                item.task.attach(self)
            self._accept(item, predecessors)
        if predecessors:
            self._hook_predecessors(item, predecessors)

    def _refuse_unless_accepting(self, task: Optional[Task[Any]]) -> None:
        if self._shutdown_requested:
            raise QueueShutdown(f"the HDD queue {self.name!r} has been shut down")
        if task is not None and task.queue is not None:
            raise RuntimeError(f"{task!r} has already been submitted")

    def _accept(self, item: _WorkItem, predecessors: Sequence[Task[Any]]) -> None:
        """Put a submitted item in its place; called with the lock held."""
        # With predecessors, one more gate for the submission itself, opened by
        # _hook_predecessors once every predecessor hook is in place, so that no
        # hook can start the item too early.
        gates = 1 + len(predecessors) if predecessors else 0
        lane = item.lane
        if lane is not None:
            waiting = self._lanes.get(lane)
            if waiting is None:
                self._lanes[lane] = collections.deque()
            else:
                waiting.append(item)
                gates += 1
        item.gates = gates
        self._items.add(item)
        self.last_submitted = item.task
        if not gates:
            self._make_ready(item)

    def _hook_predecessors(self, item: _WorkItem, predecessors: Sequence[Task[Any]]) -> None:
        for predecessor in predecessors:
            predecessor.add_io_done_hook(self._predecessor_done_hook(item))
        self._open_gate(item)

    def _predecessor_done_hook(self, item: _WorkItem) -> Callable[[Task[Any]], None]:
        def predecessor_done(predecessor: Task[Any]) -> None:
            failure = predecessor.io_error
            if failure is not None and item.abandon_cause is None:
                item.abandon_cause = failure
            self._open_gate(item)

        return predecessor_done

    def _open_gate(self, item: _WorkItem) -> None:
        with self._lock:
            item.gates -= 1
            if item.gates == 0:
                self._make_ready(item)

    def _take_in_deferred(self) -> None:
        """Accept what was submitted from inside the queue; called by an IO thread holding the lock."""
        inbox = self._inbox
        while not inbox.empty():
            entry = inbox.get()
            if isinstance(entry, int):  # room taken from inside the queue (see reserve_room)
                self._weight_held += entry
                continue
            item, predecessors = entry
            self._accept(item, predecessors)
            if predecessors:
                self._hook_predecessors(item, predecessors)  # takes the (re-entrant) lock again

    def submit_daemon_job(self, job: Job, task: Optional[Task[Any]] = None) -> Task[Any]:
        """Queue *job* as a daemon: it never holds up :meth:`wait_idle`, :meth:`shutdown` or the exit.

        For work that may wait forever on something outside the program, such as
        reading a pipe whose writer never closes it.  A daemon task has no lane
        and no predecessors.  When the queue stops, a daemon task that is still
        waiting is abandoned (its job cleans up) and fails with
        :class:`QueueShutdown`.
        """
        if task is None:
            task = Task()
        with self._lock:
            self._refuse_unless_accepting(task)
            if not self._threads:
                self._start_threads()
            task.attach(self)
            item = _WorkItem(job, task, daemon=True)
            self._daemon_items.add(item)
            self._make_ready(item)
        return task

    def _make_ready(self, item: _WorkItem, *, taken_next_by_caller: bool = False) -> None:
        # Called with the lock held.
        was_empty = not self._ready
        self._ready.append(item)
        if taken_next_by_caller:
            # An IO thread releasing its lane's next item goes straight back for
            # work; waking the sister for it would only add a thread switch.
            return
        # A working IO thread takes this itself once its op is done; waking the
        # sister to prepare it meanwhile pays only when ops are long (big chunks).
        # For small ops it is all cost: GIL contention and thread switches.
        if self._busy_io_threads and not self._ops_are_long:
            return
        # Ready work already waiting means a thread is awake for it or has been
        # woken (and takes everything before it sleeps again).  A second wake-up
        # would rouse the sister too; in a VM each costs the caller tens of µs.
        if not was_empty and not self._ops_are_long:
            return
        if self._idle_io_threads:
            self._work_ready.notify()
        if self._poller_active:
            self._wake_poller()

    # -- the memory bound ---------------------------------------------------------------

    def reserve_room(self, weight: int, timeout: Optional[float] = None) -> None:
        """Count *weight* bytes more against ``max_pending_bytes``, waiting for room if need be.

        For a job that owns its callers' tasks (see :meth:`complete`).  Past the
        bound this waits up to *timeout* seconds for the disk, then raises
        TimeoutError, having counted nothing; on one of the queue's own threads
        it never waits.  Raises :class:`QueueShutdown` once the queue is shut down.
        """
        lock = self._lock
        if lock._is_owned():  # type: ignore[attr-defined]
            # Inside the queue already (a GC finalizer or a signal handler): the
            # counter may be half-way through a change, so an IO thread adds it.
            self._refuse_unless_accepting(None)
            self._inbox.put(weight)
            return
        with lock:
            self._refuse_unless_accepting(None)
            held = self._weight_held
            if held and held + weight > self._max_pending and not self.owns_current_thread():
                self._wait_for_room(weight, timeout)
                self._refuse_unless_accepting(None)  # shut down meanwhile?
            self._weight_held += weight

    def _wait_for_room(self, weight: int, timeout: Optional[float]) -> None:
        """Wait, with the lock held, until *weight* more fits under max_pending_bytes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._room_waiters += 1
        try:
            while self._weight_held and self._weight_held + weight > self._max_pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"no room for {weight} more bytes within timeout={timeout!r}: pending work "
                        f"holds {self._weight_held} (max_pending_bytes={self._max_pending})"
                    )
                self._room.wait(remaining)
        finally:
            self._room_waiters -= 1

    # -- threads ----------------------------------------------------------------

    def _start_threads(self) -> None:
        # Called with the lock held.
        _register_exit_hook()
        if self._wake_fds is None:
            self._wake_fds = _make_wake_pipe()
        threads = [
            threading.Thread(target=self._io_worker, name=f"{self.name}-io-{index}", daemon=True)
            for index in range(2)
        ]
        threads.append(
            threading.Thread(target=self._callback_worker, name=f"{self.name}-callbacks", daemon=True)
        )
        for thread in threads:
            thread.start()
        self._threads = threads

    def _io_worker(self) -> None:
        busy = deferred = False
        while True:
            item = self._next_ready_item(busy, deferred)
            if item is None:
                return
            busy = True
            deferred = not self._run_one_op(item)
            item = None  # an idle thread holds no finished work

    def _next_ready_item(self, was_busy: bool, deferred: bool) -> Optional[_WorkItem]:
        with self._lock:
            if was_busy:
                self._busy_io_threads -= 1
            if deferred and self._busy_io_threads:
                # The token holder is at work and takes the item we put back
                # when its op ends; wait for other work rather than spin on it.
                self._idle_io_threads += 1
                try:
                    self._work_ready.wait()
                finally:
                    self._idle_io_threads -= 1
            while True:
                if not self._inbox.empty():
                    self._take_in_deferred()
                if self._timers:
                    now = time.monotonic()
                    while self._timers and self._timers[0][0] <= now:
                        self._ready.append(heapq.heappop(self._timers)[2])
                if self._shutdown_requested and not self._items:
                    # Only daemon work can be left: it does not keep the queue going.
                    self._work_ready.notify_all()
                    if self._poller_active:
                        self._wake_poller()
                    leftovers = self._take_waiting_daemons()
                    if leftovers:
                        self._lock.release()
                        try:
                            self._abandon_daemons(leftovers)
                        finally:
                            self._lock.acquire()
                    return None
                if self._ready:
                    self._busy_io_threads += 1
                    return self._ready.popleft()
                timeout = None
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.monotonic())
                if self._fd_waiters and not self._poller_active:
                    self._poll_fds(timeout)
                else:
                    self._idle_io_threads += 1
                    try:
                        self._work_ready.wait(timeout)
                    finally:
                        self._idle_io_threads -= 1

    def _poll_fds(self, timeout: Optional[float]) -> None:
        """Wait, without the lock, for a waiting stream to become writable or readable.

        Called with the lock held; only one IO thread polls at a time, and
        :meth:`_make_ready` wakes it through the wake pipe when other work arrives.
        """
        assert self._wake_fds is not None
        wake_read = self._wake_fds[0]
        poller = select.poll()
        poller.register(wake_read, select.POLLIN)
        wanted: Dict[int, int] = {}
        for fileno, events, _item in self._fd_waiters:
            wanted[fileno] = wanted.get(fileno, 0) | events  # one registration per descriptor
        for fileno, events in wanted.items():
            poller.register(fileno, events)
        self._poller_active = True
        self._lock.release()
        try:
            happened = poller.poll(None if timeout is None else timeout * 1000.0)
        finally:
            self._lock.acquire()
            self._poller_active = False
        _drain_wake_pipe(wake_read)
        ready_fds = {fileno for fileno, _mask in happened if fileno != wake_read}
        if ready_fds:
            # Any event on a descriptor (an error or a hang-up too) lets its item
            # try again: its op meets the error or the end itself.
            still_waiting = []
            for waiter in self._fd_waiters:
                if waiter[0] in ready_fds:
                    self._ready.append(waiter[2])
                else:
                    still_waiting.append(waiter)
            self._fd_waiters = still_waiting

    def _take_waiting_daemons(self) -> List[_WorkItem]:
        """Remove the daemon items waiting anywhere in the queue; called with the lock held."""
        daemons = self._daemon_items
        if not daemons:
            return []
        taken = [item for item in self._ready if item in daemons]
        taken += [entry[2] for entry in self._timers if entry[2] in daemons]
        taken += [entry[2] for entry in self._fd_waiters if entry[2] in daemons]
        if taken:
            self._ready = collections.deque(item for item in self._ready if item not in daemons)
            self._timers = [entry for entry in self._timers if entry[2] not in daemons]
            heapq.heapify(self._timers)
            self._fd_waiters = [entry for entry in self._fd_waiters if entry[2] not in daemons]
        return taken

    def _abandon_daemons(self, items: List[_WorkItem]) -> None:
        """End daemon work left waiting when the queue stops: its jobs clean up, its tasks fail."""
        for item in items:
            failure = QueueShutdown(f"the HDD queue {self.name!r} stopped while this task waited")
            with self._disk_token:
                try:
                    item.job.abandon(failure)
                except BaseException:
                    logger.exception("cleaning up %r at shutdown failed", item.task)
            self._io_finished(item, None, failure)

    def _wake_poller(self) -> None:
        if self._wake_fds is not None:
            try:
                os.write(self._wake_fds[1], b"\0")
            except BlockingIOError:
                pass  # the pipe is full, so a wake-up is pending already

    def _run_one_op(self, item: _WorkItem) -> bool:
        """Run the item's next op; False if the disk was taken and the item was put back."""
        job, task = item.job, item.task
        try:
            if task is not None and task.execution_state is _CREATED and not task.mark_running():
                self._abandon_cancelled(item)
                return True
            if item.abandon_cause is not None:
                if not self._disk_token.acquire(False):
                    return self._put_back(item)
                try:
                    failure = job.abandon(item.abandon_cause)
                finally:
                    self._disk_token.release()
                if failure is None:
                    failure = PredecessorFailed("a task this one was chained after failed")
                    failure.__cause__ = item.abandon_cause
                self._io_finished(item, None, failure)
                return True
            job.prepare()
            if not self._disk_token.acquire(False):
                return self._put_back(item)
            started = time.perf_counter()
            try:
                step = job.perform(task)
            finally:
                self._disk_token.release()
            self._ops_are_long = time.perf_counter() - started > _LONG_OP_SECONDS
            _check_step(step)
        except BaseException as error:  # an op must never kill its thread
            self._io_finished(item, None, error)
            # The error keeps its traceback, and the frames under this one keep
            # their locals (the task, its job): clear them, or a failed write
            # would wait for the garbage collector instead of its last reference.
            if error.__traceback__ is not None:
                traceback.clear_frames(error.__traceback__.tb_next)
            item = job = task = None  # type: ignore[assignment]
            return True
        self._after_op(item, step)
        return True

    def _abandon_cancelled(self, item: _WorkItem) -> None:
        """A task cancelled before it ran: let its job clean up (close a stream it owns)."""
        cancelled = concurrent.futures.CancelledError()
        self._disk_token.acquire()  # rare, and the holder never waits for us
        try:
            item.job.abandon(cancelled)
        except BaseException:
            logger.exception("cleaning up cancelled %r failed", item.task)
        finally:
            self._disk_token.release()
        self._io_finished(item, None, cancelled)

    def _put_back(self, item: _WorkItem) -> bool:
        with self._lock:
            self._ready.appendleft(item)
        return False

    def _after_op(self, item: _WorkItem, step: Step) -> None:
        """Bookkeeping after an op: where the item waits for its next one."""
        kind = step.kind
        if kind == Step.MORE:
            with self._lock:
                self._ready.append(item)
        elif kind == Step.DONE:
            self._io_finished(item, step.value, None)
        elif kind == Step.SLEEP:
            with self._lock:
                deadline = time.monotonic() + step.value
                heapq.heappush(self._timers, (deadline, next(self._tiebreak), item))
        elif kind == Step.WAIT_FOR:
            step.value.add_io_done_hook(self._ready_again_hook(item))
        elif kind == Step.WAIT_WRITABLE or kind == Step.WAIT_READABLE:
            with self._lock:
                if step.value is None or step.value < 0:
                    deadline = time.monotonic() + _EAGAIN_BACKOFF
                    heapq.heappush(self._timers, (deadline, next(self._tiebreak), item))
                else:
                    events = select.POLLOUT if kind == Step.WAIT_WRITABLE else select.POLLIN
                    self._fd_waiters.append((step.value, events, item))
                    if self._poller_active:
                        self._wake_poller()
                    elif self._ready:
                        # This thread has ready work to do first: the sister polls meanwhile.
                        # Otherwise this thread polls itself, a thread switch cheaper.
                        self._work_ready.notify()
        else:
            self._io_finished(item, None, TypeError(f"job returned an unknown step {step!r}"))

    def _ready_again_hook(self, item: _WorkItem) -> Callable[[Task[Any]], None]:
        def ready_again(_awaited: Task[Any]) -> None:
            with self._lock:
                self._make_ready(item)

        return ready_again

    # -- ending work ----------------------------------------------------------------

    def _io_finished(self, item: _WorkItem, result: Any, error: Optional[BaseException]) -> None:
        """Record the end of an item's IO, release its successors, and complete its task.

        A task with no callbacks at all, finishing while the callback thread has
        nothing queued, is completed right here: no user code runs, completions
        stay in order, and the hop to the callback thread (a thread switch per
        write, the biggest cost of a small write) is saved.  Any other task is
        handed to the callback thread.
        """
        task = item.task
        if task is not None:
            # Reading _undelivered without the lock is enough to keep order: a
            # predecessor handed to the callback thread counted itself there
            # before this task could even start.
            _, handed_over, hooks = end_io_in_order((task,), (result,), error, self._undelivered == 0)
        else:
            handed_over, hooks = [], []
            if error is not None:
                logger.error("the scheduled job %r failed", item.job, exc_info=error)
        with self._lock:
            if item.daemon:
                self._daemon_items.discard(item)  # never counted as pending
            else:
                self._items.discard(item)
            lane = item.lane
            if lane is not None:
                waiting = self._lanes[lane]
                if waiting:
                    successor = waiting.popleft()
                    successor.gates -= 1
                    if successor.gates == 0:
                        self._make_ready(successor, taken_next_by_caller=True)
                else:
                    del self._lanes[lane]
            self._undelivered += len(handed_over)
            self._note_progress()
        for entry in handed_over:
            self._completions.put(entry)
        for hook, member in hooks:
            hook(member)

    def _note_progress(self) -> None:
        """Wake whoever waits for the queue to drain or stop; called with the lock held."""
        if self._items:
            return
        if self._shutdown_requested:
            self._work_ready.notify_all()
            if self._poller_active:
                self._wake_poller()
            if not self._daemon_items:
                self._completions.put(_STOP)  # the callback thread may be waiting to stop
        if not self._undelivered:
            self._drained.notify_all()

    def complete(
        self, tasks: Sequence[Task[Any]], results: Sequence[Any], error: Optional[BaseException],
        weight: int = 0,
    ) -> None:
        """End tasks a job owns (not the one it runs under): each with its result, or all with *error*.

        For a job that does the work of many callers' tasks, such as a stream's
        writer.  Their completions keep their place in order with every other
        completion of the queue: completed here when no callback is due and
        nothing is waiting for the callback thread, handed to it otherwise.
        *weight* is what they held of ``max_pending_bytes`` (see
        :meth:`reserve_room`), given back now.
        """
        _, handed_over, hooks = end_io_in_order(tasks, results, error, self._undelivered == 0)
        if weight or handed_over:
            with self._lock:
                if weight:
                    self._weight_held -= weight
                    if self._room_waiters:
                        self._room.notify_all()
                self._undelivered += len(handed_over)
            for entry in handed_over:
                self._completions.put(entry)
        for hook, member in hooks:
            hook(member)

    def _callback_worker(self) -> None:
        stop_requested = False
        while True:
            if stop_requested:
                with self._lock:
                    if not self._items and not self._daemon_items and not self._undelivered:
                        return
            entry = self._completions.get()
            if entry is _STOP:
                stop_requested = True
                continue
            if type(entry) is _CallbackCall:
                entry.run()
            else:
                task, result, error = entry
                try:
                    task.deliver(result, error)
                except BaseException:
                    logger.exception("delivering %r failed", task)
            with self._lock:
                self._undelivered -= 1
                if not self._undelivered and not self._items:
                    self._drained.notify_all()
            entry = task = result = error = None  # an idle thread holds no finished task

    def call_on_callback_thread(self, function: Callable[..., object], *args: Any) -> None:
        """Run ``function(*args)`` on this queue's callback thread, in order with task completions.

        For a job that reports progress to user code (a bgread's ``on_data``):
        the IO threads never run user code.  An exception it raises is logged.
        Completions handed over later are delivered after it.
        """
        with self._lock:
            self._undelivered += 1
        self._completions.put(_CallbackCall(function, args))

    # -- shutting down --------------------------------------------------------------

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new work, finish everything accepted, then stop the threads.

        With *wait* (the default) this returns once every accepted task has
        completed and its callbacks have run, and the threads have exited.
        Called from one of this queue's own threads (a callback, say), it only
        starts the shutdown: waiting there would wait for itself.  Calling it
        again is harmless.  Writers that gather data on the caller's side hand
        it over first (see :func:`prepare_before_stop`).
        """
        if not self._shutdown_requested:
            _run_stop_preparers(final=False, queue_=self)
        with self._lock:
            first_call = not self._shutdown_requested
            self._shutdown_requested = True
            threads = list(self._threads)
            if first_call and threads:
                self._work_ready.notify_all()
                if self._poller_active:
                    self._wake_poller()
                self._completions.put(_STOP)
        if not wait or not threads or threading.current_thread() in threads:
            return
        for thread in threads:
            thread.join()
        with self._lock:
            self._close_wake_pipe()

    def is_shutdown(self) -> bool:
        """True once shutdown was asked for and everything accepted is done."""
        with self._lock:
            return self._shutdown_requested and not self._items and not self._undelivered

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until every accepted task is done (callbacks included); return whether it is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._items or self._undelivered or not self._inbox.empty():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._drained.wait(remaining)
            return True

    def _close_wake_pipe(self) -> None:
        if self._wake_fds is not None:
            for fd in self._wake_fds:
                os.close(fd)
            self._wake_fds = None

    # -- fork -------------------------------------------------------------------

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's work and start over, empty.

        The parent's tasks fail in the child (the parent still runs them), so a
        child that waits on one is told at once instead of waiting forever.
        """
        abandoned: List[Optional[Task[Any]]] = [item.task for item in (*self._items, *self._daemon_items)]
        while not self._inbox.empty():
            deferred = self._inbox.get()
            if not isinstance(deferred, int):
                abandoned.append(deferred[0].task)
        while not self._completions.empty():  # handed to the callback thread, which the child lacks
            completion = self._completions.get()
            if type(completion) is tuple:
                abandoned.append(completion[0])
        wake_fds = self._wake_fds
        self._reset()
        if wake_fds is not None:
            for fd in wake_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for task in abandoned:
            if task is not None:
                task.abandon_after_fork(RuntimeError(_PARENTS_TASK))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} pending={len(self._items)}>"


class _CallbackCall:
    """A call for the callback thread to make (see :meth:`Engine.call_on_callback_thread`)."""

    __slots__ = ("function", "args")

    def __init__(self, function: Callable[..., object], args: Tuple[Any, ...]) -> None:
        self.function = function
        self.args = args

    def run(self) -> None:
        try:
            self.function(*self.args)
        except BaseException:  # user code must not kill the callback thread
            logger.exception("callback %r raised", self.function)


def _make_wake_pipe() -> Tuple[int, int]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    return read_fd, write_fd


def _drain_wake_pipe(read_fd: int) -> None:
    try:
        while os.read(read_fd, 4096):
            pass
    except BlockingIOError:
        pass


# -- the default queue, exit and fork ---------------------------------------------------

_stop_preparers: List[Callable[[bool, Optional[Engine]], None]] = []


def prepare_before_stop(preparer: Callable[[bool, Optional[Engine]], None]) -> None:
    """Have *preparer(final, queue)* called before a queue stops taking work.

    A writer that holds data on the caller's side (a file object gathering
    small writes, say) hands it to its queue here, so that "everything
    accepted" includes it.  It is called by :meth:`Engine.shutdown` with
    ``final=False`` and that queue, and twice at interpreter exit with
    ``queue=None`` (every queue): with ``final=False`` when threading's exit
    hooks run (other threads may still write), and with ``final=True`` once
    they have been joined (the last chance: close what is open).  An
    exception it raises is logged and the stop goes on.
    """
    _stop_preparers.append(preparer)


def _run_stop_preparers(final: bool, queue_: Optional[Engine] = None) -> None:
    for preparer in list(_stop_preparers):
        try:
            preparer(final, queue_)
        except BaseException:
            logger.exception("preparing %r for a stop failed", preparer)


def _wait_all_idle() -> None:
    """Block until no live queue has work, accepting new work meanwhile.

    A callback may queue more (a write that continues a file, say), so one
    pass is not enough: go round until every queue is idle at once.
    """
    _run_stop_preparers(final=False)
    _wait_until_idle()


def _wait_until_idle() -> None:
    while True:
        busy = [queue_ for queue_ in list(_live_queues) if not queue_.wait_idle(0)]
        if not busy:
            return
        for queue_ in busy:
            queue_.wait_idle()


def _drain_all_at_exit() -> None:
    _run_stop_preparers(final=True)
    _wait_until_idle()
    for queue_ in list(_live_queues):
        queue_.shutdown(wait=True)


def _register_exit_hook() -> None:
    # Two moments at exit.  threading's own exit hooks run first, before the
    # interpreter joins non-daemon threads, and they are also the only ones a
    # multiprocessing child runs before os._exit(): there, let the work drain.
    # atexit runs later, after the non-daemon threads have been joined (so their
    # last writes are in) and while our daemon threads still run: there, drain
    # again and stop the queues.
    global _exit_hook_registered
    if _exit_hook_registered:
        return
    _exit_hook_registered = True
    atexit.register(_drain_all_at_exit)
    try:
        threading._register_atexit(_wait_all_idle)  # type: ignore[attr-defined]
    except RuntimeError:
        pass  # the interpreter is already past that moment


# How long a fork waits for the op in progress before going ahead without it.
_FORK_QUIESCE_SECONDS = 1.0
_tokens_held_for_fork: List[threading.Lock] = []


def _quiesce_before_fork() -> None:
    """Keep the disk still across fork(): wait for the op in progress, hold every token.

    A stream copied into the child in the middle of a write would carry a
    half-written buffer (and maybe a held lock) into the child.  Not from a
    queue's own thread (a background function that forks holds its token
    already), and never for long: an op stuck for a second is not worth a hang.
    """
    for queue_ in list(_live_queues):
        if queue_.owns_current_thread():
            continue
        token = queue_._disk_token
        if token.acquire(timeout=_FORK_QUIESCE_SECONDS):
            _tokens_held_for_fork.append(token)


def _release_after_fork_in_parent() -> None:
    while _tokens_held_for_fork:
        _tokens_held_for_fork.pop().release()


def _reset_after_fork_in_child() -> None:
    _tokens_held_for_fork.clear()  # the child's queues get new tokens below
    for queue_ in list(_live_queues):
        queue_._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_quiesce_before_fork,
        after_in_parent=_release_after_fork_in_parent,
        after_in_child=_reset_after_fork_in_child,
    )
