"""The asyncio client: greenstalk's API as coroutines, on the beanproto core.

How bytes move
--------------
The connection is an :class:`asyncio.BufferedProtocol` whose ``get_buffer``
and ``buffer_updated`` are the core's own: the event loop reads straight into
the core's receive buffer, with no stream and no copy in between. Each call
writes its command with one synchronous ``transport.write`` (so the bytes of
concurrent calls never interleave) and waits on a future; as replies arrive
the protocol hands each event to the oldest waiting future. Replies come
back in the order the commands went out, so several tasks' commands are
pipelined on the one connection and every task gets its own reply. There is
no background task (connecting runs in a task of its own, awaited by the
call that connects).

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
call: the oldest outstanding reply is due within ``io_timeout`` of its
command going out or of the last bytes received (or, while a large body goes
out, drained), plus ``t`` for ``reserve(timeout=t)``; a plain ``reserve()``
has no bound (TCP keepalive, tuned by ``keepalive``, finds a dead peer).
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

Cost (callgrind, user-space instructions): the watchdog adds about 1.3k
instructions to a ``put`` (85k), 1.5 %. A pending timer also makes every
turn of the event loop dearer, as any asyncio timer does: in a program with
no other timer that is 5k more per ``put`` (about 8 % in all); a program that
already has one pending pays nothing more, and ``io_timeout=None`` arms none.

A ``reserve()`` that waits on the server holds up every command sent after it
on the same connection: beanstalkd serves one connection's commands one at a
time. Give each consumer task its own client, or use ``reserve(timeout=...)``.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sys
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast, overload

import beanproto as bp
from beanproto import _clientlib as lib
from beanproto._async_api import AsyncAPI
from beanproto._faults import describe, reply_lost, server_wait, set_keepalive, timed_out
from beanproto._job import TBody
from beanproto._readiness import Probe, close_probe, readiness_probe
from beanproto._reconnect import Reconnecting
from beanproto.errors import ReplyLostError

__all__ = ["Client"]

DEFAULT_TUBE = lib.DEFAULT_TUBE

#: Bodies at least this large are written as parts (no join with the command
#: line); larger than :data:`_CHUNK`, a chunk at a time.
_PARTS_BODY = 32 * 1024

#: The most of a body handed to the transport in one write.
_CHUNK = 1024 * 1024

_INF = math.inf


class _Slot:
    """A call waiting for its reply."""

    __slots__ = ("command", "future")

    def __init__(self, command: bp.Command, future: asyncio.Future[bp.Event]) -> None:
        self.command = command
        self.future = future


class _Link(asyncio.BufferedProtocol):
    """One connection: the protocol the event loop drives, the core state
    machine, and the calls waiting on it, oldest first.

    ``io`` is the io_timeout (``None``: no bound). One watchdog timer per
    link (``timer``) enforces it: armed when a call is queued on an idle
    link, it looks at the oldest call when it fires and either gives the
    link up or sets itself for that call's deadline. The deadline counts from
    ``since``: when the oldest call became the oldest (its command was sent,
    or the reply before it arrived) or bytes last came in or drained out.
    While bytes wait in the transport's buffer, they are due ``io`` after
    ``since`` too, whatever the oldest call is.
    """

    def __init__(self, io: float | None) -> None:
        self.conn = bp.Connection()
        self.slots: deque[_Slot] = deque()
        self.transport: asyncio.Transport | None = None
        #: ``poll(0)``: whether the socket has bytes or an end of file the
        #: event loop has not read yet (see Client._after_idle).
        self.poll: Probe | None = None
        self.error: BaseException | None = None
        self._writable: asyncio.Future[None] | None = None
        #: Set while a large ``put`` is written a chunk at a time: no other
        #: command may start until it is done.
        self.writing: asyncio.Future[None] | None = None
        self.io = io
        self.loop = asyncio.get_running_loop()
        self.time = self.loop.time
        #: When the deadline of the oldest call starts (see the class).
        self.since = 0.0
        #: Whether bytes of the oldest call's reply have arrived (then the
        #: server is not waiting any more: ``reserve``'s own wait is over).
        self.started = False
        self.timer: asyncio.TimerHandle | None = None
        #: Since a large body began: bytes handed to the transport, and the
        #: most of them the watchdog has seen leave its buffer.
        self.handed = 0
        self.drained = 0

    # -- asyncio.BufferedProtocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.poll = readiness_probe(sock.fileno())

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.conn.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        conn = self.conn
        try:
            conn.buffer_updated(nbytes)
            event = conn.next_event()
            while event is not bp.NEED_DATA:
                future = self.slots.popleft().future
                if not future.done():
                    future.set_result(event)
                if not conn.buffered:
                    break  # the usual case: one read, one reply
                event = conn.next_event()
        except bp.Error as exc:
            self.fail(exc)
            return
        if self.slots:  # progress for the watchdog (not when idle: the usual case)
            self.since = self.time()
            # NEED_DATA: bytes of the oldest call's reply are in (a break
            # means the read ended exactly after a reply).
            self.started = event is bp.NEED_DATA

    def eof_received(self) -> bool:
        try:
            self.conn.receive_data(b"")
            event = self.conn.next_event()
            while event is not bp.NEED_DATA and self.slots:
                future = self.slots.popleft().future
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

    def resume_writing(self) -> None:
        self.since = self.time()  # bytes went out: progress
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

    # -- the watchdog ------------------------------------------------------------

    def expect(self, command: bp.Command) -> asyncio.Future[bp.Event]:
        """Queue a call for the reply to ``command`` (just written)."""
        future: asyncio.Future[bp.Event] = self.loop.create_future()
        slots = self.slots
        if not slots:
            self.since = self.time()
            self.started = False
            if self.timer is None and self.io is not None:
                self.timer = self.loop.call_at(self.since + self.io, self._watch)
        slots.append(_Slot(command, future))
        return future

    def _watch(self) -> None:
        self.timer = None
        io = self.io
        if not self.slots or self.error is not None or io is None:
            return  # idle: the next call queued sets the timer again
        head = self.slots[0]
        now = self.time()
        unsent = cast(asyncio.Transport, self.transport).get_write_buffer_size()
        if unsent:
            # A large body going out: bytes leaving the transport's buffer are
            # progress (resume_writing comes only once per chunk). Small
            # commands written meanwhile are not in ``handed``: they can only
            # hide progress, never fake it.
            drained = self.handed - unsent
            if drained > self.drained:
                self.drained = drained
                self.since = now
        wait = 0.0 if self.started else server_wait(head.command)
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
                    newest = self.slots[-1]
                    verb = newest.command.verb.decode()
                    error = timed_out(f"sending {verb} to the server", io)
                    if not newest.future.done():
                        newest.future.set_exception(error)
                    self.fail(error)  # the others: ReplyLostError
                    return
                # Look at the buffer more often.
                deadline = min(deadline, stalled, now + io / 4)
            elif wait is None:
                deadline = now + io  # look again later (once per io)
            self.timer = self.loop.call_at(deadline, self._watch)
            return
        assert wait is not None
        verb = head.command.verb.decode()
        if self._writable is not None:  # the server stopped taking our bytes
            error = timed_out("writing to the server", wait + io)
        else:
            error = timed_out(f"the reply to {verb}", wait + io)
        if not head.future.done():
            head.future.set_exception(error)
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
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        slots = self.slots
        if slots:
            why = f"{type(error).__name__}: {error}"
            for n, slot in enumerate(slots):
                if not slot.future.done():
                    if n == 0 and isinstance(error, bp.Error):
                        # The oldest call's reply is the one that broke or was
                        # cut off (ConnectionClosedError is a ReplyLostError).
                        slot.future.set_exception(error)
                    else:
                        # Every command here went out: it may have run.
                        lost = reply_lost(why)
                        lost.__cause__ = error
                        slot.future.set_exception(lost)
            slots.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self.writing is not None and not self.writing.done():
            self.writing.set_result(None)
        if self.transport is not None:
            self.transport.abort()
        if self.poll is not None:
            close_probe(self.poll)


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
        transport = cast(asyncio.Transport, link.transport)
        conn = link.conn
        if type(command) is bp.Put and len(command.body) >= _PARTS_BODY:
            for part in conn.send_parts(command):
                transport.write(part)  # each write tries the socket first: no join
        else:
            transport.write(conn.send(command))
        # link.expect(command), inlined: this is every call's path.
        future: asyncio.Future[bp.Event] = link.loop.create_future()
        slots = link.slots
        if not slots:
            since = link.since = link.time()
            link.started = False
            if link.timer is None and link.io is not None:
                link.timer = link.loop.call_at(since + link.io, link._watch)
        slots.append(_Slot(command, future))
        return future

    async def _request(self, command: bp.Command) -> bp.Event:
        if self._closed:
            raise lib.connection_lost("the client is closed")
        link = self._link
        if link is None or link.error is not None:
            link = await self._current_link()
        if not link.slots and link.poll is not None and link.poll(0):
            link = await self._after_idle(link)
        while link.writing is not None or link._writable is not None:  # rare
            await link.writable()
            if link.error is not None:
                link = await self._current_link()
        if type(command) is bp.Put and len(command.body) > _CHUNK:
            future = await self._send_large(link, command)
        else:
            future = self._send(link, command)
        try:
            return await future
        except asyncio.CancelledError:
            done = future.done() and not future.cancelled() and future.exception() is None
            event = future.result() if done else None
            if lib.abandon_needs_reset(command, event):
                link.fail(lib.connection_lost("a reserve was cancelled"))
            raise

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
                link.since = link.time()  # all sent: the reply is due from now
        except BaseException:
            # Part of the command is on the wire: the stream is lost.
            future.cancel()  # nobody will wait for it
            link.fail(lib.connection_lost("a put was cut off in the middle of its body"))
            raise
        finally:
            link.writing = None
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
