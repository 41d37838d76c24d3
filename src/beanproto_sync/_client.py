"""The blocking client: greenstalk 2.1.1's API on the beanproto core.

All the client does is move bytes between a socket and a
:class:`beanproto.Connection` and turn the events it gets back into return
values and exceptions (with :mod:`beanproto._clientlib`). It parses nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any, Generic, TypeVar, Union, cast, overload

import beanproto as bp
from beanproto import _clientlib as lib
from beanproto._commands import make_put, make_with_id
from beanproto._stats import Stats, StatsJob, StatsTube

__all__ = [
    "Address",
    "ConnectionTarget",
    "Client",
    "Job",
    "JobOrID",
    "TBody",
    "DEFAULT_TUBE",
    "DEFAULT_PRIORITY",
    "DEFAULT_DELAY",
    "DEFAULT_TTR",
]

DEFAULT_TUBE = lib.DEFAULT_TUBE
DEFAULT_PRIORITY = bp.DEFAULT_PRIORITY
DEFAULT_DELAY = bp.DEFAULT_DELAY
DEFAULT_TTR = bp.DEFAULT_TTR

Address = Union[tuple[str, int], str]  # noqa: UP007 (runtime alias, as greenstalk)
"""A ``(host, port)`` pair or the path of a unix socket."""

ConnectionTarget = Union[Address, socket.socket]  # noqa: UP007 (runtime alias, as greenstalk)
"""An address, or a socket already connected to beanstalkd."""

TBody = TypeVar("TBody", str, bytes)

# Commands without arguments are frozen, so one instance serves every call.
_RESERVE = bp.Reserve()
_STATS = bp.Stats()

#: Bodies at least this large are written with ``sendmsg`` from the caller's
#: own buffer instead of being joined to the command line first.
_VECTORED_BODY = 32 * 1024


class Job(Generic[TBody]):
    """A job returned from the server.

    Attributes:
        id: the server's identifier for the job.
        body: the job's content: ``str`` when the client has an encoding,
            ``bytes`` when it was created with ``encoding=None``.
    """

    def __init__(self, id: int, body: TBody) -> None:
        self.id: int = id
        self.body: TBody = body

    def __repr__(self) -> str:
        return f"beanproto_sync.Job(id={self.id!r}, body={self.body!r})"


JobOrID = Union[Job[TBody], int]  # noqa: UP007 (runtime alias, as greenstalk)


def _to_id(job: object) -> int:
    if type(job) is int:
        return job
    return job.id if isinstance(job, Job) else cast(int, job)


def _connect(address: ConnectionTarget) -> tuple[socket.socket, Any]:
    if isinstance(address, socket.socket):
        return address, address.getpeername()
    if isinstance(address, (str, os.PathLike)):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(os.fspath(address))
        except BaseException:
            sock.close()
            raise
        return sock, os.fspath(address)
    sock = socket.create_connection(address)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, address


def _sendmsg_all(sock: socket.socket, parts: list[bytes | bytearray | memoryview]) -> None:
    """Write every byte of ``parts`` with vectored writes, copying nothing."""
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        sent = sock.sendmsg(views)
        while sent:
            first = views[0]
            if sent >= len(first):
                sent -= len(first)
                views.pop(0)
            else:
                views[0] = first[sent:]
                sent = 0
        while views and not len(views[0]):
            views.pop(0)


class Client(Generic[TBody]):
    """A blocking beanstalkd client, a drop-in for ``greenstalk.Client``.

    Connecting happens at construction; ``use`` and ``watch`` are applied
    straight away (in one round trip).

    Args:
        address: ``(host, port)``, a unix socket path, or a socket already
            connected to beanstalkd.
        encoding: the encoding of job bodies; ``None`` for raw ``bytes``.
        use: the tube ``put`` inserts into.
        watch: the tube or tubes ``reserve`` takes from. ``default`` is
            ignored unless it is named.

    Raises:
        ArgumentError: a tube name the protocol forbids (nothing is sent).
        ConnectionError: the server cannot be reached.
    """

    @overload
    def __init__(
        self: Client[bytes],
        address: ConnectionTarget,
        encoding: None,
        use: str = DEFAULT_TUBE,
        watch: str | Iterable[str] = DEFAULT_TUBE,
    ) -> None: ...

    @overload
    def __init__(
        self: Client[str],
        address: ConnectionTarget,
        encoding: str = "utf-8",
        use: str = DEFAULT_TUBE,
        watch: str | Iterable[str] = DEFAULT_TUBE,
    ) -> None: ...

    def __init__(
        self,
        address: ConnectionTarget,
        encoding: str | None = "utf-8",
        use: str = DEFAULT_TUBE,
        watch: str | Iterable[str] = DEFAULT_TUBE,
    ) -> None:
        setup = lib.setup_commands(use, watch)
        self.encoding = encoding
        #: Why the client cannot be used any more (closed, or lost), or None.
        self._unusable: str | None = "the client never connected"
        self._conn = bp.Connection()
        self._sock, self._address = _connect(address)
        # Vectored writes need a plain socket (not ssl.SSLSocket, not Windows).
        self._vectored = type(self._sock) is socket.socket and hasattr(self._sock, "sendmsg")
        self._unusable = None
        if setup:
            try:
                self._setup(setup)
            except BaseException:
                self.close()
                raise

    def _setup(self, commands: list[bp.Command]) -> None:
        # Pipelined: every setup command goes out in one write.
        try:
            self._sock.sendall(b"".join(self._conn.send(command) for command in commands))
            events = [self._read_event() for _ in commands]
        except BaseException as exc:
            self._abandon(exc)
            raise
        for command, event in zip(commands, events, strict=True):
            lib.expect(command, event, bp.Watching if type(command) is not bp.Use else bp.Using)

    # -- the loop: the only place bytes move ---------------------------------

    def _request(self, command: bp.Command) -> bp.Event:
        if self._unusable is not None:
            raise lib.connection_lost(self._unusable)
        conn = self._conn
        try:
            if conn.buffered:
                # Bytes nobody asked for: the core raises RemoteProtocolError.
                conn.next_event()
            if type(command) is bp.Put and self._vectored and len(command.body) >= _VECTORED_BODY:
                _sendmsg_all(self._sock, conn.send_parts(command))
            else:
                self._sock.sendall(conn.send(command))
            return self._read_event()
        except BaseException as exc:
            # Interrupted between sending and reading (a transport error, a
            # protocol error, even KeyboardInterrupt), the reply still owed
            # would be handed to the next call. So the connection is given
            # up: the error propagates, and later calls raise ConnectionError.
            self._abandon(exc)
            raise

    def _read_event(self) -> bp.Event:
        conn = self._conn
        # With nothing buffered the first next_event() can only say NEED_DATA.
        event = conn.next_event() if conn.buffered else bp.NEED_DATA
        while event is bp.NEED_DATA:
            nbytes = self._sock.recv_into(conn.get_buffer())
            if nbytes:
                conn.buffer_updated(nbytes)
            else:
                conn.receive_data(b"")
            event = conn.next_event()
        return event

    def _job(self, command: bp.Command, success: type[bp.Reserved] | type[bp.Found]) -> Job[TBody]:
        event = self._request(command)
        if type(event) is not success:
            raise lib.error_for(command, event)
        body = lib.decode_body(event.id, event.body, self.encoding)
        return Job(event.id, cast(TBody, body))

    # -- context management -----------------------------------------------------

    def __enter__(self) -> Client[TBody]:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. The client cannot be used afterwards.

        Jobs this client still holds reserved go back to the ready queue.
        """
        self._abandon("the client is closed")

    def _abandon(self, why: BaseException | str) -> None:
        if self._unusable is None:
            self._unusable = why if isinstance(why, str) else f"{type(why).__name__}: {why}"
            self._sock.close()

    def __repr__(self) -> str:
        if isinstance(self._address, str):
            return f"beanproto_sync.Client(socket={self._address!r})"
        host, port = self._address[:2]
        return f"beanproto_sync.Client(host={host!r}, port={port!r})"

    # -- producer ------------------------------------------------------------------

    def put(
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
        event = self._request(command)
        if type(event) is bp.Inserted:
            return event.id
        raise lib.error_for(command, event)

    def use(self, tube: str) -> None:
        """Put later jobs into ``tube``."""
        command = bp.Use(tube=tube)
        lib.expect(command, self._request(command), bp.Using)

    # -- worker ----------------------------------------------------------------------

    def reserve(self, timeout: int | None = None) -> Job[TBody]:
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
        return self._job(command, bp.Reserved)

    def reserve_job(self, id: int) -> Job[TBody]:
        """Reserve the job ``id`` (beanstalkd 1.12+).

        Raises:
            NotFoundError: no such job, or it is already reserved.
        """
        return self._job(make_with_id(bp.ReserveJob, id), bp.Reserved)

    def delete(self, job: JobOrID[TBody]) -> None:
        """Delete a job, given as a :class:`Job` or an id."""
        command = make_with_id(bp.Delete, _to_id(job))
        lib.expect(command, self._request(command), bp.Deleted)

    def release(
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
        command = bp.Release(id=_to_id(job), priority=priority, delay=delay)
        lib.expect(command, self._request(command), bp.Released)

    def bury(self, job: JobOrID[TBody], priority: int = DEFAULT_PRIORITY) -> None:
        """Bury a reserved job: it stays aside until kicked."""
        command = bp.Bury(id=_to_id(job), priority=priority)
        lib.expect(command, self._request(command), bp.Buried)

    def touch(self, job: JobOrID[TBody]) -> None:
        """Restart the TTR of a reserved job."""
        command = make_with_id(bp.Touch, _to_id(job))
        lib.expect(command, self._request(command), bp.Touched)

    def watch(self, tube: str) -> int:
        """Add ``tube`` to the watch list; return how many tubes are watched."""
        command = bp.Watch(tube=tube)
        return lib.expect(command, self._request(command), bp.Watching).count

    def ignore(self, tube: str) -> int:
        """Remove ``tube`` from the watch list; return how many are left.

        Raises:
            NotIgnoredError: ``tube`` is the only one watched.
        """
        command = bp.Ignore(tube=tube)
        return lib.expect(command, self._request(command), bp.Watching).count

    # -- other commands ---------------------------------------------------------------

    def peek(self, id: int) -> Job[TBody]:
        """Return the job ``id`` without reserving it."""
        return self._job(make_with_id(bp.Peek, id), bp.Found)

    def peek_ready(self) -> Job[TBody]:
        """Return the next ready job in the used tube."""
        return self._job(bp.PeekReady(), bp.Found)

    def peek_delayed(self) -> Job[TBody]:
        """Return the delayed job with the least delay left in the used tube."""
        return self._job(bp.PeekDelayed(), bp.Found)

    def peek_buried(self) -> Job[TBody]:
        """Return the oldest buried job in the used tube."""
        return self._job(bp.PeekBuried(), bp.Found)

    def kick(self, bound: int) -> int:
        """Move up to ``bound`` buried jobs (or, if none, delayed jobs) of the
        used tube to the ready queue; return how many moved."""
        command = bp.Kick(bound=bound)
        count = lib.expect(command, self._request(command), bp.Kicked).count
        return cast(int, count)

    def kick_job(self, job: JobOrID[TBody]) -> None:
        """Move one buried or delayed job to the ready queue."""
        command = make_with_id(bp.KickJob, _to_id(job))
        lib.expect(command, self._request(command), bp.Kicked)

    def stats_job(self, job: JobOrID[TBody]) -> StatsJob:
        """Return a job's statistics, typed per key."""
        command = make_with_id(bp.StatsJob, _to_id(job))
        return cast(StatsJob, lib.expect(command, self._request(command), bp.Ok).data)

    def stats_tube(self, tube: str) -> StatsTube:
        """Return a tube's statistics, typed per key."""
        command = bp.StatsTube(tube=tube)
        return cast(StatsTube, lib.expect(command, self._request(command), bp.Ok).data)

    def stats(self) -> Stats:
        """Return the server's statistics, typed per key."""
        command = _STATS
        return cast(Stats, lib.expect(command, self._request(command), bp.Ok).data)

    def tubes(self) -> list[str]:
        """Return the names of every existing tube."""
        command = bp.ListTubes()
        return cast("list[str]", lib.expect(command, self._request(command), bp.Ok).data)

    def using(self) -> str:
        """Return the tube ``put`` inserts into."""
        command = bp.ListTubeUsed()
        return lib.expect(command, self._request(command), bp.Using).tube

    def watching(self) -> list[str]:
        """Return the tubes ``reserve`` takes from."""
        command = bp.ListTubesWatched()
        return cast("list[str]", lib.expect(command, self._request(command), bp.Ok).data)

    def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from ``tube`` for ``delay`` seconds."""
        command = bp.PauseTube(tube=tube, delay=delay)
        lib.expect(command, self._request(command), bp.Paused)
