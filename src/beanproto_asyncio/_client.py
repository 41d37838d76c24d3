"""The asyncio client: greenstalk's API as coroutines, on the beanproto core.

How bytes move
--------------
The connection is an :class:`asyncio.Protocol`: the event loop hands it each
read as ``bytes``, and the core's ``next_event_with`` parses a read that is
exactly one reply (what a call nearly always gets) straight from them, with
no stream and no buffer in between. The rest of a reply that came in part
(a large body, most often) is read through a :class:`asyncio.BufferedProtocol`
twin whose buffer is the core's own, sized for the whole body, so it is not
copied on the way; the transport switches back once the replies are whole.
Each call writes its command with one synchronous ``transport.write`` (so
the bytes of concurrent calls never interleave) and waits on a future: on
the usual path the caller awaits that future itself, with no coroutine of
the client's in between (a ``reserve`` keeps one, which closes the
connection if it is cancelled). As replies arrive the protocol hands each
event to the oldest waiting future. Replies come back in the order the
commands went out, so several tasks' commands are pipelined on the one
connection and every task gets its own reply. There is no background task
(connecting runs in a task of its own, awaited by the call that connects).

Cancellation
------------
A call cancelled while its reply is outstanding (``asyncio.wait_for``,
``asyncio.timeout``, ``task.cancel()``) leaves its future cancelled; the reply
is dropped when it arrives, so the next call still gets its own. The command
may or may not have taken effect (a cancelled ``put`` may have inserted its
job). A cancelled ``reserve`` (or ``reserve_job``) closes the connection:
beanstalkd cannot abort a reserve that waits, and closing makes it put back
*at once* every job the connection held reserved — the cancelled call's job,
and any other job this client had reserved and not yet finished. Other calls
waiting on that connection fail with :class:`~beanproto.ReplyLostError` (their
commands may or may not have run); the next call connects again and restores
the ``use`` and ``watch`` tubes.

Large bodies
------------
``transport.write`` keeps what the socket does not take at once, and before
Python 3.12 it copies that into its own buffer: a 1 GiB body written in one
call would cost another 1 GiB (and a third, transient, for the slice). So a
body larger than :data:`_CHUNK` is written a chunk (a ``memoryview`` slice:
no copy) at a time, each chunk only once the transport has drained below its
low-water mark (``pause_writing`` / ``resume_writing``): the client holds at
most about one chunk beyond the caller's body. Meanwhile other calls wait
before sending (the whole ``put`` goes out before the next command's first
byte). A ``put`` cancelled in the middle of its body has left part of its
command on the wire, so its connection is given up (calls waiting on it fail
with :class:`~beanproto.ReplyLostError`; the next call connects again).

Faults
------
``connect_timeout`` bounds opening the connection and its ``use``/``watch``
set-up together; expired, the half-made connection is closed and the call
raises :class:`TimeoutError` (a cancelled caller still sees
``CancelledError``; ``close()`` ends it with :class:`ConnectionError`).
``io_timeout`` is kept by one watchdog timer per connection, not one per
call, and without reading the clock per call: the oldest outstanding reply
is due ``io_timeout`` after it became the oldest (its command went out, or
the reply before it came) or the last bytes came in (or, while a large body
goes out, drained), plus ``t`` for ``reserve(timeout=t)``; a plain
``reserve()`` has no bound (TCP keepalive, tuned by ``keepalive``, finds a
dead peer). The watchdog looks at the connection ``io_timeout / 8`` apart
while calls wait, and a call that became the oldest between two looks is
timed from the later one: a late reply is found never early and at most an
eighth of ``io_timeout`` late.
Bytes still going out (the transport's buffer not empty) are bounded on their
own, whatever the oldest call is (a ``reserve()`` with no bound included):
none drained for ``io_timeout``, the newest call raises :class:`TimeoutError`.
Late, the connection is given up: that call raises :class:`TimeoutError`,
the others waiting on it :class:`~beanproto.ReplyLostError`. Any call whose
command went out and whose connection then fails (end of file, reset, a
cancelled reserve, ``close()``) raises :class:`~beanproto.ReplyLostError` and
is never sent again; the next call connects again, unless
``reconnect=False``: then it, and every later call, raises
:class:`ConnectionError`. A connection the server closed while idle is no
error: the next call goes out on a new one.

Cost (callgrind, user-space instructions per operation,
``bench/callgrind.py``): a ``put`` 72.3k and a put + reserve + delete 218k,
against aiostalk's 73.0k and 222k (before issue 9: 92.7k and 277k). The
watchdog costs a call nothing but its timer: a pending timer makes every turn
of the event loop dearer, as any asyncio timer does, 5.6k per ``put`` in a
program with no other timer (``io_timeout=None``, which arms none: 67.3k); a
program that already has one pending pays nothing more. The idle check (one
``poll``) is 0.9k per call.

A ``reserve()`` that waits on the server holds up every command sent after it
on the same connection: beanstalkd serves one connection's commands one at a
time. Give each consumer task its own client, or use ``reserve(timeout=...)``.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import socket
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast, overload

import beanproto as bp
from beanproto import _batch as batch
from beanproto.client import _outcomes as lib
from beanproto.client._api import AsyncAPI
from beanproto.client._faults import describe, reply_lost, server_wait, set_keepalive, timed_out
from beanproto.client._job import TBody
from beanproto.client._readiness import Probe, close_probe, readiness_probe
from beanproto.client._reconnect import Reconnecting
from beanproto.errors import ReplyLostError

__all__ = ["Client"]

DEFAULT_TUBE = lib.DEFAULT_TUBE

#: Bodies at least this large are written as parts (no join with the command
#: line); larger than :data:`_CHUNK`, a chunk at a time.
_PARTS_BODY = 32 * 1024

#: The most of a body handed to the transport in one write.
_CHUNK = 1024 * 1024

_INF = math.inf

#: Socket families that are TCP: a batch's plan needs no reply count limit
#: there (``beanproto._batch.MAX_UNREAD``).
_TCP = (socket.AF_INET, socket.AF_INET6)


#: The watchdog looks at a link at most ``io_timeout / _TICKS`` apart while
#: calls wait: a call's reply is found late at most that long after it
#: became due (never before).
_TICKS = 8

_NEED_DATA = bp.NEED_DATA
_Put = bp.Put
_RESERVING = lib.RESERVING
_InvalidStateError = asyncio.InvalidStateError


def _never(timeout: float | None) -> bool:
    """The idle check of a transport without a socket: nothing to look at."""
    return False


class _Link(asyncio.Protocol):
    """One connection: the protocol the event loop drives, the core state
    machine, and the futures of the calls waiting on it, oldest first (their
    commands are the core's ``pending_commands``, in the same order).

    ``io`` is the io_timeout (``None``: no bound). One watchdog timer per
    link (``timer``) enforces it, without a clock read per call: armed when
    a call is queued on an idle link that has none, it then fires at most
    ``io / _TICKS`` apart while calls wait, looks at the oldest call, and
    either gives the link up or sets itself again (when it finds the link
    idle it lets itself lapse). The oldest call's deadline counts from
    ``since``, which belongs to the call ``head``: the call the clock was
    last read for (when it armed the timer, or bytes came in or drained
    out). An oldest call the watchdog has not seen before (another future
    than ``head``) became the oldest since its last look: its deadline is
    taken to start at this look, never early and at most a tick late. While
    bytes wait in the transport's buffer, they are due ``io`` after
    ``since`` too, whatever the oldest call is.
    """

    def __init__(self, io: float | None) -> None:
        self.conn = bp.Connection()
        self.slots: deque[asyncio.Future[bp.Event]] = deque()
        self.transport: asyncio.Transport | None = None
        #: ``transport.write``, looked up once.
        self.write: Callable[[Any], None] = _not_connected
        #: ``poll(0)``: whether the socket has bytes or an end of file the
        #: event loop has not read yet (see Client._after_idle).
        self.poll: Probe = _never
        self.error: BaseException | None = None
        self._writable: asyncio.Future[None] | None = None
        #: Set while a large ``put`` is written a chunk at a time: no other
        #: command may start until it is done.
        self.writing: asyncio.Future[None] | None = None
        #: Why a call may not take the usual path (Client._request): the
        #: first of ``error``, ``writing`` and ``_writable`` that is set, or
        #: ``None`` (one attribute to look at instead of three).
        self.hold: object | None = None
        self.io = io
        self.loop = asyncio.get_running_loop()
        self.time = self.loop.time
        #: ``loop.create_future``; for the standard loops, the call it makes,
        #: without the method's frame (about 500 instructions less per call).
        self.new_future: Callable[[], asyncio.Future[bp.Event]] = (
            functools.partial(asyncio.Future, loop=self.loop)
            if type(self.loop).create_future is asyncio.BaseEventLoop.create_future
            else self.loop.create_future
        )
        #: When the deadline of the oldest call starts, and that call's
        #: future (see the class).
        self.since = 0.0
        self.head: asyncio.Future[bp.Event] | None = None
        #: Whether bytes of ``head``'s reply have arrived (then the server is
        #: not waiting any more: ``reserve``'s own wait is over).
        self.started = False
        self.timer: asyncio.TimerHandle | None = None
        #: Since a large body began: bytes handed to the transport, and the
        #: most of them the watchdog has seen leave its buffer.
        self.handed = 0
        self.drained = 0
        #: The protocol the transport reads through while a reply comes in
        #: parts (made when first needed).
        self.into_buffer: _IntoBuffer | None = None

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.write = self.transport.write  # type: ignore[union-attr]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.poll = readiness_probe(sock.fileno())

    def data_received(self, data: bytes) -> None:
        # A plain Protocol rather than a BufferedProtocol: the loop makes one
        # call here per read instead of get_buffer and buffer_updated, and the
        # core parses a read that is exactly one reply straight from it.
        conn = self.conn
        try:
            event = conn.next_event_with(data)
            while event is not _NEED_DATA:
                try:
                    self.slots.popleft().set_result(event)
                except _InvalidStateError:
                    pass  # a cancelled call's reply: dropped
                if not conn._buffer._end:  # conn.buffered, without a property call
                    return  # the usual case: one read, one reply
                event = conn.next_event()
        except bp.Error as exc:
            self.fail(exc)
            return
        if self.slots:  # part of the oldest call's reply: progress
            self.progress()
            self.started = True
            # The rest of it (a large body, most often) is read straight
            # into the core's buffer, which has room for all of it, rather
            # than into new bytes the core would copy.
            if self.into_buffer is None:
                self.into_buffer = _IntoBuffer(self)
            self.transport.set_protocol(self.into_buffer)  # type: ignore[union-attr]

    def buffer_updated(self, nbytes: int) -> None:
        """Bytes the event loop read into ``conn.get_buffer()`` (while
        :class:`_IntoBuffer` is the transport's protocol)."""
        conn = self.conn
        try:
            conn.buffer_updated(nbytes)
            event = conn.next_event()
            while event is not _NEED_DATA:
                try:
                    self.slots.popleft().set_result(event)
                except _InvalidStateError:
                    pass  # a cancelled call's reply: dropped
                if not conn._buffer._end:
                    break
                event = conn.next_event()
        except bp.Error as exc:
            self.fail(exc)
            return
        if event is _NEED_DATA and self.slots:  # more of a reply to come
            self.progress()
            self.started = True
        else:  # every reply read is whole: back to one call per read
            self.transport.set_protocol(self)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        try:
            self.conn.receive_data(b"")
            event = self.conn.next_event()
            while event is not _NEED_DATA and self.slots:
                future = self.slots.popleft()
                if not future.done():
                    future.set_result(event)
                event = self.conn.next_event()
        except bp.Error as exc:
            self.fail(exc)
        else:
            self.fail(lib.connection_lost("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc or lib.connection_lost("the connection was closed"))

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self.loop.create_future()
            self.held()

    def resume_writing(self) -> None:
        self.progress()  # bytes went out
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None
            self.held()

    def held(self) -> None:
        """Set ``hold`` again after ``error``, ``writing`` or ``_writable``
        changed."""
        if self.error is not None:
            self.hold = self.error
        elif self.writing is not None:
            self.hold = self.writing
        else:
            self.hold = self._writable

    # -- the watchdog ------------------------------------------------------------

    def expect(self, command: bp.Command) -> asyncio.Future[bp.Event]:
        """Queue a call for the reply to ``command`` (just written)."""
        future = self.new_future()
        slots = self.slots
        slots.append(future)
        if len(slots) == 1 and self.timer is None and self.io is not None:
            self.arm()
        return future

    def arm(self) -> None:
        """Start the watchdog for the call just queued on an idle link."""
        io = self.io
        assert io is not None
        now = self.since = self.time()
        self.head = self.slots[0]
        self.started = False
        self.timer = self.loop.call_at(now + io / _TICKS, self._watch)

    def progress(self) -> None:
        """Bytes moved: the oldest call's deadline starts again now."""
        self.since = self.time()
        head = self.slots[0] if self.slots else None
        if head is not self.head:
            self.head = head
            self.started = False

    def _watch(self) -> None:
        self.timer = None
        io = self.io
        slots = self.slots
        if not slots or self.error is not None or io is None:
            self.head = None
            return  # idle: the next call queued arms it again
        now = self.time()
        head = slots[0]
        if head is not self.head:
            # The oldest call since the last look: due io from now at the
            # earliest (it became the oldest after that look).
            self.head = head
            self.since = now
            self.started = False
        commands = self.conn.pending_commands
        unsent = self.transport.get_write_buffer_size()  # type: ignore[union-attr]
        if unsent:
            # A large body going out: bytes leaving the transport's buffer are
            # progress (resume_writing comes only once per chunk). Small
            # commands written meanwhile are not in ``handed``: they can only
            # hide progress, never fake it.
            drained = self.handed - unsent
            if drained > self.drained:
                self.drained = drained
                self.since = now
        wait = 0.0 if self.started else server_wait(commands[0])
        # wait None: a reserve waiting for a job, which may take for ever
        # (keepalive watches the peer meanwhile).
        deadline = _INF if wait is None else self.since + wait + io
        if now < deadline:
            if unsent:
                # Bytes still going out are bounded on their own, whatever the
                # oldest call waits for: io of no progress. The newest call's
                # command is the one not all out (writes queue in order).
                stalled = self.since + io
                if now >= stalled:
                    newest = slots[-1]
                    verb = commands[-1].verb.decode()
                    error = timed_out(f"sending {verb} to the server", io)
                    if not newest.done():
                        newest.set_exception(error)
                    self.fail(error)  # the others: ReplyLostError
                    return
                deadline = min(deadline, stalled)
            self.timer = self.loop.call_at(min(deadline, now + io / _TICKS), self._watch)
            return
        assert wait is not None
        verb = commands[0].verb.decode()
        if self._writable is not None:  # the server stopped taking our bytes
            error = timed_out("writing to the server", wait + io)
        else:
            error = timed_out(f"the reply to {verb}", wait + io)
        if not head.done():
            head.set_exception(error)
        self.fail(error)

    # -- the client's side -----------------------------------------------------

    async def writable(self) -> None:
        """Wait while the transport's write buffer is over its high mark, or
        another call is in the middle of writing a large body."""
        while self.error is None:
            if self.writing is not None:
                await asyncio.shield(self.writing)
            elif self._writable is not None:
                await asyncio.shield(self._writable)
            else:
                return

    def fail(self, error: BaseException) -> None:
        """Give the connection up: close it and fail every waiting call."""
        if self.error is not None:
            return
        self.error = error
        self.hold = error
        self.head = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        slots = self.slots
        if slots:
            why = f"{type(error).__name__}: {error}"
            for n, future in enumerate(slots):
                if not future.done():
                    if n == 0 and isinstance(error, bp.Error):
                        # The oldest call's reply is the one that broke or was
                        # cut off (ConnectionClosedError is a ReplyLostError).
                        future.set_exception(error)
                    else:
                        # Every command here went out: it may have run.
                        lost = reply_lost(why)
                        lost.__cause__ = error
                        future.set_exception(lost)
            slots.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self.writing is not None and not self.writing.done():
            self.writing.set_result(None)
        if self.transport is not None:
            self.transport.abort()
        close_probe(self.poll)


class _IntoBuffer(asyncio.BufferedProtocol):
    """A link's protocol while the rest of a reply that came in part is read
    (a large body, most often): the event loop reads straight into the
    core's receive buffer, sized for the whole body, with no copy in
    between. Everything goes to the link; it switches back to itself once
    the replies read are whole."""

    __slots__ = ("link",)

    def __init__(self, link: _Link) -> None:
        self.link = link

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.link.conn.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.link.buffer_updated(nbytes)

    def eof_received(self) -> bool:
        return self.link.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.connection_lost(exc)

    def pause_writing(self) -> None:
        self.link.pause_writing()

    def resume_writing(self) -> None:
        self.link.resume_writing()


def _not_connected(data: Any) -> None:  # pragma: no cover (connection_made comes first)
    raise lib.connection_lost("not connected")


def _cancelling() -> int:
    """How many cancellations of the current task are pending: when it grows,
    the task itself was cancelled, not just something it awaited. (Python
    3.10 cannot tell: 0; a cancel that comes in the same turn of the loop as
    the deadline is then taken for the deadline.)"""
    if sys.version_info >= (3, 11):
        task = asyncio.current_task()
        return 0 if task is None else task.cancelling()
    return 0  # pragma: no cover (3.10)


class Client(Reconnecting[_Link], AsyncAPI[TBody]):
    """An asyncio beanstalkd client with the API of ``beanproto_sync.Client``.

    Use it as ``async with Client(address) as client:``. Every method of the
    blocking client is here as a coroutine, with the same arguments, defaults,
    return values and exceptions. Connecting happens on entry (or on the first
    call); the constructor only checks the tube names.

    Args:
        address: ``(host, port)``, a unix socket path, or a connected
            :class:`socket.socket` (which cannot be replaced once lost).
        encoding: the encoding of job bodies; ``None`` for raw ``bytes``.
        use: the tube ``put`` inserts into.
        watch: the tube or tubes ``reserve`` takes from.
        connect_timeout: seconds to open a connection and set it up
            (``None``: no bound).
        io_timeout: seconds to wait for bytes that should come now; never
            cuts the wait of a ``reserve`` (``None``: no bound).
        keepalive: seconds within which TCP keepalive notices a vanished
            peer (``None``: keepalive off).
        reconnect: whether a call after a lost connection connects again.
    """

    if TYPE_CHECKING:  # the body type follows the encoding (AsyncAPI.__init__ runs)

        @overload
        def __init__(
            self: Client[bytes],
            address: Any,
            encoding: None,
            use: str = ...,
            watch: str | Iterable[str] = ...,
            *,
            connect_timeout: float | None = ...,
            io_timeout: float | None = ...,
            keepalive: float | None = ...,
            reconnect: bool = ...,
        ) -> None: ...

        @overload
        def __init__(
            self: Client[str],
            address: Any,
            encoding: str = ...,
            use: str = ...,
            watch: str | Iterable[str] = ...,
            *,
            connect_timeout: float | None = ...,
            io_timeout: float | None = ...,
            keepalive: float | None = ...,
            reconnect: bool = ...,
        ) -> None: ...

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def _open(self) -> None:
        self._init_links(asyncio.Lock())
        #: The task opening and setting up a connection, which close() ends.
        self._opening: asyncio.Task[_Link] | None = None

    # -- life cycle ----------------------------------------------------------------

    def _given_socket(self) -> bool:
        return isinstance(self._address, socket.socket)

    async def _checkpoint(self) -> None:
        await asyncio.sleep(0)  # let the transport finish closing

    def _drop(self, link: _Link, error: BaseException) -> None:
        link.fail(error)

    def _stop_connecting(self) -> None:
        if self._opening is not None:
            self._opening.cancel()

    async def _connect(self) -> _Link:
        """Open a connection and set it up, within connect_timeout.

        The work runs in a task of its own, so that the deadline or close()
        can cancel it and still tell the caller what happened (TimeoutError,
        ConnectionError), while a cancelled caller still sees CancelledError.
        """
        loop = asyncio.get_running_loop()
        cancelling = _cancelling()
        task = self._opening = loop.create_task(self._open_link())
        seconds = self._timeouts.connect
        timer = None if seconds is None else loop.call_later(seconds, task.cancel)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and _cancelling() <= cancelling:
                if self._closed:
                    raise lib.connection_lost("the client is closed") from None
                raise timed_out(
                    f"connecting to {describe(self._address)}", seconds or 0.0
                ) from None
            await _end(task)  # the caller was cancelled: so is the connecting
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._opening = None

    async def _open_link(self) -> _Link:
        loop = asyncio.get_running_loop()
        address = self._address
        timeouts = self._timeouts
        # While connect_timeout bounds the set-up, io_timeout does not.
        io = timeouts.io if timeouts.connect is None else None
        link: _Link
        tcp = False  # a TCP connection of our own (keepalive is ours to set)
        if isinstance(address, socket.socket):
            _, link = await loop.create_connection(lambda: _Link(io), sock=address)
        elif isinstance(address, (str, os.PathLike)):
            _, link = await loop.create_unix_connection(lambda: _Link(io), os.fspath(address))
        else:
            host, port = address
            _, link = await loop.create_connection(lambda: _Link(io), host, port)
            tcp = True
        self._connecting = link
        futures: list[asyncio.Future[bp.Event]] = []
        try:
            if tcp:
                transport = cast(asyncio.Transport, link.transport)
                set_keepalive(transport.get_extra_info("socket"), timeouts.keepalive)
            setup = lib.setup_commands(self._use, self._watch)
            futures = [self._send(link, command) for command in setup]
            events = [await future for future in futures]
            lib.check_setup(setup, events)
        except BaseException as exc:
            link.fail(exc)
            for future in futures:  # failed with the link; nobody else awaits them
                if future.done() and not future.cancelled():
                    future.exception()
            if isinstance(exc, ReplyLostError):
                # The caller's own command has not left: nothing of it is lost.
                raise lib.connection_lost(f"setting the connection up failed: {exc}") from exc
            raise
        finally:
            self._connecting = None
        link.io = timeouts.io
        return link

    # -- the only place bytes move --------------------------------------------------

    @staticmethod
    def _send(link: _Link, command: bp.Command) -> asyncio.Future[bp.Event]:
        conn = link.conn
        if type(command) is _Put and len(command.body) >= _PARTS_BODY:
            for part in conn.send_parts(command):
                link.write(part)  # each write tries the socket first: no join
        else:
            link.write(conn.send(command))
        return link.expect(command)

    def _request(self, command: bp.Command) -> Awaitable[bp.Event]:  # type: ignore[override]
        # Not a coroutine: on the usual path the caller awaits the call's
        # future itself, one coroutine fewer to create and resume per call.
        # A cancelled call's future is cancelled with it, and its reply is
        # dropped when it comes (data_received). A reserve is awaited through
        # _reserving (its cancellation costs the connection); every other
        # case (no link yet, a lost one, an idle check that found something,
        # a large body, a transport that is full) goes through the coroutine
        # _request_slowly.
        link = self._link
        if link is None or link.hold is not None:  # lost, or a transport not free
            return self._request_slowly(command)
        kind = type(command)
        if kind is _Put and len(command.body) >= _PARTS_BODY:  # type: ignore[attr-defined]
            return self._request_slowly(command)
        # Client._send(link, command) and link.expect(), inlined: this is
        # every call's path. (``link.transport.write``: a method looked up on
        # its class is a cheaper call than a bound method kept on the link.)
        slots = link.slots
        if slots:
            link.transport.write(link.conn.send(command))  # type: ignore[union-attr]
            future = link.new_future()
            slots.append(future)
        else:
            if link.poll(0):
                return self._request_slowly(command)
            link.transport.write(link.conn.send(command))  # type: ignore[union-attr]
            future = link.new_future()
            slots.append(future)
            if link.timer is None and link.io is not None:
                link.arm()
        if kind is _Put or kind not in _RESERVING:
            return future
        return _reserving(link, command, future)

    async def _request_slowly(self, command: bp.Command) -> bp.Event:
        if self._closed:
            raise lib.connection_lost("the client is closed")
        link = self._link
        if link is None or link.error is not None:
            link = await self._current_link()
        if not link.slots and link.poll(0):
            link = await self._after_idle(link)
        while link.writing is not None or link._writable is not None:  # rare
            await link.writable()
            if link.error is not None:
                link = await self._current_link()
        if type(command) is _Put and len(command.body) > _CHUNK:
            future = await self._send_large(link, command)
        else:
            future = self._send(link, command)
        return await _reserving(link, command, future)

    async def _request_many(self, commands: list[bp.Command]) -> list[bp.Event]:
        """Send a batch and read its replies (``put_many``, pipelines).

        The core's plan (``beanproto._batch.Plan``) says what to write next
        and when to read first: each planned write is one
        ``transport.write`` (a put with a large body goes out as in
        :meth:`_request`, a chunk at a time past :data:`_CHUNK`) followed by
        one future per command (:meth:`_Link.expect`: the link's slots and
        its watchdog, as for single calls), so replies reach their owners
        whatever other tasks send between a batch's writes. Once part of
        the batch went out a failure raises ``beanproto._batch.Interrupted``
        (what was answered, what was lost); before that, what a single call
        raises. Cancelled, it leaves the client as a cancelled call does:
        replies still owed are dropped as they come, commands not yet sent
        are never sent, and a reserve among those sent costs the connection.
        """
        if self._closed:
            raise lib.connection_lost("the client is closed")
        futures: list[asyncio.Future[bp.Event]] = []  # one per command sent
        events: list[bp.Event] = []
        link: _Link | None = None
        plan: batch.Plan | None = None
        try:
            while True:
                if plan is None:
                    # Nothing sent yet: find the link as _request does.
                    link = self._link
                    if link is None or link.error is not None:
                        link = await self._current_link()
                    if not link.slots and link.poll is not None and link.poll(0):
                        link = await self._after_idle(link)
                    sock = cast(asyncio.Transport, link.transport).get_extra_info("socket")
                    tcp = sock is not None and sock.family in _TCP
                    plan = batch.Plan(link.conn, commands, max_unread=batch.unread_limit(tcp))
                assert link is not None  # (set with the plan)
                if plan.ready:
                    if link.writing is not None or link._writable is not None:
                        await link.writable()  # another call's large body, a full transport
                    if link.error is not None:
                        if not futures:
                            plan = None  # nothing sent: take the next connection
                            continue
                        raise lib.connection_lost(f"{type(link.error).__name__}: {link.error}")
                    if link.writing is not None or link._writable is not None:
                        continue
                    write = plan.next_write()
                    assert write is not None
                    large = write.large
                    if large is None:
                        cast(asyncio.Transport, link.transport).write(write.data)
                        expect = link.expect
                        futures.extend([expect(c) for c in commands[write.start : write.stop]])
                    elif len(large.body) > _CHUNK:
                        futures.append(await self._send_large(link, large))
                    else:
                        futures.append(self._send(link, large))
                    continue
                if plan.done:
                    return events
                events.append(await futures[plan.answered])
                plan.replied()
        except BaseException as exc:
            if link is None or not futures:
                raise  # nothing of the batch went out: as a single call
            if not isinstance(exc, Exception):  # cancelled, interrupted
                _abandon_batch(link, commands, futures)
                raise
            if link.error is None:
                link.fail(exc)
            cause = link.error if link.error is not None else exc
            why = f"{type(cause).__name__}: {cause}"
            lost: list[BaseException] = []
            for future in futures[len(events) :]:
                if not future.done() or future.cancelled():
                    future.cancel()
                    lost.append(reply_lost(why))
                elif future.exception() is not None:  # (retrieved: nothing is logged)
                    lost.append(cast(BaseException, future.exception()))
                elif not lost:
                    events.append(future.result())  # answered before the failure
                else:  # pragma: no cover (replies come in order)
                    lost.append(reply_lost(why))
            raise batch.Interrupted(events, lost, cause) from exc

    async def _after_idle(self, link: _Link) -> _Link:
        """The link to send on when bytes, or an end of file, wait unread on
        an idle one: the event loop did not run since they came (a blocking
        call in the caller's code). Let it read them — two turns: the first
        only finds the socket readable — so that a server that closed the
        idle connection is seen *before* this command goes out into it."""
        for _ in range(2):
            await asyncio.sleep(0)
            if link.error is not None:
                return await self._current_link()
        return link

    @staticmethod
    async def _send_large(link: _Link, command: bp.Put) -> asyncio.Future[bp.Event]:
        """Write a ``put`` with a large body a chunk at a time, waiting for
        the transport to drain between chunks (see "Large bodies" above).
        The watchdog bounds each wait by io_timeout (a drain is progress)."""
        transport = cast(asyncio.Transport, link.transport)
        loop = link.loop
        head, body, tail = link.conn.send_parts(command)
        future = link.expect(command)
        writing = link.writing = loop.create_future()
        link.held()
        link.handed = transport.get_write_buffer_size() + len(head)
        link.drained = 0
        try:
            transport.write(head)
            view = memoryview(body).cast("B")
            for start in range(0, len(view), _CHUNK):
                while link._writable is not None and link.error is None:
                    await asyncio.shield(link._writable)
                if link.error is not None:
                    break  # failed meanwhile: the future holds why
                chunk = view[start : start + _CHUNK]
                link.handed += len(chunk)
                transport.write(chunk)
            else:
                link.handed += len(tail)
                transport.write(tail)
                link.progress()  # all sent: the reply is due from now
        except BaseException:
            # Part of the command is on the wire: the stream is lost.
            future.cancel()  # nobody will wait for it
            link.fail(lib.connection_lost("a put was cut off in the middle of its body"))
            raise
        finally:
            link.writing = None
            link.held()
            if not writing.done():
                writing.set_result(None)
        return future


async def _end(task: asyncio.Task[_Link]) -> None:
    """Cancel ``task`` and wait until it has ended (its socket closed); a
    link it made all the same is given up."""
    task.cancel()
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            pass  # ending it takes one turn of the loop; the caller re-raises
    if not task.cancelled():
        if task.exception() is None:
            task.result().fail(lib.connection_lost("the connecting call was cancelled"))


def _abandon_batch(
    link: _Link, commands: list[bp.Command], futures: list[asyncio.Future[bp.Event]]
) -> None:
    """A batch cancelled after part of it went out: as for a cancelled call,
    its replies still owed are dropped as they come (their futures are
    cancelled), unless a reserve among its commands may hold a job for
    nobody (or still waits on the server): then the connection is closed."""
    reset = False
    for command, future in zip(commands, futures, strict=False):
        event = None
        if future.done() and not future.cancelled() and future.exception() is None:
            event = future.result()
        if lib.abandon_needs_reset(command, event):
            reset = True
        if not future.done():
            future.cancel()
    if reset:
        link.fail(lib.connection_lost("a batch with a reserve was cancelled"))


async def _reserving(
    link: _Link, command: bp.Command, future: asyncio.Future[bp.Event]
) -> bp.Event:
    """Wait for ``future``, the reply to ``command`` on ``link``; cancelled,
    give the link up if the command was a reserve (its job would be held for
    nobody, or the server would go on waiting)."""
    try:
        return await future
    except asyncio.CancelledError:
        done = future.done() and not future.cancelled() and future.exception() is None
        event = future.result() if done else None
        if lib.abandon_needs_reset(command, event):
            link.fail(lib.connection_lost("a reserve was cancelled"))
        raise
