"""The async worker, written once for trio and asyncio.

The rules are ``beanproto.client._worker_rules``'s (outcomes, backoff, touches, one
connection per slot opened with ``reconnect=False``), as in the blocking
worker; here slots are tasks. What differs between trio and asyncio (task
groups, cancelling one task, events, signals) is a :class:`Runtime` each
client package provides in a few lines.

* ``concurrency`` slot tasks, each with its own client: reserve, run the
  handler (awaited in the slot's task), settle the job.
* One keeper task touches the jobs of handlers still running after
  ``touch_after`` seconds, on their slot's connection (async clients take
  calls from several tasks at once).
* A stop cancels the slots waiting in ``reserve()`` at once (the
  connection goes with the cancelled call; a job the server handed out
  meanwhile goes back to its ready queue when the connection closes), gives
  running handlers ``grace`` seconds, then releases the jobs of those still
  running and cancels them. Every slot's connection is closed before
  :meth:`AsyncWorker.run` returns: no job stays reserved.

A worker opens ``concurrency`` connections.
"""

from __future__ import annotations

import functools
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol

from ..errors import (
    BrokenJobError,
    DeadlineSoonError,
    JobDecodeError,
    NotFoundError,
    RemoteProtocolError,
)
from . import _faults as faults
from . import _worker_rules as policy
from ._api import AsyncAPI
from ._job import Job, TBody
from ._pool import AsyncPool
from ._worker_rules import BuryJob, ReleaseJob

__all__ = ["AsyncWorker", "Flag", "Group", "Runtime", "Task"]

log = policy.logger

_IDLE, _RESERVING, _HANDLING = "idle", "reserving", "handling"
_LOST = (ConnectionError, TimeoutError, OSError, RemoteProtocolError)


class Flag(Protocol):
    """An event: trio's or asyncio's."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> Any: ...


class Task:
    """A task of the worker's group that can be cancelled on its own."""

    __slots__ = ("cancel", "done")

    def __init__(self, cancel: Callable[[], object], done: Flag) -> None:
        self.cancel = cancel
        self.done = done


class Group(ABC):
    """Tasks started by the worker, all finished when the group's block ends."""

    @abstractmethod
    def spawn(self, fn: Callable[[], Awaitable[None]]) -> Task: ...


