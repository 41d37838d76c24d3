"""The trio client: greenstalk's API as coroutines, on the beanproto core.

How bytes move
--------------
There is no background task. A call sends its command (under a send lock, so
the bytes of concurrent calls never interleave) and queues a *slot* for the
reply. Then it reads: under a receive lock, whichever waiting task holds the
lock reads events off the socket and hands each to the oldest slot, until its
own slot is filled. Replies come back in the order the commands went out, so
several tasks' commands are pipelined on the one connection and every task
gets its own reply.

Cancellation
------------
Bytes are never lost to a cancellation: a read that is cancelled has taken
nothing off the socket, and bytes already read sit in the core's buffer for
the next reader. What remains is the reply the cancelled call will not read:

* For most commands it is simply dropped when it arrives. The command itself
  may or may not have taken effect (a cancelled ``put`` may have inserted its
  job: the server processes every command that reaches it).
* A cancelled ``reserve`` (or ``reserve_job``) is different: beanstalkd cannot
  abort a reserve that waits, so the connection would stay blocked until a job
  comes, and that job would be reserved for nobody until its TTR. So the
  connection is closed instead. beanstalkd then ends the wait and puts back
  every job this connection held reserved, *at once*: the cancelled call's job
  and also any other job this client had reserved and not yet deleted,
  released or buried (those are back in the ready queue: another consumer may
  take them, and this client can no longer release, bury or touch them; finish
  jobs before cancelling a reserve, or reserve on a client of its own). Calls
  of other tasks still waiting for a reply on that connection fail with
  :class:`ConnectionError`; their commands may or may not have taken effect.
  The next call opens a new connection and restores the ``use`` and ``watch``
  tubes.

A ``reserve()`` that waits on the server holds up every command sent after it
on the same connection, whichever task sent it: beanstalkd serves one
connection's commands one at a time. Give each consumer task its own client,
or use ``reserve(timeout=...)``.
"""

from __future__ import annotations

import os
import socket as stdlib_socket
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, overload

import trio

import beanproto as bp
from beanproto import _clientlib as lib
from beanproto._async_api import AsyncAPI
from beanproto._job import TBody
from beanproto._reconnect import Reconnecting

__all__ = ["Client"]

DEFAULT_TUBE = lib.DEFAULT_TUBE

#: Bodies at least this large are written with ``sendmsg`` from the caller's
#: own buffer instead of being joined to the command line first.
_VECTORED_BODY = 32 * 1024


class _Slot:
    """A call waiting for its reply."""

    __slots__ = ("command", "error", "event")

    def __init__(self, command: bp.Command) -> None:
        self.command = command
        self.event: bp.Event | None = None
        self.error: BaseException | None = None


class _Link:
    """One connection: its socket, its core state machine and the calls
    waiting on it, oldest first."""

    __slots__ = ("conn", "error", "slots", "sock")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.conn = bp.Connection()
        self.slots: deque[_Slot] = deque()
        self.error: BaseException | None = None


