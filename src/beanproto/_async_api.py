"""The greenstalk API, written once, as coroutines.

Every client method builds a command, hands it to ``_request`` (the one thing
each client implements: move the command's bytes and return the reply's
event) and turns the event into the return value or exception. The async
clients inherit this class as it is; the blocking client's methods are
generated from it by ``tools/unasync.py`` (``src/beanproto_sync/_api.py``,
checked to be current by the tests), so the three clients cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Generic, TypeVar, cast, overload

import beanproto as bp
from beanproto import _clientlib as lib
from beanproto._commands import make_put, make_with_id
from beanproto._faults import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IO_TIMEOUT,
    DEFAULT_KEEPALIVE,
    Timeouts,
)
from beanproto._job import Job, JobOrID, TBody, to_id
from beanproto._stats import Stats, StatsJob, StatsTube

__all__ = ["AsyncAPI"]

DEFAULT_TUBE = lib.DEFAULT_TUBE

DEFAULT_PRIORITY = bp.DEFAULT_PRIORITY
DEFAULT_DELAY = bp.DEFAULT_DELAY
DEFAULT_TTR = bp.DEFAULT_TTR

_JobReply = type[bp.Reserved] | type[bp.Found]
_Client = TypeVar("_Client", bound="AsyncAPI[Any]")

# Commands without arguments are frozen, so one instance serves every call.
_RESERVE = bp.Reserve()
_STATS = bp.Stats()


class AsyncAPI(Generic[TBody]):
    """greenstalk 2.1.1's client methods on top of an abstract ``_request``.

    Subclasses set ``encoding``, ``_use`` and ``_watch`` (the tubes the
    connection was set up with; kept current here, so that a client can set
    up a new connection the same way) and implement ``_request``.
    """

    @overload
    def __init__(
        self: AsyncAPI[bytes],
        address: Any,
        encoding: None,
        use: str = DEFAULT_TUBE,
        watch: str | Iterable[str] = DEFAULT_TUBE,
        *,
        connect_timeout: float | None = ...,
        io_timeout: float | None = ...,
        keepalive: float | None = ...,
        reconnect: bool = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncAPI[str],
        address: Any,
        encoding: str = "utf-8",
        use: str = DEFAULT_TUBE,
        watch: str | Iterable[str] = DEFAULT_TUBE,
        *,
        connect_timeout: float | None = ...,
        io_timeout: float | None = ...,
        keepalive: float | None = ...,
        reconnect: bool = ...,
    ) -> None: ...

    def __init__(
        self,
        address: Any,
        encoding: str | None = "utf-8",
        use: str = DEFAULT_TUBE,
        watch: str | Iterable[str] = DEFAULT_TUBE,
        *,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        io_timeout: float | None = DEFAULT_IO_TIMEOUT,
        keepalive: float | None = DEFAULT_KEEPALIVE,
        reconnect: bool = True,
    ) -> None:
        self._timeouts = Timeouts.checked(connect_timeout, io_timeout, keepalive, reconnect)
        self._watch: list[str] = lib.watch_list(watch)  # once: it may be an iterator
        # Bad tube names are refused here, before any I/O.
        self._setup_commands = lib.setup_commands(use, self._watch)
        self.encoding = encoding
        self._use = use
        self._address = address
        self._open()

    def _open(self) -> None:
        """The end of construction: connect (blocking client) or get ready
        to connect on first use (async clients)."""

    def __repr__(self) -> str:
        name = type(self).__module__.split(".")[0] + ".Client"
        address = self._address
        if isinstance(address, (str, os.PathLike)):
            return f"{name}(socket={os.fspath(address)!r})"
        if isinstance(address, tuple):
            return f"{name}(host={address[0]!r}, port={address[1]!r})"
        return f"{name}({address!r})"

    async def __aenter__(self: _Client) -> _Client:
        await self._ready()
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()

    async def _ready(self) -> None:
        """Make sure the client is connected (``async with`` does this)."""

    async def close(self) -> None:
        """Close the connection; the client cannot be used afterwards. Jobs it
        still holds reserved go back to the ready queue."""
        raise NotImplementedError

    async def _request(self, command: bp.Command) -> bp.Event:
        """Send ``command`` and return the event that answers it."""
        raise NotImplementedError

    async def _job(self, command: bp.Command, success: _JobReply) -> Job[TBody]:
        event = await self._request(command)
        if type(event) is not success:
            raise lib.error_for(command, event)
        body = lib.decode_body(event.id, event.body, self.encoding)
        return Job(event.id, cast(TBody, body))

    # -- producer ------------------------------------------------------------------

    async def put(
        self,
        body: TBody,
        priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY,
        ttr: int = DEFAULT_TTR,
    ) -> int:
        """Insert a job into the used tube and return its id.

        Args:
            body: the job's content; ``str`` is encoded with the client's encoding.
            priority: 0 (most urgent) to 4,294,967,295.
            delay: seconds to wait before the job becomes ready.
            ttr: seconds a worker may hold the job reserved.

        Raises:
            ArgumentError, ArgumentTypeError: a bad argument (nothing is sent).
            BuriedError: the server ran out of memory and buried the job.
            JobTooBigError: the body exceeds the server's ``max-job-size``.
            DrainingError: the server is in drain mode.
        """
        if type(body) is str and self.encoding is not None:
            raw: object = body.encode(self.encoding)
        else:
            raw = lib.encode_body(body, self.encoding)
        command = make_put(raw, priority, delay, ttr)
        event = await self._request(command)
        if type(event) is bp.Inserted:
            return event.id
        raise lib.error_for(command, event)

    async def use(self, tube: str) -> None:
        """Put later jobs into ``tube``."""
        command = bp.Use(tube=tube)
        lib.expect(command, await self._request(command), bp.Using)
        self._use = tube

    # -- worker ----------------------------------------------------------------------

    async def reserve(self, timeout: int | None = None) -> Job[TBody]:
        """Reserve a job from a watched tube; wait for one if none is ready.

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.

        Raises:
            TimedOutError: no job within ``timeout``.
            DeadlineSoonError: a job this client holds is about to time out.
            JobDecodeError: the body does not decode; it carries ``id`` and
                ``body`` so the job can still be buried or deleted.
        """
        command: bp.Command = (
            _RESERVE if timeout is None else bp.ReserveWithTimeout(timeout=timeout)
        )
        return await self._job(command, bp.Reserved)

    async def reserve_job(self, id: int) -> Job[TBody]:
        """Reserve the job ``id`` (beanstalkd 1.12+).

        Raises:
            NotFoundError: no such job, or it is already reserved.
        """
        return await self._job(make_with_id(bp.ReserveJob, id), bp.Reserved)

    async def delete(self, job: JobOrID[TBody]) -> None:
        """Delete a job, given as a :class:`Job` or an id."""
        command = make_with_id(bp.Delete, to_id(job))
        lib.expect(command, await self._request(command), bp.Deleted)

    async def release(
        self,
        job: JobOrID[TBody],
        priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY,
    ) -> None:
        """Give a reserved job back to the ready (or, with ``delay``, delayed) queue.

        Raises:
            NotFoundError: the job is not reserved by this client.
            BuriedError: the server ran out of memory and buried the job.
        """
        command = bp.Release(id=to_id(job), priority=priority, delay=delay)
        lib.expect(command, await self._request(command), bp.Released)

    async def bury(self, job: JobOrID[TBody], priority: int = DEFAULT_PRIORITY) -> None:
        """Bury a reserved job: it stays aside until kicked."""
        command = bp.Bury(id=to_id(job), priority=priority)
        lib.expect(command, await self._request(command), bp.Buried)

    async def touch(self, job: JobOrID[TBody]) -> None:
        """Restart the TTR of a reserved job."""
        command = make_with_id(bp.Touch, to_id(job))
        lib.expect(command, await self._request(command), bp.Touched)

    async def watch(self, tube: str) -> int:
        """Add ``tube`` to the watch list; return how many tubes are watched."""
        command = bp.Watch(tube=tube)
        count = lib.expect(command, await self._request(command), bp.Watching).count
        if tube not in self._watch:
            self._watch.append(tube)
        return count

    async def ignore(self, tube: str) -> int:
        """Remove ``tube`` from the watch list; return how many are left.

        Raises:
            NotIgnoredError: ``tube`` is the only one watched.
        """
        command = bp.Ignore(tube=tube)
        count = lib.expect(command, await self._request(command), bp.Watching).count
        if tube in self._watch:
            self._watch.remove(tube)
        return count

    # -- other commands ---------------------------------------------------------------

    async def peek(self, id: int) -> Job[TBody]:
        """Return the job ``id`` without reserving it."""
        return await self._job(make_with_id(bp.Peek, id), bp.Found)

    async def peek_ready(self) -> Job[TBody]:
        """Return the next ready job in the used tube."""
        return await self._job(bp.PeekReady(), bp.Found)

    async def peek_delayed(self) -> Job[TBody]:
        """Return the delayed job with the least delay left in the used tube."""
        return await self._job(bp.PeekDelayed(), bp.Found)

    async def peek_buried(self) -> Job[TBody]:
        """Return the oldest buried job in the used tube."""
        return await self._job(bp.PeekBuried(), bp.Found)

    async def kick(self, bound: int) -> int:
        """Move up to ``bound`` buried jobs (or, if none, delayed jobs) of the
        used tube to the ready queue; return how many moved."""
        command = bp.Kick(bound=bound)
        count = lib.expect(command, await self._request(command), bp.Kicked).count
        return cast(int, count)

    async def kick_job(self, job: JobOrID[TBody]) -> None:
        """Move one buried or delayed job to the ready queue."""
        command = make_with_id(bp.KickJob, to_id(job))
        lib.expect(command, await self._request(command), bp.Kicked)

    async def stats_job(self, job: JobOrID[TBody]) -> StatsJob:
        """Return a job's statistics, typed per key."""
        command = make_with_id(bp.StatsJob, to_id(job))
        return cast(StatsJob, lib.expect(command, await self._request(command), bp.Ok).data)

    async def stats_tube(self, tube: str) -> StatsTube:
        """Return a tube's statistics, typed per key."""
        command = bp.StatsTube(tube=tube)
        return cast(StatsTube, lib.expect(command, await self._request(command), bp.Ok).data)

    async def stats(self) -> Stats:
        """Return the server's statistics, typed per key."""
        command = _STATS
        return cast(Stats, lib.expect(command, await self._request(command), bp.Ok).data)

    async def tubes(self) -> list[str]:
        """Return the names of every existing tube."""
        command = bp.ListTubes()
        return cast("list[str]", lib.expect(command, await self._request(command), bp.Ok).data)

    async def using(self) -> str:
        """Return the tube ``put`` inserts into."""
        command = bp.ListTubeUsed()
        return lib.expect(command, await self._request(command), bp.Using).tube

    async def watching(self) -> list[str]:
        """Return the tubes ``reserve`` takes from."""
        command = bp.ListTubesWatched()
        return cast("list[str]", lib.expect(command, await self._request(command), bp.Ok).data)

    async def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from ``tube`` for ``delay`` seconds."""
        command = bp.PauseTube(tube=tube, delay=delay)
        lib.expect(command, await self._request(command), bp.Paused)
