"""The greenstalk API, written once, as coroutines.

Every client method builds a command, hands it to ``_request`` (the one thing
each client implements: move the command's bytes and return the reply's
event) and turns the event into the return value or exception. Batches
(``put_many``, :class:`Pipeline`) hand a list of commands to ``_request_many``
(the clients' loop over the core's plan, ``beanproto._batch``) and turn each
event into a result with the same per-command functions (``_RESULTS``) the
single methods use. The async
clients inherit this class as it is; the blocking client's methods are
generated from it by ``tools/unasync.py`` (``src/beanproto_sync/_api.py``,
checked to be current by the tests), so the three clients cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Generic, TypeVar, cast, overload

import beanproto as bp
from beanproto import _batch as batch
from beanproto._commands import make_put, make_with_id
from beanproto._stats import Stats, StatsJob, StatsTube
from beanproto.client import _outcomes as lib
from beanproto.client._faults import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IO_TIMEOUT,
    DEFAULT_KEEPALIVE,
    Timeouts,
)
from beanproto.client._job import Job, JobOrID, TBody, to_id

__all__ = ["AsyncAPI", "Pipeline"]

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

    The constructor checks every argument (no I/O) and keeps what an adapter
    needs: ``self._address``, ``self.encoding``, ``self._use`` and
    ``self._watch`` (the tubes a new connection is set up with; kept current
    by ``use``, ``watch`` and ``ignore``, so that a reconnect restores them),
    and ``self._timeouts`` (a :class:`~beanproto.client.Timeouts`). Then it
    calls ``_open()``.

    An adapter implements, as coroutines except ``_open`` (see the guide,
    ``docs/adapter.rst``):

    * ``_open()``: the end of construction (no I/O);
    * ``_request(command) -> event``: send one command, return the event that
      answers it;
    * ``_request_many(commands) -> events``: a batch, raising
      :class:`~beanproto.client.Interrupted` when the connection fails
      part-way;
    * ``close()``, ``_ready()`` (connect, for ``with``) and ``_checkpoint()``
      (a yield to the loop), which an async adapter gets from
      :class:`~beanproto.client.Reconnecting` mixed in before this class.
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

    async def _checkpoint(self) -> None:
        """Yield to the event loop (trio: a checkpoint, which every async
        call must be, even one with nothing to send). Nothing, here."""

    async def _job(self, command: bp.Command, success: _JobReply) -> Job[TBody]:
        event = await self._request(command)
        if type(event) is not success:
            raise lib.error_for(command, event)
        body: Any = event.body
        encoding = self.encoding
        if encoding is not None:
            try:
                body = body.decode(encoding)
            except UnicodeDecodeError:
                lib.decode_body(event.id, body, encoding)  # raises JobDecodeError
        return Job(event.id, body)

    # -- batches ---------------------------------------------------------------------

    async def _request_many(self, commands: list[bp.Command]) -> list[bp.Event]:
        """Send ``commands`` as a batch (``beanproto._batch.Plan`` says when to
        write and when to read) and return the events that answer them, in
        order.

        Raises:
            beanproto._batch.Interrupted: the connection failed after part
                of the batch went out (what was answered, and how the rest
                was lost). A failure before anything went out is raised as
                a single call raises it.
        """
        raise NotImplementedError

    async def _batch_events(self, commands: list[bp.Command]) -> list[bp.Event]:
        """``_request_many``, with a connection lost part-way raised as
        :class:`~beanproto.BatchLostError` (the answered commands' results,
        the lost ones', the unsent ones')."""
        try:
            return await self._request_many(commands)
        except batch.Interrupted as lost:
            answered = self._results(commands, lost.events)
            raise batch.lost_error(commands, answered, lost) from lost.cause

    def _results(self, commands: list[bp.Command], events: list[bp.Event]) -> list[Any]:
        """What each single call would have returned for its event, or the
        exception it would have raised (in its place)."""
        results: list[Any] = []
        append = results.append
        for command, event in zip(commands, events, strict=False):  # events: a prefix
            try:
                append(_RESULTS[type(command)](self, command, event))
            except bp.Error as exc:
                append(exc)
        return results

    def pipeline(self) -> Pipeline[TBody]:
        """A :class:`Pipeline`: queue commands, then send them all together
        with ``execute()`` (or by leaving its ``with`` block)."""
        return Pipeline(self)

    async def put_many(
        self,
        bodies: Iterable[TBody],
        priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY,
        ttr: int = DEFAULT_TTR,
    ) -> list[int]:
        """Insert one job per body into the used tube; return their ids, in order.

        Many commands go out per write and their replies are read in one
        loop, so a thousand puts cost a few round trips instead of a
        thousand (the core's plan keeps the replies not yet read small
        enough that the server never stalls: any count, any body sizes).

        Every body is encoded and every argument checked before a byte is
        sent: a bad one raises and nothing is sent. The blocking client
        holds its lock for the whole batch (other threads' calls wait); on
        the async clients other tasks' commands may go out between its
        writes. Cancelled (async clients), like a cancelled ``put``, it may
        have inserted any first part of the jobs (their ids are lost with
        the call); the rest are never sent.

        Raises:
            ArgumentError, ArgumentTypeError: a bad argument (nothing is sent).
            BatchError: some puts were refused (``JOB_TOO_BIG``, ``DRAINING``,
                ``BURIED`` …): the others' jobs exist, their ids are in
                ``.ids``, every put's outcome in ``.results``.
            BatchLostError: the connection failed part-way: ``.ids`` holds
                the jobs known inserted, ``.results`` what became of each
                put (``ReplyLostError``: it may have been inserted; a plain
                ``ConnectionError``: not sent, see ``.unsent``).
        """
        if isinstance(bodies, (str, bytes, bytearray, memoryview)):
            raise bp.ArgumentTypeError(
                f"put_many takes an iterable of bodies, not one {type(bodies).__name__} body"
            )
        encoding = self.encoding
        commands: list[bp.Command] = [
            make_put(lib.encode_body(body, encoding), priority, delay, ttr) for body in bodies
        ]
        if not commands:
            await self._checkpoint()  # a call with nothing to send still yields
            return []
        events = await self._batch_events(commands)
        ids = [event.id for event in events if type(event) is bp.Inserted]
        if len(ids) == len(events):
            return ids
        results = self._results(commands, events)
        raise bp.BatchError(results, batch.put_ids(commands, results))

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
        _used(self, command, await self._request(command))

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
        command = make_with_id(bp.Delete, job if type(job) is int else to_id(job))
        event = await self._request(command)
        if type(event) is not bp.Deleted:
            raise lib.error_for(command, event)

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
        _released(self, command, await self._request(command))

    async def bury(self, job: JobOrID[TBody], priority: int = DEFAULT_PRIORITY) -> None:
        """Bury a reserved job: it stays aside until kicked."""
        command = bp.Bury(id=to_id(job), priority=priority)
        _buried(self, command, await self._request(command))

    async def touch(self, job: JobOrID[TBody]) -> None:
        """Restart the TTR of a reserved job."""
        command = make_with_id(bp.Touch, job if type(job) is int else to_id(job))
        event = await self._request(command)
        if type(event) is not bp.Touched:
            raise lib.error_for(command, event)

    async def watch(self, tube: str) -> int:
        """Add ``tube`` to the watch list; return how many tubes are watched."""
        command = bp.Watch(tube=tube)
        return _watched(self, command, await self._request(command))

    async def ignore(self, tube: str) -> int:
        """Remove ``tube`` from the watch list; return how many are left.

        Raises:
            NotIgnoredError: ``tube`` is the only one watched.
        """
        command = bp.Ignore(tube=tube)
        return _ignored(self, command, await self._request(command))

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
        return _kicked(self, command, await self._request(command))

    async def kick_job(self, job: JobOrID[TBody]) -> None:
        """Move one buried or delayed job to the ready queue."""
        command = make_with_id(bp.KickJob, to_id(job))
        _kicked_job(self, command, await self._request(command))

    async def stats_job(self, job: JobOrID[TBody]) -> StatsJob:
        """Return a job's statistics, typed per key."""
        command = make_with_id(bp.StatsJob, to_id(job))
        return cast(StatsJob, _data(self, command, await self._request(command)))

    async def stats_tube(self, tube: str) -> StatsTube:
        """Return a tube's statistics, typed per key."""
        command = bp.StatsTube(tube=tube)
        return cast(StatsTube, _data(self, command, await self._request(command)))

    async def stats(self) -> Stats:
        """Return the server's statistics, typed per key."""
        command = _STATS
        return cast(Stats, _data(self, command, await self._request(command)))

    async def tubes(self) -> list[str]:
        """Return the names of every existing tube."""
        command = bp.ListTubes()
        return cast("list[str]", _data(self, command, await self._request(command)))

    async def using(self) -> str:
        """Return the tube ``put`` inserts into."""
        command = bp.ListTubeUsed()
        return _tube_used(self, command, await self._request(command))

    async def watching(self) -> list[str]:
        """Return the tubes ``reserve`` takes from."""
        command = bp.ListTubesWatched()
        return cast("list[str]", _data(self, command, await self._request(command)))

    async def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from ``tube`` for ``delay`` seconds."""
        command = bp.PauseTube(tube=tube, delay=delay)
        _paused(self, command, await self._request(command))


# -- results: event -> what a call returns, per command --------------------------------
#
# One function per kind of command, used by the single methods above and by
# batches (``AsyncAPI._results``), so that a pipeline's results are exactly
# what the single calls return. ``put``, ``reserve``, ``delete`` and ``touch``
# are the exception: their single methods do the same conversion inline (a
# function call less on the hot path), and the tests check that each gives
# the same results and exceptions as its function here.


def _inserted(api: AsyncAPI[Any], command: bp.Put, event: bp.Event) -> int:
    if type(event) is bp.Inserted:
        return event.id
    raise lib.error_for(command, event)


def _used(api: AsyncAPI[Any], command: bp.Use, event: bp.Event) -> None:
    lib.expect(command, event, bp.Using)
    api._use = command.tube  # a new connection is set up to use it too


def _job_of(api: AsyncAPI[Any], command: bp.Command, event: bp.Event, success: _JobReply) -> Any:
    if type(event) is not success:
        raise lib.error_for(command, event)
    body = lib.decode_body(event.id, event.body, api.encoding)
    return Job(event.id, body)


def _reserved(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> Any:
    return _job_of(api, command, event, bp.Reserved)


def _found(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> Any:
    return _job_of(api, command, event, bp.Found)


def _deleted(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> None:
    lib.expect(command, event, bp.Deleted)


def _released(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> None:
    lib.expect(command, event, bp.Released)


def _buried(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> None:
    lib.expect(command, event, bp.Buried)


def _touched(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> None:
    lib.expect(command, event, bp.Touched)


def _watched(api: AsyncAPI[Any], command: bp.Watch, event: bp.Event) -> int:
    count = lib.expect(command, event, bp.Watching).count
    if command.tube not in api._watch:  # a new connection watches it too
        api._watch.append(command.tube)
    return count


def _ignored(api: AsyncAPI[Any], command: bp.Ignore, event: bp.Event) -> int:
    count = lib.expect(command, event, bp.Watching).count
    if command.tube in api._watch:
        api._watch.remove(command.tube)
    return count


def _kicked(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> int:
    return cast(int, lib.expect(command, event, bp.Kicked).count)


def _kicked_job(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> None:
    lib.expect(command, event, bp.Kicked)


def _data(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> Any:
    return lib.expect(command, event, bp.Ok).data


def _tube_used(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> str:
    return lib.expect(command, event, bp.Using).tube


def _paused(api: AsyncAPI[Any], command: bp.Command, event: bp.Event) -> None:
    lib.expect(command, event, bp.Paused)


_RESULTS: dict[type[bp.Command], Callable[[AsyncAPI[Any], Any, bp.Event], Any]] = {
    bp.Put: _inserted,
    bp.Use: _used,
    bp.Reserve: _reserved,
    bp.ReserveWithTimeout: _reserved,
    bp.ReserveJob: _reserved,
    bp.Delete: _deleted,
    bp.Release: _released,
    bp.Bury: _buried,
    bp.Touch: _touched,
    bp.Watch: _watched,
    bp.Ignore: _ignored,
    bp.Peek: _found,
    bp.PeekReady: _found,
    bp.PeekDelayed: _found,
    bp.PeekBuried: _found,
    bp.Kick: _kicked,
    bp.KickJob: _kicked_job,
    bp.StatsJob: _data,
    bp.StatsTube: _data,
    bp.Stats: _data,
    bp.ListTubes: _data,
    bp.ListTubeUsed: _tube_used,
    bp.ListTubesWatched: _data,
    bp.PauseTube: _paused,
}


# -- pipelines -----------------------------------------------------------------------


class Pipeline(Generic[TBody]):
    """Commands queued on a client and sent together (``client.pipeline()``).

    Use it as a context manager (``with``; ``async with`` on the async
    clients)::

        with client.pipeline() as pipe:
            pipe.put("a").put("b").stats_tube("emails")
            ids_and_stats = pipe.execute()

    The queueing methods have the client's names and signatures, are plain
    methods (not coroutines, also on the async clients) and return the
    pipeline, so calls chain. Each checks its arguments when it is called
    (a bad one raises there and nothing is queued). ``execute()`` (awaited
    on the async clients) sends everything queued in as few writes as the
    core's plan allows and returns one result per command, in order: exactly
    what each single call would have returned. ``use``, ``watch`` and
    ``ignore`` keep the client's remembered tubes current as the single
    calls do, so a reconnect restores them.

    ``reserve`` needs a ``timeout``: a ``reserve()`` without one waits on
    the server and holds up everything queued after it.

    Leaving the ``with`` block normally executes whatever is still queued,
    so nothing queued is ever silently lost (redis-py's pipeline discards
    it instead); leaving it with an exception sends nothing more.

    Errors: with ``raise_on_error=True`` (the default) failure replies
    raise :class:`~beanproto.BatchError` once every command was answered
    (``.results`` holds the successes too); with ``False`` the exceptions
    take their commands' places in the returned list. A connection lost
    part-way always raises :class:`~beanproto.BatchLostError` (see there).
    Commands handed to ``execute()`` leave the queue, whatever happens.

    Cancelled (async clients), an ``execute()`` may have run any prefix of
    its commands (a put that reached the server inserted its job); the
    replies still owed are dropped as they come, commands not yet sent are
    never sent, and one with a reserve sent costs the connection (as a
    cancelled reserve does).
    """

    def __init__(self, client: AsyncAPI[TBody]) -> None:
        self._client: AsyncAPI[TBody] = client
        self._commands: list[bp.Command] = []

    def __len__(self) -> int:
        return len(self._commands)

    def __bool__(self) -> bool:
        return True  # also when empty: ``if pipe`` is not a length test

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} of {self._client!r}: {len(self._commands)} queued>"

    def reset(self) -> None:
        """Drop every command queued and not yet executed."""
        self._commands.clear()

    async def __aenter__(self) -> Pipeline[TBody]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._commands:
            await self.execute()
        else:
            self.reset()

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send every queued command; return their results, in order.

        Raises:
            BatchError: some commands got failure replies (only with
                ``raise_on_error``).
            BatchLostError: the connection failed part-way.
        """
        commands, self._commands = self._commands, []
        if not commands:
            await self._client._checkpoint()  # nothing to send: still a checkpoint
            return []
        client = self._client
        results = client._results(commands, await client._batch_events(commands))
        if raise_on_error:
            batch.raise_failures(commands, results)
        return results

    def _queue(self, command: bp.Command) -> Pipeline[TBody]:
        self._commands.append(command)
        return self

    # The client's methods, queued.

    def put(
        self,
        body: TBody,
        priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY,
        ttr: int = DEFAULT_TTR,
    ) -> Pipeline[TBody]:
        """Queue a ``put`` (result: the job's id)."""
        raw = lib.encode_body(body, self._client.encoding)
        return self._queue(make_put(raw, priority, delay, ttr))

    def use(self, tube: str) -> Pipeline[TBody]:
        """Queue a ``use`` (result: ``None``)."""
        return self._queue(bp.Use(tube=tube))

    def reserve(self, timeout: int | None = None) -> Pipeline[TBody]:
        """Queue a ``reserve`` with a timeout (result: a :class:`Job`).

        Raises:
            ArgumentError: no ``timeout``: a reserve that may wait for ever
                would hold up every command queued after it.
        """
        if timeout is None:
            raise bp.ArgumentError(
                "a pipeline's reserve needs a timeout: reserve() waits on the server "
                "and would hold up every command after it (use reserve(timeout=...))"
            )
        return self._queue(bp.ReserveWithTimeout(timeout=timeout))

    def reserve_job(self, id: int) -> Pipeline[TBody]:
        """Queue a ``reserve-job`` (result: a :class:`Job`)."""
        return self._queue(make_with_id(bp.ReserveJob, id))

    def delete(self, job: JobOrID[TBody]) -> Pipeline[TBody]:
        """Queue a ``delete`` (result: ``None``)."""
        return self._queue(make_with_id(bp.Delete, to_id(job)))

    def release(
        self,
        job: JobOrID[TBody],
        priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY,
    ) -> Pipeline[TBody]:
        """Queue a ``release`` (result: ``None``)."""
        return self._queue(bp.Release(id=to_id(job), priority=priority, delay=delay))

    def bury(self, job: JobOrID[TBody], priority: int = DEFAULT_PRIORITY) -> Pipeline[TBody]:
        """Queue a ``bury`` (result: ``None``)."""
        return self._queue(bp.Bury(id=to_id(job), priority=priority))

    def touch(self, job: JobOrID[TBody]) -> Pipeline[TBody]:
        """Queue a ``touch`` (result: ``None``)."""
        return self._queue(make_with_id(bp.Touch, to_id(job)))

    def watch(self, tube: str) -> Pipeline[TBody]:
        """Queue a ``watch`` (result: how many tubes are watched)."""
        return self._queue(bp.Watch(tube=tube))

    def ignore(self, tube: str) -> Pipeline[TBody]:
        """Queue an ``ignore`` (result: how many tubes are left)."""
        return self._queue(bp.Ignore(tube=tube))

    def peek(self, id: int) -> Pipeline[TBody]:
        """Queue a ``peek`` (result: a :class:`Job`)."""
        return self._queue(make_with_id(bp.Peek, id))

    def peek_ready(self) -> Pipeline[TBody]:
        """Queue a ``peek-ready`` (result: a :class:`Job`)."""
        return self._queue(bp.PeekReady())

    def peek_delayed(self) -> Pipeline[TBody]:
        """Queue a ``peek-delayed`` (result: a :class:`Job`)."""
        return self._queue(bp.PeekDelayed())

    def peek_buried(self) -> Pipeline[TBody]:
        """Queue a ``peek-buried`` (result: a :class:`Job`)."""
        return self._queue(bp.PeekBuried())

    def kick(self, bound: int) -> Pipeline[TBody]:
        """Queue a ``kick`` (result: how many jobs moved)."""
        return self._queue(bp.Kick(bound=bound))

    def kick_job(self, job: JobOrID[TBody]) -> Pipeline[TBody]:
        """Queue a ``kick-job`` (result: ``None``)."""
        return self._queue(make_with_id(bp.KickJob, to_id(job)))

    def stats_job(self, job: JobOrID[TBody]) -> Pipeline[TBody]:
        """Queue a ``stats-job`` (result: the job's statistics)."""
        return self._queue(make_with_id(bp.StatsJob, to_id(job)))

    def stats_tube(self, tube: str) -> Pipeline[TBody]:
        """Queue a ``stats-tube`` (result: the tube's statistics)."""
        return self._queue(bp.StatsTube(tube=tube))

    def stats(self) -> Pipeline[TBody]:
        """Queue a ``stats`` (result: the server's statistics)."""
        return self._queue(_STATS)

    def tubes(self) -> Pipeline[TBody]:
        """Queue a ``list-tubes`` (result: every tube's name)."""
        return self._queue(bp.ListTubes())

    def using(self) -> Pipeline[TBody]:
        """Queue a ``list-tube-used`` (result: the used tube)."""
        return self._queue(bp.ListTubeUsed())

    def watching(self) -> Pipeline[TBody]:
        """Queue a ``list-tubes-watched`` (result: the watched tubes)."""
        return self._queue(bp.ListTubesWatched())

    def pause_tube(self, tube: str, delay: int) -> Pipeline[TBody]:
        """Queue a ``pause-tube`` (result: ``None``)."""
        return self._queue(bp.PauseTube(tube=tube, delay=delay))