class Client(Reconnecting[_Link], AsyncAPI[TBody]):
    """A trio beanstalkd client with the API of ``beanproto_sync.Client``.

    Use it as ``async with Client(address) as client:``. Every method of the
    blocking client is here as a coroutine, with the same arguments, defaults,
    return values and exceptions. Connecting happens on entry (or on the
    first call); nothing is done in the constructor except checking the tube
    names.

    Args:
        address: ``(host, port)``, a unix socket path, or a connected
            ``trio.socket`` socket (which cannot be replaced once lost).
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
        ) -> None: ...

        @overload
        def __init__(
            self: Client[str],
            address: Any,
            encoding: str = ...,
            use: str = ...,
            watch: str | Iterable[str] = ...,
        ) -> None: ...

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def _open(self) -> None:
        self._init_links(trio.Lock())
        self._send_lock = trio.Lock()
        self._recv_lock = trio.Lock()

    # -- life cycle --------------------------------------------------------------

    def _given_socket(self) -> bool:
        return isinstance(self._address, trio.socket.SocketType)

    async def _checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()

    def _drop(self, link: _Link, error: BaseException) -> None:
        self._abandon(link, error)

    async def _connect(self) -> _Link:
        address = self._address
        if isinstance(address, trio.socket.SocketType):
            sock = address
        elif isinstance(address, (str, os.PathLike)):
            sock = (await trio.open_unix_socket(os.fspath(address))).socket
        else:
            host, port = address
            sock = await _open_tcp(host, port)
        link = self._connecting = _Link(sock)
        try:
            setup = lib.setup_commands(self._use, self._watch)
            slots = [_Slot(command) for command in setup]
            if setup:
                data = b"".join(link.conn.send(command) for command in setup)
                link.slots.extend(slots)
                await _send_all(sock, data)
                for _ in setup:
                    await self._read_one(link)
                lib.check_setup(setup, [slot.event for slot in slots])  # type: ignore[misc]
        except BaseException as exc:
            self._abandon(link, exc)
            raise
        finally:
            self._connecting = None
        return link

    def _abandon(self, link: _Link, error: BaseException) -> None:
        """Give up a connection: close it and fail every call waiting on it."""
        if link.error is not None:
            return
        link.error = error
        why = f"{type(error).__name__}: {error}"
        for slot in link.slots:
            if slot.event is None and slot.error is None:
                slot.error = lib.connection_lost(why)
        link.slots.clear()
        link.sock.close()

    # -- the loop: the only place bytes move ---------------------------------------

    async def _request(self, command: bp.Command) -> bp.Event:
        if self._closed:
            raise lib.connection_lost("the client is closed")
        slot = _Slot(command)
        send_lock = self._send_lock
        while True:
            link = self._link
            if link is None or link.error is not None:
                link = await self._current_link()
            # Uncontended, take the lock without a trip through the scheduler:
            # the socket call below is this task's checkpoint.
            try:
                send_lock.acquire_nowait()
            except trio.WouldBlock:
                await send_lock.acquire()
            try:
                if link.error is not None:
                    continue  # lost while we waited: take the next connection
                conn = link.conn
                if type(command) is bp.Put and len(command.body) >= _VECTORED_BODY:
                    data: Any = conn.send_parts(command)
                else:
                    data = conn.send(command)
                link.slots.append(slot)
                try:
                    await _send_all(link.sock, data)
                except BaseException as exc:
                    # Part of the command may be on the wire: the stream is lost.
                    self._abandon(link, exc)
                    raise
                break
            finally:
                send_lock.release()
        recv_lock = self._recv_lock
        try:
            while slot.event is None and slot.error is None:
                try:
                    recv_lock.acquire_nowait()
                except trio.WouldBlock:
                    await recv_lock.acquire()
                try:
                    if slot.event is None and slot.error is None:
                        await self._read_one(link)
                finally:
                    recv_lock.release()
        except BaseException:
            if lib.abandon_needs_reset(command, slot.event):
                self._abandon(link, lib.connection_lost("a reserve was cancelled"))
            raise
        if slot.error is not None:
            raise slot.error
        return slot.event  # type: ignore[return-value]

    async def _read_one(self, link: _Link) -> None:
        """Read the next event and hand it to the oldest waiting call."""
        conn = link.conn
        try:
            event = conn.next_event() if conn.buffered else bp.NEED_DATA
            while event is bp.NEED_DATA:
                nbytes = await link.sock.recv_into(conn.get_buffer())
                if nbytes:
                    conn.buffer_updated(nbytes)
                else:
                    conn.receive_data(b"")
                event = conn.next_event()
        except trio.Cancelled:
            raise  # nothing was taken off the socket
        except BaseException as exc:
            if link.error is not None:
                # Closed under us (close(), a cancelled reserve in another task).
                raise lib.connection_lost(str(link.error)) from exc
            self._abandon(link, exc)
            raise
        link.slots.popleft().event = event


async def _open_tcp(host: str, port: int) -> trio.socket.SocketType:
    """Connect to each address of ``host`` in turn; raise the last failure as
    it is (``ConnectionRefusedError`` …), as the other clients do."""
    error: OSError | None = None
    for family, kind, proto, _, address in await trio.socket.getaddrinfo(
        host, port, type=stdlib_socket.SOCK_STREAM
    ):
        sock = trio.socket.socket(family, kind, proto)
        try:
            await sock.connect(address)
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc
            continue
        sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_KEEPALIVE, 1)
        return sock
    raise error or OSError(f"no address found for {host!r}")


async def _send_all(sock: trio.socket.SocketType, data: Any) -> None:
    """Write every byte of ``data`` (bytes, or a list of parts, in order);
    parts go out in vectored writes, so a large body is never joined to its
    command line."""
    if type(data) is bytes:
        sent = await sock.send(data)  # a whole command, nearly always
        if sent == len(data):
            return
        views = [memoryview(data)[sent:]]
    else:
        views = [memoryview(part).cast("B") for part in data]
    while views:
        if len(views) == 1:
            sent = await sock.send(views[0])
        else:
            sent = await sock.sendmsg(views)
        while sent:
            if sent >= len(views[0]):
                sent -= len(views.pop(0))
            else:
                views[0] = views[0][sent:]
                sent = 0
        while views and not views[0]:
            views.pop(0)
