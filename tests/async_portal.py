"""Blocking proxies of the async clients, so that one set of integration tests
(written against the blocking API) runs on all three clients.

A :class:`Portal` runs an event loop (asyncio or trio) in a helper thread and
runs coroutines on it for the calling thread. :func:`open_client` makes an
async client on that loop and enters it; the :class:`BlockingClient` it
returns turns every coroutine method of the client into a blocking call that
returns the coroutine's result or raises its exception. Plain attributes
(``encoding``) are read and written through.

Every call is bounded by :data:`CALL_TIMEOUT` on the loop itself, and
closing a portal checks that no task was left behind and joins its thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
import trio.testing

__all__ = [
    "CALL_TIMEOUT",
    "AsyncioPortal",
    "BlockingClient",
    "BlockingPipeline",
    "Portal",
    "TrioPortal",
    "open_client",
]

T = TypeVar("T")

#: Seconds any one proxied call may take before it fails instead of hanging.
CALL_TIMEOUT = 10.0


class Portal:
    """An event loop in a thread of its own, running coroutines on request."""

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` on the loop; return its result or raise its exception."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the loop and join its thread, checking nothing was left running."""
        raise NotImplementedError


class AsyncioPortal(Portal):
    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._main_task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="asyncio-portal", daemon=True)
        self._thread.start()
        if not self._ready.wait(CALL_TIMEOUT):
            raise RuntimeError("the asyncio portal did not start")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        self._main_task = asyncio.current_task()
        self._ready.set()
        await self._stop

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await fn()

        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return future.result(CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()  # cancels the task on the loop
            raise

    async def _other_tasks(self) -> list[asyncio.Task[Any]]:
        mine = (asyncio.current_task(), self._main_task)
        return [task for task in asyncio.all_tasks() if task not in mine]

    def close(self) -> None:
        assert self._loop is not None and self._stop is not None
        try:
            leftover = self.call(self._other_tasks)
        finally:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
            self._thread.join(CALL_TIMEOUT)
        assert not self._thread.is_alive(), "the asyncio portal thread did not stop"
        assert not leftover, f"tasks left behind: {leftover}"


class TrioPortal(Portal):
    def __init__(self) -> None:
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(
            target=trio.run, args=(self._main,), name="trio-portal", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(CALL_TIMEOUT):
            raise RuntimeError("the trio portal did not start")
        self._baseline = self.call(_living_tasks)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._ready.set()
        await self._stop.wait()

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            with trio.fail_after(CALL_TIMEOUT):
                return await fn()

        return trio.from_thread.run(bounded, trio_token=self._token)

    def close(self) -> None:
        assert self._stop is not None
        try:
            living = self.call(_living_tasks)
        finally:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(CALL_TIMEOUT)
        assert not self._thread.is_alive(), "the trio portal thread did not stop"
        assert living == self._baseline, f"{living - self._baseline} task(s) left behind"


async def _living_tasks() -> int:
    """How many tasks the trio run has, once every other task is blocked
    (so that the task of the previous portal call has finished)."""
    await trio.testing.wait_all_tasks_blocked()
    return trio.lowlevel.current_statistics().tasks_living


class BlockingClient:
    """The blocking face of an async client living on a portal's loop."""

    def __init__(self, portal: Portal, client: Any) -> None:
        object.__setattr__(self, "_portal", portal)
        object.__setattr__(self, "_client", client)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name == "pipeline":
            return lambda: BlockingPipeline(self._portal, attr())
        if not inspect.iscoroutinefunction(attr):
            return attr

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._portal.call(functools.partial(attr, *args, **kwargs))

        return blocking

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._client, name, value)

    def __repr__(self) -> str:
        return repr(self._client)

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BlockingPipeline:
    """The blocking face of an async client's pipeline: its queueing methods
    (plain on every client) pass through and return this proxy, so calls
    chain; ``execute``, ``with`` and its exit run on the portal's loop."""

    def __init__(self, portal: Portal, pipeline: Any) -> None:
        self._portal = portal
        self._pipeline = pipeline

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._pipeline, name)
        if inspect.iscoroutinefunction(attr):

            def blocking(*args: Any, **kwargs: Any) -> Any:
                return self._portal.call(functools.partial(attr, *args, **kwargs))

            return blocking

        def queueing(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            return self if result is self._pipeline else result

        return queueing

    def __len__(self) -> int:
        return len(self._pipeline)

    def __bool__(self) -> bool:
        return bool(self._pipeline)

    def __enter__(self) -> BlockingPipeline:
        self._portal.call(self._pipeline.__aenter__)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._portal.call(functools.partial(self._pipeline.__aexit__, *exc_info))


def open_client(portal: Portal, cls: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)`` made and entered (connected) on ``portal``'s
    loop, behind a :class:`BlockingClient`."""

    async def make() -> Any:
        client = cls(*args, **kwargs)
        await client.__aenter__()
        return client

    return BlockingClient(portal, portal.call(make))
