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

A call cancelled before the first byte of its command is written leaves no
trace: its command is taken back (from the core's queue too), and the
connection and every job it holds stay as they were. A command cut off in the
middle (a large ``put`` whose socket buffer filled up) has left part of
itself on the wire, so that connection is given up.

The idle check
--------------
Before a command goes out on a connection that owes no reply, the client
looks (one ``epoll_wait`` with a zero timeout: the check costs 0.4-0.7 µs)
whether anything arrived meanwhile. Bytes nobody asked for would otherwise
become the reply to this command: they raise
:class:`~beanproto.RemoteProtocolError` and the connection is given up. An
end of file (the server restarted, or dropped the idle connection) is not an
error: the command has provably not left, so it goes out on a new connection
(a socket passed in cannot be replaced: :class:`ConnectionError`).

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
from beanproto._readiness import Probe, close_probe, readiness_probe
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

    __slots__ = ("conn", "error", "poll", "slots", "sock")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.conn = bp.Connection()
        self.slots: deque[_Slot] = deque()
        self.error: BaseException | None = None
        #: ``poll(0)``: whether the socket is readable (data or end of file),
        #: without blocking or yielding; one cheap system call.
        self.poll: Probe = readiness_probe(sock.fileno())

    def close(self) -> None:
        self.sock.close()
        close_probe(self.poll)


def _withdraw(link: _Link, slot: _Slot) -> None:
    """Take back the newest command, none of whose bytes were written: its
    slot, and its place in the core's queue of commands owed a reply."""
    link.slots.remove(slot)
    link.conn.unsend(slot.command)


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
                try:
                    await _send_all(sock, data)
                except _NothingSent as unsent:
                    raise unsent.error from None
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
        link.close()

    # -- the loop: the only place bytes move ---------------------------------------

    async def _request(self, command: bp.Command) -> bp.Event:
        if self._closed:
            raise lib.connection_lost("the client is closed")
        slot = _Slot(command)
        send_lock = self._send_lock
        reconnected = False
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
                if not link.slots and (conn.buffered or link.poll(0)):
                    if not await self._read_idle(link):
                        if reconnected:  # the new connection too: do not loop
                            raise lib.connection_lost(
                                "the server closed a new connection before the command was sent"
                            )
                        reconnected = True
                        continue  # closed by the server while idle: connect again
                # Raise a pending cancellation before the command is queued:
                # from here to the first write, nothing yields.
                await trio.lowlevel.checkpoint_if_cancelled()
                if type(command) is bp.Put and len(command.body) >= _VECTORED_BODY:
                    data: Any = conn.send_parts(command)
                else:
                    data = conn.send(command)
                link.slots.append(slot)
                try:
                    await _send_all(link.sock, data)
                except _NothingSent as unsent:
                    if isinstance(unsent.error, trio.Cancelled) and link.error is None:
                        _withdraw(link, slot)  # the connection stays as it was
                    else:
                        self._abandon(link, unsent.error)
                    raise unsent.error from None
                except BaseException as exc:
                    # Part of the command is on the wire: the stream is lost.
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

    async def _read_idle(self, link: _Link) -> bool:
        """Read what arrived on ``link`` while it owed no reply (the send lock
        is held and no call waits, so nobody else reads).

        Returns ``True`` if it was nothing after all, ``False`` if the server
        closed the connection (now given up: the caller connects again).

        Raises:
            RemoteProtocolError: bytes nobody asked for (the link is given up).
        """
        conn = link.conn
        try:
            if not conn.buffered:
                nbytes = await link.sock.recv_into(conn.get_buffer())
                if link.error is not None:  # closed while the read yielded
                    raise lib.connection_lost(str(link.error))
                if nbytes:
                    conn.buffer_updated(nbytes)  # raises: no reply is owed
                else:
                    conn.receive_data(b"")
            event = conn.next_event()
        except trio.Cancelled:
            raise  # nothing was taken off the socket
        except (OSError, trio.BrokenResourceError) as exc:
            self._abandon(link, exc)  # reset while idle: the command has not left
            return False
        except BaseException as exc:
            self._abandon(link, exc)
            raise
        if event is bp.NEED_DATA:
            return True
        self._abandon(link, lib.connection_lost("the server closed the connection while idle"))
        return False

    async def _read_one(self, link: _Link) -> None:
        """Read the next event and hand it to the oldest waiting call.

        Every read yields to other tasks, and one of them may give the link up
        meanwhile (``close()``, a cancelled reserve): then what was read
        belongs to nobody, and this call fails like the others.
        """
        conn = link.conn
        try:
            event = conn.next_event() if conn.buffered else bp.NEED_DATA
            while event is bp.NEED_DATA:
                nbytes = await link.sock.recv_into(conn.get_buffer())
                if link.error is not None:
                    raise lib.connection_lost(str(link.error))
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
                if isinstance(exc, ConnectionError) and not isinstance(exc, bp.Error):
                    raise
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


class _NothingSent(Exception):
    """:func:`_send_all` failed before writing a byte; ``error`` is why."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


async def _send_all(sock: trio.socket.SocketType, data: Any) -> None:
    """Write every byte of ``data`` (bytes, or a list of parts, in order);
    parts go out in vectored writes, so a large body is never joined to its
    command line.

    Raises:
        _NothingSent: the first write failed (or was cancelled: trio raises
            a cancellation before the write, or while waiting for room, never
            after bytes went out), so not one byte of ``data`` left.
    """
    if type(data) is bytes:
        try:
            sent = await sock.send(data)  # a whole command, nearly always
        except BaseException as exc:
            raise _NothingSent(exc) from None
        if sent == len(data):
            return
        views = [memoryview(data)[sent:]]
    else:
        views = [memoryview(part).cast("B") for part in data]
        try:
            sent = await sock.sendmsg(views)
        except BaseException as exc:
            raise _NothingSent(exc) from None
        views = _advance(views, sent)
    while views:
        if len(views) == 1:
            sent = await sock.send(views[0])
        else:
            sent = await sock.sendmsg(views)
        views = _advance(views, sent)


def _advance(views: list[memoryview], sent: int) -> list[memoryview]:
    """What is left of ``views`` after ``sent`` bytes of them were written."""
    while sent:
        if sent >= len(views[0]):
            sent -= len(views.pop(0))
        else:
            views[0] = views[0][sent:]
            sent = 0
    while views and not views[0]:
        views.pop(0)
    return views
