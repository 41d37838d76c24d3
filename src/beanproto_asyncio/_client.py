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
no background task.

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
waiting on that connection fail with :class:`ConnectionError` (their commands
may or may not have run); the next call connects again and restores the
``use`` and ``watch`` tubes.

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
with :class:`ConnectionError`; the next call connects again).

A ``reserve()`` that waits on the server holds up every command sent after it
on the same connection: beanstalkd serves one connection's commands one at a
time. Give each consumer task its own client, or use ``reserve(timeout=...)``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast, overload

import beanproto as bp
from beanproto import _clientlib as lib
from beanproto._async_api import AsyncAPI
from beanproto._job import TBody
from beanproto._reconnect import Reconnecting

__all__ = ["Client"]

DEFAULT_TUBE = lib.DEFAULT_TUBE

#: Bodies at least this large are written as parts (no join with the command
#: line); larger than :data:`_CHUNK`, a chunk at a time.
_PARTS_BODY = 32 * 1024

#: The most of a body handed to the transport in one write.
_CHUNK = 1024 * 1024


class _Slot:
    """A call waiting for its reply."""

    __slots__ = ("command", "future")

    def __init__(self, command: bp.Command, future: asyncio.Future[bp.Event]) -> None:
        self.command = command
        self.future = future


class _Link(asyncio.BufferedProtocol):
    """One connection: the protocol the event loop drives, the core state
    machine, and the calls waiting on it, oldest first."""

    def __init__(self) -> None:
        self.conn = bp.Connection()
        self.slots: deque[_Slot] = deque()
        self.transport: asyncio.Transport | None = None
        self.error: BaseException | None = None
        self._writable: asyncio.Future[None] | None = None
        #: Set while a large ``put`` is written a chunk at a time: no other
        #: command may start until it is done.
        self.writing: asyncio.Future[None] | None = None

    # -- asyncio.BufferedProtocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

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
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

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
        why = f"{type(error).__name__}: {error}"
        for n, slot in enumerate(self.slots):
            if not slot.future.done():
                # The oldest call gets the failure itself (its reply is the one
                # that broke or was cut off); the others, a ConnectionError each.
                typed = n == 0 and isinstance(error, (ConnectionError, bp.Error))
                slot.future.set_exception(error if typed else lib.connection_lost(why))
        self.slots.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self.writing is not None and not self.writing.done():
            self.writing.set_result(None)
        if self.transport is not None:
            self.transport.abort()


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

    # -- life cycle ----------------------------------------------------------------

    def _given_socket(self) -> bool:
        return isinstance(self._address, socket.socket)

    async def _checkpoint(self) -> None:
        await asyncio.sleep(0)  # let the transport finish closing

    def _drop(self, link: _Link, error: BaseException) -> None:
        link.fail(error)

    async def _connect(self) -> _Link:
        loop = asyncio.get_running_loop()
        address = self._address
        link: _Link
        if isinstance(address, socket.socket):
            _, link = await loop.create_connection(_Link, sock=address)
        elif isinstance(address, (str, os.PathLike)):
            _, link = await loop.create_unix_connection(_Link, os.fspath(address))
        else:
            host, port = address
            _, link = await loop.create_connection(_Link, host, port)
            sock = cast(asyncio.Transport, link.transport).get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._connecting = link
        futures: list[asyncio.Future[bp.Event]] = []
        try:
            setup = lib.setup_commands(self._use, self._watch)
            futures = [self._send(link, command) for command in setup]
            events = [await future for future in futures]
            lib.check_setup(setup, events)
        except BaseException as exc:
            link.fail(exc)
            for future in futures:  # failed with the link; nobody else awaits them
                if future.done() and not future.cancelled():
                    future.exception()
            raise
        finally:
            self._connecting = None
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
        future: asyncio.Future[bp.Event] = asyncio.get_running_loop().create_future()
        link.slots.append(_Slot(command, future))
        return future

    async def _request(self, command: bp.Command) -> bp.Event:
        if self._closed:
            raise lib.connection_lost("the client is closed")
        link = self._link
        if link is None or link.error is not None:
            link = await self._current_link()
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

    @staticmethod
    async def _send_large(link: _Link, command: bp.Put) -> asyncio.Future[bp.Event]:
        """Write a ``put`` with a large body a chunk at a time, waiting for
        the transport to drain between chunks (see "Large bodies" above)."""
        transport = cast(asyncio.Transport, link.transport)
        loop = asyncio.get_running_loop()
        head, body, tail = link.conn.send_parts(command)
        future: asyncio.Future[bp.Event] = loop.create_future()
        link.slots.append(_Slot(command, future))
        writing = link.writing = loop.create_future()
        try:
            transport.write(head)
            view = memoryview(body).cast("B")
            for start in range(0, len(view), _CHUNK):
                while link._writable is not None and link.error is None:
                    await asyncio.shield(link._writable)
                if link.error is not None:
                    break  # failed meanwhile: the future holds why
                transport.write(view[start : start + _CHUNK])
            else:
                transport.write(tail)
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
