"""Background functions: thread_manager's ``do_async`` and ``@background`` on the HDD queue.

A function handed to :func:`do_async` runs as one op on the queue's IO threads
(one turn at the disk, so it never overlaps other disk work of the queue) and
the caller gets its :class:`~nonblock.hddq.Task` at once.  The task walks
CREATED -> RUNNING -> RETURNED or EXCEPTION -> FINISHING -> CLOSED, calling
``on_success(result)`` or ``on_fail(exception)`` and then ``on_end(task)`` on the
callback thread.  Code written for thread_manager runs after changing only its
import::

    from nonblock.background import thread_manager, background

    task = thread_manager.do_async(deploy, fn_args=["site.tar"], on_fail=alert)

    @background(give_thread=True, on_end=cleanup)
    def send_mail(task, users):
        for done, user in enumerate(users, 1):
            task.status = done / len(users)
            ...
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar, Union, overload

from nonblock import _checks
from nonblock.hddq import HddQueue, Step, Task, default_queue

__all__ = ["ThreadManager", "background", "do_async", "thread_manager"]

_F = TypeVar("_F", bound=Callable[..., Any])
Callback = Optional[Callable[[Any], object]]


class FunctionJob:
    """Calls ``function(*args, **kwargs)`` as a single op; its return value is the result."""

    def __init__(self, function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs

    def prepare(self) -> None:
        pass

    def perform(self, task: Task[Any]) -> Step:
        return Step.done(self.function(*self.args, **self.kwargs))

    def abandon(self, cause: BaseException) -> Optional[BaseException]:
        return None


class ThreadManager:
    """Runs functions in the background on an HDD queue (the default one unless given)."""

    def __init__(self, queue: Optional[HddQueue] = None) -> None:
        self._queue = queue

    def do_async(
        self,
        function: Callable[..., Any],
        fn_args: Sequence[Any] = (),
        fn_kwargs: Optional[Mapping[str, Any]] = None,
        on_success: Callback = None,
        on_fail: Callback = None,
        on_end: Callback = None,
        give_thread: bool = False,
        *,
        on_failure: Callback = None,
    ) -> Task[Any]:
        """Run ``function(*fn_args, **fn_kwargs)`` in the background; return its task at once.

        With *give_thread* the task itself is passed first, so the function can
        report progress through ``task.status``.  *on_failure* is another name
        for *on_fail*.  Bad arguments raise TypeError here, before anything runs.
        """
        if not callable(function):
            raise TypeError(f"function must be callable, not {_checks.show(function)}")
        if isinstance(fn_args, (str, bytes)) or not isinstance(fn_args, Sequence):
            raise TypeError(f"fn_args must be a list or tuple, not {_checks.show(fn_args)}")
        if fn_kwargs is not None and not isinstance(fn_kwargs, Mapping):
            raise TypeError(f"fn_kwargs must be a dict or None, not {_checks.show(fn_kwargs)}")
        if on_failure is not None:
            if on_fail is not None:
                raise TypeError("give on_fail or on_failure, not both")
            on_fail = on_failure
        _checks.optional_callables(on_success=on_success, on_fail=on_fail, on_end=on_end)
        task: Task[Any] = Task(on_success=on_success, on_fail=on_fail, on_end=on_end)
        args = (task, *fn_args) if give_thread else tuple(fn_args)
        job = FunctionJob(function, args, dict(fn_kwargs or {}))
        target = self._queue if self._queue is not None else default_queue()
        return target.submit_job(job, task)

    @overload
    def background(self, function: _F) -> Callable[..., Task[Any]]: ...

    @overload
    def background(
        self,
        function: None = None,
        *,
        give_thread: bool = False,
        on_success: Callback = None,
        on_fail: Callback = None,
        on_end: Callback = None,
        on_failure: Callback = None,
    ) -> Callable[[_F], Callable[..., Task[Any]]]: ...

    def background(
        self,
        function: Optional[_F] = None,
        *,
        give_thread: bool = False,
        on_success: Callback = None,
        on_fail: Callback = None,
        on_end: Callback = None,
        on_failure: Callback = None,
    ) -> Union[Callable[..., Task[Any]], Callable[[_F], Callable[..., Task[Any]]]]:
        """Decorate a function so that calling it runs it in the background and returns its task.

        Use it bare (``@background``) or with do_async's options
        (``@background(give_thread=True, on_end=cleanup)``).
        """

        def decorate(wrapped: _F) -> Callable[..., Task[Any]]:
            if not callable(wrapped):
                raise TypeError(f"background decorates a function, not {_checks.show(wrapped)}")

            @functools.wraps(wrapped)
            def start(*args: Any, **kwargs: Any) -> Task[Any]:
                return self.do_async(
                    wrapped, args, kwargs, on_success, on_fail, on_end, give_thread,
                    on_failure=on_failure,
                )

            return start

        if function is not None:
            return decorate(function)
        return decorate


thread_manager = ThreadManager()
"""The module-level manager, on the default HDD queue, as thread_manager code expects."""

do_async = thread_manager.do_async
background = thread_manager.background