class Runtime(ABC):
    """What the async worker needs from trio or asyncio."""

    @abstractmethod
    def group(self) -> AbstractAsyncContextManager[Group]: ...

    @abstractmethod
    def flag(self) -> Flag: ...

    @abstractmethod
    async def wait(self, flag: Flag, timeout: float | None) -> bool:
        """Wait for ``flag`` at most ``timeout`` seconds; whether it is set."""

    @abstractmethod
    def is_cancellation(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def cancel_requested(self) -> bool:
        """Whether the current task is being cancelled from outside (as far
        as the library can tell)."""

    @abstractmethod
    def watch_signals(self, group: Group, stop: Callable[[], None]) -> Callable[[], None]:
        """Make SIGTERM and SIGINT call ``stop`` while the worker runs (when
        it runs in the main thread); return the undo."""


class _Slot:
    __slots__ = ("client", "job", "state", "abandoned", "task", "broken", "cancelled")

    def __init__(self) -> None:
        #: Set before the worker cancels the slot's task (so a handler's own
        #: CancelledError is told from the worker's).
        self.cancelled = False
        self.client: AsyncAPI[Any] | None = None
        self.job: Job[Any] | None = None
        self.state = _IDLE
        self.abandoned = False
        self.task: Task | None = None
        self.broken: int | None = None


class _Touch:
    __slots__ = ("client", "job", "due", "ttr", "busy")

    def __init__(self, client: AsyncAPI[Any], job: Job[Any], due: float) -> None:
        self.client = client
        self.job = job
        self.due = due
        self.ttr: float | None = None
        self.busy = False


class AsyncWorker(Generic[TBody]):
    """Reserve jobs from ``watch`` and await ``handler`` on each,
    ``concurrency`` at a time, until :meth:`stop` (or SIGTERM / SIGINT).

    ``await handler(job)`` returning deletes the job; raising
    :class:`~beanproto.client.ReleaseJob` or :class:`~beanproto.client.BuryJob` does that;
    any other exception releases the job with a delay of
    ``backoff * 2**releases`` seconds (at most ``backoff_cap``) and buries it
    once the server has counted ``max_releases`` releases. A handler still
    running after ``touch_after`` seconds has its job touched before each
    deadline until it ends. Delivery is at least once: a job whose
    reservation is lost (its connection died, its TTR ran out) is not
    reported done and will be delivered again.

    Args:
        address: the server, as for the client, or a ``Pool`` of servers
            (each slot then takes jobs from all of them, with connections of
            its own; the worker's ``watch``, ``encoding`` and timeouts
            apply).
        handler: an async function called with each :class:`Job`.
        watch: the tube or tubes to take jobs from.
        concurrency: handlers run at once (one task and one connection each).
        grace: seconds running handlers get to finish after a stop; the jobs
            of those still running then are released and they are cancelled.
        max_releases: releases after which a failing job is buried.
        backoff, backoff_cap: the failure delay, in whole seconds.
        touch_after: seconds after which a running handler's job is looked
            at (one ``stats-job``) and then kept alive; under 1 s, the
            shortest TTR beanstalkd gives a job.
        reconnect_delay: seconds between attempts to reach a server that
            cannot be reached.
        encoding: job bodies' encoding (``None``: ``bytes``).
        connect_timeout, io_timeout, keepalive: as for the client.

    Raises:
        ArgumentError, ArgumentTypeError: a bad setting (nothing connects).
    """

    #: Set by each client package.
    _runtime: Runtime
    _client_type: Callable[..., AsyncAPI[Any]]

    def __init__(
        self,
        address: Any,
        handler: Callable[[Job[TBody]], Awaitable[object]],
        *,
        watch: str | Iterable[str] = "default",
        concurrency: int = 1,
        grace: float = 30.0,
        max_releases: int = 5,
        backoff: int = 1,
        backoff_cap: int = 3600,
        touch_after: float = 0.5,
        reconnect_delay: float = 1.0,
        encoding: str | None = "utf-8",
        connect_timeout: float | None = faults.DEFAULT_CONNECT_TIMEOUT,
        io_timeout: float | None = faults.DEFAULT_IO_TIMEOUT,
        keepalive: float | None = faults.DEFAULT_KEEPALIVE,
    ) -> None:
        self.settings, self._client_options = policy.prepared(
            handler,
            watch=watch,
            concurrency=concurrency,
            grace=grace,
            max_releases=max_releases,
            backoff=backoff,
            backoff_cap=backoff_cap,
            touch_after=touch_after,
            reconnect_delay=reconnect_delay,
            encoding=encoding,
            connect_timeout=connect_timeout,
            io_timeout=io_timeout,
            keepalive=keepalive,
        )
        self.address = address
        self.handler: Callable[[Job[TBody]], Awaitable[object]] = handler
        self._slots = [_Slot() for _ in range(self.settings.concurrency)]
        self._touching: dict[_Slot, _Touch] = {}
        self._keeper_wakes = math.inf
        self._stop_asked = False
        self._stopping = False
        self._stop: Flag | None = None
        self._changed: Flag | None = None
        self._fatal: BaseException | None = None
        self._started = False
        self._group: Group | None = None

    # -- control ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to stop; returns at once. Call it from the
        worker's own event loop (trio: its thread; asyncio:
        ``loop.call_soon_threadsafe(worker.stop)`` from another thread)."""
        self._stop_asked = True
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        """Work until :meth:`stop`, SIGTERM or SIGINT, then stop as the class
        describes and return.

        Raises:
            RuntimeError: the worker ran before.
            BaseException: what a handler raised that is not an
                :class:`Exception`; its job is released and the worker stops.
        """
        if self._started:
            raise RuntimeError("a Worker runs once; make a new one")
        self._started = True
        runtime = self._runtime
        self._stop = runtime.flag()
        self._changed = runtime.flag()
        if self._stop_asked:
            self._stop.set()
        try:
            async with runtime.group() as group:
                self._group = group
                restore = runtime.watch_signals(group, self.stop)
                try:
                    for slot in self._slots:
                        slot.task = group.spawn(self._guarded(functools.partial(self._serve, slot)))
                    keeper = group.spawn(self._guarded(self._keep))
                    log.info(
                        "worker started: %d slot(s) on %r, watching %s",
                        len(self._slots),
                        self.address,
                        ", ".join(self.settings.watch),
                    )
                    await self._stop.wait()
                    await self._shut_down(keeper)
                finally:
                    restore()
        finally:
            for slot in self._slots:
                await self._close(slot)
        log.info("worker stopped")
        if self._fatal is not None:
            raise self._fatal

    def _guarded(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``fn`` as a task of the group: an unexpected exception stops the
        worker (and :meth:`run` raises it) instead of tearing the group."""

        async def task() -> None:
            try:
                await fn()
            except BaseException as exc:
                if self._runtime.is_cancellation(exc):
                    raise
                log.critical("worker task failed: %r; stopping", exc, exc_info=exc)
                if self._fatal is None:
                    self._fatal = exc
                self.stop()

        return task

    async def _shut_down(self, keeper: Task) -> None:
        runtime = self._runtime
        self._stopping = True
        for slot in self._slots:
            if slot.state is not _HANDLING and slot.task is not None:
                slot.cancelled = True
                slot.task.cancel()  # a waiting reserve ends now
        deadline = time.monotonic() + self.settings.grace
        for slot in self._slots:
            assert slot.task is not None
            await runtime.wait(slot.task.done, max(0.0, deadline - time.monotonic()))
        for slot in self._slots:
            assert slot.task is not None
            if not slot.task.done.is_set():
                await self._abandon(slot)
        keeper.cancel()

    async def _abandon(self, slot: _Slot) -> None:
        slot.abandoned = True
        self._touching.pop(slot, None)
        job, client = slot.job, slot.client
        if job is not None and client is not None:
            try:
                await client.release(job, priority=await _priority(client, job))
                log.warning(
                    "job %d: released, its handler still running after the grace period", job.id
                )
            except NotFoundError:
                pass
            except _LOST as exc:
                log.warning("job %d: reservation lost while stopping (%s)", job.id, exc)
        assert slot.task is not None
        slot.cancelled = True
        slot.task.cancel()
        await self._runtime.wait(slot.task.done, 1.0)

    async def _close(self, slot: _Slot) -> None:
        client, slot.client = slot.client, None
        if client is not None:
            try:
                await client.close()
            except BaseException as exc:
                if self._runtime.is_cancellation(exc):
                    raise
                log.debug("closing a slot's connection: %s", exc)

    # -- a slot ----------------------------------------------------------------------

    async def _serve(self, slot: _Slot) -> None:
        while not self._stopping:
            client = await self._connected(slot)
            if client is None:
                return
            slot.state = _RESERVING
            try:
                job = await client.reserve()
            except DeadlineSoonError:
                # Only a connection holding a job hears this, and a slot
                # reserves with none: a server's stray warning, nothing to do.
                slot.state = _IDLE
                continue
            except JobDecodeError as exc:
                slot.state = _IDLE  # reserved here, but no handler can take it
                await _bury_undecodable(client, exc)
                continue
            except BrokenJobError as exc:
                slot.broken = exc.id
                await self._lost(slot, f"job {exc.id} is broken ({exc})")
                continue
            except _LOST as exc:
                await self._lost(slot, f"reserve failed ({type(exc).__name__}: {exc})")
                continue
            if self._stopping:
                slot.state = _IDLE
                return  # the connection is closed on the way out: the job goes back
            slot.state = _HANDLING
            slot.job = job
            due = time.monotonic() + self.settings.touch_after
            self._touching[slot] = _Touch(client, job, due)
            if due < self._keeper_wakes and self._changed is not None:
                self._changed.set()
            failure: BaseException | None = None
            try:
                await self.handler(job)
            except BaseException as exc:  # every outcome is settled
                if self._runtime.is_cancellation(exc) and (
                    slot.cancelled or self._runtime.cancel_requested()
                ):
                    raise  # the worker's (or its caller's) cancellation
                failure = exc  # a handler's own CancelledError is a failure too
            finally:
                self._touching.pop(slot, None)
                slot.job = None  # (nothing for a stop to release from here on)
            if slot.abandoned:
                return
            if failure is not None and not isinstance(failure, Exception):
                if not self._runtime.is_cancellation(failure):
                    # SystemExit and the like: give the job back as it was, stop.
                    await _release_as_is(client, job)
                    raise failure
                failure = RuntimeError(f"the handler raised {failure!r}")
            # Still _HANDLING while settling: a stop does not cancel this.
            if not await self._settle(client, job, failure):
                await self._close(slot)
            slot.state = _IDLE

    async def _connected(self, slot: _Slot) -> AsyncAPI[Any] | None:
        while slot.client is None:
            if self._stopping:
                return None
            client: Any
            if isinstance(self.address, AsyncPool):
                # A pool of its own per slot: the slot's connections.
                client = self.address.replica(**self._client_options)
            else:
                client = self._client_type(self.address, **self._client_options)
            try:
                await client.__aenter__()
            except _LOST as exc:
                log.warning(
                    "cannot reach %r (%s); retrying in %g s",
                    self.address,
                    exc,
                    self.settings.reconnect_delay,
                )
                assert self._stop is not None
                await self._runtime.wait(self._stop, self.settings.reconnect_delay)
                continue
            slot.client = client
            if slot.broken is not None:
                await _delete_broken(client, slot.broken)
                slot.broken = None
        return slot.client

    async def _lost(self, slot: _Slot, why: str) -> None:
        await self._close(slot)
        slot.state = _IDLE
        if not self._stopping:
            log.warning("connection to %r lost: %s; reconnecting", self.address, why)

    async def _settle(
        self, client: AsyncAPI[Any], job: Job[Any], failure: Exception | None
    ) -> bool:
        outcome = policy.explicit_outcome(failure)
        if outcome is None:
            log.error(
                "job %d: handler failed (%s)", job.id, type(failure).__name__, exc_info=failure
            )
        try:
            if outcome is None:
                stats = await client.stats_job(job)
                outcome = policy.failure_outcome(self.settings, stats["releases"], stats["pri"])
            if isinstance(outcome, ReleaseJob):
                priority = outcome.priority
                if priority is None:
                    priority = await _priority(client, job)
                await client.release(job, priority=priority, delay=outcome.delay)
            elif isinstance(outcome, BuryJob):
                priority = outcome.priority
                if priority is None:
                    priority = await _priority(client, job)
                await client.bury(job, priority=priority)
            else:
                await client.delete(job)
            log.info("job %d: %s", job.id, policy.describe(outcome))
        except NotFoundError:
            log.warning(
                "job %d: reservation lost (its TTR ran out); not done, it will be delivered again",
                job.id,
            )
        except _LOST as exc:
            log.warning(
                "job %d: reservation lost with the connection (%s); not done, it will be "
                "delivered again",
                job.id,
                exc,
            )
            return False
        return True

    # -- the keeper ------------------------------------------------------------------

    async def _keep(self) -> None:
        runtime = self._runtime
        while True:
            now = time.monotonic()
            due = [t for t in self._touching.values() if t.due <= now and not t.busy]
            if due:
                assert self._group is not None
                for touch in due:
                    # Each touch a task of its own: a connection that stalls
                    # must not hold back the other jobs' touches.
                    touch.busy = True
                    self._group.spawn(self._guarded(functools.partial(self._touch, touch)))
                continue
            wake = min((t.due for t in self._touching.values() if not t.busy), default=math.inf)
            self._keeper_wakes = wake
            self._changed = runtime.flag()
            await runtime.wait(self._changed, None if wake == math.inf else wake - now)

    async def _touch(self, touch: _Touch) -> None:
        try:
            await self._touch_once(touch)
        finally:
            touch.busy = False
            if self._changed is not None:
                self._changed.set()

    async def _touch_once(self, touch: _Touch) -> None:
        job = touch.job
        try:
            if touch.ttr is None:
                stats = await touch.client.stats_job(job)
                touch.ttr = float(stats["ttr"])
                touch.due = time.monotonic() + policy.touch_delay(stats["time-left"], touch.ttr)
                log.debug("job %d: %d s left of %d", job.id, stats["time-left"], stats["ttr"])
            else:
                await touch.client.touch(job)
                touch.due = time.monotonic() + policy.touch_delay(touch.ttr, touch.ttr)
                log.debug("job %d: touched", job.id)
        except NotFoundError:
            touch.due = math.inf
        except _LOST as exc:
            touch.due = math.inf
            log.warning("job %d: cannot touch (%s)", job.id, exc)


