"""The anyio worker: :class:`beanproto.client.AsyncWorker` on an anyio task group.

Slots are tasks of the worker's own task group, each in a cancel scope of
its own (so that a stop can cancel the reserves that wait and, after the
grace period, the handlers still running); SIGTERM and SIGINT arrive through
``anyio.open_signal_receiver`` when the worker runs in the main thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from beanproto.client import AsyncWorker, Flag, Group, Runtime, Task, TBody

from ._client import Client

__all__ = ["Worker"]


class _TaskGroup(Group):
    def __init__(self, tasks: anyio.abc.TaskGroup) -> None:
        self.tasks = tasks

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> Task:
        scope = anyio.CancelScope()
        done = anyio.Event()

        async def run() -> None:
            try:
                with scope:
                    await fn()
            finally:
                done.set()

        self.tasks.start_soon(run)
        return Task(scope.cancel, done)


class _AnyIO(Runtime):
    @asynccontextmanager
    async def group(self) -> AsyncIterator[Group]:
        async with anyio.create_task_group() as tasks:
            yield _TaskGroup(tasks)

    def flag(self) -> Flag:
        return anyio.Event()

    async def wait(self, flag: Flag, timeout: float | None) -> bool:
        with anyio.move_on_after(float("inf") if timeout is None else timeout):
            await flag.wait()
        return flag.is_set()

    def is_cancellation(self, exc: BaseException) -> bool:
        return isinstance(exc, anyio.get_cancelled_exc_class())

    def cancel_requested(self) -> bool:
        return anyio.current_effective_deadline() == float("-inf")

    def watch_signals(self, group: Group, stop: Callable[[], None]) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        assert isinstance(group, _TaskGroup)
        scope = anyio.CancelScope()

        async def watch() -> None:
            with scope, anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    stop()

        group.tasks.start_soon(watch)
        return scope.cancel


class Worker(AsyncWorker[TBody]):
    __doc__ = AsyncWorker.__doc__

    _runtime = _AnyIO()
    _client_type: Callable[..., Any] = Client
