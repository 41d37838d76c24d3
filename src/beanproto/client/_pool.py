"""Several beanstalkd servers behind one client API, as coroutines.

The blocking pool's methods (``beanproto_sync._pool_api``) are GENERATED from
this file by tools/unasync.py, as the blocking API is from ``_async_api.py``;
each package's ``Pool`` (its ``_pool.py``) only names its client and how to
wait.

beanstalkd does not replicate: each job lives on one server. A pool spreads
new jobs over the servers, takes jobs from whichever has one, and sends
every later command about a job to the server that holds it:

* ``put`` goes round robin (weighted), skipping servers that are down, and
  fails over to the next server only when the put provably did not reach
  the failed one (the connection could not be made, or it was found closed
  before the command left); a put whose reply was lost
  (:class:`~beanproto.ReplyLostError`, :class:`TimeoutError`) is raised, never
  sent again elsewhere.
* ``reserve`` looks at every server in turn (``reserve-with-timeout 0``),
  starting at the one that gave the last job (so a busy server costs one
  round trip a job, not one per empty server), but moving on after
  :data:`STREAK` jobs in a row from one server so that none is starved; when
  none has a job it waits on one server at a time, a second each, until a
  job comes or the timeout ends. Only one reserve is in flight at a time, so
  no job is ever reserved for nobody.
* Ids are per server: a pool returns :class:`PooledId` (an ``int`` that also
  names its server) and :class:`PooledJob`, and ``delete``, ``release``,
  ``bury``, ``touch``, ``kick_job``, ``stats_job`` and ``peek`` go where the
  job is. A bare ``int`` is refused: the pool cannot know its server.
* A server that cannot be reached is marked down and retried on later calls
  with a doubling delay (``retry_delay`` up to ``retry_cap``); it rejoins as
  soon as a retry connects. Its jobs wait for it (its binlog); the others
  keep taking and doing new work.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic

from beanproto._commands import DEFAULT_DELAY, DEFAULT_PRIORITY, DEFAULT_TTR
from beanproto._stats import Stats, StatsJob, StatsTube
from beanproto._validate import MAX_RESERVE_TIMEOUT, check_seconds
from beanproto.client import _faults as faults
from beanproto.client import _outcomes as lib
from beanproto.client._job import Job, TBody
from beanproto.client._outcomes import DEFAULT_TUBE
from beanproto.client._pooled import PooledId, PooledJob
from beanproto.errors import (
    ArgumentError,
    ArgumentTypeError,
    BatchError,
    BatchLostError,
    NotFoundError,
    ReplyLostError,
    TimedOutError,
)

if TYPE_CHECKING:  # (annotations only)
    from beanproto.client._api import AsyncAPI

__all__ = ["AsyncPool"]

#: The longest single wait on one server while the others are not looked at.
_WAIT_SLICE = 1

#: The most jobs ``reserve`` takes in a row from one server while another
#: may have some.
STREAK = 16


class _Member:
    """One server of the pool, and whether it is down."""

    __slots__ = ("address", "weight", "client", "failures", "retry_at")

    def __init__(self, address: Any, weight: int) -> None:
        self.address = address
        self.weight = weight
        self.client: AsyncAPI[Any] | None = None
        self.failures = 0
        self.retry_at = 0.0


class AsyncPool(Generic[TBody]):
    """Several beanstalkd servers behind one client API (see the module).

    Use it as ``async with Pool([address, ...]) as pool:``. Connections are
    opened when first needed, one per server. (An adapter binds it with a
    subclass that sets ``_client_type``, its client class, and implements
    ``async _pause(seconds: float)``, its library's sleep.)

    Args:
        addresses: the servers, as for the client.
        encoding, use, watch: as for the client, for every server.
        weights: how many puts each server takes in turn (default 1 each).
        retry_delay, retry_cap: seconds before a server that is down is
            tried again, doubling from the first to the second.
        connect_timeout, io_timeout, keepalive, reconnect: as for the
            client, for every server.
    """

    #: The client class of the package (set by each package's ``Pool``).
    _client_type: Any

    def __init__(
        self,
        addresses: Iterable[Any],
        encoding: str | None = "utf-8",
        use: str = DEFAULT_TUBE,
        watch: str | Iterable[str] = DEFAULT_TUBE,
        *,
        weights: Sequence[int] | None = None,
        retry_delay: float = 1.0,
        retry_cap: float = 30.0,
        connect_timeout: float | None = faults.DEFAULT_CONNECT_TIMEOUT,
        io_timeout: float | None = faults.DEFAULT_IO_TIMEOUT,
        keepalive: float | None = faults.DEFAULT_KEEPALIVE,
        reconnect: bool = True,
    ) -> None:
        servers = list(addresses)
        if not servers:
            raise ArgumentError("a pool needs at least one server")
        # Every setting is checked now, before anything connects.
        faults.Timeouts.checked(connect_timeout, io_timeout, keepalive, reconnect)
        tubes = lib.watch_list(watch)
        lib.setup_commands(use, tubes)
        self._options: dict[str, Any] = {
            "encoding": encoding,
            "use": use,
            "watch": tubes,
            "connect_timeout": connect_timeout,
            "io_timeout": io_timeout,
            "keepalive": keepalive,
            "reconnect": reconnect,
        }
        if weights is None:
            weights = [1] * len(servers)
        weights = list(weights)
        if (
            len(weights) != len(servers)
            or any(type(w) is not int or w < 0 for w in weights)
            or not any(weights)
        ):
            raise ArgumentError("weights: one int of 0 or more per server, not all 0")
        for name, value in (("retry_delay", retry_delay), ("retry_cap", retry_cap)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ArgumentTypeError(f"{name} must be a number of seconds")
            if not math.isfinite(value) or value <= 0:
                raise ArgumentError(f"{name} must be a positive number of seconds")
        self.encoding = encoding
        self._retry = (float(retry_delay), float(retry_cap))
        self._members = [_Member(a, w) for a, w in zip(servers, weights, strict=True)]
        self._by_address = {_key(m.address): m for m in self._members}
        if len(self._by_address) != len(self._members):
            raise ArgumentError("a server is named twice")
        # Weighted round robin: each member as often as its weight.
        self._turns = itertools.cycle([m for m in self._members for _ in range(m.weight)])
        self._reserve_start = 0  # where the next reserve looks first
        self._streak = 0  # jobs in a row from the server at _reserve_start
        self._closed = False

    @property
    def addresses(self) -> list[Any]:
        """The servers, in the order given."""
        return [m.address for m in self._members]

    def replica(self, **overrides: Any) -> AsyncPool[Any]:
        """A new pool of the same servers and settings (but ``overrides``),
        with connections of its own: what a worker gives each slot."""
        options = {**self._options, **overrides}
        return type(self)(
            self.addresses,
            weights=[m.weight for m in self._members],
            retry_delay=self._retry[0],
            retry_cap=self._retry[1],
            **options,
        )

    def __repr__(self) -> str:
        name = type(self).__module__.split(".")[0] + ".Pool"
        return f"{name}({self.addresses!r})"

    async def __aenter__(self) -> AsyncPool[TBody]:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection; the pool cannot be used afterwards."""
        self._closed = True
        for member in self._members:
            client, member.client = member.client, None
            if client is not None:
                await client.close()

    # -- members ---------------------------------------------------------------------

    def _up(self, member: _Member) -> bool:
        return member.client is not None or time.monotonic() >= member.retry_at

    async def _client(self, member: _Member) -> AsyncAPI[Any]:
        """``member``'s client, connecting it when it has none.

        Raises:
            ConnectionError, TimeoutError: it cannot be reached (it is then
                marked down); nothing was sent.
        """
        if self._closed:
            raise ConnectionError("the pool is closed")
        client = member.client
        if client is None:
            try:
                # (The blocking client connects as it is made; an async one
                # on entering.)
                client = self._client_type(member.address, **self._options)
                await client.__aenter__()
            except (ConnectionError, TimeoutError, OSError):
                self._down(member)
                raise
            member.client = client
            member.failures = 0
        return client

    def _down(self, member: _Member) -> None:
        """Mark ``member`` down: tried again after a doubling delay."""
        first, cap = self._retry
        member.retry_at = time.monotonic() + min(cap, first * 2 ** min(member.failures, 32))
        member.failures += 1

    async def _lost(self, member: _Member) -> None:
        """``member``'s connection failed: drop it and mark it down."""
        client, member.client = member.client, None
        self._down(member)
        if client is not None:
            try:
                await client.close()
            except (ConnectionError, OSError):
                pass

    def _member_of(self, job: object) -> _Member:
        server = getattr(job, "server", None)
        if server is None:
            raise ArgumentTypeError(
                "a pool needs the job or the id it returned (a PooledJob or PooledId): "
                f"a bare {type(job).__name__} does not say which server holds it"
            )
        member = self._by_address.get(_key(server))
        if member is None:
            raise ArgumentError(f"{server!r} is not a server of this pool")
        return member

    def _pooled(self, job: Job[Any], member: _Member, via: Any = None) -> PooledJob[Any]:
        return PooledJob(job.id, job.body, member.address, via)

    # -- producer --------------------------------------------------------------------

    async def put(
        self,
        body: TBody,
        priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY,
        ttr: int = DEFAULT_TTR,
    ) -> PooledId:
        """Put a job on the next server in turn; its :class:`PooledId`.

        Raises:
            ConnectionError: no server could be reached (nothing was put).
            ReplyLostError, TimeoutError: the put went out and its reply was
                lost: it may have happened (it is not sent again).
        """
        member, job_id = await self._placed(
            self._candidates(), lambda client: client.put(body, priority, delay, ttr)
        )
        return PooledId(job_id, member.address)

    async def put_many(
        self,
        bodies: Iterable[TBody],
        priority: int = DEFAULT_PRIORITY,
        delay: int = DEFAULT_DELAY,
        ttr: int = DEFAULT_TTR,
    ) -> list[PooledId]:
        """Put one job per body, spread over the servers in turns; their
        :class:`PooledId`, in order. Each server's share goes as one batch
        (the client's ``put_many``); a share that provably never left a
        server goes to the next one.

        Raises:
            BatchError: some puts failed (``JOB_TOO_BIG``, ``DRAINING``, a
                share no server could take …): ``results`` has, per body, its
                :class:`PooledId` or its exception, and ``ids`` every id put,
                so none is lost. Every share was tried.
            BatchLostError: the same, when some replies were lost (those puts
                may have happened).
        """
        if isinstance(bodies, (str, bytes, bytearray, memoryview)):
            raise ArgumentTypeError("put_many takes an iterable of bodies, not one body")
        items = list(bodies)
        shares: dict[int, list[int]] = {}
        members: list[_Member] = []
        for index, _ in enumerate(items):
            member = next(self._turns)
            if id(member) not in shares:
                shares[id(member)] = []
                members.append(member)
            shares[id(member)].append(index)
        results: list[Any] = [None] * len(items)
        lost: BaseException | None = None
        for member in members:
            indexes = shares[id(member)]
            share = [items[i] for i in indexes]
            try:
                placed = await self._put_share(member, share, priority, delay, ttr)
            except BatchError as exc:
                # Some of the share's puts failed (or lost their replies): the
                # others' ids are kept, and the other shares still go out.
                server = getattr(exc, "server", member.address)
                for i, result in zip(indexes, exc.results, strict=True):
                    results[i] = PooledId(result, server) if type(result) is int else result
                if isinstance(exc, BatchLostError):
                    lost = exc
                continue
            except (ConnectionError, TimeoutError) as exc:
                for i in indexes:
                    results[i] = exc
                if isinstance(exc, ReplyLostError | TimeoutError):
                    lost = exc
                continue
            for i, job_id in zip(indexes, placed, strict=True):
                results[i] = job_id
        if any(isinstance(r, BaseException) for r in results):
            ids = [r for r in results if isinstance(r, PooledId)]
            if lost is not None:
                raise BatchLostError(results, ids) from lost
            raise BatchError(results, ids)
        return results

    async def _put_share(
        self, first: _Member, share: list[Any], priority: int, delay: int, ttr: int
    ) -> list[PooledId]:
        others: list[_Member] = [m for m in self._members if m is not first and m.weight]
        order = [m for m in [first, *others] if self._up(m)]
        member, placed = await self._placed(
            order, lambda client: client.put_many(share, priority, delay, ttr)
        )
        return [PooledId(i, member.address) for i in placed]

    async def _placed(self, order: list[_Member], put: Any) -> tuple[_Member, Any]:
        """``put(client)`` on the first member of ``order`` that takes it, and
        that member. The next one is tried only when the put provably never
        left (the connection could not be made, or a plain
        :class:`ConnectionError`: found closed before sending).

        Raises:
            ReplyLostError, TimeoutError: the put went out and its reply was
                lost (never sent again elsewhere).
            BatchError: some of a batch's puts failed (``server`` says where).
            ConnectionError: no member took it.
        """
        last: BaseException | None = None
        for member in order:
            try:
                client = await self._client(member)
                return member, await put(client)
            except BatchError as exc:
                exc.server = member.address  # type: ignore[attr-defined]
                if isinstance(exc, BatchLostError):
                    await self._lost(member)
                raise
            except ReplyLostError:
                await self._lost(member)
                raise
            except (ConnectionError, OSError) as exc:
                await self._lost(member)  # not a ReplyLostError: it never left
                last = exc
            except TimeoutError as exc:
                if member.client is not None:  # connected: the put went out
                    await self._lost(member)
                    raise
                last = exc
        raise ConnectionError(f"no server of the pool could take the put (last: {last})")

    def _candidates(self) -> list[_Member]:
        """The members to try for one put: the next in turn first, then the
        others; those marked down are left out until their retry is due."""
        first = next(self._turns)
        order = [first] + [m for m in self._members if m is not first and m.weight]
        up = [m for m in order if self._up(m)]
        return up or order[:1]

    # -- worker ----------------------------------------------------------------------

    async def reserve(self, timeout: int | None = None) -> PooledJob[TBody]:
        """Reserve a job from whichever server has one (see the module).

        Raises:
            TimedOutError: no job on any server within ``timeout``.
            ConnectionError: no server could be reached.
        """
        if timeout is not None:
            # As a client's reserve takes it (a float rounded up, ints of any
            # kind), checked before anything is sent.
            timeout = check_seconds(timeout, "timeout", MAX_RESERVE_TIMEOUT)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise ConnectionError("the pool is closed")
            count = len(self._members)
            start = self._reserve_start
            order = self._members[start:] + self._members[:start]
            reached = 0
            for offset, member in enumerate(order):
                job = await self._try_reserve(member, 0)
                if job is not None:
                    self._took_from((start + offset) % count, offset == 0)
                    return job
                if member.client is not None:
                    reached += 1
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimedOutError()
            if not reached and not any(self._up(m) for m in self._members):
                # Every server is down: wait for the first retry, within the timeout.
                due = min(m.retry_at for m in self._members) - time.monotonic()
                if left is not None and due >= left:
                    raise ConnectionError("no server of the pool can be reached")
                await self._pause(max(0.0, due))
                continue
            # Wait on one server for a while, then look at them all again.
            wait = _WAIT_SLICE if left is None else max(0, min(_WAIT_SLICE, int(left)))
            job = await self._try_reserve(order[0], wait)
            if job is not None:
                self._took_from(start, True)
                return job

    def _took_from(self, index: int, again: bool) -> None:
        """A job came from member ``index`` (``again``: the one looked at
        first): look there first next time, unless it has had its streak."""
        self._streak = self._streak + 1 if again else 1
        if self._streak >= STREAK:
            index, self._streak = (index + 1) % len(self._members), 0
        self._reserve_start = index

    async def _try_reserve(self, member: _Member, wait: int) -> PooledJob[TBody] | None:
        if not self._up(member):
            return None
        try:
            client = await self._client(member)
            job = await client.reserve(timeout=wait)
        except TimedOutError:
            return None
        except (ConnectionError, TimeoutError, OSError):
            # A reserve cut off with its connection reserved nothing that
            # stays reserved: the server gives its jobs back on close.
            await self._lost(member)
            return None
        return self._pooled(job, member, client)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` (while every server is down), in the package's
        own library (each package's ``Pool`` says how)."""
        raise NotImplementedError

    async def delete(self, job: Any) -> None:
        """Delete ``job`` on its server (a job this pool reserved: on the
        connection that reserved it: a reservation belongs to a connection)."""
        await self._routed("delete", job, reserved=True)

    async def release(
        self, job: Any, priority: int = DEFAULT_PRIORITY, delay: int = DEFAULT_DELAY
    ) -> None:
        """Release ``job`` on its server (as for :meth:`delete`)."""
        await self._routed("release", job, priority, delay, reserved=True)

    async def bury(self, job: Any, priority: int = DEFAULT_PRIORITY) -> None:
        """Bury ``job`` on its server (as for :meth:`delete`)."""
        await self._routed("bury", job, priority, reserved=True)

    async def touch(self, job: Any) -> None:
        """Touch ``job`` on its server (as for :meth:`delete`)."""
        await self._routed("touch", job, reserved=True)

    async def kick_job(self, job: Any) -> None:
        """Kick ``job`` on its server."""
        await self._routed("kick_job", job)

    async def stats_job(self, job: Any) -> StatsJob:
        """``job``'s statistics, from its server."""
        return await self._routed("stats_job", job)  # type: ignore[no-any-return]

    async def peek(self, id: Any) -> PooledJob[TBody]:
        """The job ``id`` (a :class:`PooledId`), from its server."""
        job = await self._routed("peek", id)
        return self._pooled(job, self._member_of(id))

    async def _routed(self, method: str, job: Any, *args: Any, reserved: bool = False) -> Any:
        """Call the client ``method`` on the server that holds ``job``.

        ``reserved``: the command acts on a reservation. A job this pool
        reserved then goes on the connection that reserved it, never on a
        new one: if that connection is gone, so is the reservation (the
        server hands the job out again), and deleting it elsewhere would
        report done a job someone else may be doing.

        Raises:
            ConnectionError: that connection was lost.
        """
        member = self._member_of(job)
        via = getattr(job, "via", None) if reserved else None
        if via is not None:
            if member.client is not via:
                raise ConnectionError(
                    f"job {int(job.id)}: its reservation was lost with the connection that "
                    "made it (the server hands the job out again)"
                )
            client = via
        else:
            client = await self._client(member)
        try:
            return await getattr(client, method)(job, *args)
        except (ConnectionError, TimeoutError, OSError):
            await self._lost(member)
            raise

    # -- statistics ------------------------------------------------------------------

    async def stats_per_server(self) -> dict[Any, Stats]:
        """Each reachable server's ``stats()``, by address (servers that
        cannot be reached are left out)."""
        result: dict[Any, Stats] = {}
        for member in self._members:
            if not self._up(member):
                continue
            try:
                client = await self._client(member)
                result[member.address] = await client.stats()
            except (ConnectionError, TimeoutError, OSError):
                await self._lost(member)
        return result

    async def stats(self) -> dict[str, int]:
        """The counters of ``stats()`` (every ``int`` field), summed over the
        servers that answered."""
        return _summed((await self.stats_per_server()).values())

    async def stats_tube_per_server(self, tube: str) -> dict[Any, StatsTube]:
        """Each reachable server's ``stats_tube(tube)``, by address (servers
        without the tube, or that cannot be reached, are left out).

        Raises:
            NotFoundError: no server has the tube.
        """
        result: dict[Any, StatsTube] = {}
        for member in self._members:
            if not self._up(member):
                continue
            try:
                client = await self._client(member)
                result[member.address] = await client.stats_tube(tube)
            except NotFoundError:
                continue
            except (ConnectionError, TimeoutError, OSError):
                await self._lost(member)
        if not result:
            raise NotFoundError()
        return result

    async def stats_tube(self, tube: str) -> dict[str, int]:
        """The counters of ``stats_tube(tube)`` summed over the servers that
        have it."""
        return _summed((await self.stats_tube_per_server(tube)).values())


def _summed(replies: Iterable[Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for reply in replies:
        for key, value in reply.items():
            if type(value) is int:
                total[key] = total.get(key, 0) + value
    return total


def _key(address: Any) -> Any:
    """An address as a dict key (a list pair becomes a tuple)."""
    return tuple(address) if isinstance(address, list) else address