async def _priority(client: AsyncAPI[Any], job: Job[Any] | int) -> int:
    try:
        return int((await client.stats_job(job))["pri"])
    except NotFoundError:
        return policy.FALLBACK_PRIORITY


async def _release_as_is(client: AsyncAPI[Any], job: Job[Any]) -> None:
    """Give ``job`` back at once, with its own priority (the worker stops)."""
    try:
        await client.release(job, priority=await _priority(client, job))
        log.error("job %d: released, the worker stops", job.id)
    except NotFoundError:
        pass
    except _LOST as exc:
        log.warning("job %d: reservation lost while stopping (%s)", job.id, exc)


async def _bury_undecodable(client: AsyncAPI[Any], exc: JobDecodeError) -> None:
    """Bury a job whose body does not decode: no handler can take it."""
    try:
        await client.bury(exc.id, priority=await _priority(client, exc.id))
        log.error("job %d: body does not decode (%s); buried", exc.id, exc.reason)
    except NotFoundError:
        pass
    except _LOST as err:
        log.warning("job %d: reservation lost (%s)", exc.id, err)


async def _delete_broken(client: AsyncAPI[Any], job_id: int) -> None:
    try:
        await client.delete(job_id)
        log.error("job %d: broken on the server (its body lost in a crash); deleted", job_id)
    except NotFoundError:
        pass  # still reserved by the closed connection: it comes back
    except _LOST:
        pass
