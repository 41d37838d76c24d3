"""The asyncio worker: ``beanproto.client._worker`` on plain asyncio tasks.

Slots are tasks the worker creates and awaits before :meth:`Worker.run`
returns (cancelling one cancels its reserve or, after the grace period, its
handler); SIGTERM and SIGINT arrive through ``loop.add_signal_handler``
when the worker runs in the main thread (not on Windows).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from beanproto.client._job import TBody
from beanproto.client._worker import AsyncWorker, Flag, Group, Runtime, Task

from ._client import Client

__all__ = ["Worker"]


class _Tasks(Group):
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> Task:
        done = asyncio.Event()

        async def run() -> None:
            await fn()

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)

        def finished(_: object) -> None:
            done.set()
            self.tasks.discard(task)  # (touch tasks come and go: no growth)

        task.add_done_callback(finished)
        return Task(task.cancel, done)


class _Asyncio(Runtime):
    @asynccontextmanager
    async def group(self) -> AsyncIterator[Group]:
        tasks = _Tasks()
        try:
            yield tasks
        finally:
            left = list(tasks.tasks)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    def flag(self) -> Flag:
        return asyncio.Event()

    async def wait(self, flag: Flag, timeout: float | None) -> bool:
        try:
            await asyncio.wait_for(flag.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return flag.is_set()

    def is_cancellation(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncio.CancelledError)

    def cancel_requested(self) -> bool:
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)  # Python 3.11+
        return bool(cancelling()) if cancelling is not None else False

    def watch_signals(self, group: Group, stop: Callable[[], None]) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        taken = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover (Windows)
                continue
            taken.append(signum)

        def restore() -> None:
            for signum in taken:
                loop.remove_signal_handler(signum)

        return restore


class Worker(AsyncWorker[TBody]):
    __doc__ = AsyncWorker.__doc__

    _runtime = _Asyncio()
    _client_type: Callable[..., Any] = Client
