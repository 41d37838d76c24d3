"""The trio worker: ``beanproto.client._worker`` on a trio nursery.

Slots are tasks of the worker's own nursery, each in a cancel scope of its
own (so that a stop can cancel the reserves that wait, and, after the grace
period, the handlers still running); SIGTERM and SIGINT arrive through
``trio.open_signal_receiver`` when the worker runs in the main thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from beanproto.client._job import TBody
from beanproto.client._worker import AsyncWorker, Flag, Group, Runtime, Task

from ._client import Client

__all__ = ["Worker"]


class _Nursery(Group):
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> Task:
        scope = trio.CancelScope()
        done = trio.Event()

        async def run() -> None:
            try:
                with scope:
                    await fn()
            finally:
                done.set()

        self.nursery.start_soon(run)
        return Task(scope.cancel, done)


class _Trio(Runtime):
    @asynccontextmanager
    async def group(self) -> AsyncIterator[Group]:
        async with trio.open_nursery() as nursery:
            yield _Nursery(nursery)

    def flag(self) -> Flag:
        return trio.Event()

    async def wait(self, flag: Flag, timeout: float | None) -> bool:
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            await flag.wait()
        return flag.is_set()

    def is_cancellation(self, exc: BaseException) -> bool:
        return isinstance(exc, trio.Cancelled)

    def cancel_requested(self) -> bool:
        return trio.current_effective_deadline() == float("-inf")

    def watch_signals(self, group: Group, stop: Callable[[], None]) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        assert isinstance(group, _Nursery)
        scope = trio.CancelScope()

        async def watch() -> None:
            with scope, trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    stop()

        group.nursery.start_soon(watch)
        return scope.cancel


class Worker(AsyncWorker[TBody]):
    __doc__ = AsyncWorker.__doc__

    _runtime = _Trio()
    _client_type: Callable[..., Any] = Client
